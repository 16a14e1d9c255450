// Bindings of the Matrix Market entry parser (readers.py's MtxSource).
#include <nanobind/stl/tuple.h>

#include <tuple>

#include "bindings.hpp"
#include "sinr/matrix_market.hpp"

namespace sinr::python {

namespace {

using Parsed = std::tuple<int64_t, int32_t, int64_t, int64_t, int64_t, int64_t>;

// Runs without the GIL (NoGil): returns plain C++ values, converted once it is held again; the
// caller's mistakes are thrown as C++ exceptions, translated with the GIL held.
Parsed parse_entries(Array<const uint8_t> buf, int n_fields, bool integer, int64_t n_rows, int64_t n_cols,
                     int64_t last_col, Array<int32_t> rows, Array<int32_t> cols, Array<int32_t> vals) {
  const mtx::Entries r = mtx::parse_entries(
      Span<const uint8_t>{buf.data(), static_cast<int64_t>(buf.shape(0))}, n_fields, integer, n_rows, n_cols, last_col,
      Span<int32_t>{rows.data(), static_cast<int64_t>(rows.shape(0))},
      Span<int32_t>{cols.data(), static_cast<int64_t>(cols.shape(0))},
      Span<int32_t>{vals.data(), static_cast<int64_t>(vals.shape(0))});
  if (r.code == mtx::kCapacity)
    throw nb::value_error("mtx_parse_entries: more entries than rows, cols and vals can hold");
  if (r.code == mtx::kArguments)
    throw nb::value_error("mtx_parse_entries: n_fields must be 2 or 3 and n_rows, n_cols in 0..2**31 - 1");
  return {r.entries, r.code, r.line, r.field, r.last_col, r.unsorted_at};
}

}  // namespace

void bind_matrix_market(nb::module_& m) {
  // The parser's codes by number (readers.py names the same ones, and a test checks they agree).
  m.attr("MTX_CODES") = nb::make_tuple("ok", "syntax", "fields", "index", "fraction", "nan", "large", "negative",
                                       "capacity", "arguments");
  m.def("mtx_parse_entries", &parse_entries, nb::arg("buf").noconvert(), nb::arg("n_fields"), nb::arg("integer"),
        nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("last_col"), nb::arg("rows").noconvert(),
        nb::arg("cols").noconvert(), nb::arg("vals").noconvert(), NoGil(),
        "Parse whole lines of Matrix Market entries (uint8 text) into 0-based int32 rows, cols and vals.\n"
        "Returns (entries, code, offset of the failing line, failing field, last column, offset of the first\n"
        "entry whose column is below the one before it or -1); see sinr/matrix_market.hpp. Raises ValueError\n"
        "when the outputs are too short or the arguments out of range. Releases the GIL.");
}

}  // namespace sinr::python
