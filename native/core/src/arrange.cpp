// Encoder kernels of one chunk: cell totals, the (tile, position) arrangement, bins and contexts.
#include "sinr/arrange.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "sinr/models.hpp"
#include "sinr/tile3.hpp"

namespace sinr {

const char* arrange_status_text(int status) {
  switch (status) {
    case kArrangeOk: return "";
    case kArrangeBadPointers: return "index pointers decrease or run past the nonzeros";
    case kArrangeBadIndex: return "an index lies outside its table";
    case kArrangeBadGeometry: return "bands, widths and tiles are inconsistent";
    case kArrangeBadSize: return "arrays of mismatched lengths";
    case kArrangeBadCounts: return "row counts disagree with the nonzeros' rows";
    case kArrangeBadValue: return "a value is negative";
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

struct Geometry {
  int64_t n_bands = 0, n_rows = 0, n_tiles = 0, tallest = 0;
  std::vector<int32_t> band_of_row;
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
    // a tile's positions fit 32 bits: no tile has more entries than a tile stream may (§6.1)
    if (n_cells > 0 && row_starts[b + 1] - row_starts[b] > kMaxTileEntries / std::min(w, n_cells))
      return kArrangeBadGeometry;
  }
  g->n_bands = n_bands;
  g->n_rows = row_starts[n_bands];
  g->n_tiles = tile_starts[n_bands];
  g->band_of_row.resize(static_cast<size_t>(g->n_rows));
  for (int64_t b = 0; b < n_bands; ++b) {
    std::fill(g->band_of_row.begin() + row_starts[b], g->band_of_row.begin() + row_starts[b + 1],
              static_cast<int32_t>(b));
    g->tallest = std::max(g->tallest, row_starts[b + 1] - row_starts[b]);
  }
  return kArrangeOk;
}

// A nonzero on its way, staged as kStagedItems 32-bit items: row, new column and value (12 bytes:
// the staging pass is bound by its writes).
inline int32_t entry_row(const uint32_t* e) { return static_cast<int32_t>(e[0]); }
inline int32_t entry_col(const uint32_t* e) { return static_cast<int32_t>(e[1]); }

}  // namespace

int cell_totals(Span<const int64_t> indptr, Span<const int32_t> values, Span<int64_t> out) {
  if (indptr.size < 1 || out.size != indptr.size - 1) return kArrangeBadSize;
  for (int64_t c = 0; c < out.size; ++c)
    if (indptr[c] < 0 || indptr[c + 1] < indptr[c] || indptr[c + 1] > values.size) return kArrangeBadPointers;
  for (int64_t c = 0; c < out.size; ++c) {
    uint64_t total = 0;  // wraps as the reference's int64 does (never, for a cell of a valid block)
    for (int64_t i = indptr[c]; i < indptr[c + 1]; ++i) total += static_cast<uint64_t>(int64_t{values[i]});
    out[c] = static_cast<int64_t>(total);
  }
  return kArrangeOk;
}

int row_counts(Span<const int32_t> genes, Span<const int64_t> gene_rank, Span<int64_t> counts, int64_t* n_rows) {
  if (counts.size != gene_rank.size) return kArrangeBadSize;
  std::fill(counts.begin(), counts.end(), int64_t{0});
  int64_t top = -1;
  for (int64_t i = 0; i < genes.size; ++i) {
    const int64_t gene = genes[i];
    const int64_t r = gene >= 0 && gene < gene_rank.size ? gene_rank[gene] : -1;
    if (r < 0 || r >= counts.size) return kArrangeBadIndex;
    ++counts[r];
    top = std::max(top, r);
  }
  *n_rows = top + 1;
  return kArrangeOk;
}

int arrange(Span<const int64_t> indptr, Span<const int32_t> genes, Span<const int32_t> values,
            Span<const int64_t> cell_order, Span<const int64_t> gene_rank, Span<const int64_t> row_nnz,
            Span<const int64_t> row_starts, Span<const int64_t> widths, Span<const int64_t> tile_starts,
            int64_t n_cells, Span<int32_t> rows, Span<int32_t> cols, Span<int32_t> out_values,
            Span<int32_t> positions, Span<uint32_t> staging, Span<int64_t> tile_k) {
  const int64_t nnz = values.size;
  if (genes.size != nnz || indptr.size != n_cells + 1 || cell_order.size != n_cells || rows.size != nnz ||
      cols.size != nnz || out_values.size != nnz || positions.size != nnz || staging.size != kStagedItems * nnz ||
      n_cells > INT32_MAX)
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
  if (tile_k.size != g.n_tiles || row_nnz.size != g.n_rows) return kArrangeBadSize;
  // The nonzeros band by band, walking the cells in their new order: each band's run is then in
  // column order, and its tiles (ranges of columns) are consecutive pieces of it. Each band's run
  // starts where the rows before it end (row_nnz, counted before the chunk's geometry was planned;
  // the walk below refuses any nonzero that does not fit its band's run, and checks that each run
  // is full at the end).
  std::vector<int64_t> band_start(static_cast<size_t>(g.n_bands) + 1, 0);
  for (int64_t r = 0, total = 0; r < g.n_rows; ++r) {
    if (row_nnz[r] < 0 || row_nnz[r] > nnz - total) return kArrangeBadCounts;
    total += row_nnz[r];
    band_start[g.band_of_row[r] + 1] += row_nnz[r];
  }
  for (int64_t b = 0; b < g.n_bands; ++b) band_start[b + 1] += band_start[b];
  if (band_start[g.n_bands] != nnz) return kArrangeBadCounts;
  uint32_t* const entries = staging.data;  // entry i at entries + kStagedItems * i
  std::vector<int64_t> at(band_start.begin(), band_start.end() - 1);
  for (int64_t c = 0; c < n_cells; ++c) {
    const int64_t cell = cell_order[c];
    for (int64_t e = indptr[cell]; e < indptr[cell + 1]; ++e) {
      const int64_t gene = genes[e];
      const int64_t r = gene >= 0 && gene < gene_rank.size ? gene_rank[gene] : -1;
      if (r < 0 || r >= g.n_rows) return kArrangeBadIndex;
      const int32_t b = g.band_of_row[r];
      if (at[b] >= band_start[b + 1]) return kArrangeBadCounts;
      const int32_t value = values[e];
      if (value < 0) return kArrangeBadValue;
      uint32_t* const entry = entries + kStagedItems * at[b]++;
      entry[0] = static_cast<uint32_t>(r);  // below INT32_MAX (plan_geometry), as c is
      entry[1] = static_cast<uint32_t>(c);
      entry[2] = static_cast<uint32_t>(value);
    }
  }
  for (int64_t b = 0; b < g.n_bands; ++b)  // every run full (the counts and the walk agree)
    if (at[b] != band_start[b + 1]) return kArrangeBadCounts;
  // Each tile: its nonzeros by row (stable, so each row's columns stay ascending), at its place in
  // the output, tiles in order.
  std::vector<int64_t> row_at(static_cast<size_t>(g.tallest) + 1);
  int64_t out = 0;
  for (int64_t b = 0; b < g.n_bands; ++b) {
    const int64_t r0 = row_starts[b], height = row_starts[b + 1] - r0, w = widths[b];
    int64_t i = band_start[b];
    const int64_t band_end = band_start[b + 1];
    for (int64_t t = tile_starts[b]; t < tile_starts[b + 1]; ++t) {
      const int64_t first = (t - tile_starts[b]) * w;
      const int64_t last = std::min(first + w, n_cells);
      const int64_t width = last - first;
      int64_t j = i;
      while (j < band_end && entry_col(entries + kStagedItems * j) < last) ++j;
      std::fill(row_at.begin(), row_at.begin() + height + 1, 0);
      for (int64_t q = i; q < j; ++q) ++row_at[entry_row(entries + kStagedItems * q) - r0 + 1];
      row_at[0] = out;
      for (int64_t h = 0; h < height; ++h) row_at[h + 1] += row_at[h];
      for (int64_t q = i; q < j; ++q) {
        const uint32_t* const entry = entries + kStagedItems * q;
        const int32_t row = entry_row(entry), col = entry_col(entry);
        const int64_t local_row = row - r0;
        const int64_t p = row_at[local_row]++;
        rows[p] = row;
        cols[p] = col;
        out_values[p] = static_cast<int32_t>(entry[2]);  // a value below 2**31: checked when staged
        positions[p] = static_cast<int32_t>(local_row * width + col - first);  // below kMaxTileEntries
      }
      tile_k[t] = j - i;
      out += j - i;
      i = j;
    }
    if (i != band_end) return kArrangeBadGeometry;  // cannot happen: columns lie below n_cells
  }
  return kArrangeOk;
}

int baseline_contexts(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int64_t> gene_terms,
                      Span<const int64_t> cell_terms, bool fine, Span<int32_t> out) {
  const int64_t n = out.size;
  if (rows.size != n || cols.size != n) return kArrangeBadSize;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = rows[i], c = cols[i];
    if (r < 0 || r >= gene_terms.size || c < 0 || c >= cell_terms.size) return kArrangeBadIndex;
    out[i] = fine ? tile3::baseline_context(gene_terms[r], cell_terms[c])
                  : baseline_context(gene_terms[r] + cell_terms[c]);
  }
  return kArrangeOk;
}

