// The MessagePack decoder (see msgpack.hpp).
#include "sinr/storage/msgpack.hpp"

#include <cstring>
#include <unordered_set>

namespace sinr::storage::msgpack {

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(const uint8_t* data, size_t n) : p_(data), end_(data + n) {}

  Value value(int depth) {
    if (depth > kMaxDepth) throw ParseError("nested too deeply");
    const uint8_t tag = byte();
    Value v;
    if (tag <= 0x7f) return integer(false, tag);
    if (tag >= 0xe0) return integer(true, static_cast<uint64_t>(static_cast<int64_t>(static_cast<int8_t>(tag))));
    if ((tag & 0xf0) == 0x80) return map(tag & 0x0f, depth);
    if ((tag & 0xf0) == 0x90) return array(tag & 0x0f, depth);
    if ((tag & 0xe0) == 0xa0) return str(tag & 0x1f);
    switch (tag) {
      case 0xc0: return v;
      case 0xc2: case 0xc3: v.type = Value::kBool; v.boolean = tag == 0xc3; return v;
      case 0xc4: return bin(be(1));
      case 0xc5: return bin(be(2));
      case 0xc6: return bin(be(4));
      case 0xca: {
        const uint32_t b = static_cast<uint32_t>(be(4));
        float f;
        std::memcpy(&f, &b, 4);
        v.type = Value::kFloat;
        v.number = f;
        return v;
      }
      case 0xcb: {
        const uint64_t b = be(8);
        double d;
        std::memcpy(&d, &b, 8);
        v.type = Value::kFloat;
        v.number = d;
        return v;
      }
      case 0xcc: return integer(false, be(1));
      case 0xcd: return integer(false, be(2));
      case 0xce: return integer(false, be(4));
      case 0xcf: return integer(false, be(8));
      case 0xd0: return signed_integer(static_cast<int64_t>(static_cast<int8_t>(be(1))));
      case 0xd1: return signed_integer(static_cast<int64_t>(static_cast<int16_t>(be(2))));
      case 0xd2: return signed_integer(static_cast<int64_t>(static_cast<int32_t>(be(4))));
      case 0xd3: return signed_integer(static_cast<int64_t>(be(8)));
      case 0xd9: return str(be(1));
      case 0xda: return str(be(2));
      case 0xdb: return str(be(4));
      case 0xdc: return array(be(2), depth);
      case 0xdd: return array(be(4), depth);
      case 0xde: return map(be(2), depth);
      case 0xdf: return map(be(4), depth);
      default: throw ParseError("an ext type or a reserved byte");
    }
  }

  bool done() const { return p_ == end_; }

 private:
  uint8_t byte() {
    if (p_ == end_) throw ParseError("ends early");
    return *p_++;
  }
  uint64_t be(int n) {
    if (end_ - p_ < n) throw ParseError("ends early");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | *p_++;
    return v;
  }
  static Value integer(bool negative, uint64_t bits) {
    Value v;
    v.type = Value::kInt;
    v.negative = negative;
    v.bits = bits;
    return v;
  }
  static Value signed_integer(int64_t x) { return integer(x < 0, static_cast<uint64_t>(x)); }
  std::string bytes(uint64_t n) {
    if (static_cast<uint64_t>(end_ - p_) < n) throw ParseError("ends early");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(n));
    p_ += n;
    return s;
  }
  Value str(uint64_t n) {
    Value v;
    v.type = Value::kStr;
    v.text = bytes(n);
    if (!valid_utf8(v.text.data(), v.text.size())) throw ParseError("a string is not valid UTF-8");
    return v;
  }
  Value bin(uint64_t n) {
    Value v;
    v.type = Value::kBin;
    v.text = bytes(n);
    return v;
  }
  Value array(uint64_t n, int depth) {
    if (static_cast<uint64_t>(end_ - p_) < n) throw ParseError("ends early");  // every item takes a byte
    Value v;
    v.type = Value::kArray;
    v.items.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) v.items.push_back(value(depth + 1));
    return v;
  }
  Value map(uint64_t n, int depth) {
    if (static_cast<uint64_t>(end_ - p_) / 2 < n) throw ParseError("ends early");
    Value v;
    v.type = Value::kMap;
    v.fields.reserve(static_cast<size_t>(n));
    std::unordered_set<std::string> keys;  // linear time on maps of any size
    for (uint64_t i = 0; i < n; ++i) {
      Value key = value(depth + 1);
      if (key.type != Value::kStr) throw ParseError("a map key is not a string");
      if (!keys.insert(key.text).second) throw ParseError("a map key appears twice");
      Value item = value(depth + 1);
      v.fields.emplace_back(std::move(key.text), std::move(item));
    }
    return v;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace

bool Value::int_in(int64_t low, uint64_t high) const {
  if (type != kInt) return false;
  if (negative) {
    const int64_t x = static_cast<int64_t>(bits);
    return x >= low && (high >= static_cast<uint64_t>(INT64_MAX) || x <= static_cast<int64_t>(high));
  }
  return bits <= high && (low <= 0 || bits >= static_cast<uint64_t>(low));
}

const Value* Value::get(const std::string& key) const {
  if (type != kMap) return nullptr;
  for (const auto& field : fields)
    if (field.first == key) return &field.second;
  return nullptr;
}

Value parse(const uint8_t* data, size_t n) {
  Parser parser(data, n);
  Value v = parser.value(0);
  if (!parser.done()) throw ParseError("bytes follow the object");
  return v;
}

bool valid_utf8(const char* s, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += len;
  }
  return true;
}

}  // namespace sinr::storage::msgpack
