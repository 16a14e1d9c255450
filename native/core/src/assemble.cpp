// Whole-matrix placing kernels: a chunk's nonzeros sorted by their final order and written out.
// Cell-major output sorts by (cell, gene rank) and writes the output sequentially; row-major output
// sorts by (row, cell) and writes each row's run at its cursor. The sort is a least-significant-digit
// radix sort of at most 2**11 buckets a pass, whose digit counts are all taken in the pass that
// reads the decoded triples (and computes the checksum); keys and values travel packed in one
// 64-bit word when the key fits 32 bits. Scattering straight to the output by cell or row instead
// would write to thousands of places at once, which defeats the caches' prefetching (measured
// slower than the extra sequential passes).
#include "sinr/assemble.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "sinr/checksum.hpp"
#include "sinr/models.hpp"
#include "sinr/scratch.hpp"

namespace sinr {

const char* assemble_status_text(int status) {
  switch (status) {
    case kAssembleOk: return "";
    case kAssembleBadRow: return "a decoded row lies outside the file's rows";
    case kAssembleBadColumn: return "a decoded column lies outside the matrix";
    case kAssembleBadCell: return "a decoded cell lies outside its chunk";
    case kAssembleBadOutput: return "the decoded nonzeros do not fit the output";
    case kAssembleRowOverflow: return "a row decodes to other nonzeros than were counted for it";
    case kAssembleBadTable: return "band or tile tables are inconsistent";
    case kAssembleBadCounts: return "tile nonzero counts run outside the decoded arrays";
    default: return "unknown placing error";
  }
}

namespace {

constexpr int kMaxDigitBits = 11;  // 2048 buckets a pass: histograms in L1

// A key and a value in one word: key in the high 32 bits.
struct Packed {
  using Item = uint64_t;
  static Item make(uint64_t key, int32_t value) { return (key << 32) | static_cast<uint32_t>(value); }
  static uint64_t key(Item x) { return x >> 32; }
  static int32_t value(Item x) { return static_cast<int32_t>(static_cast<uint32_t>(x)); }
};

// Keys of up to 64 bits.
struct Wide {
  struct Item {
    uint64_t key;
    int32_t value;
  };
  static Item make(uint64_t key, int32_t value) { return Item{key, value}; }
  static uint64_t key(const Item& x) { return x.key; }
  static int32_t value(const Item& x) { return x.value; }
};

// Passes and bits per digit of an LSD radix sort over `bits` bits.
struct RadixPlan {
  int passes = 0;
  int digit_bits = 0;
  int64_t buckets() const { return int64_t{1} << digit_bits; }
  uint64_t mask() const { return (uint64_t{1} << digit_bits) - 1; }
};

RadixPlan plan_for(int bits) {
  RadixPlan plan;
  if (bits <= 0) return plan;
  plan.passes = (bits + kMaxDigitBits - 1) / kMaxDigitBits;
  plan.digit_bits = (bits + plan.passes - 1) / plan.passes;
  return plan;
}

// Sort items a[0..n) stably by their key's low plan.passes * plan.digit_bits bits, given each
// pass's digit counts in hist (plan.passes rows of plan.buckets()); b is scratch of n items.
// Returns whichever of a and b holds the result. A pass whose digits are all equal is skipped.
template <typename T>
typename T::Item* radix_sort(typename T::Item* a, typename T::Item* b, int64_t n, const RadixPlan& plan,
                             int64_t* hist) {
  const int64_t buckets = plan.buckets();
  const uint64_t mask = plan.mask();
  for (int p = 0; p < plan.passes; ++p) {
    int64_t* starts = hist + p * buckets;
    bool trivial = false;
    int64_t running = 0;
    for (int64_t d = 0; d < buckets; ++d) {
      const int64_t count = starts[d];
      trivial |= count == n;
      starts[d] = running;
      running += count;
    }
    if (trivial) continue;
    const int shift = p * plan.digit_bits;
    for (int64_t i = 0; i < n; ++i) {
      const auto item = a[i];
      const uint64_t digit = (T::key(item) >> shift) & mask;
      b[starts[digit]++] = item;
    }
    std::swap(a, b);
  }
  return a;
}

bool fits(int64_t base, int64_t n, int64_t size) { return base >= 0 && n >= 0 && base <= size && n <= size - base; }

// Count key digits of every pass for a radix sort.
inline void count_digits(int64_t* hist, const RadixPlan& plan, uint64_t key) {
  const uint64_t mask = plan.mask();
  for (int p = 0; p < plan.passes; ++p) ++hist[(static_cast<int64_t>(p) << plan.digit_bits) + ((key >> (p * plan.digit_bits)) & mask)];
}

template <typename T, typename I, typename D>
int place_by_cell_impl(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                       Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                       Span<const int64_t> rank_of_row, Span<const int64_t> genes_of_row, int64_t base,
                       Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                       int minor_bits, int major_bits, const std::vector<int64_t>& gene_of_rank) {
  using Item = typename T::Item;
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  const RadixPlan plan = plan_for(minor_bits + major_bits);
  std::vector<int64_t> hist(static_cast<size_t>(plan.passes) << plan.digit_bits, 0);
  std::vector<int64_t> cell_count(static_cast<size_t>(n_cells), 0);
  Scratch<Item> a(n), b(plan.passes ? n : 0);
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = rows[i];
    const int32_t col = cols[i];
    if (row < 0 || row >= n_rows) return kAssembleBadRow;
    if (col < 0 || col >= cell_original.size) return kAssembleBadColumn;
    const int64_t cell = cell_original[col];
    const uint64_t local = static_cast<uint64_t>(cell) - static_cast<uint64_t>(first_cell);
    if (local >= static_cast<uint64_t>(n_cells)) return kAssembleBadCell;
    const uint64_t key = (local << minor_bits) | static_cast<uint64_t>(rank_of_row[row]);
    count_digits(hist.data(), plan, key);
    ++cell_count[local];
    total += entry_hash(static_cast<uint64_t>(genes_of_row[row]), static_cast<uint64_t>(cell),
                        static_cast<uint64_t>(static_cast<int64_t>(values[i])));
    a[i] = T::make(key, values[i]);
  }
  int64_t running = base;
  for (int64_t c = 0; c < n_cells; ++c) {
    running += cell_count[c];
    out_indptr[c + 1] = running;
  }
  // Sorted by (cell, rank), the items are in output order.
  const Item* sorted = radix_sort<T>(a.data(), b.data(), n, plan, hist.data());
  const uint64_t rank_mask = (uint64_t{1} << minor_bits) - 1;
  I* indices = out_indices.data + base;
  D* data = out_data.data + base;
  for (int64_t i = 0; i < n; ++i) {
    const Item item = sorted[i];
    indices[i] = static_cast<I>(gene_of_rank[T::key(item) & rank_mask]);
    data[i] = static_cast<D>(T::value(item));
  }
  *checksum = total;
  return kAssembleOk;
}

template <typename T, typename I, typename D>
int place_by_row_impl(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                      Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                      Span<const int64_t> genes_of_row, Span<int64_t> cursor, Span<const int64_t> limit,
                      Span<I> out_indices, Span<D> out_data, uint64_t* checksum, int minor_bits, int major_bits) {
  using Item = typename T::Item;
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  const RadixPlan plan = plan_for(minor_bits + major_bits);
  std::vector<int64_t> hist(static_cast<size_t>(plan.passes) << plan.digit_bits, 0);
  Scratch<Item> a(n), b(plan.passes ? n : 0);
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = rows[i];
    const int32_t col = cols[i];
    if (row < 0 || row >= n_rows) return kAssembleBadRow;
    if (col < 0 || col >= cell_original.size) return kAssembleBadColumn;
    const int64_t cell = cell_original[col];
    const uint64_t local = static_cast<uint64_t>(cell) - static_cast<uint64_t>(first_cell);
    if (local >= static_cast<uint64_t>(n_cells)) return kAssembleBadCell;
    const uint64_t key = (static_cast<uint64_t>(row) << minor_bits) | local;
    count_digits(hist.data(), plan, key);
    total += entry_hash(static_cast<uint64_t>(genes_of_row[row]), static_cast<uint64_t>(cell),
                        static_cast<uint64_t>(static_cast<int64_t>(values[i])));
    a[i] = T::make(key, values[i]);
  }
  // Sorted by (row, cell): each row's nonzeros are one run, written at the row's cursor.
  const Item* sorted = radix_sort<T>(a.data(), b.data(), n, plan, hist.data());
  const uint64_t cell_mask = (uint64_t{1} << minor_bits) - 1;
  int64_t* cur = cursor.data;
  I* indices = out_indices.data;
  D* data = out_data.data;
  for (int64_t i = 0; i < n; ++i) {
    const Item item = sorted[i];
    const uint64_t key = T::key(item);
    const uint64_t r = key >> minor_bits;
    const int64_t at = cur[r];
    if (at >= limit[r]) return kAssembleRowOverflow;
    cur[r] = at + 1;
    indices[at] = static_cast<I>(first_cell + static_cast<int64_t>(key & cell_mask));
    data[at] = static_cast<D>(T::value(item));
  }
  for (int64_t r = 0; r < n_rows; ++r)
    if (cur[r] != limit[r]) return kAssembleRowOverflow;
  *checksum = total;
  return kAssembleOk;
}

}  // namespace

