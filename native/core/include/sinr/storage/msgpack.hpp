// A small, bounds-checked MessagePack decoder: exactly what the format uses (spec §3.5). Every
// length is checked against the bytes left before anything is allocated; maps must have distinct
// string keys; str must be valid UTF-8; ext types and trailing bytes are refused; nesting is
// limited so that hostile input cannot exhaust the stack.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sinr::storage::msgpack {

struct Value {
  enum Type { kNil, kBool, kInt, kFloat, kStr, kBin, kArray, kMap };
  Type type = kNil;
  bool boolean = false;
  bool negative = false;  // kInt: the value is -(2**64 - magnitude) when negative (two's complement)
  uint64_t bits = 0;      // kInt: the value's 64-bit pattern (int64 when negative, else uint64)
  double number = 0;      // kFloat
  std::string text;       // kStr, kBin
  std::vector<Value> items;                          // kArray
  std::vector<std::pair<std::string, Value>> fields;  // kMap, in file order

  bool is_int() const { return type == kInt; }
  // For kInt: whether low <= value <= high.
  bool int_in(int64_t low, uint64_t high) const;
  int64_t as_int64() const { return static_cast<int64_t>(bits); }
  uint64_t as_uint64() const { return bits; }
  // The field of a map (nullptr when absent or not a map).
  const Value* get(const std::string& key) const;
};

// Thrown on malformed input; what() names the fault (callers wrap it in CorruptFileError).
class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One object filling data[0, n) exactly.
Value parse(const uint8_t* data, size_t n);

// Whether s is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(const char* s, size_t n);

}  // namespace sinr::storage::msgpack
