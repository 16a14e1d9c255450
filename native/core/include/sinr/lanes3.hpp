// Format 3's lockstep tile decoder: eight tiles at a time, one per 32-bit lane (vec8.hpp).
//
// The hot case of decode_tiles (tile.hpp) is a whole-tile decode: every whole-matrix decode and
// block read decodes batches of baseline tiles, lossless or max-error, with no filter or a column
// mask (a block read: a tile's triples of the columns it marks). For those batches the lanes decode
// eight tiles in lockstep, one symbol of every lane per step (spec §6,
// design §4; the stream lab's gap-bins/12p/simd8), a lane whose tile ends taking the batch's next
// one. Every other tile, and every tile a lane finds anything wrong with, goes to the scalar
// decoder (tile.cpp's TileDecoder): what a batch writes (triples, counts, statuses) is the scalar
// decoder's, byte for byte, whatever the input.
//
// What a lane checks, so that its tiles are exactly the tiles the scalar decoder decodes whole:
// before it takes a tile, everything the scalar decoder checks before the stream (the stream
// inside the buffer, the shape, the rows and columns inside the terms and the format's limits,
// the model and the gap table, the output room, T2); at each symbol T3 and T4 together (the word
// and raw bytes taken never cross), T5 (a position below n_t) and the raw field's width (up to
// 25 bits: wider fields, values of 2**29 and more, go to the scalar decoder); before the values
// T6 (every context with a table); at the end T7, T8, T9. A lane reads only inside its tile's
// stream (a word's 4-byte read ends at the word, clamped into the stream; a raw field's ends at
// its first byte, which the checks keep at or after byte 4) and indexes only used rows of its
// chunk's tables; it writes a tile's triples only once the tile has passed every check.
//
// Which decoder runs is a process-wide setting (set_tile_lanes): kAuto (the default) uses the
// AVX2 lanes where the CPU has AVX2 and the scalar decoder elsewhere (the portable lanes are
// slower than it, design §4); kScalar always uses the scalar decoder; kPortable runs the same lane
// logic on plain arrays (vec8.hpp), so that tests hold the lane logic to the scalar decoder on
// every machine, aarch64 included.
#pragma once
#include <cstdint>
#include <functional>

#include "sinr/span.hpp"
#include "sinr/tile.hpp"
#include "sinr/tile3.hpp"

namespace sinr {

enum class TileLanes : int { kScalar = 0, kAuto = 1, kPortable = 2 };

void set_tile_lanes(TileLanes lanes);
TileLanes tile_lanes();
// What a whole-tile decode of format 3 runs now: "avx2", "portable" or "scalar".
const char* tile_lanes_path();

namespace lanes3 {

// A batch of format-3 tiles as decode_tiles has it: mode lossless or max-error, no filter but
// perhaps col_mask (a block read) or want_col (a cell read).
struct Batch {
  Span<const uint8_t> buf;
  const TileDirectory* tiles;
  Span<const int64_t> gene_terms;
  Span<const int32_t> cell_terms;
  const tile3::PackedTables* const* tables;  // one chunk's packed tables per model id (tile.model)
  int64_t n_models;
  int mode;
  int64_t max_error;
  Span<const int64_t> out_start;
  Span<const uint8_t> col_mask;  // empty: every column
  int64_t want_col = -1;         // >= 0: that column only (col_mask then empty)
};

// Whether the lanes take a read with this filter in this mode (else the scalar decoder does). Not
// a gene read (want_row): the scalar decoder decodes its tiles' values only to the row's end, on
// the chunks' compact tables, where the lanes would first build packed ones (pbmc4k and visium 6e6,
// a gene's read 1.01 ms by the scalar decoder against 1.32-1.35 ms in the lanes).
bool takes(const ReadFilter& filter, int mode);

// The tiles the lanes have decoded, and those they took and then handed to the scalar decoder (a
// check failed), in this process so far: tests hold the lanes to decoding every tile of a valid
// file themselves (a lane that handed back valid tiles would still give exact output, slowly).
struct LaneCounts {
  int64_t finished = 0;
  int64_t handed_back = 0;
};
LaneCounts lane_counts();

// Decode the batch's tiles in lockstep, calling scalar(t) for each tile t the lanes leave to the
// scalar decoder (which writes its triples, out_count[t] and status[t]). False, with nothing
// written, when the lanes are off (tile_lanes_path() is "scalar") or the tiles' output ranges are
// not in increasing order without overlap (then the order in which tiles are written could
// matter): the caller then decodes every tile with the scalar decoder.
template <typename R, typename V>
bool decode_tiles(const Batch& batch, Triples<R, V> out, Span<int64_t> out_count, Span<int64_t> status,
                  const std::function<void(int64_t)>& scalar);

// count_rows's format-3 tiles in lockstep: the lanes decode each tile's gap symbols only (a
// stream codes every gap before any value, §6.7) and add its nonzeros per row to counts[row[t]:]
// (add_row_counts), with status[t] kOk; scalar(t) counts every tile they leave (an empty or full
// tile, a check that fails) as count_rows's scalar path does, so that counts and statuses are its
// own whatever the input. The batch's tables need only their gap rows; gene_terms, cell_terms,
// out_start and col_mask are not read, nor the directory's col, first, cells and siren. False,
// with nothing counted, when the lanes are off or no tile codes positions.
bool count_tiles(const Batch& batch, Span<int64_t> counts, Span<int64_t> status,
                 const std::function<void(int64_t)>& scalar);

}  // namespace lanes3
}  // namespace sinr
