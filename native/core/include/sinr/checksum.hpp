// The content checksum of a chunk (spec §6.6): the sum mod 2**64 of H(gene, cell, value) over its
// nonzeros, H(g, c, v) = mix(mix(g + c * 2**32) xor v), mix the splitmix64 finaliser. A sum, so
// any decoding order agrees.
#pragma once
#include <cstdint>
#include <type_traits>

#include "sinr/span.hpp"

namespace sinr {

inline uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The first word entry_hash mixes: the gene plus the cell times 2**32 (mod 2**64).
inline uint64_t entry_key(uint64_t gene, uint64_t cell) { return gene + (cell << 32); }

inline uint64_t entry_hash(uint64_t gene, uint64_t cell, uint64_t value) {
  return mix(mix(entry_key(gene, cell)) ^ value);
}

// The sum of mix(mix(keys[i]) xor values[i]) over i < n, sign-extended values: the checksum of
// nonzeros whose entry_key and value a kernel has at hand, on SIMD lanes where the CPU has them
// (checksum.cpp; the same sum on every path).
uint64_t keyed_checksum(const uint64_t* keys, const int32_t* values, int64_t n);

// Which lanes keyed_checksum runs, process-wide: kAuto (the default) the widest the CPU has; the
// others for tests. set_checksum_path refuses (false) a path the CPU lacks.
enum class ChecksumPath : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAuto = 3 };
bool set_checksum_path(ChecksumPath path);
ChecksumPath checksum_setting();  // what set_checksum_path set last (kAuto at first)
ChecksumPath checksum_path();     // what runs now (never kAuto)

// The checksum of nonzeros given as original gene, original cell and value (n of each): int32
// values through keyed_checksum, a block of keys at a time.
template <typename G, typename C, typename V>
uint64_t content_checksum(const G* genes, const C* cells, const V* values, int64_t n) {
  uint64_t total = 0;
  if constexpr (std::is_same_v<V, int32_t>) {
    constexpr int64_t kBlock = 1024;
    uint64_t keys[kBlock];
    for (int64_t lo = 0; lo < n; lo += kBlock) {
      const int64_t m = n - lo < kBlock ? n - lo : kBlock;
      for (int64_t i = 0; i < m; ++i)
        keys[i] = entry_key(static_cast<uint64_t>(genes[lo + i]), static_cast<uint64_t>(cells[lo + i]));
      total += keyed_checksum(keys, values + lo, m);
    }
  } else {
    for (int64_t i = 0; i < n; ++i)
      total += entry_hash(static_cast<uint64_t>(genes[i]), static_cast<uint64_t>(cells[i]),
                          static_cast<uint64_t>(values[i]));
  }
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