template <typename I, typename D>
int place_by_cell(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                  Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                  Span<const int64_t> rank_of_row, Span<const int64_t> genes_of_row, int64_t base,
                  Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum) {
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  if (rows.size != n || cols.size != n || rank_of_row.size != n_rows || n_cells < 0 ||
      out_indptr.size < n_cells + 1 || !fits(base, n, out_indices.size) || !fits(base, n, out_data.size))
    return kAssembleBadOutput;
  // Each rank's gene; the ranks must be a permutation of the rows.
  std::vector<int64_t> gene_of_rank(static_cast<size_t>(n_rows), -1);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t k = rank_of_row[r];
    if (k < 0 || k >= n_rows || gene_of_rank[k] != -1) return kAssembleBadTable;
    gene_of_rank[k] = genes_of_row[r];
  }
  const int minor_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_rows - 1, 0)));
  const int major_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_cells - 1, 0)));
  if (minor_bits + major_bits <= 32)
    return place_by_cell_impl<Packed>(rows, cols, values, cell_original, first_cell, n_cells, rank_of_row,
                                      genes_of_row, base, out_indptr, out_indices, out_data, checksum, minor_bits,
                                      major_bits, gene_of_rank);
  return place_by_cell_impl<Wide>(rows, cols, values, cell_original, first_cell, n_cells, rank_of_row, genes_of_row,
                                  base, out_indptr, out_indices, out_data, checksum, minor_bits, major_bits,
                                  gene_of_rank);
}

