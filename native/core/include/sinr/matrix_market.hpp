// The Matrix Market entry parser (readers.py's MtxSource): whole lines of "row col [value]" text
// into 0-based rows, columns and counts, every byte checked. It reads hostile bytes: every read is
// bounded by the buffer's size, every write by the outputs' size, and no arithmetic can overflow
// (numbers are accumulated only while they fit; longer ones are judged on their digits). Lines of
// short whole numbers take a faster path, eight bytes at a time, that gives the same results.
#pragma once
#include <cstdint>

#include "sinr/span.hpp"

namespace sinr::mtx {

// Outcome of a parse; readers.py holds the same numbers (and turns them into messages).
enum Code : int32_t {
  kOk = 0,
  kSyntax = 1,    // not a number
  kFields = 2,    // a line with too few or too many fields
  kIndex = 3,     // a row or column outside 1..n
  kFraction = 4,  // a value that is not a whole number
  kNan = 5,       // nan, inf or infinity
  kLarge = 6,     // a value above kMaxCount
  kNegative = 7,  // a value below 0
  kCapacity = 8,  // more entries than the outputs hold (the caller sized them too small)
  kArguments = 9,  // n_fields not 2 or 3, or n_rows or n_cols outside 0..2**31 - 1: nothing parsed
};

constexpr int64_t kMaxCount = 2147483647;  // limits.MAX_COUNT

// A number read from buf[i:]: the offset after it (the end of its token when it is refused), its
// value and the code.
struct Number {
  int64_t end;
  int64_t value;
  int32_t code;
};

inline bool blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\r'; }

// The end of the token at buf[i:]: the first blank, newline or the end of the buffer.
inline int64_t token_end(Span<const uint8_t> buf, int64_t i) {
  while (i < buf.size && !blank(buf[i]) && buf[i] != '\n') ++i;
  return i;
}

// A whole number with an optional sign that ends its token. kLarge once it exceeds 17 digits
// (no value is accumulated past 10**16, so nothing overflows); kSyntax without digits or with
// anything else in the token.
Number parse_integer(Span<const uint8_t> buf, int64_t i);

// A decimal number (sign, digits, fraction, exponent; or nan, inf, infinity in any case) that must
// be a count in 0..kMaxCount. Exact: whether it is whole and how large it is are decided on its
// decimal digits (at most 18 significant digits kept, the rest only noted as zero or not), never
// through a floating-point value. Codes kSyntax, kNan, kLarge, kFraction, kNegative.
Number parse_count(Span<const uint8_t> buf, int64_t i);

struct Entries {
  int64_t entries;      // entries written
  int32_t code;         // kOk or why the line at `line` was refused
  int64_t line;         // offset of the failing line (0 when kOk)
  int64_t field;        // its failing field: 0 row, 1 column, 2 value, n_fields: one too many
  int64_t last_col;     // the column of the last entry (last_col passed in when none)
  int64_t unsorted_at;  // offset of the first entry whose column is below the one before it, or -1
};

// Parse whole lines of entries (blank lines and '%' comments skipped; blanks are space, tab and
// CR) into 0-based rows, columns and values. n_fields is 2 (pattern: every value is 1) or 3;
// `integer` reads values as whole numbers only (an 'integer' header), otherwise as decimals
// (parse_count). Rows must lie in 1..n_rows and columns in 1..n_cols, both sizes at most
// 2**31 - 1. last_col is the column of the entry before buf (-1 for none). Writes at most
// min(rows.size, cols.size, vals.size) entries; one more is kCapacity, its line's offset in
// `line`. kCapacity and kArguments are the caller's mistakes (readers.py sizes the outputs by the
// lines of buf), never the file's.
Entries parse_entries(Span<const uint8_t> buf, int n_fields, bool integer, int64_t n_rows, int64_t n_cols,
                      int64_t last_col, Span<int32_t> rows, Span<int32_t> cols, Span<int32_t> vals);

}  // namespace sinr::mtx
