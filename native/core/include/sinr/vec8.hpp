// Eight 32-bit lanes, twice: AVX2 registers and a portable array with the same operations.
//
// Format 3's lockstep tile decoder (lanes3.cpp) and the stream lab's (native/lab/stream_lab.cpp)
// are written once, as templates over one of these types, so the AVX2 path and the portable path
// run the same lane logic and give identical output. Vec8Avx2's operations carry
// __attribute__((target("avx2"))); a decoder instantiated with it is compiled inside a
// target("avx2"), flatten function (GCC refuses to inline target-specific functions into a caller
// without that target, and flatten inlines the whole template there), chosen at run time with
// __builtin_cpu_supports("avx2"): no -march flag. SINR_HAVE_AVX2 is defined where Vec8Avx2 exists
// (x86-64 with GCC or Clang); elsewhere (aarch64) only the portable lanes are compiled.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SINR_HAVE_AVX2 1
#endif

namespace sinr::simd {

// The portable lanes: plain loops (a compiler may vectorise them for its baseline target).
struct Vec8Portable {
  uint32_t v[8];

  static Vec8Portable splat(uint32_t a) {
    Vec8Portable r;
    for (int j = 0; j < 8; ++j) r.v[j] = a;
    return r;
  }
  static Vec8Portable load(const uint32_t* p) {
    Vec8Portable r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(uint32_t* p, Vec8Portable a) { std::memcpy(p, a.v, sizeof a.v); }

  template <typename F>
  static Vec8Portable map(Vec8Portable a, Vec8Portable b, F f) {
    Vec8Portable r;
    for (int j = 0; j < 8; ++j) r.v[j] = f(a.v[j], b.v[j]);
    return r;
  }
  static Vec8Portable add(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p + q; }); }
  static Vec8Portable sub(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p - q; }); }
  static Vec8Portable mul(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p * q; }); }
  static Vec8Portable and_(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p & q; }); }
  // ~a & b
  static Vec8Portable andnot(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return ~p & q; }); }
  static Vec8Portable or_(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p | q; }); }
  static Vec8Portable max(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p > q ? p : q; }); }
  static Vec8Portable min_signed(Vec8Portable a, Vec8Portable b) {
    return map(a, b, [](uint32_t p, uint32_t q) { return static_cast<int32_t>(p) < static_cast<int32_t>(q) ? p : q; });
  }
  // shifts by a count per lane, below 32 (the decoders' counts are)
  static Vec8Portable srlv(Vec8Portable a, Vec8Portable n) { return map(a, n, [](uint32_t p, uint32_t q) { return p >> q; }); }
  static Vec8Portable sllv(Vec8Portable a, Vec8Portable n) { return map(a, n, [](uint32_t p, uint32_t q) { return p << q; }); }
  template <int N>
  static Vec8Portable srli(Vec8Portable a) { return srlv(a, splat(N)); }
  template <int N>
  static Vec8Portable slli(Vec8Portable a) { return sllv(a, splat(N)); }
  // each lane's four bytes in reverse order
  static Vec8Portable bswap(Vec8Portable a) {
    Vec8Portable r;
    for (int j = 0; j < 8; ++j)
      r.v[j] = (a.v[j] >> 24) | ((a.v[j] >> 8) & 0xFF00u) | ((a.v[j] << 8) & 0xFF0000u) | (a.v[j] << 24);
    return r;
  }
  // comparisons give all-ones lanes where true
  static Vec8Portable eq(Vec8Portable a, Vec8Portable b) { return map(a, b, [](uint32_t p, uint32_t q) { return p == q ? ~0u : 0u; }); }
  static Vec8Portable gt_signed(Vec8Portable a, Vec8Portable b) {
    return map(a, b, [](uint32_t p, uint32_t q) { return static_cast<int32_t>(p) > static_cast<int32_t>(q) ? ~0u : 0u; });
  }
  // b where mask, else a
  static Vec8Portable select(Vec8Portable mask, Vec8Portable a, Vec8Portable b) {
    Vec8Portable r;
    for (int j = 0; j < 8; ++j) r.v[j] = mask.v[j] ? b.v[j] : a.v[j];
    return r;
  }
  static int bits(Vec8Portable mask) {
    int r = 0;
    for (int j = 0; j < 8; ++j) r |= static_cast<int>(mask.v[j] >> 31) << j;
    return r;
  }
  // 32 bits read at base + SCALE * index in every lane (unaligned, little-endian)
  template <int SCALE>
  static Vec8Portable gather(const void* base, Vec8Portable index) {
    Vec8Portable r;
    for (int j = 0; j < 8; ++j)
      std::memcpy(&r.v[j], static_cast<const char*>(base) + int64_t{SCALE} * static_cast<int32_t>(index.v[j]), 4);
    return r;
  }
  // as gather where mask, src elsewhere (those lanes read nothing)
  template <int SCALE>
  static Vec8Portable gather_where(Vec8Portable src, const void* base, Vec8Portable index, Vec8Portable mask) {
    Vec8Portable r = src;
    for (int j = 0; j < 8; ++j)
      if (mask.v[j])
        std::memcpy(&r.v[j], static_cast<const char*>(base) + int64_t{SCALE} * static_cast<int32_t>(index.v[j]), 4);
    return r;
  }
};

