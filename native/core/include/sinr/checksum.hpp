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

// The checksum of nonzeros given as rows and columns that map to original genes and cells through
// two tables: what a chunk's checksum becomes when its rows and cells take other indices (a chunk
// copied into a combined file). -1 when a row or column is outside its table.
template <typename R, typename V>
int64_t content_checksum_mapped(const R* rows, const R* cols, const V* values, int64_t n, Span<const int64_t> gene_of_row,
                                Span<const int64_t> cell_of_col, uint64_t* out) {
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows[i], c = cols[i];
    if (r < 0 || r >= gene_of_row.size || c < 0 || c >= cell_of_col.size) return -1;
    total += entry_hash(static_cast<uint64_t>(gene_of_row.data[r]), static_cast<uint64_t>(cell_of_col.data[c]),
                        static_cast<uint64_t>(values[i]));
  }
  *out = total;
  return 0;
}

}  // namespace sinr
