// Value models (spec §6.3.1, §6.4, §6.5; format 2: §C.4, §C.5): the binning of values and the baseline's coding contexts.
// Mirrors scinrcodec/codec/models.py, which holds the same constants for the Python side.
#pragma once
#include <algorithm>
#include <cstdint>

namespace sinr {

constexpr int kMantissaBits = 3;
constexpr int kMaxExponent = 30;  // e = u + 1 < 2**31
constexpr int kNumBins = (1 << kMantissaBits) - 1 + (kMaxExponent - kMantissaBits + 1) * (1 << kMantissaBits);
constexpr int kNumContexts = 48;
constexpr int kFineContexts = 96;  // format 3's contexts of 1/8 nat (spec §6.5)
constexpr int kContextShift = 2;  // baseline units (1/16 nat) to contexts (1/4 nat)
constexpr int kLogMeanUnits = 16;
constexpr int kLutSize = 256;
constexpr int64_t kMaxCount = 2147483647;  // the largest value an entry may hold (limits.MAX_COUNT)
constexpr int64_t kMaxDimension = 2147483647;  // genes or cells (limits.MAX_DIMENSION)
constexpr int64_t kMaxTileEntries = (int64_t{1} << 24) - 1;  // rows x columns of one tile

constexpr int bit_length(uint64_t v) {
#if defined(__GNUC__)
  return v ? 64 - __builtin_clzll(v) : 0;  // one instruction where the loop takes one step a bit
#else
  int n = 0;
  while (v) {
    v >>= 1;
    ++n;
  }
  return n;
#endif
}

struct Bin {
  int64_t bin;
  int64_t offset;
  int bits;
};

// (bin, offset, offset bits) of u >= 0: exact below 2**kMantissaBits, then the leading
// kMantissaBits + 1 bits of e = u + 1 select the bin and the rest are offset bits.
inline Bin bin_of(int64_t u) {
  const int64_t e = u + 1;
  const int exponent = bit_length(static_cast<uint64_t>(e)) - 1;
  if (exponent < kMantissaBits) return {e - 1, 0, 0};
  const int drop = exponent - kMantissaBits;
  return {(1 << kMantissaBits) - 1 + static_cast<int64_t>(drop) * (1 << kMantissaBits) +
              ((e >> drop) - (1 << kMantissaBits)),
          e & ((int64_t{1} << drop) - 1), drop};
}

// The normalisation of one row of bin counts (each below 2**40) to frequencies summing to `scale`
// (2**16 in format 2, spec §C.4; 2**12 in format 3, §6.4): f[b] = 1 + c[b] (scale - K) div T for
// the K present bins, the rest of `scale` added to the lowest of the most frequent; false, and
// every f[b] = 0, for a row without counts. Every product is below 2**57.
inline bool normalised_frequencies(const uint64_t* counts, int64_t scale, int64_t* freq) {
  int64_t present = 0, total = 0;
  int most = 0;
  for (int b = 0; b < kNumBins; ++b) {
    present += counts[b] > 0;
    total += static_cast<int64_t>(counts[b]);
    if (counts[b] > counts[most]) most = b;
  }
  if (!present) {
    std::fill(freq, freq + kNumBins, int64_t{0});
    return false;
  }
  // c (scale - K) div T by one reciprocal instead of a division a bin (a chunk's tables took a fifth
  // of its load dividing): the double product is within 2**-36 of the exact quotient (below
  // scale <= 2**16), so its floor is off by at most one either way, which the exact integer
  // comparisons put right.
  const int64_t k = scale - present;
  const double ratio = static_cast<double>(k) / static_cast<double>(total);
  int64_t sum = 0;
  for (int b = 0; b < kNumBins; ++b) {
    const int64_t c = static_cast<int64_t>(counts[b]), n = c * k;
    int64_t q = static_cast<int64_t>(static_cast<double>(c) * ratio);
    q -= q * total > n;
    q += (q + 1) * total <= n;
    freq[b] = c ? 1 + q : 0;
    sum += freq[b];
  }
  freq[most] += scale - sum;  // never negative: sum <= K + (scale - K)
  return true;
}

// Smallest u and number of offset bits of bin b (the decoder's inverse of bin_of).
inline int64_t bin_start(int64_t b) {
  if (b < (1 << kMantissaBits) - 1) return b;
  const int64_t rel = b - ((1 << kMantissaBits) - 1);
  const int64_t drop = rel >> kMantissaBits;
  const int64_t lead = (1 << kMantissaBits) + (rel & ((1 << kMantissaBits) - 1));
  return (lead << drop) - 1;
}
inline int bin_offset_bits(int64_t b) {
  if (b < (1 << kMantissaBits) - 1) return 0;
  return static_cast<int>((b - ((1 << kMantissaBits) - 1)) >> kMantissaBits);
}

// bin_start and bin_offset_bits of every bin, for the decoder's loops.
struct BinTables {
  int64_t start[kNumBins];
  uint8_t bits[kNumBins];
  constexpr BinTables() : start(), bits() {
    for (int b = 0; b < kNumBins; ++b) {
      if (b < (1 << kMantissaBits) - 1) {
        start[b] = b;
        bits[b] = 0;
      } else {
        const int rel = b - ((1 << kMantissaBits) - 1);
        const int drop = rel >> kMantissaBits;
        const int64_t lead = (1 << kMantissaBits) + (rel & ((1 << kMantissaBits) - 1));
        start[b] = (lead << drop) - 1;
        bits[b] = static_cast<uint8_t>(drop);
      }
    }
  }
};
inline constexpr BinTables kBins{};

// Context of a predicted log1p mean in units of 1/16 nat.
inline int baseline_context(int64_t log_mean_sixteenths) {
  const int64_t k = log_mean_sixteenths >> kContextShift;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(k, 0), kNumContexts - 1));
}

}  // namespace sinr
