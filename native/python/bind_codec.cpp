// Bindings of the codec layer: content checksum, rANS tile encode and decode, SIREN evaluation.
#include "bindings.hpp"
#include "sinr/checksum.hpp"

namespace sinr::python {

namespace {

template <typename G, typename C, typename V>
uint64_t checksum(Array<const G> genes, Array<const C> cells, Array<const V> values) {
  if (genes.shape(0) != values.shape(0) || cells.shape(0) != values.shape(0))
    throw nb::value_error("content_checksum: genes, cells and values differ in length");
  return content_checksum(genes.data(), cells.data(), values.data(), static_cast<int64_t>(values.shape(0)));
}

}  // namespace

void bind_codec(nb::module_& m) {
  // Overloads for the index and value types the package uses (nanobind picks by dtype, no copy).
  m.def("content_checksum", &checksum<int64_t, int64_t, int64_t>, NoGil());
  m.def("content_checksum", &checksum<int32_t, int32_t, int64_t>, NoGil());
  m.def("content_checksum", &checksum<int32_t, int32_t, int32_t>, NoGil());
  m.def("content_checksum", &checksum<int64_t, int64_t, int32_t>, NoGil(),
        "Content checksum (spec §6.6) of nonzeros given by original gene, cell and value.");
}

}  // namespace sinr::python
