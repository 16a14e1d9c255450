// The fuzz harnesses' reader of libFuzzer's input (native/fuzz/fuzz_*.cpp), and their views of vectors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "sinr/span.hpp"

namespace sinr::fuzz {

// Read-only and writable views of a vector.
template <typename T>
Span<const T> ro(const std::vector<T>& v) {
  return Span<const T>{v.data(), static_cast<int64_t>(v.size())};
}
template <typename T>
Span<T> rw(std::vector<T>& v) {
  return Span<T>{v.data(), static_cast<int64_t>(v.size())};
}

// Consumes the fuzzer's bytes; past the end it yields zeros.
struct Bytes {
  const uint8_t* p;
  size_t n;
  uint64_t take(int count) {
    uint64_t v = 0;
    for (int i = 0; i < count; ++i) {
      v |= static_cast<uint64_t>(n ? *p : 0) << (8 * i);
      if (n) ++p, --n;
    }
    return v;
  }
  int64_t below(int64_t bound) { return bound > 0 ? static_cast<int64_t>(take(2) % static_cast<uint64_t>(bound)) : 0; }
};

// One fuzz input, as every harness runs it: the first byte picks the mode, an odd one an
// encode/decode round trip of tiles the input describes, an even one hostile input to the decoder.
inline int run_one(const uint8_t* data, size_t size, void (*round_trip)(Bytes&), void (*hostile)(Bytes&)) {
  Bytes in{data, size};
  if (in.take(1) & 1)
    round_trip(in);
  else
    hostile(in);
  return 0;
}

}  // namespace sinr::fuzz