template <typename I, typename D>
int place_by_row(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                 Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                 Span<const int64_t> genes_of_row, Span<int64_t> cursor, Span<const int64_t> limit,
                 Span<I> out_indices, Span<D> out_data, uint64_t* checksum) {
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  if (rows.size != n || cols.size != n || cursor.size != n_rows || limit.size != n_rows || n_cells < 0)
    return kAssembleBadOutput;
  const int64_t size = std::min(out_indices.size, out_data.size);
  for (int64_t r = 0; r < n_rows; ++r)
    if (cursor[r] < 0 || cursor[r] > limit[r] || limit[r] > size) return kAssembleBadOutput;
  const int minor_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_cells - 1, 0)));
  const int major_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_rows - 1, 0)));
  if (minor_bits + major_bits <= 32)
    return place_by_row_impl<Packed>(rows, cols, values, cell_original, first_cell, n_cells, genes_of_row, cursor,
                                     limit, out_indices, out_data, checksum, minor_bits, major_bits);
  return place_by_row_impl<Wide>(rows, cols, values, cell_original, first_cell, n_cells, genes_of_row, cursor, limit,
                                 out_indices, out_data, checksum, minor_bits, major_bits);
}

template <typename V>
int compact(Span<const int64_t> out_start, Span<const int64_t> counts, Span<int32_t> rows, Span<int32_t> cols,
            Span<V> values, int64_t* kept) {
  const int64_t size = std::min(std::min(rows.size, cols.size), values.size);
  if (counts.size != out_start.size) return kAssembleBadCounts;
  int64_t end = 0;
  for (int64_t t = 0; t < counts.size; ++t) {
    if (out_start[t] < end || !fits(out_start[t], counts[t], size)) return kAssembleBadCounts;
    end = out_start[t] + counts[t];
  }
  int64_t at = 0;
  for (int64_t t = 0; t < counts.size; ++t) {
    const int64_t from = out_start[t], count = counts[t];
    if (count && from != at) {
      std::memmove(rows.data + at, rows.data + from, static_cast<size_t>(count) * sizeof(int32_t));
      std::memmove(cols.data + at, cols.data + from, static_cast<size_t>(count) * sizeof(int32_t));
      std::memmove(values.data + at, values.data + from, static_cast<size_t>(count) * sizeof(V));
    }
    at += count;
  }
  *kept = at;
  return kAssembleOk;
}

