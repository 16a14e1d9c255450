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

namespace detail {

constexpr int64_t kChecksumBlock = 1024;  // entry keys a content checksum builds at a time (8 KiB)

// The checksum of m nonzeros given as entry keys and values: through keyed_checksum when the values
// fit 32 bits (narrow: scratch of m), else one at a time (the spec's sum either way).
template <typename V>
uint64_t keyed_block(const uint64_t* keys, const V* values, int64_t m, int32_t* narrow) {
  if constexpr (std::is_same_v<V, int32_t>) {
    return keyed_checksum(keys, values, m);
  } else {
    bool fits = true;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t v = static_cast<int64_t>(values[i]);
      narrow[i] = static_cast<int32_t>(v);
      fits &= v == narrow[i];
    }
    if (fits) return keyed_checksum(keys, narrow, m);
    uint64_t total = 0;
    for (int64_t i = 0; i < m; ++i) total += mix(mix(keys[i]) ^ static_cast<uint64_t>(values[i]));
    return total;
  }
}

}  // namespace detail

// The checksum of nonzeros given as original gene, original cell and value (n of each), a block of
// entry keys at a time through keyed_checksum.
template <typename G, typename C, typename V>
uint64_t content_checksum(const G* genes, const C* cells, const V* values, int64_t n) {
  uint64_t keys[detail::kChecksumBlock];
  int32_t narrow[detail::kChecksumBlock];
  uint64_t total = 0;
  for (int64_t lo = 0; lo < n; lo += detail::kChecksumBlock) {
    const int64_t m = n - lo < detail::kChecksumBlock ? n - lo : detail::kChecksumBlock;
    for (int64_t i = 0; i < m; ++i)
      keys[i] = entry_key(static_cast<uint64_t>(genes[lo + i]), static_cast<uint64_t>(cells[lo + i]));
    total += detail::keyed_block(keys, values + lo, m, narrow);
  }
  return total;
}

// The checksum of nonzeros given as rows and columns that map to original genes and cells through
// two tables: what a chunk's checksum becomes when its rows and cells take other indices (a chunk
// copied into a combined file), and an encoded chunk's own. -1 when a row or column is outside its
// table.
template <typename R, typename V>
int64_t content_checksum_mapped(const R* rows, const R* cols, const V* values, int64_t n, Span<const int64_t> gene_of_row,
                                Span<const int64_t> cell_of_col, uint64_t* out) {
  uint64_t keys[detail::kChecksumBlock];
  int32_t narrow[detail::kChecksumBlock];
  uint64_t total = 0;
  for (int64_t lo = 0; lo < n; lo += detail::kChecksumBlock) {
    const int64_t m = n - lo < detail::kChecksumBlock ? n - lo : detail::kChecksumBlock;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t r = rows[lo + i], c = cols[lo + i];
      if (r < 0 || r >= gene_of_row.size || c < 0 || c >= cell_of_col.size) return -1;
      keys[i] = entry_key(static_cast<uint64_t>(gene_of_row.data[r]), static_cast<uint64_t>(cell_of_col.data[c]));
    }
    total += detail::keyed_block(keys, values + lo, m, narrow);
  }
  *out = total;
  return 0;
}

}  // namespace sinr
