// The baseline predictor (spec §6.5, §12.2): log1p(value) ~ gene term + cell term, in 1/16 nat.
//
// Results are stored in files, so the floating point is fixed: log1p of the value as a double
// (std::log1p, the platform's libm), sums in nonzero order, round half to even (nearbyint in the
// default rounding mode); the core is built without -ffast-math or FMA contraction.
#pragma once
#include <cstdint>

#include "sinr/span.hpp"

namespace sinr {

constexpr int64_t kTermMin = -32768;
constexpr int64_t kTermMax = 32767;

// First pass over a block of cells (CSC: indptr [n_cells + 1], genes, values): per gene, add its
// nonzeros to gene_nnz and the sum of log1p(v) minus the cell's mean log1p to gene_deviation, cells
// in order. V: the values' type (integer or floating). Returns 0, or 1 where pointers or genes lie
// outside the arrays (nothing is read or written out of bounds; cells before it were added).
template <typename V>
int accumulate_gene_stats(Span<const int64_t> indptr, Span<const int32_t> genes, Span<const V> values,
                          Span<int64_t> gene_nnz, Span<double> gene_deviation);

// Per (reordered) cell c < out.size: rint(16 x mean over its nonzeros of log1p(v) - gene term / 16),
// clipped to kTermMin .. kTermMax, 0 for a cell without nonzeros. Nonzero i is in column cols[i] and
// row rows[i]. Returns 0, or 1 where an index lies outside its array.
int fit_cell_terms(Span<const int32_t> cols, Span<const int32_t> rows, Span<const int32_t> values,
                   Span<const int64_t> gene_terms, Span<int64_t> out);

}  // namespace sinr
