// Reader kernels of whole-matrix decodes (spec §7): a decoded chunk's nonzeros scattered straight
// into the final CSR / CSC arrays while its content checksum (§6.6) is computed, the compaction of
// filtered tile outputs, and the tiles of one row across chunks.
//
// The placing kernels see the output of the tile decoder, which a hostile file may steer: every row,
// column and output position is checked before it is used, and a violation returns a status other
// than kOk with nothing written out of bounds (the caller reports the file as corrupt).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "sinr/span.hpp"

namespace sinr {

enum AssembleStatus : int {
  kAssembleOk = 0,
  kAssembleBadRow = 1,       // a decoded row lies outside the file's rows
  kAssembleBadColumn = 2,    // a decoded column lies outside the matrix's columns
  kAssembleBadCell = 3,      // a decoded cell lies outside its chunk
  kAssembleBadOutput = 4,    // output arrays too small for the chunk, or cursors outside them
  kAssembleRowOverflow = 5,  // a row receives more nonzeros than were counted for it
  kAssembleBadTable = 6,     // inconsistent band or tile tables
  kAssembleBadCounts = 7,    // tile counts or starts outside the decoded arrays
};

// A sentence for a status (empty for kAssembleOk).
const char* assemble_status_text(int status);

// What place_by_cell reuses from one chunk to the next: one per thread, so that a read of many
// chunks pays the first touch of the kernel's scratch once, not per chunk (a cell's nonzeros; 8
// bytes a nonzero of the chunk where the output's index or value type is narrower than 32 bits).
class PlaceScratch {
 public:
  PlaceScratch();
  ~PlaceScratch();
  PlaceScratch(const PlaceScratch&) = delete;
  PlaceScratch& operator=(const PlaceScratch&) = delete;

  struct Parts;  // assemble.cpp's
  Parts& parts() { return *parts_; }

 private:
  std::unique_ptr<Parts> parts_;
};

// Puts one run of (rank, value) pairs at a time in rank order (a cell's nonzeros, ranks below
// n_ranks), with place_by_cell's own ordering: by bitmap where the ranks are dense enough, else
// its radix sort; equal ranks keep their input order. Its scratch is kept from one run to the next.
class RankOrder {
 public:
  explicit RankOrder(int64_t n_ranks);
  ~RankOrder();
  RankOrder(const RankOrder&) = delete;
  RankOrder& operator=(const RankOrder&) = delete;

  // ranks[0..m) and values[0..m) rewritten in rank order; every rank must lie below n_ranks.
  void order(int32_t* ranks, int32_t* values, int64_t m);

 private:
  struct Parts;  // assemble.cpp's
  std::unique_ptr<Parts> parts_;
};

// Write a chunk's nonzeros cell by cell, genes ascending within each cell, at out_indices /
// out_data[base ...], and its cells' index pointers at out_indptr[1 .. n_cells] (out_indptr[0] is
// the caller's). Nonzero i is (row rows[i], reordered column cols[i], value values[i]); its original
// cell is cell_original[cols[i]], which must lie in first_cell .. first_cell + n_cells - 1, and its
// gene genes_of_row[rows[i]]; rank_of_row[r] is row r's rank by gene (a permutation of
// 0 .. n_rows - 1). Equal (cell, gene) keys keep their input order. *checksum receives the sum of
// the nonzeros' entry hashes. Returns an AssembleStatus.
// I: output index type (int32_t or int64_t); D: output value type (any integer or floating type,
// converted as a C++ static_cast does). scratch: memory kept for the next call (nullptr: the
// call's own). threads: how many threads share the chunk (one for every 65,536 nonzeros at most),
// for reads of fewer chunks than threads; the result is the same for any number.
template <typename I, typename D>
int place_by_cell(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                  Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                  Span<const int64_t> rank_of_row, Span<const int64_t> genes_of_row, int64_t base,
                  Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                  PlaceScratch* scratch = nullptr, int threads = 1);

// Write a chunk's nonzeros row by row, cells ascending within each row: the nonzeros of row r go to
// out_indices / out_data[cursor[r] ...], advancing cursor[r], and must end exactly at limit[r]
// (cursor and limit hold one entry per row of genes_of_row). out_indices receives original cells.
// Equal (row, cell) keys keep their input order. band_rows (band starts, and the last band's end;
// may be empty) names the rows placed: a chunk's bands, or a run of them (a gene-major read may place
// a chunk's bands in parts, by calls on other threads: their rows are apart). Only those rows'
// cursors are read and must end at their limits, and a nonzero of another row is refused; empty or
// inconsistent band_rows names every row. Each band's nonzeros are sorted apart where they come band
// after band, as the decoder emits them, else the rows' together: the same result. On up to `threads` threads
// (one per 65,536 nonzeros at most), each placing the bands that begin in its share of the nonzeros
// (a band's rows are its own); on one where band_rows does not cut the nonzeros into bands, or where
// the rows' output ranges are not apart in the order of their genes. Returns an AssembleStatus.
template <typename I, typename D>
int place_by_row(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                 Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                 Span<const int64_t> genes_of_row, Span<int64_t> cursor, Span<const int64_t> limit,
                 Span<const int64_t> band_rows, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                 int threads = 1);

// Move tile t's counts[t] triples, found at out_start[t], down to follow the previous tile's (in
// place: each moves to an index no higher than its own). *kept receives their number. Returns
// kAssembleBadCounts, having moved nothing, unless every tile's range lies in the arrays and the
// ranges ascend without overlap.
template <typename V>
int compact(Span<const int64_t> out_start, Span<const int64_t> counts, Span<int32_t> rows, Span<int32_t> cols,
            Span<V> values, int64_t* kept);

// For every chunk c holding `row` (row < n_rows[c]): the chunk and its band holding the row
// (table_rows[c] ascends: the chunk's band starts, padded); then the tiles of those bands
// (chunk_base[c] + table_tiles[c][b] .. chunk_base[c] + table_tiles[c][b + 1] - 1) and, for each
// tile, the index of its (chunk, band) pair. Returns an AssembleStatus.
struct BandTileRanges {
  std::vector<int64_t> chunks, bands, tiles, pair;
};
int band_tile_ranges(Span2<const int64_t> table_rows, Span2<const int64_t> table_tiles,
                     Span<const int64_t> chunk_base, Span<const int64_t> n_rows, int64_t row, BandTileRanges* out);

}  // namespace sinr
