// One-pass summaries along both axes (see moments.hpp).
#include "sinr/moments.hpp"

#include <cmath>
#include <vector>

#include "sinr/checksum.hpp"

namespace sinr {

namespace {

using u128 = unsigned __int128;  // GCC and Clang, on x86-64 and aarch64 (the compilers the core builds with)

constexpr uint64_t kLargestValue = (uint64_t{1} << 31) - 1;

inline void add(Moments& m, uint64_t item, uint64_t count, uint64_t sum, u128 squares) {
  m.nonzeros.data[item] += static_cast<int64_t>(count);
  m.sums.data[item] = static_cast<int64_t>(static_cast<uint64_t>(m.sums.data[item]) + sum);  // wraps in a hostile
  const uint64_t square_low = static_cast<uint64_t>(squares);                                // file only
  uint64_t& low = m.squares_low.data[item];
  low += square_low;
  m.squares_high.data[item] += static_cast<uint64_t>(squares >> 64) + (low < square_low);
}

// One item's moments in one cache line's half: what a call adds to its columns before adding them to
// their cells' (four arrays, four lines an update).
struct Local {
  uint64_t count = 0, sum = 0;
  u128 squares = 0;
};

int bits_of(u128 v) {
  const uint64_t high = static_cast<uint64_t>(v >> 64), low = static_cast<uint64_t>(v);
  return high ? 128 - __builtin_clzll(high) : low ? 64 - __builtin_clzll(low) : 0;
}

// n / d (d > 0) rounded once to the nearest double: the quotient taken by long division to at least
// 55 significant bits (the remainder stays below d < 2**63), and a remainder left over marked in its
// last bit, so that converting it rounds as the exact quotient would.
double divided(u128 n, uint64_t d) {
  if (n == 0) return 0.0;
  u128 q = n / d;
  uint64_t r = static_cast<uint64_t>(n % d);
  int shift = 0;
  for (; bits_of(q) < 55; ++shift) {
    const bool one = r >= d - r;  // 2r >= d, without overflow
    r = one ? r - (d - r) : 2 * r;
    q = (q << 1) | static_cast<u128>(one);
  }
  return std::ldexp(static_cast<double>(q | static_cast<u128>(r != 0)), -shift);
}

bool fits(const Moments& m, int64_t n) {
  return m.nonzeros.size == n && m.sums.size == n && m.squares_low.size == n && m.squares_high.size == n;
}

}  // namespace

int accumulate_moments(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                       Span<const int64_t> gene_of_row, Span<const int64_t> item_of_row, Span<const int64_t> cell_of_col,
                       int64_t first_col, Moments genes, Moments cells, uint64_t* checksum) {
  const int64_t n = values.size;
  if (rows.size != n || cols.size != n || item_of_row.size != gene_of_row.size || !fits(genes, genes.nonzeros.size) ||
      !fits(cells, cells.nonzeros.size))
    return -1;
  const uint64_t n_genes = static_cast<uint64_t>(genes.nonzeros.size);
  const uint64_t n_cells = static_cast<uint64_t>(cells.nonzeros.size);
  const uint64_t n_rows = static_cast<uint64_t>(gene_of_row.size), n_cols = static_cast<uint64_t>(cell_of_col.size);
  for (int64_t q = 0; q < cell_of_col.size; ++q)
    if (static_cast<uint64_t>(cell_of_col.data[q]) >= n_cells) return -1;
  thread_local std::vector<Local> by_column;
  by_column.assign(static_cast<size_t>(n_cols), Local{});
  Local* const column = by_column.data();
  uint64_t keys[detail::kChecksumBlock], item_of[detail::kChecksumBlock], column_of[detail::kChecksumBlock];
  uint64_t total = 0;
  for (int64_t lo = 0; lo < n; lo += detail::kChecksumBlock) {
    const int64_t m = n - lo < detail::kChecksumBlock ? n - lo : detail::kChecksumBlock;
    const int32_t* const value = values.data + lo;
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t row = static_cast<uint32_t>(rows.data[lo + i]);
      const uint64_t q = static_cast<uint64_t>(static_cast<int64_t>(cols.data[lo + i])) - static_cast<uint64_t>(first_col);
      if (row >= n_rows || q >= n_cols || value[i] < 0) return -1;
      item_of[i] = static_cast<uint64_t>(item_of_row.data[row]);
      if (item_of[i] >= n_genes) return -1;
      column_of[i] = q;
      keys[i] = entry_key(static_cast<uint64_t>(gene_of_row.data[row]), static_cast<uint64_t>(cell_of_col.data[q]));
    }
    // A tile's nonzeros come row after row, so a gene's come in runs: summed in registers, and
    // its moments updated once a run (updated at every nonzero, each update would wait for the
    // last one's store). A column's differ from one nonzero to the next: each updated at once.
    for (int64_t i = 0; i < m;) {
      const uint64_t gene = item_of[i];
      uint64_t sum = 0;
      u128 squares = 0;
      const int64_t start = i;
      for (; i < m && item_of[i] == gene; ++i) {
        const uint64_t v = static_cast<uint64_t>(value[i]);
        sum += v;
        squares += v * v;
      }
      add(genes, gene, static_cast<uint64_t>(i - start), sum, squares);
    }
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t v = static_cast<uint64_t>(value[i]);
      Local& c = column[column_of[i]];
      c.count += 1;
      c.sum += v;
      c.squares += v * v;
    }
    total += keyed_checksum(keys, value, m);
  }
  for (uint64_t q = 0; q < n_cols; ++q)
    if (column[q].count) add(cells, static_cast<uint64_t>(cell_of_col.data[q]), column[q].count, column[q].sum, column[q].squares);
  *checksum = total;
  return 0;
}

