#include "bindings.hpp"

namespace sinr::python {

void bind_reader(nb::module_& m) {}

}  // namespace sinr::python
