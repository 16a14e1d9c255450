#include "bindings.hpp"

namespace sinr::python {

void bind_matrix_market(nb::module_& m) {}

}  // namespace sinr::python