void add_moments(Moments into, Moments from) {
  for (int64_t i = 0; i < into.nonzeros.size; ++i) {
    const u128 squares = (static_cast<u128>(from.squares_high.data[i]) << 64) | from.squares_low.data[i];
    add(into, static_cast<uint64_t>(i), static_cast<uint64_t>(from.nonzeros.data[i]),
        static_cast<uint64_t>(from.sums.data[i]), squares);
  }
}

int moments_variance(Span<const int64_t> sums, Span<const uint64_t> squares_low, Span<const uint64_t> squares_high,
                     int64_t entries, int64_t ddof, Span<double> out) {
  const int64_t n = sums.size;
  if (squares_low.size != n || squares_high.size != n || out.size != n || ddof < 0 || ddof >= entries ||
      entries > int64_t{1} << 31)
    return -1;
  const u128 count = static_cast<u128>(entries);
  const u128 most_sum = count * kLargestValue, most_squares = most_sum * kLargestValue;  // below 2**93
  const uint64_t denominator = static_cast<uint64_t>(entries) * static_cast<uint64_t>(entries - ddof);  // < 2**62
  for (int64_t i = 0; i < n; ++i) {
    const u128 s1 = static_cast<u128>(static_cast<uint64_t>(sums.data[i]));
    const u128 s2 = (static_cast<u128>(squares_high.data[i]) << 64) | squares_low.data[i];
    if (s1 > most_sum || s2 > most_squares) return -1;
    const u128 scaled = count * s2, squared = s1 * s1;  // both below 2**124
    if (scaled < squared) return -1;  // Cauchy-Schwarz holds for any values that sum so
    out.data[i] = divided(scaled - squared, denominator);
  }
  return 0;
}

int moments_mean(Span<const int64_t> sums, int64_t entries, Span<double> out) {
  const int64_t n = sums.size;
  if (out.size != n || entries < 1) return -1;
  for (int64_t i = 0; i < n; ++i) {
    if (sums.data[i] < 0) return -1;
    out.data[i] = divided(static_cast<u128>(sums.data[i]), static_cast<uint64_t>(entries));
  }
  return 0;
}

}  // namespace sinr