#ifdef SINR_HAVE_AVX2
#define SINR_AVX2 __attribute__((target("avx2")))

struct Vec8Avx2 {
  __m256i v;

  SINR_AVX2 static Vec8Avx2 splat(uint32_t a) { return {_mm256_set1_epi32(static_cast<int>(a))}; }
  SINR_AVX2 static Vec8Avx2 load(const uint32_t* p) { return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))}; }
  SINR_AVX2 static void store(uint32_t* p, Vec8Avx2 a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.v); }
  SINR_AVX2 static Vec8Avx2 add(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_add_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 sub(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_sub_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 mul(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_mullo_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 and_(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_and_si256(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 andnot(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_andnot_si256(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 or_(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_or_si256(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 max(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_max_epu32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 min_signed(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_min_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 srlv(Vec8Avx2 a, Vec8Avx2 n) { return {_mm256_srlv_epi32(a.v, n.v)}; }
  SINR_AVX2 static Vec8Avx2 sllv(Vec8Avx2 a, Vec8Avx2 n) { return {_mm256_sllv_epi32(a.v, n.v)}; }
  template <int N>
  SINR_AVX2 static Vec8Avx2 srli(Vec8Avx2 a) { return {_mm256_srli_epi32(a.v, N)}; }
  template <int N>
  SINR_AVX2 static Vec8Avx2 slli(Vec8Avx2 a) { return {_mm256_slli_epi32(a.v, N)}; }
  SINR_AVX2 static Vec8Avx2 bswap(Vec8Avx2 a) {
    const __m256i order = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,  //
                                           3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
    return {_mm256_shuffle_epi8(a.v, order)};
  }
  SINR_AVX2 static Vec8Avx2 eq(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_cmpeq_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 gt_signed(Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_cmpgt_epi32(a.v, b.v)}; }
  SINR_AVX2 static Vec8Avx2 select(Vec8Avx2 mask, Vec8Avx2 a, Vec8Avx2 b) { return {_mm256_blendv_epi8(a.v, b.v, mask.v)}; }
  SINR_AVX2 static int bits(Vec8Avx2 mask) { return _mm256_movemask_ps(_mm256_castsi256_ps(mask.v)); }
  template <int SCALE>
  SINR_AVX2 static Vec8Avx2 gather(const void* base, Vec8Avx2 index) {
    return {_mm256_i32gather_epi32(static_cast<const int*>(base), index.v, SCALE)};
  }
  template <int SCALE>
  SINR_AVX2 static Vec8Avx2 gather_where(Vec8Avx2 src, const void* base, Vec8Avx2 index, Vec8Avx2 mask) {
    return {_mm256_mask_i32gather_epi32(src.v, static_cast<const int*>(base), index.v, mask.v, SCALE)};
  }
};
#endif

}  // namespace sinr::simd
