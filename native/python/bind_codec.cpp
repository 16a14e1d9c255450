// Bindings of the codec layer: content checksum, rANS primitives, tile encode and decode (format 2,
// and format 3.0's codec of tile3.hpp), SIREN evaluation and the tables of spec Appendix A.
//
// Arrays a kernel writes are bound with .noconvert(): a wrong dtype is a TypeError, never a
// silent copy that the kernel would fill instead of the caller's array.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <stdexcept>
#include <vector>

#include "bindings.hpp"
#include "owned.hpp"
#include "sinr/checksum.hpp"
#include "sinr/lanes3.hpp"
#include "sinr/models.hpp"
#include "sinr/rans.hpp"
#include "sinr/siren.hpp"
#include "sinr/tile.hpp"
#include "sinr/tile3.hpp"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

namespace sinr::python {

namespace {

template <typename T>
using Array3 = nb::ndarray<T, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

template <typename T>
Span<T> span(const Array<T>& a) {
  return Span<T>{a.data(), static_cast<int64_t>(a.shape(0))};
}

// numpy's bool arrays, read as bytes 0/1
Span<const uint8_t> bytes(const Array<const bool>& a) {
  return Span<const uint8_t>{reinterpret_cast<const uint8_t*>(a.data()), static_cast<int64_t>(a.shape(0))};
}

// ------------------------------------------------------------------------------ checksum

template <typename G, typename C, typename V>
uint64_t checksum(Array<const G> genes, Array<const C> cells, Array<const V> values) {
  if (genes.shape(0) != values.shape(0) || cells.shape(0) != values.shape(0))
    throw nb::value_error("content_checksum: genes, cells and values differ in length");
  return content_checksum(genes.data(), cells.data(), values.data(), static_cast<int64_t>(values.shape(0)));
}

template <typename R, typename V>
uint64_t checksum_mapped(Array<const R> rows, Array<const R> cols, Array<const V> values, Array<const int64_t> gene_of_row,
                         Array<const int64_t> cell_of_col) {
  if (rows.shape(0) != values.shape(0) || cols.shape(0) != values.shape(0))
    throw nb::value_error("content_checksum_mapped: rows, columns and values differ in length");
  uint64_t total = 0;
  if (content_checksum_mapped(rows.data(), cols.data(), values.data(), static_cast<int64_t>(values.shape(0)),
                              span(gene_of_row), span(cell_of_col), &total))
    throw nb::value_error("content_checksum_mapped: a row or column is outside its table");
  return total;
}

// ------------------------------------------------------------------------------ rANS primitives
// One symbol at a time, on the int64 arrays and Python-int states of the tests and tools: slow
// and fully checked. The kernels below never come through here.

struct CheckedSink {
  int64_t* starts;
  int64_t* freqs;
  int64_t n;
  int64_t capacity;
  void push(uint32_t start, uint32_t freq) {
    if (n < 0 || n >= capacity) throw nb::index_error("rans: the symbol arrays are full");
    starts[n] = start;
    freqs[n] = freq;
    ++n;
  }
};

CheckedSink sink(Array<int64_t>& starts, Array<int64_t>& freqs, int64_t n) {
  return CheckedSink{starts.data(), freqs.data(), n, static_cast<int64_t>(std::min(starts.shape(0), freqs.shape(0)))};
}

void check_size(uint64_t size) {
  if (size < 1 || size > (uint64_t{1} << 32)) throw nb::value_error("rans: a uniform model needs 1 <= size <= 2**32");
}

// A decoder's (x, buf, pos, end) as a Reader, or false when they do not describe one.
bool reader(uint64_t x, const Array<const uint8_t>& buf, int64_t pos, int64_t end, rans::Reader& r) {
  const int64_t size = static_cast<int64_t>(buf.shape(0));
  if (x > UINT32_MAX || pos < 0 || end < pos || end > size) return false;
  r = rans::Reader{static_cast<uint32_t>(x), buf.data() + pos, buf.data() + end};
  return true;
}

std::tuple<int64_t, int64_t, int64_t> decoded(bool ok, uint64_t value, const rans::Reader& r,
                                              const Array<const uint8_t>& buf) {
  return {static_cast<int64_t>(value), r.x, ok ? r.pos - buf.data() : -1};
}

void bind_rans(nb::module_& m) {
  m.def("rans_encode_symbols", [](Array<const int64_t> starts, Array<const int64_t> freqs, int64_t n,
                                  Array<uint8_t> out, int64_t out_pos) {
    if (n < 0 || n > static_cast<int64_t>(std::min(starts.shape(0), freqs.shape(0))))
      throw nb::index_error("rans_encode_symbols: n exceeds the symbol arrays");
    if (out_pos < 0 || out_pos > static_cast<int64_t>(out.shape(0)) ||
        static_cast<int64_t>(out.shape(0)) - out_pos < (n ? rans::kStateBytes + 2 * n : 0))
      throw nb::index_error("rans_encode_symbols: out is too small");
    std::vector<uint32_t> s(static_cast<size_t>(n)), f(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (freqs.data()[i] < 1 || starts.data()[i] < 0 || starts.data()[i] + freqs.data()[i] > rans::kProbScale)
        throw nb::value_error("rans_encode_symbols: a symbol is not a slot range of 2**16");
      s[i] = static_cast<uint32_t>(starts.data()[i]);
      f[i] = static_cast<uint32_t>(freqs.data()[i]);
    }
    std::vector<uint8_t> work(2 * static_cast<size_t>(n) + 1);
    return rans::encode_symbols(s.data(), f.data(), n, work.data(), out.data() + out_pos);
  }, nb::arg("starts"), nb::arg("freqs"), nb::arg("n"), nb::arg("out").noconvert(),
     nb::arg("out_pos"));
  m.def("rans_push_uniform", [](Array<int64_t> starts, Array<int64_t> freqs, int64_t n, uint64_t value, uint64_t size) {
    check_size(size);
    if (value >= size) throw nb::value_error("rans_push_uniform: value >= size");
    CheckedSink s = sink(starts, freqs, n);
    rans::push_uniform(s, value, size);
    return s.n;
  }, nb::arg("starts").noconvert(), nb::arg("freqs").noconvert(), nb::arg("n"), nb::arg("value"), nb::arg("size"));
  m.def("rans_push_quotient", [](Array<int64_t> starts, Array<int64_t> freqs, int64_t n, uint64_t q) {
    CheckedSink s = sink(starts, freqs, n);
    rans::push_quotient(s, q);
    return s.n;
  }, nb::arg("starts").noconvert(), nb::arg("freqs").noconvert(), nb::arg("n"), nb::arg("q"));
  m.def("rans_quotient_symbol", [](int q) {
    if (q < 0 || q > rans::kQuotientEscape) throw nb::value_error("rans_quotient_symbol: q outside 0..15");
    const rans::Symbol s = rans::quotient_symbol(q);
    return std::make_pair(int64_t{s.start}, int64_t{s.freq});
  });
  m.def("rans_start_decoding", [](Array<const uint8_t> buf, int64_t pos, int64_t end) {
    rans::Reader r{0, nullptr, nullptr};
    if (!reader(0, buf, pos, end, r)) return std::make_pair(int64_t{0}, int64_t{-1});
    const bool ok = rans::start_decoding(r, buf.data() + pos, buf.data() + end);
    return std::make_pair(int64_t{r.x}, ok ? static_cast<int64_t>(r.pos - buf.data()) : int64_t{-1});
  });
  m.def("rans_decode_bits", [](uint64_t x, Array<const uint8_t> buf, int64_t pos, int64_t end, int bits) {
    if (bits < 1 || bits > rans::kProbBits) throw nb::value_error("rans_decode_bits: bits outside 1..16");
    rans::Reader r;
    if (!reader(x, buf, pos, end, r)) return std::make_tuple(int64_t{0}, static_cast<int64_t>(x), int64_t{-1});
    uint32_t v;
    const bool ok = rans::decode_bits(r, bits, v);
    return decoded(ok, v, r, buf);
  });
  m.def("rans_uniform_model", [](uint64_t size) {
    check_size(size);
    const rans::UniformModel u = rans::uniform_model(size);
    return std::make_tuple(int64_t{u.base}, int64_t{u.extra}, static_cast<int64_t>(u.inv_wide),
                           static_cast<int64_t>(u.inv_narrow), int64_t{u.low_bits});
  });
  m.def("rans_decode_uniform", [](uint64_t x, Array<const uint8_t> buf, int64_t pos, int64_t end, int64_t base,
                                  int64_t extra, int64_t inv_wide, int64_t inv_narrow, int64_t low_bits) {
    // a model uniform_model made, and no other: its reciprocals are what decoding relies on
    if (base < 1 || base > rans::kProbScale || extra < 0 || extra >= 65536 || (65536 - extra) % base != 0 ||
        low_bits < 0 || low_bits > rans::kProbBits)
      throw nb::value_error("rans_decode_uniform: not a uniform model");
    rans::UniformModel u = rans::uniform_model(static_cast<uint64_t>((65536 - extra) / base));
    if (static_cast<int64_t>(u.base) != base || static_cast<int64_t>(u.extra) != extra ||
        static_cast<int64_t>(u.inv_wide) != inv_wide || static_cast<int64_t>(u.inv_narrow) != inv_narrow)
      throw nb::value_error("rans_decode_uniform: not a uniform model");
    u.low_bits = static_cast<int>(low_bits);
    rans::Reader r;
    if (!reader(x, buf, pos, end, r)) return std::make_tuple(int64_t{0}, static_cast<int64_t>(x), int64_t{-1});
    uint64_t v;
    const bool ok = rans::decode_uniform(r, u, v);
    return decoded(ok, v, r, buf);
  });
  m.def("rans_decode_quotient", [](uint64_t x, Array<const uint8_t> buf, int64_t pos, int64_t end) {
    rans::Reader r;
    if (!reader(x, buf, pos, end, r)) return std::make_tuple(int64_t{0}, static_cast<int64_t>(x), int64_t{-1});
    uint64_t q;
    const bool ok = rans::decode_quotient(r, q);
    return decoded(ok, q, r, buf);
  });
}

// ------------------------------------------------------------------------------ tiles

std::pair<double, double> encode_tiles(Array<const int64_t> tile_k, Array<const int64_t> tile_n,
                                       Array<const int32_t> positions, Array<const int32_t> u,
                                       Array<const int32_t> contexts, Array2<const int64_t> cum, bool code_values,
                                       int64_t max_symbols, Array<uint8_t> out, Array<const double> log2_table,
                                       Array<int64_t> lengths) {
  const Span2<const int64_t> table{cum.data(), static_cast<int64_t>(cum.shape(0)), static_cast<int64_t>(cum.shape(1))};
  const EncodeStats stats = sinr::encode_tiles(span(tile_k), span(tile_n), span(positions), span(u), span(contexts),
                                               table, code_values, max_symbols, span(out), span(log2_table),
                                               span(lengths));
  return {stats.position_bits, stats.value_bits};
}

ValueModels value_models(const Array3<const int32_t>& cum, const Array3<const uint8_t>& lut,
                         const Array2<const bool>& used) {
  const int64_t n_models = static_cast<int64_t>(cum.shape(0)), n_contexts = static_cast<int64_t>(cum.shape(1));
  if (cum.shape(2) != kNumBins + 1 || static_cast<int64_t>(lut.shape(0)) != n_models ||
      static_cast<int64_t>(lut.shape(1)) != n_contexts || lut.shape(2) != kLutSize ||
      static_cast<int64_t>(used.shape(0)) != n_models || static_cast<int64_t>(used.shape(1)) != n_contexts)
    throw nb::value_error("value models: cum, lut and used do not match in shape");
  return ValueModels{cum.data(), lut.data(), reinterpret_cast<const uint8_t*>(used.data()), n_models, n_contexts};
}

SirenSet siren_set(const Array2<const int64_t>& spec, const Array2<const double>& norm,
                   const Array2<const int64_t>& layers, const Array<const int64_t>& params) {
  if (spec.shape(1) != 3 || norm.shape(1) != 2 || norm.shape(0) != spec.shape(0) || layers.shape(1) != kLayerFields)
    throw nb::value_error("SIREN tables: spec, norm and layers have the wrong shapes");
  return SirenSet{spec.data(),   norm.data(), static_cast<int64_t>(spec.shape(0)),   layers.data(),
                  static_cast<int64_t>(layers.shape(0)), params.data(), static_cast<int64_t>(params.shape(0))};
}

using Tables3 = std::optional<std::vector<const tile3::ChunkTables*>>;

// Format 3's models: one chunk's tables per model id (none may be None).
ValueModels models3(const std::vector<const tile3::ChunkTables*>& tables) {
  for (const tile3::ChunkTables* t : tables)
    if (t == nullptr) throw nb::value_error("format-3 tables: a model is None");
  ValueModels models;
  models.tables3 = tables.data();
  models.n_models = static_cast<int64_t>(tables.size());
  return models;
}

template <typename R, typename V>
void decode_tiles(Array<const uint8_t> buf, Array<const int64_t> offset, Array<const int64_t> length,
                  Array<const int64_t> k, Array<const int64_t> h, Array<const int64_t> w, Array<const int64_t> row,
                  Array<const int64_t> col, Array<const int64_t> first, Array<const int64_t> cells,
                  Array<const int64_t> model, Array<const int64_t> siren, Array<const int64_t> gene_terms,
                  Array<const int32_t> cell_terms, Array3<const int32_t> cum, Array3<const uint8_t> lut,
                  Array2<const bool> used, Array2<const int64_t> siren_spec, Array2<const double> siren_norm,
                  Array2<const int64_t> siren_layers, Array<const int64_t> siren_params, int mode, int64_t max_error,
                  int64_t want_row, int64_t want_col, Array<const bool> col_mask, Array<const int64_t> out_start,
                  Array<R> out_rows, Array<R> out_cols, Array<V> out_values, Array<int64_t> out_count,
                  Array<int64_t> status, const Tables3& tables3, int threads) {
  const TileDirectory tiles{span(offset), span(length), span(k),     span(h),     span(w),    span(row),
                            span(col),    span(first),  span(cells), span(model), span(siren)};
  ReadFilter filter;
  filter.want_row = want_row;
  filter.want_col = want_col;
  filter.col_mask = bytes(col_mask);
  sinr::decode_tiles<R, V>(span(buf), tiles, span(gene_terms), span(cell_terms),
                           tables3 ? models3(*tables3) : value_models(cum, lut, used),
                           siren_set(siren_spec, siren_norm, siren_layers, siren_params), mode, max_error, filter,
                           span(out_start), Triples<R, V>{span(out_rows), span(out_cols), span(out_values)},
                           span(out_count), span(status), threads);
}

template <typename R, typename V>
void def_decode_tiles(nb::module_& m) {
  m.def("decode_tiles", &decode_tiles<R, V>, NoGil(), nb::arg("buf"), nb::arg("offset"), nb::arg("length"),
        nb::arg("k"), nb::arg("h"), nb::arg("w"), nb::arg("row"), nb::arg("col"), nb::arg("first"), nb::arg("cells"),
        nb::arg("model"), nb::arg("siren"), nb::arg("gene_terms"), nb::arg("cell_terms"), nb::arg("cum"),
        nb::arg("lut"), nb::arg("used"), nb::arg("siren_spec"), nb::arg("siren_norm"), nb::arg("siren_layers"),
        nb::arg("siren_params"), nb::arg("mode"), nb::arg("max_error"), nb::arg("want_row"), nb::arg("want_col"),
        nb::arg("col_mask"), nb::arg("out_start"), nb::arg("out_rows").noconvert(), nb::arg("out_cols").noconvert(),
        nb::arg("out_values").noconvert(), nb::arg("out_count").noconvert(), nb::arg("status").noconvert(),
        nb::arg("tables3").none() = nb::none(), nb::arg("threads") = 1);
}

void count_rows(Array<const uint8_t> buf, Array<const int64_t> offset, Array<const int64_t> length,
                Array<const int64_t> k, Array<const int64_t> h, Array<const int64_t> w, Array<const int64_t> row,
                Array<int64_t> counts, Array<int64_t> status, std::optional<Array<const int64_t>> model,
                const Tables3& tables3, int threads) {
  TileDirectory tiles;
  tiles.offset = span(offset);
  tiles.length = span(length);
  tiles.k = span(k);
  tiles.h = span(h);
  tiles.w = span(w);
  tiles.row = span(row);
  if (model) tiles.model = span(*model);
  sinr::count_rows(span(buf), tiles, tables3 ? models3(*tables3) : ValueModels{}, span(counts), span(status),
                   threads);
}

using SirenArrays =
    std::tuple<Array2<const int64_t>, Array2<const double>, Array2<const int64_t>, Array<const int64_t>>;

// One entry: the tile as scalars and the SIREN tables only for a SIREN band, so that the call
// converts few arrays (each costs about half a microsecond).
std::pair<int64_t, int64_t> decode_entry(Array<const uint8_t> buf, int64_t start, int64_t length, int64_t k, int64_t h,
                                         int64_t w, int64_t tile_row, int64_t col0, int64_t first, int64_t n_cells,
                                         Array2<const int32_t> cum, Array2<const uint8_t> lut, Array<const bool> used,
                                         int64_t siren, std::optional<SirenArrays> sirens,
                                         Array<const int64_t> gene_terms, Array<const int32_t> cell_terms, int mode,
                                         int64_t max_error, int64_t row, int64_t col,
                                         const tile3::ChunkTables* tables3) {
  if (cum.shape(1) != kNumBins + 1 || lut.shape(1) != kLutSize || lut.shape(0) != cum.shape(0) ||
      used.shape(0) != cum.shape(0))
    throw nb::value_error("decode_entry: cum, lut and used do not match in shape");
  if (siren >= 0 && !sirens) throw nb::value_error("decode_entry: a SIREN band needs the SIREN tables");
  ValueModels model{cum.data(), lut.data(), reinterpret_cast<const uint8_t*>(used.data()), 1,
                    static_cast<int64_t>(cum.shape(0))};
  if (tables3 != nullptr) model.tables3 = &tables3;
  const SirenSet set = sirens ? siren_set(std::get<0>(*sirens), std::get<1>(*sirens), std::get<2>(*sirens),
                                          std::get<3>(*sirens))
                              : SirenSet{};
  TileInfo tile;
  tile.start = start;
  tile.length = length;
  tile.k = k;
  tile.h = h;
  tile.w = w;
  tile.row = tile_row;
  tile.col = col0;
  tile.first = first;
  tile.cells = n_cells;
  tile.model = 0;
  tile.siren = siren;
  nb::gil_scoped_release release;
  const EntryValue v =
      sinr::decode_entry(span(buf), tile, span(gene_terms), span(cell_terms), model, set, mode, max_error, row, col);
  return {v.value, v.status};
}

// ------------------------------------------------------------------------------ SIREN

SirenNet net_of(const Array2<const int64_t>& layers, const Array<const int64_t>& params, int64_t first_layer,
                int64_t n_layers) {
  if (layers.shape(1) != kLayerFields || first_layer < 0 || n_layers < 0 ||
      first_layer + n_layers > static_cast<int64_t>(layers.shape(0)))
    throw nb::value_error("SIREN: no such layers");
  const SirenNet net{layers.data() + first_layer * kLayerFields, n_layers, params.data(),
                     static_cast<int64_t>(params.shape(0))};
  if (!siren_valid(net)) throw nb::value_error("SIREN: the layers do not chain or leave the parameters");
  return net;
}

// A copy of one of the core's tables (Python builds its numpy constants from these once).
template <typename T>
std::vector<T> table_copy(const T* data, size_t n) {
  return std::vector<T>(data, data + n);
}

void bind_siren(nb::module_& m) {
  m.def("sine_table", [] { return table_copy(sine_table(), kSineSize); });
  m.def("context_edges", [] { return table_copy(context_edges(), kNumContexts); });
  m.def("expm1_table", [] { return table_copy(expm1_table(), kExpm1Size); });
  m.def("tables_match_spec", &tables_match_spec);
  m.def("siren_output", [](Array2<const int64_t> layers, Array<const int64_t> params, int64_t first_layer,
                           int64_t n_layers, int64_t row, int64_t col, int64_t height, int64_t width) {
    const SirenNet net = net_of(layers, params, first_layer, n_layers);
    int64_t work[2 * kMaxSirenWidth];
    return siren_output(net, row, col, height, width, work);
  });
  m.def("siren_outputs", [](Array2<const int64_t> layers, Array<const int64_t> params, Array<const int64_t> rows,
                            Array<const int64_t> cols, int64_t height, int64_t width, Array<int64_t> out) {
    const SirenNet net = net_of(layers, params, 0, static_cast<int64_t>(layers.shape(0)));
    if (rows.shape(0) != cols.shape(0) || out.shape(0) != rows.shape(0))
      throw nb::value_error("siren_outputs: rows, cols and out differ in length");
    nb::gil_scoped_release release;
    SirenEvaluator evaluator;
    evaluator.prepare(net);
    for (size_t i = 0; i < rows.shape(0); ++i)
      out.data()[i] = evaluator.output(rows.data()[i], cols.data()[i], height, width);
  }, nb::arg("layers"), nb::arg("params"), nb::arg("rows"), nb::arg("cols"), nb::arg("height"), nb::arg("width"),
     nb::arg("out").noconvert());
  m.def("context_of_output", &context_of_output);
  m.def("prediction_of_output", &prediction_of_output);
  m.def("fine_context_of_output", &fine_context_of_output);
  m.def("read_outputs", [](int kind, double offset, double scale, Array<const int64_t> outputs, bool predictions,
                           Array<int64_t> out, bool fine) {
    if (out.shape(0) != outputs.shape(0)) throw nb::value_error("read_outputs: outputs and out differ in length");
    const auto context = fine ? &fine_context_of_output : &context_of_output;
    for (size_t i = 0; i < outputs.shape(0); ++i)
      out.data()[i] = predictions ? prediction_of_output(kind, offset, scale, outputs.data()[i])
                                  : context(kind, offset, scale, outputs.data()[i]);
  }, NoGil(), nb::arg("kind"), nb::arg("offset"), nb::arg("scale"), nb::arg("outputs"), nb::arg("predictions"),
     nb::arg("out").noconvert(), nb::arg("fine") = false,
     "Network outputs as --inr-only predictions, or as contexts: format 2's (spec §C.6) or with fine format 3's "
     "on the 1/8-nat grid (§7.2).");
}


// ------------------------------------------------------------------------------ format 3.0 tiles
// The codec of tile3.hpp, whole chunks at a time: the tables are built from the chunk's count
// sections inside each call (arrays of counts in, never tables a caller made by hand).

std::vector<tile3::Table12> tables3(const Array2<const uint64_t>& counts, int64_t rows, const char* name) {
  if (static_cast<int64_t>(counts.shape(0)) != rows || counts.shape(1) != kNumBins)
    throw nb::value_error((std::string(name) + " must be " + std::to_string(rows) + " x 231 counts").c_str());
  return tile3::build_tables(Span<const uint64_t>{counts.data(), rows * kNumBins}, rows);
}

struct ChunkTables3 {
  std::vector<tile3::Table12> gaps, values;
  ChunkTables3(const Array2<const uint64_t>& gap_counts, const std::optional<Array2<const uint64_t>>& value_counts)
      : gaps(tables3(gap_counts, tile3::kGapClasses, "gap_counts")),
        values(value_counts ? tables3(*value_counts, tile3::kContexts, "value_counts")
                            : std::vector<tile3::Table12>{}) {}
  Span<const tile3::Table12> gap_span() const { return {gaps.data(), static_cast<int64_t>(gaps.size())}; }
  Span<const tile3::Table12> value_span() const { return {values.data(), static_cast<int64_t>(values.size())}; }
};

void bind_tile3(nb::module_& m) {
  nb::class_<tile3::ChunkTables>(m, "ChunkTables3",
                                 "A format-3 chunk's decoding tables (spec §6.4), built from its count sections.")
      .def("__init__", [](tile3::ChunkTables* self, Array2<const uint64_t> gap_counts,
                          std::optional<Array2<const uint64_t>> value_counts) {
        const bool values = value_counts.has_value();
        if (gap_counts.shape(0) != tile3::kGapClasses || gap_counts.shape(1) != kNumBins ||
            (values && (value_counts->shape(0) != tile3::kContexts || value_counts->shape(1) != kNumBins)))
          throw nb::value_error("ChunkTables3: needs 32 x 231 gap counts and 96 x 231 value counts (or None)");
        new (self) tile3::ChunkTables(
            Span<const uint64_t>{gap_counts.data(), tile3::kGapClasses * kNumBins},
            values ? Span<const uint64_t>{value_counts->data(), tile3::kContexts * kNumBins} : Span<const uint64_t>{});
      }, nb::arg("gap_counts"), nb::arg("value_counts").none())
      .def_prop_ro("nbytes", &tile3::ChunkTables::bytes);
  m.def("tile3_tables", [](Array2<const uint64_t> counts, Array2<int64_t> freq, Array2<int64_t> start,
                           Array2<uint32_t> packed, Array<bool> used) {
    const int64_t rows = static_cast<int64_t>(counts.shape(0));
    if (counts.shape(1) != kNumBins || freq.shape(0) != counts.shape(0) || freq.shape(1) != kNumBins ||
        start.shape(0) != counts.shape(0) || start.shape(1) != kNumBins || packed.shape(0) != counts.shape(0) ||
        packed.shape(1) != tile3::kProbScale || used.shape(0) != counts.shape(0))
      throw nb::value_error("tile3_tables: counts, freq and start must be rows x 231, packed rows x 4096, used rows");
    const std::vector<tile3::Table12> tables = tables3(counts, rows, "counts");
    for (int64_t r = 0; r < rows; ++r) {
      const tile3::Table12& t = tables[static_cast<size_t>(r)];
      std::copy(t.freq, t.freq + kNumBins, freq.data() + r * kNumBins);
      std::copy(t.start, t.start + kNumBins, start.data() + r * kNumBins);
      if (t.used) std::copy(t.packed, t.packed + tile3::kProbScale, packed.data() + r * tile3::kProbScale);
      used.data()[r] = t.used;
    }
  }, nb::arg("counts"), nb::arg("freq").noconvert(), nb::arg("start").noconvert(), nb::arg("packed").noconvert(),
     nb::arg("used").noconvert(),
     "Format 3.0 (spec §6.4): the 12-bit tables of rows of counts, and each used row's packed slot lookup.");
  m.def("tile3_density_class", [](int64_t n_t, int64_t m) {
    if (m < 1 || m > n_t || n_t > kMaxTileEntries) throw nb::value_error("tile3_density_class: needs 1 <= m <= n_t < 2**24");
    return tile3::density_class(n_t, m);
  }, "Format 3.0 (spec §6.2): the density class of a tile of n_t entries coding m positions.");
  m.def("tile3_stream_bound", [](int64_t symbols) {
    if (symbols < 0) throw nb::value_error("tile3_stream_bound: negative symbols");
    return tile3::stream_bound(symbols);
  }, "The most bytes a format-3.0 tile stream of that many symbols takes.");
  m.def("tile3_encode_tiles", [](Array<const int64_t> tile_n, Array<const int64_t> tile_k,
                                 Array<const int32_t> positions, Array<const int32_t> u, Array<const int32_t> contexts,
                                 Array2<const uint64_t> gap_counts, std::optional<Array2<const uint64_t>> value_counts,
                                 Array<uint8_t> out, Array<int64_t> lengths) {
    const ChunkTables3 tables(gap_counts, value_counts);
    nb::gil_scoped_release release;
    return tile3::encode_tiles(span(tile_n), span(tile_k), span(positions), span(u), span(contexts),
                               tables.gap_span(), tables.value_span(), value_counts.has_value(), span(out),
                               span(lengths));
  }, nb::arg("tile_n"), nb::arg("tile_k"), nb::arg("positions").noconvert(), nb::arg("u").noconvert(),
     nb::arg("contexts").noconvert(), nb::arg("gap_counts"), nb::arg("value_counts").none(), nb::arg("out").noconvert(),
     nb::arg("lengths").noconvert(),
     "Format 3.0: encode consecutive tiles of one chunk (value_counts None: inr-only); returns the bytes "
     "written.");
  m.def("tile3_gap_counts", [](Array<const int64_t> tile_n, Array<const int64_t> tile_k,
                               Array<const int32_t> positions, Array2<uint64_t> out) {
    if (out.shape(0) != tile3::kGapClasses || out.shape(1) != kNumBins)
      throw nb::value_error("tile3_gap_counts: out must be 32 x 231");
    nb::gil_scoped_release release;
    tile3::gap_counts(span(tile_n), span(tile_k), span(positions),
                      Span<uint64_t>{out.data(), int64_t{tile3::kGapClasses} * kNumBins});
  }, nb::arg("tile_n"), nb::arg("tile_k"), nb::arg("positions").noconvert(), nb::arg("out").noconvert(),
     "Format 3.0 (spec §6.4): a chunk's gaps.counts, its tiles' coded gaps by density class and bin, into out.");
  m.def("tile3_encode_chunk", [](Array<const int64_t> tile_n, Array<const int64_t> tile_k,
                                 Array<const int32_t> positions, Array<const int32_t> u, Array<const int32_t> contexts,
                                 Array2<const uint64_t> gap_counts, std::optional<Array2<const uint64_t>> value_counts) {
    const ChunkTables3 tables(gap_counts, value_counts);
    const bool code_values = value_counts.has_value();
    Owned<int64_t> lengths(static_cast<int64_t>(tile_n.shape(0)));
    // Room for the widest streams, left uninitialised: the streams take a small part of it (about
    // 5.5 bits a nonzero against a bound of 11 bytes), and only the pages written are ever touched
    // (zeroing the bound faulted in 20 MB a 2M-nonzero chunk).
    std::unique_ptr<uint8_t[]> out;
    int64_t written;
    {
      nb::gil_scoped_release release;
      const int64_t bound = tile3::tiles_bound(span(tile_n), span(tile_k), static_cast<int64_t>(positions.shape(0)),
                                               code_values);  // checks the tiles before any room is taken
      out.reset(new uint8_t[static_cast<size_t>(bound)]);
      written = tile3::encode_tiles(span(tile_n), span(tile_k), span(positions), span(u), span(contexts),
                                    tables.gap_span(), tables.value_span(), code_values,
                                    Span<uint8_t>{out.get(), bound}, lengths.span());
    }
    return std::make_pair(nb::bytes(reinterpret_cast<const char*>(out.get()), static_cast<size_t>(written)),
                          lengths.release());
  }, nb::arg("tile_n"), nb::arg("tile_k"), nb::arg("positions").noconvert(), nb::arg("u").noconvert(),
     nb::arg("contexts").noconvert(), nb::arg("gap_counts"), nb::arg("value_counts").none(),
     "Format 3.0: a chunk's tile streams, back to back (bytes), and each one's length (value_counts None: "
     "inr-only); the tables are built from the counts, which must be the chunk's own.");
  m.def("tile3_decode_tiles", [](Array<const uint8_t> buf, Array<const int64_t> offset, Array<const int64_t> length,
                                 Array<const int64_t> h, Array<const int64_t> w, Array<const int64_t> k,
                                 Array<const int64_t> row, Array<const int64_t> col, Array<const int64_t> out_start,
                                 Array<const int64_t> gene_terms, Array<const int32_t> cell_terms,
                                 Array2<const uint64_t> gap_counts, std::optional<Array2<const uint64_t>> value_counts,
                                 Array<int64_t> positions, Array<int64_t> u, Array<int64_t> status) {
    const ChunkTables3 tables(gap_counts, value_counts);
    const tile3::TileBatch batch{span(offset), span(length), span(h), span(w),
                                 span(k),      span(row),    span(col), span(out_start)};
    nb::gil_scoped_release release;
    tile3::decode_tiles(span(buf), batch, span(gene_terms), span(cell_terms), tables.gap_span(), tables.value_span(),
                        value_counts.has_value(), span(positions), span(u), span(status));
  }, nb::arg("buf"), nb::arg("offset"), nb::arg("length"), nb::arg("h"), nb::arg("w"), nb::arg("k"), nb::arg("row"),
     nb::arg("col"), nb::arg("out_start"), nb::arg("gene_terms"), nb::arg("cell_terms"), nb::arg("gap_counts"),
     nb::arg("value_counts").none(), nb::arg("positions").noconvert(), nb::arg("u").noconvert(),
     nb::arg("status").noconvert(),
     "Format 3.0: decode whole tiles of one chunk; each tile's TileStatus into status.");
}

}  // namespace

void bind_codec(nb::module_& m) {
  m.attr("PARALLEL_MIN_ENTRIES") = kParallelMinEntries;
  // Overloads for the index and value types the package uses (nanobind picks by dtype, no copy).
  m.def("content_checksum", &checksum<int64_t, int64_t, int64_t>, NoGil());
  m.def("content_checksum", &checksum<int32_t, int32_t, int64_t>, NoGil());
  m.def("content_checksum", &checksum<int32_t, int32_t, int32_t>, NoGil());
  m.def("content_checksum", &checksum<int64_t, int64_t, int32_t>, NoGil(),
        "Content checksum (spec §6.6) of nonzeros given by original gene, cell and value.");
  m.def("content_checksum_mapped", &checksum_mapped<int32_t, int32_t>, NoGil());
  m.def("content_checksum_mapped", &checksum_mapped<int32_t, int64_t>, NoGil());
  m.def("content_checksum_mapped", &checksum_mapped<int64_t, int32_t>, NoGil());
  m.def("content_checksum_mapped", &checksum_mapped<int64_t, int64_t>, NoGil(),
        "Content checksum of nonzeros by row, column and value, rows and columns mapped to genes and cells.");
  m.def("mix", [](uint64_t z) { return mix(z); }, "The splitmix64 finaliser of the content checksum.");

  m.def("bin_of", [](int64_t u) {
    if (u < 0 || u > kMaxCount - 1) throw nb::value_error("bin_of: u outside 0..2**31 - 2");
    const Bin b = sinr::bin_of(u);
    return std::make_tuple(b.bin, b.offset, int64_t{b.bits});
  });
  m.def("baseline_context", &baseline_context);
  m.def("golomb_parameter", [](int64_t n_entries, int64_t n_coded) {
    if (n_coded < 1 || n_entries < n_coded || n_entries > (int64_t{1} << 40))
      throw nb::value_error("golomb_parameter: needs 1 <= n_coded <= n_entries");
    return golomb_parameter(n_entries, n_coded);
  });
  bind_rans(m);

  m.def("encode_tiles", &encode_tiles, NoGil(), nb::arg("tile_k"), nb::arg("tile_n"), nb::arg("positions").noconvert(),
        nb::arg("u").noconvert(), nb::arg("contexts").noconvert(), nb::arg("cum"), nb::arg("code_values"), nb::arg("max_symbols"),
        nb::arg("out").noconvert(), nb::arg("log2_table"), nb::arg("lengths").noconvert());
  def_decode_tiles<int32_t, int32_t>(m);
  def_decode_tiles<int32_t, int64_t>(m);
  def_decode_tiles<int64_t, int32_t>(m);
  def_decode_tiles<int64_t, int64_t>(m);
  m.def("count_rows", &count_rows, NoGil(), nb::arg("buf"), nb::arg("offset"), nb::arg("length"), nb::arg("k"),
        nb::arg("h"), nb::arg("w"), nb::arg("row"), nb::arg("counts").noconvert(), nb::arg("status").noconvert(),
        nb::arg("model").none() = nb::none(), nb::arg("tables3").none() = nb::none(), nb::arg("threads") = 1);
  m.def("decode_entry", &decode_entry, nb::arg("buf"), nb::arg("start"), nb::arg("length"), nb::arg("k"), nb::arg("h"),
        nb::arg("w"), nb::arg("row0"), nb::arg("col0"), nb::arg("first"), nb::arg("n_cells"), nb::arg("cum"),
        nb::arg("lut"), nb::arg("used"), nb::arg("siren"), nb::arg("sirens").none(), nb::arg("gene_terms"),
        nb::arg("cell_terms"), nb::arg("mode"), nb::arg("max_error"), nb::arg("row"), nb::arg("col"),
        nb::arg("tables3").none() = nb::none());
  m.def("set_tile_lanes", [](const std::string& lanes) {
    static const char* const names[] = {"scalar", "auto", "portable"};  // TileLanes' order
    int chosen = 0;
    while (chosen < 3 && lanes != names[chosen]) ++chosen;
    if (chosen == 3) throw nb::value_error("set_tile_lanes: lanes must be 'auto', 'scalar' or 'portable'");
    const int before = static_cast<int>(tile_lanes());
    set_tile_lanes(static_cast<TileLanes>(chosen));
    return std::string(names[before]);
  }, nb::arg("lanes"),
        "Which decoder format 3's whole-tile decodes use, process-wide (lanes3.hpp): 'auto' (AVX2 lanes\n"
        "where the CPU has them, else scalar), 'scalar' or 'portable' (the lane logic on plain arrays:\n"
        "for tests). Returns the setting before.");
  m.def("set_packed_nnz_per_row", &set_packed_nnz_per_row, nb::arg("nnz_per_row"),
        "Nonzeros per used table row from which format 3's decodes build packed tables and run the lockstep\n"
        "decoder (tile.hpp; default 128), process-wide; returns the setting before (tests set 0).");
  m.def("tile_lane_counts", [] {
    const lanes3::LaneCounts c = lanes3::lane_counts();
    return std::make_pair(c.finished, c.handed_back);
  }, "(tiles the lanes decoded, tiles they took and handed to the scalar decoder) in this process so far.");
  static const char* const checksum_paths[] = {"scalar", "avx2", "avx512", "auto"};  // ChecksumPath's order
  m.def("set_checksum_path", [](const std::string& path) {
    int chosen = 0;
    while (chosen < 4 && path != checksum_paths[chosen]) ++chosen;
    if (chosen == 4) throw nb::value_error("set_checksum_path: path must be 'auto', 'scalar', 'avx2' or 'avx512'");
    const std::string before = checksum_paths[static_cast<int>(checksum_setting())];
    if (!set_checksum_path(static_cast<ChecksumPath>(chosen)))
      throw nb::value_error(("set_checksum_path: this CPU has no " + path + " lanes").c_str());
    return before;
  }, nb::arg("path"),
        "Which lanes the content checksum's batched kernel runs, process-wide (checksum.hpp): 'auto' (the\n"
        "widest the CPU has), 'scalar', 'avx2' or 'avx512' (for tests; ValueError where the CPU lacks it).\n"
        "Returns the setting before.");
  m.def("checksum_path", [] { return std::string(checksum_paths[static_cast<int>(checksum_path())]); },
        "What the content checksum's batched kernel runs now: 'scalar', 'avx2' or 'avx512'.");
  m.def("tile_lanes", [] { return std::string(tile_lanes_path()); },
        "What format 3's whole-tile decodes run now: 'avx2', 'portable' or 'scalar'.");
  bind_siren(m);
  bind_tile3(m);
}

}  // namespace sinr::python
