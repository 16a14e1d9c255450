// Bindings of the encoder's kernels: cell totals, the (tile, position) arrangement of a chunk,
// value bins, baseline contexts, and the baseline's fits.
#include <nanobind/stl/tuple.h>

#include <string>
#include <tuple>
#include <vector>

#include "bindings.hpp"
#include "owned.hpp"
#include "sinr/arrange.hpp"
#include "sinr/baseline.hpp"

namespace sinr::python {

namespace {

void check(int status, const char* what) {
  if (status != kArrangeOk) throw nb::value_error((std::string(what) + ": " + arrange_status_text(status)).c_str());
}

NumpyArray<int64_t> cell_totals_py(Array<const int64_t> indptr, Array<const int32_t> values) {
  Owned<int64_t> out(indptr.shape(0) > 0 ? static_cast<int64_t>(indptr.shape(0)) - 1 : 0);
  int status;
  {
    nb::gil_scoped_release release;
    status = cell_totals(span_of(indptr), span_of(values), out.span());
  }
  check(status, "cell_totals");
  return out.release();
}

// Each row's nonzeros, rows 0 .. the highest that has one (numpy.bincount(gene_rank[genes])).
NumpyArray<int64_t> row_counts_py(Array<const int32_t> genes, Array<const int64_t> gene_rank) {
  std::vector<int64_t> counts(gene_rank.shape(0));
  int64_t n_rows = 0;
  int status;
  {
    nb::gil_scoped_release release;
    status = row_counts(span_of(genes), span_of(gene_rank),
                        Span<int64_t>{counts.data(), static_cast<int64_t>(counts.size())}, &n_rows);
  }
  check(status, "row_counts");
  Owned<int64_t> out(n_rows);
  std::copy(counts.begin(), counts.begin() + n_rows, out.data());
  return out.release();
}

// The arrangement into the caller's arrays (nnz items each, staging kStagedItems * nnz; the encoder
// reuses them from one chunk to the next); returns each tile's nonzeros.
NumpyArray<int64_t> arrange_py(Array<const int64_t> indptr, Array<const int32_t> genes, Array<const int32_t> values,
                               Array<const int64_t> cell_order, Array<const int64_t> gene_rank,
                               Array<const int64_t> row_nnz, Array<const int64_t> row_starts,
                               Array<const int64_t> widths, Array<const int64_t> tile_starts, int64_t n_cells,
                               Array<int32_t> rows, Array<int32_t> cols, Array<int32_t> out_values,
                               Array<int32_t> positions, Array<uint32_t> staging) {
  const int64_t n_tiles = tile_starts.shape(0) ? tile_starts.data()[tile_starts.shape(0) - 1] : 0;
  if (n_tiles < 0) check(kArrangeBadGeometry, "arrange");
  Owned<int64_t> tile_k(n_tiles);
  int status;
  {
    nb::gil_scoped_release release;
    status = arrange(span_of(indptr), span_of(genes), span_of(values), span_of(cell_order), span_of(gene_rank),
                     span_of(row_nnz), span_of(row_starts), span_of(widths), span_of(tile_starts), n_cells,
                     span_of(rows), span_of(cols), span_of(out_values), span_of(positions), span_of(staging),
                     tile_k.span());
  }
  check(status, "arrange");
  return tile_k.release();
}

// Into the caller's array (the local encoder keeps one a thread from chunk to chunk).
void baseline_contexts_py(Array<const int32_t> rows, Array<const int32_t> cols, Array<const int64_t> gene_terms,
                          Array<const int64_t> cell_terms, bool fine, Array<int32_t> out) {
  int status;
  {
    nb::gil_scoped_release release;
    status = baseline_contexts(span_of(rows), span_of(cols), span_of(gene_terms), span_of(cell_terms), fine,
                               span_of(out));
  }
  check(status, "baseline_contexts");
}

void value_bins_py(Array<const int32_t> u, Array<int32_t> out) {
  int status;
  {
    nb::gil_scoped_release release;
    status = value_bins(span_of(u), span_of(out));
  }
  check(status, "value_bins");
}

NumpyArray<int64_t> value_counts_py(Array<const int32_t> contexts, Array<const int32_t> bins, int64_t n_contexts,
                                    int64_t n_bins) {
  // a format's tables: at most kMostTableSide contexts and bins each (format 3: 96 x 231)
  constexpr int64_t kMostTableSide = int64_t{1} << 16;
  if (n_contexts < 0 || n_bins < 0 || n_contexts > kMostTableSide || n_bins > kMostTableSide)
    check(kArrangeBadSize, "value_counts");
  Owned<int64_t> counts(n_contexts * n_bins);
  int status;
  {
    nb::gil_scoped_release release;
    status = value_counts(span_of(contexts), span_of(bins), n_contexts, n_bins, counts.span());
  }
  check(status, "value_counts");
  return counts.release();
}

template <typename V>
void accumulate_gene_stats_py(Array<const int64_t> indptr, Array<const int32_t> genes, Array<const V> values,
                              Array<int64_t> gene_nnz, Array<double> gene_deviation) {
  int status;
  {
    nb::gil_scoped_release release;
    status = accumulate_gene_stats<V>(span_of(indptr), span_of(genes), span_of(values), span_of(gene_nnz),
                                      span_of(gene_deviation));
  }
  if (status) throw nb::value_error("accumulate_gene_stats: index pointers or genes lie outside the arrays");
}

NumpyArray<int64_t> fit_cell_terms_py(Array<const int32_t> cols, Array<const int32_t> rows,
                                      Array<const int32_t> values, Array<const int64_t> gene_terms, int64_t n_cells) {
  if (n_cells < 0) throw nb::value_error("fit_cell_terms: negative number of cells");
  Owned<int64_t> out(n_cells);
  int status;
  {
    nb::gil_scoped_release release;
    status = fit_cell_terms(span_of(cols), span_of(rows), span_of(values), span_of(gene_terms), out.span());
  }
  if (status) throw nb::value_error("fit_cell_terms: a row or column lies outside its table");
  return out.release();
}

}  // namespace

void bind_encoder(nb::module_& m) {
  // Array arguments are noconvert: another dtype raises TypeError rather than being copied.
  m.def("cell_totals", &cell_totals_py, nb::arg("indptr").noconvert(), nb::arg("values").noconvert(),
        "Sum of each cell's values (CSC index pointers over the values).");
  m.attr("ARRANGE_STAGED_ITEMS") = kStagedItems;
  m.def("row_counts", &row_counts_py, nb::arg("genes").noconvert(), nb::arg("gene_rank").noconvert(),
        "Nonzeros per row, rows 0 .. the highest holding one: numpy.bincount(gene_rank[genes]).");
  m.def("arrange", &arrange_py, nb::arg("indptr").noconvert(), nb::arg("genes").noconvert(),
        nb::arg("values").noconvert(), nb::arg("cell_order").noconvert(), nb::arg("gene_rank").noconvert(),
        nb::arg("row_nnz").noconvert(), nb::arg("row_starts").noconvert(), nb::arg("widths").noconvert(),
        nb::arg("tile_starts").noconvert(),
        nb::arg("n_cells"), nb::arg("rows").noconvert(), nb::arg("cols").noconvert(), nb::arg("out_values").noconvert(),
        nb::arg("positions").noconvert(), nb::arg("staging").noconvert(),
        "A chunk's nonzeros sorted by (tile, position) into rows, cols, out_values and positions (nnz items "
        "each), staged in staging (ARRANGE_STAGED_ITEMS * nnz items); returns each tile's nonzeros.");
  m.def("baseline_contexts", &baseline_contexts_py, nb::arg("rows").noconvert(), nb::arg("cols").noconvert(),
        nb::arg("gene_terms").noconvert(), nb::arg("cell_terms").noconvert(), nb::arg("fine"),
        nb::arg("out").noconvert(),
        "Baseline context of each nonzero from gene_terms[rows] and cell_terms[cols] into out: format 2's "
        "(spec §C.5), or with fine format 3's of 1/8 nat (§6.5).");
  m.def("value_bins", &value_bins_py, nb::arg("u").noconvert(), nb::arg("out").noconvert(),
        "The bin of each coded value u >= 0, into out.");
  m.def("value_counts", &value_counts_py, nb::arg("contexts").noconvert(), nb::arg("bins").noconvert(),
        nb::arg("n_contexts"), nb::arg("n_bins"),
        "Counts of (context, bin) pairs, flat (n_contexts * n_bins); ValueError where one lies outside.");
  m.def("accumulate_gene_stats", &accumulate_gene_stats_py<int64_t>, nb::arg("indptr").noconvert(),
        nb::arg("genes").noconvert(), nb::arg("values").noconvert(), nb::arg("gene_nnz").noconvert(),
        nb::arg("gene_deviation").noconvert());
  m.def("accumulate_gene_stats", &accumulate_gene_stats_py<int32_t>, nb::arg("indptr").noconvert(),
        nb::arg("genes").noconvert(), nb::arg("values").noconvert(), nb::arg("gene_nnz").noconvert(),
        nb::arg("gene_deviation").noconvert());
  m.def("accumulate_gene_stats", &accumulate_gene_stats_py<double>, nb::arg("indptr").noconvert(),
        nb::arg("genes").noconvert(), nb::arg("values").noconvert(), nb::arg("gene_nnz").noconvert(),
        nb::arg("gene_deviation").noconvert());
  m.def("accumulate_gene_stats", &accumulate_gene_stats_py<float>, nb::arg("indptr").noconvert(),
        nb::arg("genes").noconvert(), nb::arg("values").noconvert(), nb::arg("gene_nnz").noconvert(),
        nb::arg("gene_deviation").noconvert(),
        "First pass over a block of cells: per gene, add nonzeros to gene_nnz and log1p deviations from "
        "the cells' mean log1p to gene_deviation.");
  m.def("fit_cell_terms", &fit_cell_terms_py, nb::arg("cols").noconvert(), nb::arg("rows").noconvert(),
        nb::arg("values").noconvert(), nb::arg("gene_terms").noconvert(), nb::arg("n_cells"),
        "Per (reordered) cell: rint(16 x mean of log1p(v) - gene term / 16), clipped to int16.");
}

}  // namespace sinr::python
