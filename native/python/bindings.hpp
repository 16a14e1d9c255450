// Shared by the binding files: each binds one layer of the core into scinrcodec._native.
#pragma once
#include <cstdint>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

namespace nb = nanobind;

namespace sinr::python {

// A contiguous 1-D CPU array of T: read-only views (const T) accept numpy's read-only arrays too,
// such as a mapped file.
template <typename T>
using Array = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <typename T>
using Array2 = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// Release the GIL for the duration of a kernel: the arguments are converted before it is released.
using NoGil = nb::call_guard<nb::gil_scoped_release>;

void bind_codec(nb::module_& m);
void bind_reader(nb::module_& m);
void bind_encoder(nb::module_& m);
void bind_matrix_market(nb::module_& m);
void bind_container(nb::module_& m);

}  // namespace sinr::python
