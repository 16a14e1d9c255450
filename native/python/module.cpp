// scinrcodec._native: the Python face of the C++ core. Every kernel releases the GIL.
#include "bindings.hpp"

NB_MODULE(_native, m) {
  m.doc() = "The native core of scinrcodec: tile codec, content checksum and read/encode kernels.";
#if defined(NDEBUG)
  // An open matrix a user keeps to the end (a Dataset's, in a spawned DataLoader worker) is alive when the
  // interpreter exits, and nanobind would print "leaked instances" for its chunk tables, results exact.
  // Builds with assertions keep the warnings; the sanitizer build checks the core's own memory.
  nb::set_leak_warnings(false);
#endif
#if defined(__clang__)
  m.attr("compiler") = "clang " __clang_version__;
#elif defined(__GNUC__)
  m.attr("compiler") = "g++ " __VERSION__;
#else
  m.attr("compiler") = "unknown";
#endif
  sinr::python::bind_codec(m);
  sinr::python::bind_reader(m);
  sinr::python::bind_encoder(m);
  sinr::python::bind_matrix_market(m);
  sinr::python::bind_container(m);
}
