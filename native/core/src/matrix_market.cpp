// The Matrix Market entry parser: see sinr/matrix_market.hpp. Every loop checks its index against
// the buffer's size before reading; values are accumulated only below bounds that keep int64 exact.
#include "sinr/matrix_market.hpp"

#include <cstring>

// Eight bytes at a time for the short whole numbers that make up most of a file (little-endian
// machines with GCC or Clang; elsewhere byte by byte only).
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SINR_MTX_SWAR 1
#else
#define SINR_MTX_SWAR 0
#endif

namespace sinr::mtx {

namespace {

constexpr int64_t kPow10[19] = {1LL,        10LL,        100LL,        1000LL,        10000LL,
                                100000LL,   1000000LL,   10000000LL,   100000000LL,   1000000000LL,
                                10000000000LL,           100000000000LL,              1000000000000LL,
                                10000000000000LL,        100000000000000LL,           1000000000000000LL,
                                10000000000000000LL,     100000000000000000LL,        1000000000000000000LL};
constexpr int64_t kIntegerLimit = kPow10[16];  // parse_integer keeps accumulating below this
constexpr int kKeptDigits = 18;               // parse_count keeps this many significant digits
constexpr int64_t kLargeExponent = 1000000;   // an exponent of more than 17 digits counts as this
constexpr int64_t kMaxIndex = 2147483647;     // rows and columns are stored as int32

inline bool digit(uint8_t c) { return c >= '0' && c <= '9'; }

// buf[i:end] is `word` (lower case), ignoring case as (byte | 32) == letter.
inline bool is_word(Span<const uint8_t> buf, int64_t i, int64_t end, const char* word, int64_t length) {
  if (end - i != length) return false;
  for (int64_t k = 0; k < length; ++k)
    if ((buf[i + k] | 32) != static_cast<uint8_t>(word[k])) return false;
  return true;
}

#if SINR_MTX_SWAR
// The number of leading digits (0..7) of the eight bytes in w (the first in its low byte), or 8.
// A byte is a digit when its high nibble is 3 before and after adding 6; a carry out of a byte
// >= 0xFA (no digit) only reaches the bytes after it, which do not count.
inline int leading_digits(uint64_t w) {
  constexpr uint64_t kHigh = 0xF0F0F0F0F0F0F0F0ULL, kThree = 0x3030303030303030ULL, kSix = 0x0606060606060606ULL;
  const uint64_t other = ((w & kHigh) ^ kThree) | (((w + kSix) & kHigh) ^ kThree);
  return other ? __builtin_ctzll(other) >> 3 : 8;
}

// The value of the first `count` (1..7) bytes of w, all digits.
inline int64_t digits_value(uint64_t w, int count) {
  uint64_t v = (w - 0x3030303030303030ULL) << (8 * (8 - count));  // leading zeros; the rest shifted out
  v = v * 10 + (v >> 8);                                           // pairs of digits in alternate bytes
  v = (((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
       (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
  return static_cast<int64_t>(v);
}

// A whole number of 1..7 digits at buf[j:] (eight bytes readable there): its value, j moved past
// it. False (j unchanged) for anything else, left to the general path.
inline bool short_number(Span<const uint8_t> buf, int64_t& j, int64_t& value) {
  if (buf.size - j < 8) return false;
  uint64_t w;
  std::memcpy(&w, buf.data + j, 8);
  const int count = leading_digits(w);
  if (count == 0 || count == 8) return false;
  value = digits_value(w, count);
  j += count;
  return true;
}

// The common line, "row col[ value]\n" with short whole numbers and single blanks, rows and
// columns in range: (row, col, value) and j past its newline. Such a line is an entry that the
// general path reads the same (a 1..7-digit value is below kMaxCount and parse_count reads it as
// itself); false on anything else, nothing consumed.
inline bool common_line(Span<const uint8_t> buf, int64_t& j, int n_fields, int64_t n_rows, int64_t n_cols,
                        int64_t& row, int64_t& col, int64_t& value) {
  int64_t k = j;
  if (!short_number(buf, k, row) || (buf[k] != ' ' && buf[k] != '\t')) return false;
  ++k;
  if (!short_number(buf, k, col)) return false;
  if (n_fields == 3) {
    if (buf[k] != ' ' && buf[k] != '\t') return false;
    ++k;
    if (!short_number(buf, k, value)) return false;
  }
  if (buf[k] != '\n' || row < 1 || row > n_rows || col < 1 || col > n_cols) return false;
  j = k + 1;
  return true;
}
#endif

inline Number integer_at(Span<const uint8_t> buf, int64_t i) {
  bool negative = false;
  if (i < buf.size && (buf[i] == '+' || buf[i] == '-')) {
    negative = buf[i] == '-';
    ++i;
  }
#if SINR_MTX_SWAR
  // Fast path, same result: 1..7 digits that end their token (the loop below finds the same).
  if (buf.size - i >= 8) {
    uint64_t w;
    std::memcpy(&w, buf.data + i, 8);
    const int count = leading_digits(w);
    if (count > 0 && count < 8) {
      const uint8_t next = buf[i + count];
      if (blank(next) || next == '\n') {
        const int64_t value = digits_value(w, count);
        return {i + count, negative ? -value : value, kOk};
      }
    }
  }
#endif
  const int64_t first = i;
  int64_t value = 0;
  bool large = false;
  while (i < buf.size && digit(buf[i])) {
    if (value >= kIntegerLimit)
      large = true;
    else
      value = value * 10 + (buf[i] - '0');  // < 10**17 + 10
    ++i;
  }
  if (i == first || token_end(buf, i) != i) return {token_end(buf, i), 0, kSyntax};
  if (large) return {i, 0, kLarge};
  return {i, negative ? -value : value, kOk};
}

inline Number count_at(Span<const uint8_t> buf, int64_t i) {
  const int64_t end = token_end(buf, i);
  bool negative = false;
  if (i < end && (buf[i] == '+' || buf[i] == '-')) {
    negative = buf[i] == '-';
    ++i;
  }
  if (is_word(buf, i, end, "nan", 3) || is_word(buf, i, end, "inf", 3) || is_word(buf, i, end, "infinity", 8))
    return {end, 0, kNan};
  // |value| = mantissa * 10**scale, mantissa of `digits` significant digits (< 10**18); `dropped`:
  // a nonzero digit beyond those kept. scale and zeros stay within +-(buffer size).
  int64_t mantissa = 0, digits = 0, scale = 0;
  bool seen = false, dropped = false;
  while (i < end && digit(buf[i])) {
    const int64_t d = buf[i] - '0';
    seen = true;
    if (mantissa == 0) {
      mantissa = d;
      digits = d ? 1 : 0;
    } else if (digits < kKeptDigits) {
      mantissa = mantissa * 10 + d;
      ++digits;
    } else {
      ++scale;
      dropped = dropped || d != 0;
    }
    ++i;
  }
  if (i < end && buf[i] == '.') {
    ++i;
    int64_t zeros = 0;  // zeros since the last nonzero fraction digit, not yet in the mantissa
    while (i < end && digit(buf[i])) {
      const int64_t d = buf[i] - '0';
      seen = true;
      if (d == 0) {
        ++zeros;
      } else if (mantissa == 0) {
        mantissa = d;
        digits = 1;
        scale = scale - zeros - 1;
        zeros = 0;
      } else if (digits + zeros < kKeptDigits) {
        mantissa = mantissa * kPow10[zeros + 1] + d;  // digits + zeros + 1 <= 18 digits
        digits = digits + zeros + 1;
        scale = scale - zeros - 1;
        zeros = 0;
      } else {
        dropped = true;
      }
      ++i;
    }
  }
  if (!seen) return {end, 0, kSyntax};
  int64_t exponent = 0;
  if (i < end && (buf[i] | 32) == 'e') {
    ++i;
    const bool exponent_negative = i < end && buf[i] == '-';
    const Number e = integer_at(buf, i);
    i = e.end;
    exponent = e.value;  // |exponent| < 10**17 + 10
    if (e.code == kLarge)
      exponent = exponent_negative ? -kLargeExponent : kLargeExponent;
    else if (e.code != kOk)
      return {end, 0, kSyntax};
  }
  if (i != end) return {end, 0, kSyntax};
  if (mantissa == 0) return {end, 0, kOk};
  const int64_t total = scale + exponent;
  if (digits + total > 10) return {end, 0, kLarge};
  if (dropped) return {end, 0, kFraction};  // a nonzero digit below the 18 kept, all below 10**10
  int64_t value;
  if (total >= 0) {
    value = mantissa * kPow10[total];  // total <= 10 - digits <= 9: below 10**10
  } else {
    if (-total > kKeptDigits || mantissa % kPow10[-total] != 0) return {end, 0, kFraction};
    value = mantissa / kPow10[-total];
  }
  if (value > kMaxCount) return {end, 0, kLarge};
  if (negative) return {end, 0, kNegative};
  return {end, value, kOk};
}

}  // namespace

Number parse_integer(Span<const uint8_t> buf, int64_t i) { return integer_at(buf, i); }

Number parse_count(Span<const uint8_t> buf, int64_t i) { return count_at(buf, i); }

Entries parse_entries(Span<const uint8_t> buf, int n_fields, bool integer, int64_t n_rows, int64_t n_cols,
                      int64_t last_col, Span<int32_t> rows, Span<int32_t> cols, Span<int32_t> vals) {
  if (n_fields < 2 || n_fields > 3 || n_rows < 0 || n_rows > kMaxIndex || n_cols < 0 || n_cols > kMaxIndex)
    return {0, kArguments, 0, 0, last_col, -1};
  int64_t capacity = rows.size;
  if (cols.size < capacity) capacity = cols.size;
  if (vals.size < capacity) capacity = vals.size;
  const int64_t size = buf.size;
  int64_t n = 0, i = 0, unsorted_at = -1;
  while (i < size) {
    const int64_t line = i;
#if SINR_MTX_SWAR
    {
      int64_t row, col, value = 1;
      if (common_line(buf, i, n_fields, n_rows, n_cols, row, col, value)) {
        if (n >= capacity) return {n, kCapacity, line, 0, last_col, unsorted_at};
        if (col - 1 < last_col && unsorted_at < 0) unsorted_at = line;
        last_col = col - 1;
        rows[n] = static_cast<int32_t>(row - 1);
        cols[n] = static_cast<int32_t>(col - 1);
        vals[n] = static_cast<int32_t>(value);
        ++n;
        continue;
      }
    }
#endif
    while (i < size && blank(buf[i])) ++i;
    if (i == size) break;
    if (buf[i] == '\n' || buf[i] == '%') {  // an empty line, or a comment
      while (i < size && buf[i] != '\n') ++i;
      ++i;
      continue;
    }
    int64_t row = 0, col = 0, value = 1;
    for (int field = 0; field < n_fields; ++field) {
      while (i < size && blank(buf[i])) ++i;
      if (i == size || buf[i] == '\n') return {n, kFields, line, field, last_col, unsorted_at};
      Number number;
      if (field < 2) {
        number = integer_at(buf, i);
        if (number.code == kLarge ||
            (number.code == kOk && !(1 <= number.value && number.value <= (field == 0 ? n_rows : n_cols))))
          number.code = kIndex;
      } else if (integer) {
        number = integer_at(buf, i);
        if (number.code == kOk && number.value > kMaxCount)
          number.code = kLarge;
        else if (number.code == kOk && number.value < 0)
          number.code = kNegative;
      } else {
        number = count_at(buf, i);
      }
      if (number.code != kOk) return {n, number.code, line, field, last_col, unsorted_at};
      i = number.end;
      if (field == 0)
        row = number.value;
      else if (field == 1)
        col = number.value - 1;
      else
        value = number.value;
    }
    while (i < size && blank(buf[i])) ++i;
    if (i < size && buf[i] != '\n') return {n, kFields, line, n_fields, last_col, unsorted_at};
    ++i;
    if (n >= capacity) return {n, kCapacity, line, 0, last_col, unsorted_at};
    if (col < last_col && unsorted_at < 0) unsorted_at = line;
    last_col = col;
    // row in 1..n_rows, col in 0..n_cols - 1 and value in 0..kMaxCount: each fits int32.
    rows[n] = static_cast<int32_t>(row - 1);
    cols[n] = static_cast<int32_t>(col);
    vals[n] = static_cast<int32_t>(value);
    ++n;
  }
  return {n, kOk, 0, 0, last_col, unsorted_at};
}

}  // namespace sinr::mtx
