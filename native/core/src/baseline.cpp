// The baseline predictor's fits. Every floating-point step mirrors the reference (Python/numba)
// exactly, in the same order: the results are stored in files and must not change by one bit.
#include "sinr/baseline.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace sinr {

namespace {

// log1p of the small whole numbers most counts are, computed once with the same std::log1p: a table
// lookup returns the very same double as the call.
constexpr int64_t kLog1pTable = 4096;

const double* log1p_table() {
  static const std::vector<double> table = [] {
    std::vector<double> t(kLog1pTable);
    for (int64_t i = 0; i < kLog1pTable; ++i) t[i] = std::log1p(static_cast<double>(i));
    return t;
  }();
  return table.data();
}

template <typename V>
inline double log1p_of(V v, const double* table) {
  if constexpr (std::is_integral_v<V>) {
    if (v >= 0 && static_cast<uint64_t>(v) < static_cast<uint64_t>(kLog1pTable)) return table[v];
  }
  return std::log1p(static_cast<double>(v));
}

}  // namespace

template <typename V>
int accumulate_gene_stats(Span<const int64_t> indptr, Span<const int32_t> genes, Span<const V> values,
                          Span<int64_t> gene_nnz, Span<double> gene_deviation) {
  if (indptr.size < 1 || gene_deviation.size != gene_nnz.size) return 1;
  const int64_t n_genes = gene_nnz.size;
  const int64_t limit = std::min(genes.size, values.size);
  const double* table = log1p_table();
  for (int64_t c = 0; c + 1 < indptr.size; ++c) {
    const int64_t lo = indptr[c], hi = indptr[c + 1];
    if (lo < 0 || hi < lo || hi > limit) return 1;
    if (hi == lo) continue;
    double mean = 0.0;
    for (int64_t i = lo; i < hi; ++i) mean += log1p_of(values[i], table);
    mean /= static_cast<double>(hi - lo);
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t g = genes[i];
      if (g < 0 || g >= n_genes) return 1;
      gene_nnz[g] += 1;
      gene_deviation[g] += log1p_of(values[i], table) - mean;
    }
  }
  return 0;
}

int fit_cell_terms(Span<const int32_t> cols, Span<const int32_t> rows, Span<const int32_t> values,
                   Span<const int64_t> gene_terms, Span<int64_t> out) {
  const int64_t n = values.size, n_cells = out.size;
  if (cols.size != n || rows.size != n) return 1;
  const double* table = log1p_table();
  std::vector<double> total(static_cast<size_t>(n_cells), 0.0);
  std::vector<int64_t> count(static_cast<size_t>(n_cells), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = cols[i], r = rows[i];
    if (c < 0 || c >= n_cells || r < 0 || r >= gene_terms.size) return 1;
    total[c] += log1p_of(values[i], table) - static_cast<double>(gene_terms[r]) / 16.0;
    count[c] += 1;
  }
  for (int64_t c = 0; c < n_cells; ++c) {
    if (!count[c]) {
      out[c] = 0;
      continue;
    }
    const double term = std::nearbyint(total[c] / static_cast<double>(count[c]) * 16.0);
    out[c] = static_cast<int64_t>(
        std::min(std::max(term, static_cast<double>(kTermMin)), static_cast<double>(kTermMax)));
  }
  return 0;
}

template int accumulate_gene_stats<int64_t>(Span<const int64_t>, Span<const int32_t>, Span<const int64_t>,
                                            Span<int64_t>, Span<double>);
template int accumulate_gene_stats<int32_t>(Span<const int64_t>, Span<const int32_t>, Span<const int32_t>,
                                            Span<int64_t>, Span<double>);
template int accumulate_gene_stats<double>(Span<const int64_t>, Span<const int32_t>, Span<const double>,
                                           Span<int64_t>, Span<double>);
template int accumulate_gene_stats<float>(Span<const int64_t>, Span<const int32_t>, Span<const float>,
                                          Span<int64_t>, Span<double>);

}  // namespace sinr