int band_tile_ranges(Span2<const int64_t> table_rows, Span2<const int64_t> table_tiles,
                     Span<const int64_t> chunk_base, Span<const int64_t> n_rows, int64_t row, BandTileRanges* out) {
  const int64_t n_chunks = n_rows.size;
  const int64_t width = table_rows.cols;
  if (table_rows.rows != n_chunks || table_tiles.rows != n_chunks || table_tiles.cols != width ||
      chunk_base.size < n_chunks)
    return kAssembleBadTable;
  out->chunks.clear();
  out->bands.clear();
  int64_t total = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    if (row >= n_rows[c]) continue;
    const int64_t* starts = table_rows[c];
    const int64_t b = (std::upper_bound(starts, starts + width, row) - starts) - 1;
    if (b < 0 || b + 1 >= width) return kAssembleBadTable;
    const int64_t first = table_tiles.at(c, b), last = table_tiles.at(c, b + 1);
    if (last < first || first < 0) return kAssembleBadTable;
    out->chunks.push_back(c);
    out->bands.push_back(b);
    total += last - first;
  }
  out->tiles.resize(static_cast<size_t>(total));
  out->pair.resize(static_cast<size_t>(total));
  int64_t at = 0;
  for (size_t i = 0; i < out->chunks.size(); ++i) {
    const int64_t c = out->chunks[i], b = out->bands[i];
    for (int64_t t = table_tiles.at(c, b); t < table_tiles.at(c, b + 1); ++t) {
      out->tiles[at] = chunk_base[c] + t;
      out->pair[at] = static_cast<int64_t>(i);
      ++at;
    }
  }
  return kAssembleOk;
}

// The instantiations the bindings use: output indices int32 or int64; output values of every
// integer and floating type numpy arrays commonly hold.
#define SINR_PLACE(I, D)                                                                                          \
  template int place_by_cell<I, D>(Span<const int32_t>, Span<const int32_t>, Span<const int32_t>,                \
                                   Span<const int64_t>, int64_t, int64_t, Span<const int64_t>, Span<const int64_t>, \
                                   int64_t, Span<int64_t>, Span<I>, Span<D>, uint64_t*);                         \
  template int place_by_row<I, D>(Span<const int32_t>, Span<const int32_t>, Span<const int32_t>,                 \
                                  Span<const int64_t>, int64_t, int64_t, Span<const int64_t>, Span<int64_t>,      \
                                  Span<const int64_t>, Span<I>, Span<D>, uint64_t*);
#define SINR_PLACE_ALL(I)                                                                                         \
  SINR_PLACE(I, int8_t)                                                                                           \
  SINR_PLACE(I, int16_t)                                                                                          \
  SINR_PLACE(I, int32_t)                                                                                          \
  SINR_PLACE(I, int64_t)                                                                                          \
  SINR_PLACE(I, uint8_t)                                                                                          \
  SINR_PLACE(I, uint16_t)                                                                                         \
  SINR_PLACE(I, uint32_t)                                                                                         \
  SINR_PLACE(I, uint64_t)                                                                                         \
  SINR_PLACE(I, float)                                                                                            \
  SINR_PLACE(I, double)
SINR_PLACE_ALL(int32_t)
SINR_PLACE_ALL(int64_t)
#undef SINR_PLACE_ALL
#undef SINR_PLACE

template int compact<int32_t>(Span<const int64_t>, Span<const int64_t>, Span<int32_t>, Span<int32_t>,
                              Span<int32_t>, int64_t*);
template int compact<int64_t>(Span<const int64_t>, Span<const int64_t>, Span<int32_t>, Span<int32_t>,
                              Span<int64_t>, int64_t*);

}  // namespace sinr
