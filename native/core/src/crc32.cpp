// CRC-32 by folding with carry-less multiplication (PCLMULQDQ, or VPCLMULQDQ on 512-bit registers) or
// by slicing 8 bytes at a time; see crc32.hpp. The folding follows Gopal et al., "Fast CRC Computation
// for Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009), with the constants of the
// bit-reflected zlib polynomial: folding D bits ahead multiplies a 128-bit lane's halves by
// x^(D-32) mod P and x^(D+32) mod P (bit-reflected): D = 2048 folds 256 bytes, 512 folds 64 and 128
// folds 16; x^64 mod P folds 64 bits into 32, and P' = x^64 div P with P give the Barrett reduction.
#include "sinr/crc32.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>

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

constexpr int64_t kFold64Low = 0x0154442bd4, kFold64High = 0x01c6e41596;  // fold 64 bytes ahead

SINR_PCLMUL inline __m128i load16(const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); }

// The register once four 16-byte lanes x1..x4 (the last 64 bytes folded, in order) and the n bytes
// at p (a multiple of 16) are folded in.
SINR_PCLMUL uint32_t finish_pclmul(__m128i x1, __m128i x2, __m128i x3, __m128i x4, const uint8_t* p, int64_t n) {
  const __m128i k16 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);  // fold 16 bytes ahead
  const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);                // 64 bits to 32
  const __m128i barrett = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);  // P' (high), P (low)
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = fold(x1, k16, x2);
  x1 = fold(x1, k16, x3);
  x1 = fold(x1, k16, x4);
  for (; n >= 16; n -= 16, p += 16) x1 = fold(x1, k16, load16(p));
  // 128 bits to 64, then to 32 (the constant x^64 mod P), then Barrett's reduction
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(x1, k16, 0x10));
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5, 0x00));
  __m128i q = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), barrett, 0x10);
  q = _mm_clmulepi64_si128(_mm_and_si128(q, low32), barrett, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, q), 1));
}

// The register after n bytes, n >= 64 and a multiple of 16.
SINR_PCLMUL uint32_t update_pclmul(uint32_t c, const uint8_t* p, int64_t n) {
  const __m128i k64 = _mm_set_epi64x(kFold64High, kFold64Low);
  __m128i x[4] = {_mm_xor_si128(load16(p), _mm_cvtsi32_si128(static_cast<int>(c))), load16(p + 16), load16(p + 32),
                  load16(p + 48)};
  for (p += 64, n -= 64; n >= 64; n -= 64, p += 64)
    for (int j = 0; j < 4; ++j) x[j] = fold(x[j], k64, load16(p + 16 * j));
  return finish_pclmul(x[0], x[1], x[2], x[3], p, n);
}

#define SINR_VPCLMUL __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1")))

SINR_VPCLMUL inline __m512i load64(const uint8_t* q) { return _mm512_loadu_si512(q); }

// fold() on four lanes at once.
SINR_VPCLMUL inline __m512i fold4(__m512i a, __m512i k, __m512i b) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00), _mm512_clmulepi64_epi128(a, k, 0x11), b,
                                   0x96);  // a xor b xor c
}

// update_pclmul on 512-bit registers, 256 bytes a step in four of them, n >= 256 and a multiple of
// 16: a chunk's band checks ran at 15 GB/s with 128-bit folding.
SINR_VPCLMUL uint32_t update_vpclmul(uint32_t c, const uint8_t* p, int64_t n) {
  // each lane's fold constants (low, high), for folding 256 bytes ahead, then 64
  alignas(64) static constexpr int64_t kFold256[8] = {0x011542778a, 0x01322d1430, 0x011542778a, 0x01322d1430,
                                                      0x011542778a, 0x01322d1430, 0x011542778a, 0x01322d1430};
  alignas(64) static constexpr int64_t kFold64[8] = {kFold64Low, kFold64High, kFold64Low, kFold64High,
                                                     kFold64Low, kFold64High, kFold64Low, kFold64High};
  const __m512i k256 = _mm512_load_si512(kFold256), k64 = _mm512_load_si512(kFold64);
  alignas(64) uint32_t register_first[16] = {c};  // the register xored into the first 4 bytes
  const __m512i first = _mm512_load_si512(register_first);
  __m512i z[4] = {_mm512_xor_si512(load64(p), first), load64(p + 64), load64(p + 128), load64(p + 192)};
  for (p += 256, n -= 256; n >= 256; n -= 256, p += 256)
    for (int j = 0; j < 4; ++j) z[j] = fold4(z[j], k256, load64(p + 64 * j));
  for (int j = 1; j < 4; ++j) z[j] = fold4(z[j - 1], k64, z[j]);  // each 64 bytes ahead into the next, lane by lane
  for (; n >= 64; n -= 64, p += 64) z[3] = fold4(z[3], k64, load64(p));
  alignas(64) uint8_t lanes[64];
  _mm512_store_si512(lanes, z[3]);
  return finish_pclmul(load16(lanes), load16(lanes + 16), load16(lanes + 32), load16(lanes + 48), p, n);
}

bool cpu_has_pclmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}

bool cpu_has_vpclmul() {
  static const bool has = cpu_has_pclmul() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("vpclmulqdq");
  return has;
}
#endif

// The widest path allowed (tests narrow it to compare the paths on one machine).
enum class Path : int { kPortable = 0, kPclmul = 1, kVpclmul = 2 };
std::atomic<int> g_widest{static_cast<int>(Path::kVpclmul)};

Path path_now() {
  const Path widest = static_cast<Path>(g_widest.load(std::memory_order_relaxed));
#ifdef SINR_HAVE_PCLMUL
  if (widest >= Path::kVpclmul && cpu_has_vpclmul()) return Path::kVpclmul;
  if (widest >= Path::kPclmul && cpu_has_pclmul()) return Path::kPclmul;
#endif
  (void)widest;
  return Path::kPortable;
}

constexpr const char* kPathNames[] = {"portable", "pclmul", "vpclmulqdq"};

}  // namespace

uint32_t crc32(const uint8_t* data, int64_t n, uint32_t crc) {
  uint32_t c = ~crc;
  if (n <= 0) return crc;
#ifdef SINR_HAVE_PCLMUL
  const Path path = n >= 64 ? path_now() : Path::kPortable;
  if (path != Path::kPortable) {
    const int64_t folded = n & ~int64_t{15};
    c = path == Path::kVpclmul && folded >= 256 ? update_vpclmul(c, data, folded) : update_pclmul(c, data, folded);
    data += folded;
    n -= folded;
  }
#endif
  return ~update_portable(c, data, n);
}

const char* crc32_path() { return kPathNames[static_cast<int>(path_now())]; }

const char* set_crc32_path(const std::string& widest) {
  const auto* name = std::find(std::begin(kPathNames), std::end(kPathNames), widest);
  if (name == std::end(kPathNames)) throw std::invalid_argument("set_crc32_path: 'portable', 'pclmul' or 'vpclmulqdq'");
  return kPathNames[g_widest.exchange(static_cast<int>(name - std::begin(kPathNames)))];
}

}  // namespace sinr
