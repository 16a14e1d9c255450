// Bindings of the reader's kernels: the placing of decoded chunks into whole-matrix CSR arrays,
// the compaction of filtered tile outputs, and the tiles of one row across chunks.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include <tuple>
#include <utility>

#include "bindings.hpp"
#include "owned.hpp"
#include "sinr/assemble.hpp"
#include "sinr/moments.hpp"
#include "sinr/threads.hpp"

namespace sinr::python {

namespace {

// Output index types: int32 or int64.
template <typename F>
void with_index_type(const nb::dlpack::dtype& dt, F&& f) {
  if (dt == nb::dtype<int32_t>()) return f(int32_t{});
  if (dt == nb::dtype<int64_t>()) return f(int64_t{});
  throw nb::type_error("output indices must be int32 or int64");
}

// Output value types: every integer width and float32 / float64.
template <typename F>
void with_value_type(const nb::dlpack::dtype& dt, F&& f) {
  if (dt == nb::dtype<int8_t>()) return f(int8_t{});
  if (dt == nb::dtype<int16_t>()) return f(int16_t{});
  if (dt == nb::dtype<int32_t>()) return f(int32_t{});
  if (dt == nb::dtype<int64_t>()) return f(int64_t{});
  if (dt == nb::dtype<uint8_t>()) return f(uint8_t{});
  if (dt == nb::dtype<uint16_t>()) return f(uint16_t{});
  if (dt == nb::dtype<uint32_t>()) return f(uint32_t{});
  if (dt == nb::dtype<uint64_t>()) return f(uint64_t{});
  if (dt == nb::dtype<float>()) return f(float{});
  if (dt == nb::dtype<double>()) return f(double{});
  throw nb::type_error("output values must be an integer type, float32 or float64");
}

// Runs fn(I{}, D{}) for the output index and value types with the GIL released; both types are
// checked first, with the GIL held, so that the dispatch inside cannot fail.
template <typename F>
void with_output_types(const AnyArray& indices, const AnyArray& data, F&& fn) {
  with_index_type(indices.dtype(), [](auto) {});
  with_value_type(data.dtype(), [](auto) {});
  nb::gil_scoped_release release;
  with_index_type(indices.dtype(), [&](auto i) { with_value_type(data.dtype(), [&](auto d) { fn(i, d); }); });
}

std::pair<int, uint64_t> place_by_cell_py(Array<const int32_t> rows, Array<const int32_t> cols,
                                          Array<const int32_t> values, Array<const int64_t> cell_original,
                                          int64_t first_cell, int64_t n_cells, Array<const int64_t> rank_of_row,
                                          Array<const int64_t> genes_of_row, int64_t base, Array<int64_t> out_indptr,
                                          AnyArray out_indices, AnyArray out_data, PlaceScratch* scratch,
                                          int threads) {
  int status = kAssembleOk;
  uint64_t checksum = 0;
  with_output_types(out_indices, out_data, [&](auto i, auto d) {
    using I = decltype(i);
    using D = decltype(d);
    status = place_by_cell<I, D>(span_of(rows), span_of(cols), span_of(values), span_of(cell_original), first_cell,
                                 n_cells, span_of(rank_of_row), span_of(genes_of_row), base, span_of(out_indptr),
                                 span_as<I>(out_indices), span_as<D>(out_data), &checksum, scratch, threads);
  });
  return {status, checksum};
}

std::pair<int, uint64_t> place_by_row_py(Array<const int32_t> rows, Array<const int32_t> cols,
                                         Array<const int32_t> values, Array<const int64_t> cell_original,
                                         int64_t first_cell, int64_t n_cells, Array<const int64_t> genes_of_row,
                                         Array<int64_t> cursor, Array<const int64_t> limit,
                                         Array<const int64_t> band_rows, AnyArray out_indices, AnyArray out_data,
                                         int threads) {
  int status = kAssembleOk;
  uint64_t checksum = 0;
  with_output_types(out_indices, out_data, [&](auto i, auto d) {
    using I = decltype(i);
    using D = decltype(d);
    status = place_by_row<I, D>(span_of(rows), span_of(cols), span_of(values), span_of(cell_original), first_cell,
                                n_cells, span_of(genes_of_row), span_of(cursor), span_of(limit), span_of(band_rows),
                                span_as<I>(out_indices), span_as<D>(out_data), &checksum, threads);
  });
  return {status, checksum};
}

template <typename V>
std::pair<int, int64_t> compact_py(Array<const int64_t> out_start, Array<const int64_t> counts, Array<int32_t> rows,
                                   Array<int32_t> cols, Array<V> values) {
  int64_t kept = 0;
  const int status = compact<V>(span_of(out_start), span_of(counts), span_of(rows), span_of(cols), span_of(values),
                                &kept);
  return {status, kept};
}

std::tuple<int, NumpyArray<int64_t>, NumpyArray<int64_t>, NumpyArray<int64_t>, NumpyArray<int64_t>>
band_tile_ranges_py(Array2<const int64_t> table_rows, Array2<const int64_t> table_tiles,
                    Array<const int64_t> chunk_base, Array<const int64_t> n_rows, int64_t row) {
  BandTileRanges out;
  int status;
  {
    nb::gil_scoped_release release;
    status = band_tile_ranges(span2_of(table_rows), span2_of(table_tiles), span_of(chunk_base), span_of(n_rows), row,
                              &out);
  }
  return {status, to_numpy(std::move(out.chunks)), to_numpy(std::move(out.bands)), to_numpy(std::move(out.tiles)),
          to_numpy(std::move(out.pair))};
}

std::pair<int, uint64_t> accumulate_moments_py(Array<const int32_t> rows, Array<const int32_t> cols,
                                               Array<const int32_t> values, Array<const int64_t> gene_of_row,
                                               Array<const int64_t> item_of_row, Array<const int64_t> cell_of_col,
                                               int64_t first_col,
                                               Array<int64_t> gene_nonzeros,
                                               Array<int64_t> gene_sums, Array<uint64_t> gene_squares_low,
                                               Array<uint64_t> gene_squares_high, Array<int64_t> cell_nonzeros,
                                               Array<int64_t> cell_sums, Array<uint64_t> cell_squares_low,
                                               Array<uint64_t> cell_squares_high) {
  const Moments genes{span_of(gene_nonzeros), span_of(gene_sums), span_of(gene_squares_low),
                      span_of(gene_squares_high)};
  const Moments cells{span_of(cell_nonzeros), span_of(cell_sums), span_of(cell_squares_low),
                      span_of(cell_squares_high)};
  uint64_t checksum = 0;
  const int status = accumulate_moments(span_of(rows), span_of(cols), span_of(values), span_of(gene_of_row),
                                        span_of(item_of_row), span_of(cell_of_col), first_col, genes, cells, &checksum);
  return {status, checksum};
}

int moments_variance_py(Array<const int64_t> sums, Array<const uint64_t> squares_low,
                        Array<const uint64_t> squares_high, int64_t entries, int64_t ddof, Array<double> out) {
  return moments_variance(span_of(sums), span_of(squares_low), span_of(squares_high), entries, ddof, span_of(out));
}

int moments_mean_py(Array<const int64_t> sums, int64_t entries, Array<double> out) {
  return moments_mean(span_of(sums), entries, span_of(out));
}

int add_moments_py(Array<int64_t> nonzeros, Array<int64_t> sums, Array<uint64_t> squares_low,
                   Array<uint64_t> squares_high, Array<int64_t> other_nonzeros, Array<int64_t> other_sums,
                   Array<uint64_t> other_squares_low, Array<uint64_t> other_squares_high) {
  const size_t n = nonzeros.size();
  for (const size_t size : {sums.size(), squares_low.size(), squares_high.size(), other_nonzeros.size(),
                            other_sums.size(), other_squares_low.size(), other_squares_high.size()})
    if (size != n) return -1;
  add_moments({span_of(nonzeros), span_of(sums), span_of(squares_low), span_of(squares_high)},
              {span_of(other_nonzeros), span_of(other_sums), span_of(other_squares_low), span_of(other_squares_high)});
  return 0;
}

}  // namespace

void bind_reader(nb::module_& m) {
  // Every array argument is noconvert: a dtype or layout other than the one bound raises TypeError
  // instead of being copied (a copy of an output would silently lose what the kernel writes).
  nb::class_<PlaceScratch>(m, "PlaceScratch",
                           "Memory place_by_cell keeps from one call to the next: one per thread (not shared "
                           "by threads running at once).")
      .def(nb::init<>());
  m.def("place_by_cell", &place_by_cell_py, nb::arg("rows").noconvert(), nb::arg("cols").noconvert(),
        nb::arg("values").noconvert(), nb::arg("cell_original").noconvert(), nb::arg("first_cell"),
        nb::arg("n_cells"), nb::arg("rank_of_row").noconvert(), nb::arg("genes_of_row").noconvert(),
        nb::arg("base"), nb::arg("out_indptr").noconvert(), nb::arg("out_indices").noconvert(),
        nb::arg("out_data").noconvert(), nb::arg("scratch").none() = nb::none(), nb::arg("threads") = 1,
        "Write a decoded chunk's nonzeros cell by cell (genes ascending) from `base`, and its cells' "
        "index pointers into out_indptr[1:]; return (status, content checksum). scratch: a PlaceScratch "
        "the calling thread reuses for its next chunk; threads: how many threads share this chunk.");
  m.def("place_by_row", &place_by_row_py, nb::arg("rows").noconvert(), nb::arg("cols").noconvert(),
        nb::arg("values").noconvert(), nb::arg("cell_original").noconvert(), nb::arg("first_cell"),
        nb::arg("n_cells"), nb::arg("genes_of_row").noconvert(), nb::arg("cursor").noconvert(),
        nb::arg("limit").noconvert(), nb::arg("band_rows").noconvert(), nb::arg("out_indices").noconvert(),
        nb::arg("out_data").noconvert(), nb::arg("threads") = 1,
        "Write a decoded chunk's nonzeros at each row's cursor (cells ascending), which must end at "
        "`limit`; band_rows: the starts of the bands placed (a chunk's, or a run of them) and the last one's "
        "end, whose rows alone are read and checked; threads: how many threads share this call. Return "
        "(status, content checksum).");
  m.def("assemble_status_text", [](int status) { return assemble_status_text(status); },
        nb::arg("status"));
  m.def("compact", &compact_py<int32_t>, nb::arg("out_start").noconvert(), nb::arg("counts").noconvert(),
        nb::arg("rows").noconvert(), nb::arg("cols").noconvert(), nb::arg("values").noconvert(), NoGil());
  m.def("compact", &compact_py<int64_t>, nb::arg("out_start").noconvert(), nb::arg("counts").noconvert(),
        nb::arg("rows").noconvert(), nb::arg("cols").noconvert(), nb::arg("values").noconvert(), NoGil(),
        "Move each tile's decoded triples down to follow the previous tile's; return (status, kept).");
  m.def("accumulate_moments", &accumulate_moments_py, nb::arg("rows").noconvert(), nb::arg("cols").noconvert(),
        nb::arg("values").noconvert(), nb::arg("gene_of_row").noconvert(), nb::arg("item_of_row").noconvert(),
        nb::arg("cell_of_col").noconvert(), nb::arg("first_col"), nb::arg("gene_nonzeros").noconvert(), nb::arg("gene_sums").noconvert(),
        nb::arg("gene_squares_low").noconvert(), nb::arg("gene_squares_high").noconvert(),
        nb::arg("cell_nonzeros").noconvert(), nb::arg("cell_sums").noconvert(),
        nb::arg("cell_squares_low").noconvert(), nb::arg("cell_squares_high").noconvert(), NoGil(),
        "Add decoded nonzeros to their genes' and cells' nonzero counts, sums and sums of squares (128 "
        "bits as low and high words), row r's gene being item item_of_row[r] of the gene arrays (gene "
        "gene_of_row[r] in the checksum) and column c's cell cell_of_col[c - first_col]; return (status, "
        "content checksum), status -1 for a row, column, item, cell or value out of range.");
  m.def("moments_variance", &moments_variance_py, nb::arg("sums").noconvert(), nb::arg("squares_low").noconvert(),
        nb::arg("squares_high").noconvert(), nb::arg("entries"), nb::arg("ddof"), nb::arg("out").noconvert(),
        NoGil(),
        "Each item's variance over `entries` entries with `ddof` into out, computed exactly and rounded "
        "once; return 0, or -1 for sums no such entries can have or ddof outside 0..entries - 1.");
  m.def("moments_mean", &moments_mean_py, nb::arg("sums").noconvert(), nb::arg("entries"),
        nb::arg("out").noconvert(), NoGil(),
        "Each item's mean over `entries` entries into out, rounded once; return 0, or -1 for a negative "
        "sum or no entries.");
  m.def("add_moments", &add_moments_py, nb::arg("nonzeros").noconvert(), nb::arg("sums").noconvert(),
        nb::arg("squares_low").noconvert(), nb::arg("squares_high").noconvert(),
        nb::arg("other_nonzeros").noconvert(), nb::arg("other_sums").noconvert(),
        nb::arg("other_squares_low").noconvert(), nb::arg("other_squares_high").noconvert(), NoGil(),
        "Add the second moments to the first, item by item (squares with their carry); return 0, or -1 "
        "for arrays of different lengths.");
  m.def("share_chunks",
        [](Array<const int64_t> chunk_nnz, int workers, double cost) {
          return share_chunks(chunk_nnz.data(), static_cast<int64_t>(chunk_nnz.shape(0)), workers, cost);
        },
        nb::arg("chunk_nnz").noconvert(), nb::arg("workers"), nb::arg("cost"),
        "Whether every one of `workers` threads should work on each chunk of a read of chunks of these "
        "nonzero counts, rather than take whole chunks in order: when whole chunks would leave threads "
        "idle long enough that each chunk divided, at `cost` times the even share, finishes sooner.");
  m.attr("SHARED_CHUNK_COST") = kSharedChunkCost;
  m.def("band_tile_ranges", &band_tile_ranges_py, nb::arg("table_rows").noconvert(),
        nb::arg("table_tiles").noconvert(), nb::arg("chunk_base").noconvert(), nb::arg("n_rows").noconvert(),
        nb::arg("row"),
        "(status, chunks, bands, tiles, pair): the chunks holding `row` and their bands holding it, "
        "then those bands' tiles and each tile's (chunk, band) pair.");
}

}  // namespace sinr::python
