// Encoder kernels of one chunk: cell totals, the (tile, position) arrangement, bins and contexts.
#include "sinr/arrange.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <vector>

#include "sinr/models.hpp"

namespace sinr {

const char* arrange_status_text(int status) {
  switch (status) {
    case kArrangeOk: return "";
    case kArrangeBadPointers: return "index pointers decrease or run past the nonzeros";
    case kArrangeBadIndex: return "an index lies outside its table";
    case kArrangeBadGeometry: return "bands, widths and tiles are inconsistent";
    case kArrangeBadSize: return "arrays of mismatched lengths";
    default: return "unknown arrangement error";
  }
}

namespace {

// indptr ascends from 0 to exactly n (the nonzeros of every cell, nothing more).
bool pointers_cover(Span<const int64_t> indptr, int64_t n) {
  if (indptr.size < 1 || indptr[0] != 0 || indptr[indptr.size - 1] != n) return false;
  for (int64_t c = 0; c + 1 < indptr.size; ++c)
    if (indptr[c + 1] < indptr[c]) return false;
  return true;
}

// Where the nonzeros of column c fall in band b: bucket = bucket0 + row and position = row * width
// + position0, computed once per (column, band) and reused for the column's other rows of the band.
struct BandAt {
  int64_t column = -1;
  int64_t bucket0 = 0;
  int64_t width = 0;
  int64_t position0 = 0;
};

struct Geometry {
  int64_t n_bands = 0, n_rows = 0, n_tiles = 0, n_buckets = 0;
  std::vector<int32_t> band_of_row;
  std::vector<int64_t> bucket_base;  // first bucket of each tile: one bucket per tile row
};

int plan_geometry(Span<const int64_t> row_starts, Span<const int64_t> widths, Span<const int64_t> tile_starts,
                  int64_t n_cells, Geometry* g) {
  const int64_t n_bands = widths.size;
  if (row_starts.size != n_bands + 1 || tile_starts.size != n_bands + 1 || n_cells < 0 || row_starts[0] != 0 ||
      tile_starts[0] != 0 || n_bands > INT32_MAX)
    return kArrangeBadGeometry;
  for (int64_t b = 0; b < n_bands; ++b) {
    const int64_t w = widths[b];
    if (w < 1 || row_starts[b + 1] < row_starts[b] || row_starts[b + 1] > INT32_MAX ||
        tile_starts[b + 1] - tile_starts[b] != (n_cells + w - 1) / w)
      return kArrangeBadGeometry;
  }
  g->n_bands = n_bands;
  g->n_rows = row_starts[n_bands];
  g->n_tiles = tile_starts[n_bands];
  g->band_of_row.resize(static_cast<size_t>(g->n_rows));
  for (int64_t b = 0; b < n_bands; ++b)
    std::fill(g->band_of_row.begin() + row_starts[b], g->band_of_row.begin() + row_starts[b + 1],
              static_cast<int32_t>(b));
  g->bucket_base.assign(static_cast<size_t>(g->n_tiles + 1), 0);
  for (int64_t b = 0; b < n_bands; ++b)
    for (int64_t t = tile_starts[b]; t < tile_starts[b + 1]; ++t)
      g->bucket_base[t + 1] = g->bucket_base[t] + row_starts[b + 1] - row_starts[b];
  g->n_buckets = g->bucket_base[g->n_tiles];
  return kArrangeOk;
}

template <typename B>
int arrange_impl(Span<const int64_t> indptr, Span<const int64_t> genes, Span<const int64_t> values,
                 Span<const int64_t> cell_order, Span<const int64_t> gene_rank, Span<const int64_t> row_starts,
                 Span<const int64_t> widths, Span<const int64_t> tile_starts, int64_t n_cells, const Geometry& g,
                 Span<int32_t> rows, Span<int32_t> cols, Span<int64_t> out_values, Span<int64_t> positions,
                 Span<int64_t> tile_k) {
  const int64_t nnz = values.size;
  std::vector<BandAt> at_band(static_cast<size_t>(g.n_bands));
  auto locate = [&](int64_t c, int64_t b) -> const BandAt& {
    BandAt& s = at_band[b];
    if (s.column != c) {
      const int64_t w = widths[b];
      const int64_t first = c - c % w;
      s.column = c;
      s.bucket0 = g.bucket_base[tile_starts[b] + c / w] - row_starts[b];
      s.width = std::min(w, n_cells - first);
      s.position0 = c - first - row_starts[b] * s.width;
    }
    return s;
  };
  std::vector<int64_t> starts(static_cast<size_t>(g.n_buckets + 1), 0);
  std::unique_ptr<B[]> bucket_of(new B[static_cast<size_t>(nnz > 0 ? nnz : 1)]);
  int64_t seen = 0;
  for (int64_t c = 0; c < n_cells; ++c) {
    const int64_t cell = cell_order[c];
    for (int64_t e = indptr[cell]; e < indptr[cell + 1]; ++e) {
      const int64_t gene = genes[e];
      if (gene < 0 || gene >= gene_rank.size) return kArrangeBadIndex;
      const int64_t r = gene_rank[gene];
      if (r < 0 || r >= g.n_rows) return kArrangeBadIndex;
      const int64_t bucket = locate(c, g.band_of_row[r]).bucket0 + r;
      bucket_of[seen++] = static_cast<B>(bucket);
      ++starts[bucket + 1];
    }
  }
  for (int64_t i = 0; i < g.n_buckets; ++i) starts[i + 1] += starts[i];
  for (int64_t t = 0; t < g.n_tiles; ++t) tile_k[t] = starts[g.bucket_base[t + 1]] - starts[g.bucket_base[t]];
  for (auto& s : at_band) s.column = -1;
  seen = 0;
  for (int64_t c = 0; c < n_cells; ++c) {
    const int64_t cell = cell_order[c];
    for (int64_t e = indptr[cell]; e < indptr[cell + 1]; ++e) {
      const int64_t at = starts[bucket_of[seen++]]++;
      const int64_t r = gene_rank[genes[e]];
      const BandAt& s = locate(c, g.band_of_row[r]);
      rows[at] = static_cast<int32_t>(r);
      cols[at] = static_cast<int32_t>(c);
      out_values[at] = values[e];
      positions[at] = r * s.width + s.position0;
    }
  }
  return kArrangeOk;
}

}  // namespace

int cell_totals(Span<const int64_t> indptr, Span<const int64_t> values, Span<int64_t> out) {
  if (indptr.size < 1 || out.size != indptr.size - 1) return kArrangeBadSize;
  for (int64_t c = 0; c < out.size; ++c)
    if (indptr[c] < 0 || indptr[c + 1] < indptr[c] || indptr[c + 1] > values.size) return kArrangeBadPointers;
  for (int64_t c = 0; c < out.size; ++c) {
    uint64_t total = 0;  // wraps as the reference's int64 does
    for (int64_t i = indptr[c]; i < indptr[c + 1]; ++i) total += static_cast<uint64_t>(values[i]);
    out[c] = static_cast<int64_t>(total);
  }
  return kArrangeOk;
}

int64_t arrange_buckets(Span<const int64_t> row_starts, Span<const int64_t> tile_starts) {
  if (row_starts.size != tile_starts.size || row_starts.size < 1) return -1;
  int64_t total = 0;
  for (int64_t b = 0; b + 1 < row_starts.size; ++b)
    total += (row_starts[b + 1] - row_starts[b]) * (tile_starts[b + 1] - tile_starts[b]);
  return total;
}

int arrange(Span<const int64_t> indptr, Span<const int64_t> genes, Span<const int64_t> values,
            Span<const int64_t> cell_order, Span<const int64_t> gene_rank, Span<const int64_t> row_starts,
            Span<const int64_t> widths, Span<const int64_t> tile_starts, int64_t n_cells, Span<int32_t> rows,
            Span<int32_t> cols, Span<int64_t> out_values, Span<int64_t> positions, Span<int64_t> tile_k) {
  const int64_t nnz = values.size;
  if (genes.size != nnz || indptr.size != n_cells + 1 || cell_order.size != n_cells || rows.size != nnz ||
      cols.size != nnz || out_values.size != nnz || positions.size != nnz || n_cells > INT32_MAX)
    return kArrangeBadSize;
  if (!pointers_cover(indptr, nnz)) return kArrangeBadPointers;
  {
    std::vector<char> seen(static_cast<size_t>(n_cells), 0);
    for (int64_t c = 0; c < n_cells; ++c) {
      const int64_t cell = cell_order[c];
      if (cell < 0 || cell >= n_cells || seen[cell]) return kArrangeBadIndex;
      seen[cell] = 1;
    }
  }
  Geometry g;
  if (int status = plan_geometry(row_starts, widths, tile_starts, n_cells, &g)) return status;
  if (tile_k.size != g.n_tiles) return kArrangeBadSize;
  if (g.n_buckets < (int64_t{1} << 32))
    return arrange_impl<uint32_t>(indptr, genes, values, cell_order, gene_rank, row_starts, widths, tile_starts,
                                  n_cells, g, rows, cols, out_values, positions, tile_k);
  return arrange_impl<int64_t>(indptr, genes, values, cell_order, gene_rank, row_starts, widths, tile_starts,
                               n_cells, g, rows, cols, out_values, positions, tile_k);
}

int baseline_contexts(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int64_t> gene_terms,
                      Span<const int64_t> cell_terms, Span<int64_t> out) {
  const int64_t n = out.size;
  if (rows.size != n || cols.size != n) return kArrangeBadSize;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = rows[i], c = cols[i];
    if (r < 0 || r >= gene_terms.size || c < 0 || c >= cell_terms.size) return kArrangeBadIndex;
    out[i] = baseline_context(gene_terms[r] + cell_terms[c]);
  }
  return kArrangeOk;
}

void value_bins(Span<const int64_t> u, Span<int64_t> out) {
  // u + 1 must not overflow: where it would, the reference's wrapped arithmetic also returns u.
  for (int64_t i = 0; i < u.size; ++i) out[i] = u[i] >= 0 && u[i] < INT64_MAX ? bin_of(u[i]).bin : u[i];
}

}  // namespace sinr
