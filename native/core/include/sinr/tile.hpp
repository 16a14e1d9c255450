// The tile format (spec §6; format 2: Appendix C): one rANS stream per tile, its encode and decode halves.
//
// A tile is h rows x w columns of one band of a chunk; entry (i, j) has position i*w + j. Its
// stream holds, in this order:
//
// 1. positions: the k nonzero positions, or when 2k > h*w the h*w - k zero positions, as Golomb
//    gaps: parameter M = max(1, ((n - m)*69 + 50 m) // (100 m)) for m coded positions of n; each
//    gap's quotient through the quotient model (escapes of 15), its remainder uniform over M;
// 2. values, in position order: each nonzero's bin through its context's frequency table, then
//    its offset as raw bits (high d-16 bits first when d > 16). --inr-only files code no values.
//
// The kernels take whole batches of tiles so that a read or a chunk costs one call.
//
// Hostile input. The decoder reads files it cannot trust: every number it takes from a stream
// or from the tile directory is checked before it indexes anything, and a tile that fails a check
// gets a status, never a read or write outside the arrays given:
//   kTruncated        the stream ends early, or its bytes lie outside the buffer;
//   kBeyondTile       a position lies beyond its tile, or the tile's shape or place (rows, columns,
//                     nonzeros, output room) contradicts the arrays it indexes;
//   kBadEnding        a tile decoded whole does not end where its coder does;
//   kUnusedContext    a value needs a context with no (valid) frequency table, a model that does
//                     not exist, or a SIREN that does not exist or does not chain;
//   kUnexpectedBytes  a tile with nothing to code has bytes.
// Arguments a caller gets wrong whatever the file (arrays of different lengths) throw
// std::invalid_argument instead.
#pragma once
#include <cstdint>

#include "sinr/models.hpp"
#include "sinr/span.hpp"

namespace sinr {

namespace tile3 {
class ChunkTables;
}

enum TileStatus : int64_t {
  kOk = 0,
  kTruncated = 1,
  kBeyondTile = 2,
  kBadEnding = 3,
  kUnusedContext = 4,
  kUnexpectedBytes = 5,
};

enum CodingMode : int { kModeLossless = 0, kModeMaxError = 1, kModeInrOnly = 2 };

// The value of a nonzero from its value index u: u + 1 (lossless), or under max-error e the
// dequantised index 1 + u (2e + 1), kMaxCount for the indices past the last that fits.
struct ValueOf {
  ValueOf(int mode, int64_t max_error)
      : lossless(mode == kModeLossless),
        step(static_cast<int64_t>(2 * static_cast<uint64_t>(max_error < 0 ? 0 : max_error) + 1)),
        max_code(static_cast<int64_t>((static_cast<uint64_t>(kMaxCount) - 1) / static_cast<uint64_t>(step))) {}
  int64_t operator()(int64_t u) const { return lossless ? u + 1 : u <= max_code ? 1 + u * step : kMaxCount; }

