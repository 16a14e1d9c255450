// One-pass summaries of a matrix along both axes (BPCells' matrix_stats): each gene's and each
// cell's nonzero count, sum and sum of squares, accumulated from decoded chunks as they come,
// without placing them, so a summary costs a decode and bounded memory at any size. Exact: sums
// in 64 bits (a gene's or a cell's sum stays below 2**31 * 2**31), sums of squares in 128 bits as
// two 64-bit words, and variances from those integers with one rounding at the end.
#pragma once
#include <cstdint>
#include <vector>

#include "sinr/span.hpp"

namespace sinr {

// One axis's accumulators, items indexed by original gene or cell, n items each.
struct Moments {
  Span<int64_t> nonzeros, sums;
  Span<uint64_t> squares_low, squares_high;
};

// Moments of n items that own their arrays, zeroed (a thread's genes, a reader's result).
struct MomentArrays {
  std::vector<int64_t> nonzeros, sums;
  std::vector<uint64_t> squares_low, squares_high;
  explicit MomentArrays(int64_t n)
      : nonzeros(static_cast<size_t>(n)), sums(static_cast<size_t>(n)), squares_low(static_cast<size_t>(n)),
        squares_high(static_cast<size_t>(n)) {}
  Moments view() {
    const int64_t n = static_cast<int64_t>(nonzeros.size());
    return {{nonzeros.data(), n}, {sums.data(), n}, {squares_low.data(), n}, {squares_high.data(), n}};
  }
};

// Adds `from` to `into`, item by item (as many items in each; squares with their carry).
void add_moments(Moments into, Moments from);

// Adds n decoded nonzeros to the moments of their genes (item item_of_row[rows[i]] of `genes`) and
// cells (cell_of_col[cols[i] - first_col]: the table of a chunk's window of columns) and sets
// *checksum to their content checksum (checksum.hpp; gene gene_of_row[rows[i]]), for the chunk's
// checksum to be checked. Returns 0, or -1 when a row or column lies outside its table, an item or
// cell outside its moments, or a value is negative (none of which a decoder's checked output holds):
// the moments are then partly added, and the caller drops them with the file.
int accumulate_moments(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                       Span<const int64_t> gene_of_row, Span<const int64_t> item_of_row, Span<const int64_t> cell_of_col,
                       int64_t first_col, Moments genes, Moments cells, uint64_t* checksum);

// The variance of each item over `entries` entries (its zeros included) with `ddof` delta degrees of
// freedom, into out: (entries * S2 - S1**2) / (entries * (entries - ddof)), computed exactly in 128
// bits and rounded once to the nearest double. Needs 0 <= ddof < entries <= 2**31 and each item's
// sums of at most `entries` values below 2**31; returns -1 otherwise (out partly written).
int moments_variance(Span<const int64_t> sums, Span<const uint64_t> squares_low, Span<const uint64_t> squares_high,
                     int64_t entries, int64_t ddof, Span<double> out);

// The mean of each item over `entries` entries (entries >= 1, sums >= 0), rounded once to the
// nearest double; -1 otherwise.
int moments_mean(Span<const int64_t> sums, int64_t entries, Span<double> out);

}  // namespace sinr
