// CRC-32 by folding with carry-less multiplication (PCLMULQDQ) or by slicing 8 bytes at a time; see
// crc32.hpp. The folding follows Gopal et al., "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ Instruction" (Intel, 2009), with the constants of the bit-reflected zlib polynomial:
// x^(4*128+32) mod P and x^(4*128-32) mod P fold 64 bytes ahead, x^(128+32) and x^(128-32) fold 16,
// x^64 mod P folds 64 bits into 32, and P' = x^64 div P with P give the Barrett reduction.
#include "sinr/crc32.hpp"

#include <atomic>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SINR_HAVE_PCLMUL 1
#endif

namespace sinr {
namespace {

constexpr uint32_t kPolynomial = 0xEDB88320u;

// kTables[k][b]: the CRC register after byte b followed by k zero bytes.
struct SliceTables {
  uint32_t t[8][256];
  SliceTables() {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = b;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? kPolynomial ^ (c >> 1) : c >> 1;
      t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; ++b)
      for (int k = 1; k < 8; ++k) t[k][b] = t[0][t[k - 1][b] & 0xFF] ^ (t[k - 1][b] >> 8);
  }
};
const SliceTables kSlices;

// The register (not yet inverted at the end) after n more bytes.
uint32_t update_portable(uint32_t c, const uint8_t* p, int64_t n) {
  const auto& t = kSlices.t;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return c;
}

#ifdef SINR_HAVE_PCLMUL
#define SINR_PCLMUL __attribute__((target("pclmul,sse4.1")))

// a's halves times the fold constants k (low 64 bits by k's low, high by k's high), xor b.
SINR_PCLMUL inline __m128i fold(__m128i a, __m128i k, __m128i b) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11)), b);
}

// The register after n bytes, n >= 64 and a multiple of 16.
SINR_PCLMUL uint32_t update_pclmul(uint32_t c, const uint8_t* p, int64_t n) {
  const __m128i k64 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);  // fold 64 bytes ahead
  const __m128i k16 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);  // fold 16 bytes ahead
  const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);                // 64 bits to 32
  const __m128i barrett = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);  // P' (high), P (low)
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
  const auto load = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };

  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(c)));
  __m128i x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  p += 64;
  n -= 64;
  for (; n >= 64; n -= 64, p += 64) {
    x1 = fold(x1, k64, load(p));
    x2 = fold(x2, k64, load(p + 16));
    x3 = fold(x3, k64, load(p + 32));
    x4 = fold(x4, k64, load(p + 48));
  }
  x1 = fold(x1, k16, x2);
  x1 = fold(x1, k16, x3);
  x1 = fold(x1, k16, x4);
  for (; n >= 16; n -= 16, p += 16) x1 = fold(x1, k16, load(p));
  // 128 bits to 64, then to 32 (the constant x^64 mod P), then Barrett's reduction
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k16, 0x10));
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00));
  __m128i q = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), barrett, 0x10);
  q = _mm_clmulepi64_si128(_mm_and_si128(q, low32), barrett, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, q), 1));
}

bool cpu_has_pclmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}
#endif

std::atomic<bool> g_portable{false};

bool use_pclmul() {
#ifdef SINR_HAVE_PCLMUL
  return !g_portable.load(std::memory_order_relaxed) && cpu_has_pclmul();
#else
  return false;
#endif
}

}  // namespace

uint32_t crc32(const uint8_t* data, int64_t n, uint32_t crc) {
  uint32_t c = ~crc;
  if (n <= 0) return crc;
#ifdef SINR_HAVE_PCLMUL
  if (n >= 64 && use_pclmul()) {
    const int64_t folded = n & ~int64_t{15};
    c = update_pclmul(c, data, folded);
    data += folded;
    n -= folded;
  }
#endif
  return ~update_portable(c, data, n);
}

const char* crc32_path() { return use_pclmul() ? "pclmul" : "portable"; }

bool set_crc32_portable(bool portable) { return g_portable.exchange(portable); }

}  // namespace sinr