int value_bins(Span<const int32_t> u, Span<int32_t> out) {
  if (out.size != u.size) return kArrangeBadSize;
  // Below 2**kMantissaBits - 1 a value is its own bin (most counts are; a negative u too, as the
  // reference returns it).
  constexpr int32_t kExact = (int32_t{1} << kMantissaBits) - 1;
  for (int64_t i = 0; i < u.size; ++i) {
    const int32_t v = u[i];
    out[i] = v >= kExact ? static_cast<int32_t>(bin_of(v).bin) : v;
  }
  return kArrangeOk;
}

int value_counts(Span<const int32_t> contexts, Span<const int32_t> bins, int64_t n_contexts, int64_t n_bins,
                 Span<int64_t> counts) {
  if (bins.size != contexts.size || n_contexts < 0 || n_bins < 0 || (n_bins > 0 && n_contexts > INT64_MAX / n_bins) ||
      counts.size != n_contexts * n_bins)
    return kArrangeBadSize;
  std::fill(counts.data, counts.data + counts.size, 0);
  for (int64_t i = 0; i < contexts.size; ++i) {
    const int64_t c = contexts[i], b = bins[i];
    if (c < 0 || c >= n_contexts || b < 0 || b >= n_bins) return kArrangeBadIndex;
    ++counts[c * n_bins + b];
  }
  return kArrangeOk;
}

}  // namespace sinr
