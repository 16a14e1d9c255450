#include "bindings.hpp"

namespace sinr::python {

void bind_encoder(nb::module_& m) {}

}  // namespace sinr::python
