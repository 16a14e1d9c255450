// The content checksum of a chunk (spec §6.6): the sum mod 2**64 of H(gene, cell, value) over its
// nonzeros, H(g, c, v) = mix(mix(g + c * 2**32) xor v), mix the splitmix64 finaliser. A sum, so
// any decoding order agrees.
#pragma once
#include <cstdint>

#include "sinr/span.hpp"

namespace sinr {

inline uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint64_t entry_hash(uint64_t gene, uint64_t cell, uint64_t value) {
  return mix(mix(gene + (cell << 32)) ^ value);
}

// The checksum of nonzeros given as original gene, original cell and value (n of each).
template <typename G, typename C, typename V>
uint64_t content_checksum(const G* genes, const C* cells, const V* values, int64_t n) {
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += entry_hash(static_cast<uint64_t>(genes[i]), static_cast<uint64_t>(cells[i]),
                        static_cast<uint64_t>(values[i]));
  return total;
}

}  // namespace sinr