  bool lossless;
  int64_t step;
  int64_t max_code;
};

// Golomb M ~ ln(2) x mean gap, in integer arithmetic so every platform agrees (n_coded >= 1).
inline int64_t golomb_parameter(int64_t n_entries, int64_t n_coded) {
  const int64_t m = ((n_entries - n_coded) * 69 + 50 * n_coded) / (100 * n_coded);
  return m > 1 ? m : 1;
}

// ------------------------------------------------------------------------------------- encode

struct EncodeStats {
  double position_bits = 0;  // information content of the positions' symbols, in bits
  double value_bits = 0;     // and of the values'
};

// Encode consecutive tiles (their nonzeros back to back, positions strictly ascending in each and
// below tile_n) into out, each tile's byte length into lengths. u holds each nonzero's value
// index (count - 1, or the quantised index), contexts its context (a row of cum, cumulative
// frequencies of kNumBins + 1 columns); code_values false codes positions only (--inr-only).
// max_symbols bounds the symbols of any tile (symbol_bound), out must hold the sum over tiles of
// 4 + 2 * symbols, log2_table[f] = log2(f) for f in 0..2**16 (the statistics only). Throws
// std::invalid_argument on input that breaks these rules (nothing is written out of bounds).
EncodeStats encode_tiles(Span<const int64_t> tile_k, Span<const int64_t> tile_n, Span<const int32_t> positions,
                         Span<const int32_t> u, Span<const int32_t> contexts, Span2<const int64_t> cum,
                         bool code_values, int64_t max_symbols, Span<uint8_t> out, Span<const double> log2_table,
                         Span<int64_t> lengths);

// ------------------------------------------------------------------------------------- decode

// The value models of the chunks a batch reads: n_models x n_contexts rows, each of cumulative
// frequencies (kNumBins + 1 int32), a slot lookup (kLutSize uint8) and a used flag. A used row is
// checked (once per call) before its first use.
//
// Format 3 (tables3 set): the tiles are format-3 streams (spec §6) and tables3[model] holds the gap
// and value tables of model `model` (n_models of them, none null); cum, lut, used and n_contexts
// are not read.
struct ValueModels {
  const int32_t* cum = nullptr;
  const uint8_t* lut = nullptr;
  const uint8_t* used = nullptr;
  int64_t n_models = 0;
  int64_t n_contexts = 0;
  const tile3::ChunkTables* const* tables3 = nullptr;
};

// Every SIREN a batch may use: spec rows (first layer, layers, normalisation kind), norm rows
// (offset, scale), the layer table (kLayerFields per row) and the parameters it indexes.
struct SirenSet {
  const int64_t* spec = nullptr;
  const double* norm = nullptr;
  int64_t n = 0;
  const int64_t* layers = nullptr;
  int64_t n_layer_rows = 0;
  const int64_t* params = nullptr;
  int64_t n_params = 0;
};

// Per-tile arrays of a batch (all of one length). Tile t's stream is buf[offset[t]: + length[t]];
// it has k[t] nonzeros in h[t] x w[t] entries; its first row is row[t] (an index into gene_terms
// and the output), its first column col[t] (an index into cell_terms, col_mask and the output),
// which is column first[t] of a chunk of cells[t] cells; model[t] picks the chunk's value model
// and siren[t] the band's SIREN (-1: the baseline).
struct TileDirectory {
  Span<const int64_t> offset, length, k, h, w, row, col, first, cells, model, siren;
};

// What a read keeps: want_row >= 0 keeps that row, want_col >= 0 that column, a non-empty
// col_mask (bytes 0/1) the columns it marks. Values are decoded only up to the last nonzero kept.
struct ReadFilter {
  int64_t want_row = -1;
  int64_t want_col = -1;
  Span<const uint8_t> col_mask;
};

// The triples a batch decodes: tile t writes its kept nonzeros' (row, column, value) from
// out_start[t] on, their number into out_count[t] and its status into status[t]. R is int32_t or
// int64_t, V int32_t or int64_t (every value is below 2**31).
template <typename R, typename V>
struct Triples {
  Span<R> rows;
  Span<R> cols;
  Span<V> values;
};

// Nonzeros a batch must hold before decoding it on several threads pays for starting them (a
// cell's 400 tiles of a 60M-nonzero file hold about 100,000).
constexpr int64_t kParallelMinEntries = 20000;

// With threads > 1 the tiles are cut into that many runs of about equal nonzeros, each decoded on a
// thread of its own (run_on_threads) with the call's tables: the result is the same.
template <typename R, typename V>
void decode_tiles(Span<const uint8_t> buf, const TileDirectory& tiles, Span<const int64_t> gene_terms,
                  Span<const int32_t> cell_terms, const ValueModels& models, const SirenSet& sirens, int mode,
                  int64_t max_error, const ReadFilter& filter, Span<const int64_t> out_start, Triples<R, V> out,
                  Span<int64_t> out_count, Span<int64_t> status, int threads = 1);

// Format 3's bulk decodes (whole chunks) build packed tables for the call, which the lockstep
// decoder needs, when a batch decodes at least this many nonzeros per used table row (default 128:
// a row's 4096 entries cost about what 128 nonzeros save); count_rows likewise, with its coded
// positions per used gap row. Process-wide; returns the setting before (tests set 0 to run the
// lanes on small files).
int64_t set_packed_nnz_per_row(int64_t nnz_per_row);

// Add each tile's nonzeros per row to counts[row], decoding positions only (the first pass of a
// row-major full decode). Uses offset, length, k, h, w and row of the directory, and for format 3
// its model and the models' gap tables (models is not read for format 2). Format 3's tiles run in
// the lockstep lanes where decode_tiles would (lanes3.hpp's count_tiles), with the same result. On
// `threads`, runs of about equal nonzeros each count into their own rows, added up at the end.
void count_rows(Span<const uint8_t> buf, const TileDirectory& tiles, const ValueModels& models, Span<int64_t> counts,
                Span<int64_t> status, int threads = 1);

// i = p / w as (p * magic) >> shift: exact for every p below 2**24 (a tile's entries, kMaxTileEntries)
// with shift = 24 + ceil(log2 w), magic = ceil(2**shift / w) < 2**26; w at least 1.
struct Divider {
  explicit Divider(int64_t w)
      : shift(24 + bit_length(static_cast<uint64_t>(w - 1))),
        magic(((uint64_t{1} << shift) + static_cast<uint64_t>(w) - 1) / static_cast<uint64_t>(w)) {}
  int64_t row(int32_t p) const { return static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(p)) * magic) >> shift); }
  int shift;
  uint64_t magic;
};

// count_rows's count of one tile of h x w entries from its coded set (m ascending positions below
// h * w): its nonzeros, or its zeros when `zeros` (a tile more than half full), whose rows then
// hold w less their zeros. Adds to counts[0: h]. Each position's row by multiplication, without a
// branch: rows of one or two nonzeros, the common case, mispredict a scan's branch at each row.
inline void add_row_counts(const int32_t* coded, int64_t m, bool zeros, int64_t h, int64_t w, int64_t* counts) {
  if (zeros)
    for (int64_t i = 0; i < h; ++i) counts[i] += w;
  if (m <= 0) return;
  const Divider d(w);
  const int64_t one = zeros ? -1 : 1;
  for (int64_t idx = 0; idx < m; ++idx) counts[d.row(coded[idx])] += one;
}

// One tile of one chunk, for decode_entry.
struct TileInfo {
  int64_t start = 0;   // its stream: buf[start: start + length]
  int64_t length = 0;
  int64_t k = 0, h = 0, w = 0;
  int64_t row = 0;     // first row
  int64_t col = 0;     // first column (into cell_terms)
  int64_t first = 0;   // its first column within the chunk
  int64_t cells = 0;   // the chunk's cells
  int64_t model = 0;   // into models
  int64_t siren = -1;  // into sirens, -1: the baseline
};

struct EntryValue {
  int64_t value = 0;
  int64_t status = kOk;
};

// The value at (row, col) of a tile (0 if no nonzero lies there), and its status: the lean path of
// m[i, j], which reads the tile's positions and its values only up to the entry's own.
EntryValue decode_entry(Span<const uint8_t> buf, const TileInfo& tile, Span<const int64_t> gene_terms,
                        Span<const int32_t> cell_terms, const ValueModels& models, const SirenSet& sirens, int mode,
                        int64_t max_error, int64_t row, int64_t col);

}  // namespace sinr
