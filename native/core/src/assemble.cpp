// Whole-matrix placing kernels: a chunk's nonzeros put in their final order and written out while
// the content checksum is computed.
//
// Cell-major: the nonzeros are counted per cell (per column, whose cell is fixed, when the chunk's
// columns are a permutation of its cells, as in every valid file), then scattered to their cell's
// range of the chunk's own part of the output (or, for output types narrower than 32 bits, of a
// scratch buffer that a thread keeps from chunk to chunk: PlaceScratch); each cell's range, small
// enough for the L1 cache, is then put in gene-rank order and written over itself in order, with
// the checksum of its nonzeros. Staging in the output spares a read 8 bytes a nonzero of each
// thread's chunk (35 MB at 2.2M-nonzero chunks on two threads) at about the same speed.
// Row-major: the decoder emits a chunk band after band, and a band's rows are a range of rows of
// its own, so each band's nonzeros (a cache-sized segment) are sorted by (row, cell) and each row's
// run is written at its cursor. Were the bands not in order, one sort of the whole chunk by
// (row, cell) does the same.
//
// Sorting is a stable least-significant-digit radix sort whose digit counts are taken while the
// items are built; keys and values travel packed in one 64-bit word when the key fits 32 bits.
// Scattering straight to the output by cell or by row writes to thousands of places at once,
// which defeats hardware prefetching (measured markedly slower).
#include "sinr/assemble.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <type_traits>

#include "sinr/checksum.hpp"
#include "sinr/models.hpp"
#include "sinr/scratch.hpp"
#include "sinr/threads.hpp"

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
constexpr int kSmallDigitBits = 8;  // for ranges sorted inside the L1 cache
constexpr int64_t kInsertionSort = 32;  // below this many items, insertion sort
constexpr int64_t kBitmapKeys = int64_t{1} << 16;  // ordering by bitmap: values by key fit L2

inline int trailing_zeros(uint64_t word) {  // of a nonzero word
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(word);
#else
  int n = 0;
  while (!(word & 1)) {
    word >>= 1;
    ++n;
  }
  return n;
#endif
}

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

RadixPlan plan_for(int bits, int max_digit_bits = kMaxDigitBits) {
  RadixPlan plan;
  if (bits <= 0) return plan;
  plan.passes = (bits + max_digit_bits - 1) / max_digit_bits;
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
  for (int p = 0; p < plan.passes; ++p)
    ++hist[(static_cast<int64_t>(p) << plan.digit_bits) + ((key >> (p * plan.digit_bits)) & mask)];
}

// Sort a[0..n) stably by key: insertion sort for a few items, else a radix sort over `bits` bits
// (b: scratch of n items, hist: scratch of the plan's counts). Returns where the result is.
template <typename T>
typename T::Item* sort_small(typename T::Item* a, typename T::Item* b, int64_t n, const RadixPlan& plan,
                             std::vector<int64_t>& hist) {
  using Item = typename T::Item;
  if (n <= kInsertionSort) {
    for (int64_t i = 1; i < n; ++i) {
      const Item item = a[i];
      const uint64_t key = T::key(item);
      int64_t j = i;
      for (; j > 0 && T::key(a[j - 1]) > key; --j) a[j] = a[j - 1];
      a[j] = item;
    }
    return a;
  }
  std::fill(hist.begin(), hist.end(), 0);
  for (int64_t i = 0; i < n; ++i) count_digits(hist.data(), plan, T::key(a[i]));
  return radix_sort<T>(a, b, n, plan, hist.data());
}

// Ordering by bitmap, for items whose keys are few (below kBitmapKeys) and dense enough: each key is
// marked in a bitmap and its value kept by key, then the marks are read back in ascending order.
// Keys must not repeat (a decoded coordinate twice, never in a valid file): order() then reports
// failure, having emitted nothing, and the caller sorts instead.
class BitmapOrder {
 public:
  explicit BitmapOrder(int64_t keys)
      : marks_(static_cast<size_t>((keys + 63) / 64), 0), values_(static_cast<size_t>(keys)) {}

  // Whether m items with keys below `keys` are worth ordering so rather than sorting.
  static bool worth(int64_t keys, int64_t m) { return keys <= kBitmapKeys && m > kInsertionSort && m * 64 >= keys; }

  // The most keys order() takes.
  int64_t keys() const { return static_cast<int64_t>(values_.size()); }

  // Calls emit(key, value) for items[0..m) in ascending key order (keys below `keys`, at most the
  // constructor's); false, emitting nothing, if a key repeats.
  template <typename T, typename Emit>
  bool order(const typename T::Item* items, int64_t m, int64_t keys, Emit&& emit) {
    return order_by(
        m, keys, [items](int64_t i) { return T::key(items[i]); }, [items](int64_t i) { return T::value(items[i]); },
        emit);
  }

  // The same for item i given as key_of(i) and value_of(i): every item is read before the first
  // is emitted, so emit may overwrite where they came from.
  template <typename KeyOf, typename ValueOf, typename Emit>
  bool order_by(int64_t m, int64_t keys, KeyOf&& key_of, ValueOf&& value_of, Emit&& emit) {
    bool repeated = false;
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t key = static_cast<uint64_t>(key_of(i));
      const uint64_t bit = uint64_t{1} << (key & 63);
      repeated |= (marks_[key >> 6] & bit) != 0;
      marks_[key >> 6] |= bit;
      values_[key] = value_of(i);
    }
    const int64_t n_words = (keys + 63) / 64;
    if (repeated) {
      std::fill(marks_.begin(), marks_.begin() + n_words, 0);
      return false;
    }
    for (int64_t w = 0; w < n_words; ++w) {
      uint64_t word = marks_[w];
      marks_[w] = 0;
      while (word) {
        const int64_t key = w * 64 + trailing_zeros(word);
        word &= word - 1;
        emit(key, values_[key]);
      }
    }
    return true;
  }

 private:
  std::vector<uint64_t> marks_;
  std::vector<int32_t> values_;
};

}  // namespace

// What one thread of place_by_cell keeps for putting cells in rank order.
struct CellOrder {
  Scratch<uint64_t> items, spare;
  Scratch<uint64_t> keys;  // a cell's entry keys and values in output order, for keyed_checksum
  Scratch<int32_t> values;
  std::vector<int64_t> hist;
  std::unique_ptr<BitmapOrder> bitmap;
};

struct PlaceScratch::Parts {
  std::mutex busy;  // held by the call using the parts: a scratch shared by threads is safe, if slow
  Scratch<uint64_t> items;  // the stage, where the output cannot be
  std::vector<int32_t> cell_of_column, column_of_cell;
  std::vector<int64_t> start, column_end;
  std::vector<std::vector<int64_t>> first;  // per thread: its counts, then its first slot, per column
  std::vector<std::unique_ptr<CellOrder>> order;  // per thread
};

PlaceScratch::PlaceScratch() : parts_(std::make_unique<Parts>()) {}
PlaceScratch::~PlaceScratch() = default;

struct RankOrder::Parts {
  int64_t n_ranks = 0;
  RadixPlan plan;
  std::vector<int64_t> hist;
  std::vector<uint64_t> items, spare;
  std::unique_ptr<BitmapOrder> bitmap;
};

RankOrder::RankOrder(int64_t n_ranks) : parts_(std::make_unique<Parts>()) {
  Parts& p = *parts_;
  p.n_ranks = n_ranks;
  p.plan = plan_for(bit_length(static_cast<uint64_t>(std::max<int64_t>(n_ranks - 1, 0))), kSmallDigitBits);
  p.hist.resize(static_cast<size_t>(p.plan.passes) << p.plan.digit_bits);
  if (n_ranks <= kBitmapKeys) p.bitmap = std::make_unique<BitmapOrder>(n_ranks);
}

RankOrder::~RankOrder() = default;

void RankOrder::order(int32_t* ranks, int32_t* values, int64_t m) {
  using T = Packed;
  Parts& p = *parts_;
  p.items.resize(static_cast<size_t>(m));
  p.spare.resize(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) p.items[i] = T::make(static_cast<uint64_t>(ranks[i]), values[i]);
  int64_t to = 0;
  auto emit = [&](int64_t rank, int32_t value) {
    ranks[to] = static_cast<int32_t>(rank);
    values[to++] = value;
  };
  if (p.bitmap && BitmapOrder::worth(p.n_ranks, m) && p.bitmap->order<T>(p.items.data(), m, p.n_ranks, emit)) return;
  const uint64_t* sorted = sort_small<T>(p.items.data(), p.spare.data(), m, p.plan, p.hist);
  for (int64_t i = 0; i < m; ++i) emit(static_cast<int64_t>(T::key(sorted[i])), T::value(sorted[i]));
}

namespace {

template <typename I, typename D>
int place_by_cell_impl(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                       Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                       Span<const int64_t> rank_of_row, Span<const int64_t> genes_of_row, int64_t base,
                       Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                       int rank_bits, const std::vector<int32_t>& rank, const std::vector<int64_t>& gene_of_rank) {
  using T = Packed;  // key: the gene rank, below 2**31
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  const int64_t n_original = cell_original.size;
  // Nonzeros per cell, every index checked.
  std::vector<int64_t> start(static_cast<size_t>(n_cells) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = rows[i];
    const int32_t col = cols[i];
    if (row < 0 || row >= n_rows) return kAssembleBadRow;
    if (col < 0 || col >= n_original) return kAssembleBadColumn;
    const uint64_t local = static_cast<uint64_t>(cell_original[col]) - static_cast<uint64_t>(first_cell);
    if (local >= static_cast<uint64_t>(n_cells)) return kAssembleBadCell;
    ++start[local + 1];
  }
  int64_t largest = 0;
  for (int64_t c = 0; c < n_cells; ++c) {
    largest = std::max(largest, start[c + 1]);
    start[c + 1] += start[c];
  }
  // Each nonzero to its cell's range (cells' ranges in order), the checksum on the way. The checks
  // repeat: another thread could have changed the arrays since.
  Scratch<uint64_t> a(n);
  std::vector<int64_t> at(start.begin(), start.end() - 1);
  uint64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = rows[i];
    const int32_t col = cols[i];
    if (row < 0 || row >= n_rows || col < 0 || col >= n_original) return kAssembleBadRow;
    const int64_t cell = cell_original[col];
    const uint64_t local = static_cast<uint64_t>(cell) - static_cast<uint64_t>(first_cell);
    if (local >= static_cast<uint64_t>(n_cells) || at[local] >= start[local + 1]) return kAssembleBadCell;
    const int32_t value = values[i];
    total += entry_hash(static_cast<uint64_t>(genes_of_row[row]), static_cast<uint64_t>(cell),
                        static_cast<uint64_t>(static_cast<int64_t>(value)));
    a[at[local]++] = T::make(static_cast<uint64_t>(rank[row]), value);
  }
  // Each cell's nonzeros in rank order (by bitmap where ranks are few, else sorted), written in order.
  const RadixPlan plan = plan_for(rank_bits, kSmallDigitBits);
  std::vector<int64_t> hist(static_cast<size_t>(plan.passes) << plan.digit_bits);
  Scratch<uint64_t> b(largest);
  BitmapOrder bitmap(n_rows <= kBitmapKeys ? n_rows : 0);
  I* indices = out_indices.data + base;
  D* data = out_data.data + base;
  for (int64_t c = 0; c < n_cells; ++c) {
    const int64_t lo = start[c], hi = start[c + 1], m = hi - lo;
    out_indptr[c + 1] = base + hi;
    int64_t at = lo;
    auto emit = [&](int64_t k, int32_t value) {
      indices[at] = static_cast<I>(gene_of_rank[k]);
      data[at] = static_cast<D>(value);
      ++at;
    };
    if (BitmapOrder::worth(n_rows, m) && bitmap.order<T>(a.data() + lo, m, n_rows, emit)) continue;
    const uint64_t* sorted = sort_small<T>(a.data() + lo, b.data(), m, plan, hist);
    for (int64_t i = 0; i < m; ++i) emit(static_cast<int64_t>(T::key(sorted[i])), T::value(sorted[i]));
  }
  *checksum = total;
  return kAssembleOk;
}

// Where place_by_cell_columns puts each cell's (rank, value) pairs before ordering them: in the
// chunk's own range of the output, when its index and value types are at least 32 bits wide (the
// rank in the index, the value's bits in the value's first 4 bytes), so that a read needs no
// scratch the size of a chunk; else in `items`, as one word each.
template <typename I, typename D>
class Stage {
 public:
  static constexpr bool kInOutput = sizeof(I) >= sizeof(int32_t) && sizeof(D) >= sizeof(int32_t);
  static constexpr int64_t kAhead = 16;

  Stage(I* indices, D* data, int64_t n, Scratch<uint64_t>& items) : indices_(indices), data_(data), last_(n - 1) {
    if constexpr (!kInOutput) {
      items.reserve(n);
      items_ = items.data();
    }
  }
  void put(int64_t slot, int32_t rank, int32_t value) {
    if constexpr (kInOutput) {
      indices_[slot] = static_cast<I>(rank);
      std::memcpy(reinterpret_cast<char*>(data_ + slot), &value, sizeof value);
    } else {
      items_[slot] = Packed::make(static_cast<uint64_t>(rank), value);
    }
  }
  // Ask for the line kAhead items on from slot (at most the last), for writing: a column's next
  // stores then find it in the cache (the scatter writes to thousands of places, too many for the
  // hardware prefetcher).
  void prefetch(int64_t slot) const {
    const int64_t ahead = std::min(slot + kAhead, last_);
    if constexpr (kInOutput) {
      __builtin_prefetch(indices_ + ahead, 1);
      __builtin_prefetch(data_ + ahead, 1);
    } else {
      __builtin_prefetch(items_ + ahead, 1);
    }
  }
  int32_t rank(int64_t slot) const {
    if constexpr (kInOutput) return static_cast<int32_t>(indices_[slot]);
    return static_cast<int32_t>(Packed::key(items_[slot]));
  }
  int32_t value(int64_t slot) const {
    if constexpr (kInOutput) {
      int32_t value;
      std::memcpy(&value, reinterpret_cast<const char*>(data_ + slot), sizeof value);
      return value;
    }
    return Packed::value(items_[slot]);
  }

 private:
  I* indices_;
  D* data_;
  int64_t last_;  // the last slot
  uint64_t* items_ = nullptr;
};

// The fast path of place_by_cell, for what a valid file decodes to: every column of the chunk's
// window (first_cell .. first_cell + n_cells - 1) holding one of the chunk's cells, each cell in
// one column. Nonzeros are counted per column, then each goes to its column's range of the stage
// as (rank, value) (no lookup of its cell), and each cell's range is put in rank order and written
// out with the checksum of its nonzeros (cell fixed, gene known there).
// Returns -1, having written nothing, when the input needs the general path (a column outside the
// window, columns that are not a permutation of the chunk's cells, a row or column out of range):
// that path then gives the status. The checks of the scatter repeat, as the general path's do.
template <typename I, typename D>
int place_by_cell_columns(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                          Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells, int64_t base,
                          Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                          int rank_bits, const std::vector<int32_t>& rank, const std::vector<int64_t>& gene_of_rank,
                          PlaceScratch::Parts& w, int threads) {
  using T = Packed;
  const int64_t n = values.size;
  const int64_t n_rows = static_cast<int64_t>(rank.size());
  // The index in cell_original of the chunk's first column: the file's table with file-wide columns
  // (Python's reader), or the chunk's own table with chunk-local columns (the container reader's).
  const int64_t col0 = cell_original.size == n_cells ? 0 : first_cell;
  if (first_cell < 0 || n_cells > cell_original.size - col0 || n_cells >= INT32_MAX) return -1;
  // Each column's cell (chunk-local), the columns a permutation of the cells.
  w.cell_of_column.resize(static_cast<size_t>(n_cells));
  w.column_of_cell.assign(static_cast<size_t>(n_cells), -1);
  for (int64_t q = 0; q < n_cells; ++q) {
    const uint64_t local = static_cast<uint64_t>(cell_original[col0 + q]) - static_cast<uint64_t>(first_cell);
    if (local >= static_cast<uint64_t>(n_cells) || w.column_of_cell[local] >= 0) return -1;
    w.cell_of_column[q] = static_cast<int32_t>(local);
    w.column_of_cell[local] = static_cast<int32_t>(q);
  }
  // Thread p counts and scatters nonzeros n p / P .. n (p + 1) / P - 1 and orders the cells whose
  // nonzeros begin in that range of the output.
  const int n_threads = static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, n / kThreadNonzeros)));
  const auto nonzero_of = [&](int p) { return n * p / n_threads; };
  w.first.resize(static_cast<size_t>(n_threads));
  while (static_cast<int>(w.order.size()) < n_threads) w.order.push_back(std::make_unique<CellOrder>());
  // Nonzeros per column, every index checked.
  const uint64_t window = static_cast<uint64_t>(n_cells);
  std::atomic<bool> declined{false};
  run_on_threads(n_threads, [&](int p) {
    std::vector<int64_t>& at = w.first[p];
    at.assign(static_cast<size_t>(n_cells), 0);
    for (int64_t i = nonzero_of(p), end = nonzero_of(p + 1); i < end; ++i) {
      const uint32_t row = static_cast<uint32_t>(rows[i]);
      const uint64_t q = static_cast<uint64_t>(static_cast<int64_t>(cols[i]) - col0);
      if (row >= static_cast<uint64_t>(n_rows) || q >= window) {
        declined = true;
        return;
      }
      ++at[q];
    }
  });
  if (declined) return -1;
  // Cells' ranges in cell order; each thread's first slot in each column (its counts replaced), and
  // where the column ends.
  w.start.resize(static_cast<size_t>(n_cells) + 1);
  w.column_end.resize(static_cast<size_t>(n_cells));
  int64_t* start = w.start.data();
  start[0] = 0;
  for (int64_t c = 0; c < n_cells; ++c) {
    const int64_t q = w.column_of_cell[c];
    int64_t at = start[c];
    for (int p = 0; p < n_threads; ++p) {
      const int64_t count = w.first[p][q];
      w.first[p][q] = at;
      at += count;
    }
    start[c + 1] = at;
    w.column_end[q] = at;
  }
  // Each nonzero to its cell's range of the stage as (rank, value). What the loop reads is copied
  // into locals first: the stage's stores may alias anything (a value's bytes), and would make the
  // compiler load every captured pointer again for each nonzero.
  const int32_t* rank_of = rank.data();
  I* indices = out_indices.data + base;
  D* data = out_data.data + base;
  Stage<I, D> stage(indices, data, n, w.items);
  std::atomic<int> failed{kAssembleOk};
  run_on_threads(n_threads, [&](int p) {
    std::vector<int64_t> next(w.first[p]);
    int64_t* const at = next.data();
    const int64_t* const end = p + 1 < n_threads ? w.first[p + 1].data() : w.column_end.data();
    const int32_t* const row_of = rows.data;
    const int32_t* const col_of = cols.data;
    const int32_t* const value_of = values.data;
    const int32_t* const rank_of_row = rank_of;
    const uint64_t rows_n = static_cast<uint64_t>(n_rows), columns = window;
    const int64_t first_col = col0;
    Stage<I, D> out = stage;
    for (int64_t i = nonzero_of(p), stop = nonzero_of(p + 1); i < stop; ++i) {
      const uint32_t row = static_cast<uint32_t>(row_of[i]);
      const uint64_t q = static_cast<uint64_t>(static_cast<int64_t>(col_of[i]) - first_col);
      if (row >= rows_n || q >= columns) {  // changed since counted
        failed = kAssembleBadRow;
        return;
      }
      const int64_t slot = at[q]++;
      if (slot >= end[q]) {
        failed = kAssembleBadCell;
        return;
      }
      out.put(slot, rank_of_row[row], value_of[i]);
      out.prefetch(slot);
    }
  });
  if (failed != kAssembleOk) return failed;
  // Each cell's nonzeros in rank order (by bitmap where ranks are few, else sorted), written in
  // order with their checksum (over the stage's copy when the stage is the output).
  int64_t largest = 0;
  for (int64_t c = 0; c < n_cells; ++c) largest = std::max(largest, start[c + 1] - start[c]);
  const RadixPlan plan = plan_for(rank_bits, kSmallDigitBits);
  const int64_t* genes = gene_of_rank.data();
  std::vector<uint64_t> totals(static_cast<size_t>(n_threads), 0);
  const auto cell_of = [&](int p) { return std::lower_bound(start, start + n_cells, nonzero_of(p)) - start; };
  run_on_threads(n_threads, [&](int p) {
    CellOrder& o = *w.order[p];
    o.hist.resize(static_cast<size_t>(plan.passes) << plan.digit_bits);
    o.spare.reserve(largest);
    o.items.reserve(largest);
    o.keys.reserve(largest);
    o.values.reserve(largest);
    if (n_rows <= kBitmapKeys && (!o.bitmap || o.bitmap->keys() < n_rows)) o.bitmap = std::make_unique<BitmapOrder>(n_rows);
    uint64_t total = 0;
    for (int64_t c = p == 0 ? 0 : cell_of(p), stop = p + 1 == n_threads ? n_cells : cell_of(p + 1); c < stop; ++c) {
      const int64_t lo = start[c], hi = start[c + 1], m = hi - lo;
      out_indptr[c + 1] = base + hi;
      const uint64_t cell = static_cast<uint64_t>(first_cell + c);
      int64_t to = lo;
      uint64_t* const keys = o.keys.data();
      int32_t* const kept = o.values.data();
      auto emit = [&](int64_t k, int32_t value) {
        const int64_t gene = genes[k];
        keys[to - lo] = entry_key(static_cast<uint64_t>(gene), cell);
        kept[to - lo] = value;
        indices[to] = static_cast<I>(gene);
        data[to] = static_cast<D>(value);
        ++to;
      };
      if (!BitmapOrder::worth(n_rows, m) ||
          !o.bitmap->order_by(
              m, n_rows, [&](int64_t i) { return stage.rank(lo + i); }, [&](int64_t i) { return stage.value(lo + i); },
              emit)) {
        uint64_t* items = o.items.data();
        for (int64_t i = 0; i < m; ++i) items[i] = T::make(static_cast<uint64_t>(stage.rank(lo + i)), stage.value(lo + i));
        const uint64_t* sorted = sort_small<T>(items, o.spare.data(), m, plan, o.hist);
        for (int64_t i = 0; i < m; ++i) emit(static_cast<int64_t>(T::key(sorted[i])), T::value(sorted[i]));
      }
      total += keyed_checksum(o.keys.data(), o.values.data(), m);
    }
    totals[p] = total;
  });
  uint64_t total = 0;
  for (const uint64_t t : totals) total += t;
  *checksum = total;
  return kAssembleOk;
}

// A run of decoded nonzeros [lo, hi) whose rows all lie in row0 .. row0 + rows - 1.
struct Segment {
  int64_t lo, hi, row0, rows;
};

// Whether band_rows holds one band or more, its starts ascending within 0 .. n_rows.
bool bands_fit(Span<const int64_t> band_rows, int64_t n_rows) {
  const int64_t n_bands = band_rows.size - 1;
  if (n_bands < 1 || band_rows[0] < 0 || band_rows[n_bands] > n_rows) return false;
  for (int64_t b = 0; b < n_bands; ++b)
    if (band_rows[b + 1] < band_rows[b]) return false;
  return true;
}

// Cut the nonzeros into bands' runs: band b holds rows band_rows[b] .. band_rows[b + 1] - 1 and the
// decoder emits the bands in order. Empty if the rows do not follow that order (or bands are
// inconsistent): the caller then takes the bands' rows as one run.
std::vector<Segment> band_segments(Span<const int32_t> rows, Span<const int64_t> band_rows, int64_t n_rows) {
  std::vector<Segment> segments;
  const int64_t n_bands = band_rows.size - 1;
  if (!bands_fit(band_rows, n_rows)) return segments;
  int64_t b = 0, lo = 0;
  for (int64_t i = 0; i < rows.size; ++i) {
    const int64_t row = rows[i];
    if (row < band_rows[b + 1]) {
      if (row >= band_rows[b]) continue;
      segments.clear();  // a row of an earlier band
      return segments;
    }
    if (i > lo) segments.push_back({lo, i, band_rows[b], band_rows[b + 1] - band_rows[b]});
    lo = i;
    while (b < n_bands && row >= band_rows[b + 1]) ++b;
    if (b == n_bands) {  // beyond the last band
      segments.clear();
      return segments;
    }
  }
  if (rows.size > lo) segments.push_back({lo, rows.size, band_rows[b], band_rows[b + 1] - band_rows[b]});
  return segments;
}

// Whether rows' output ranges [cursor[r], limit[r]) are apart, checked in the order of their genes
// (the reader's ranges ascend by gene): threads placing different rows then never write to the same
// place. False for what cannot be checked so cheaply (genes repeated, negative or far above the
// row count), which is then placed on one thread.
bool rows_write_apart(Span<const int64_t> genes_of_row, Span<const int64_t> cursor, Span<const int64_t> limit) {
  const int64_t n_rows = genes_of_row.size;
  int64_t most = -1;
  for (int64_t r = 0; r < n_rows; ++r) {
    if (genes_of_row[r] < 0) return false;
    most = std::max(most, genes_of_row[r]);
  }
  if (most >= 8 * n_rows + 1024) return false;
  std::vector<int32_t> row_of_gene(static_cast<size_t>(most + 1), -1);
  for (int64_t r = 0; r < n_rows; ++r) {
    int32_t& row = row_of_gene[static_cast<size_t>(genes_of_row[r])];
    if (row >= 0) return false;
    row = static_cast<int32_t>(r);
  }
  int64_t end = INT64_MIN;
  for (const int32_t r : row_of_gene) {
    if (r < 0 || cursor[r] == limit[r]) continue;
    if (cursor[r] < end) return false;
    end = limit[r];
  }
  return true;
}

// Segments [s0, s1) of place_by_row: their rows' nonzeros in place, the checksum of theirs into
// *checksum. Segments hold disjoint rows, so threads may place different segments at once.
template <typename T, typename I, typename D>
int place_by_row_impl(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                      Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                      Span<const int64_t> genes_of_row, Span<int64_t> cursor, Span<const int64_t> limit,
                      Span<I> out_indices, Span<D> out_data, uint64_t* checksum, const std::vector<Segment>& all,
                      size_t s0, size_t s1, int cell_bits) {
  using Item = typename T::Item;
  const Span<const Segment> segments{all.data() + s0, static_cast<int64_t>(s1 - s0)};
  int64_t largest = 0;
  for (const Segment& seg : segments) largest = std::max(largest, seg.hi - seg.lo);
  Scratch<Item> a(largest), b(largest);
  Scratch<uint64_t> entry_keys(largest);  // a segment's, for keyed_checksum
  std::vector<int64_t> hist;
  BitmapOrder bitmap(kBitmapKeys);
  const int64_t n_original = cell_original.size;
  const uint64_t cell_mask = (uint64_t{1} << cell_bits) - 1;
  int64_t* cur = cursor.data;
  I* indices = out_indices.data;
  D* data = out_data.data;
  const int64_t size = std::min(out_indices.size, out_data.size);
  uint64_t total = 0;
  for (const Segment& seg : segments) {
    const int64_t m = seg.hi - seg.lo;
    const RadixPlan plan = plan_for(bit_length(static_cast<uint64_t>(std::max<int64_t>(seg.rows - 1, 0))) + cell_bits);
    const int64_t keys = seg.rows << cell_bits;
    const bool by_bitmap = std::is_same_v<T, Packed> && BitmapOrder::worth(keys, m);
    hist.assign(static_cast<size_t>(plan.passes) << plan.digit_bits, 0);
    // Each nonzero's sort key and its entry key (checksummed after the loop, on SIMD lanes), its
    // digits counted only for a sort: two copies of the loop, each with what it reads in locals.
    const auto keyed = [&, rows = rows.data + seg.lo, cols = cols.data + seg.lo, values = values.data + seg.lo,
                        cells = cell_original.data, genes = genes_of_row.data, items = a.data(),
                        entry = entry_keys.data(), row0 = seg.row0,
                        n_seg_rows = static_cast<uint64_t>(seg.rows)](auto counting) {
      for (int64_t i = 0; i < m; ++i) {
        const int32_t row = rows[i];
        const int32_t col = cols[i];
        const uint64_t local_row = static_cast<uint64_t>(static_cast<int64_t>(row) - row0);
        if (local_row >= n_seg_rows) return kAssembleBadRow;
        if (col < 0 || col >= n_original) return kAssembleBadColumn;
        const int64_t cell = cells[col];
        const uint64_t local = static_cast<uint64_t>(cell) - static_cast<uint64_t>(first_cell);
        if (local >= static_cast<uint64_t>(n_cells)) return kAssembleBadCell;
        const uint64_t key = (local_row << cell_bits) | local;
        if constexpr (decltype(counting)::value) count_digits(hist.data(), plan, key);
        entry[i] = entry_key(static_cast<uint64_t>(genes[row]), static_cast<uint64_t>(cell));
        items[i] = T::make(key, values[i]);
      }
      total += keyed_checksum(entry, values, m);
      return kAssembleOk;
    };
    const int status = by_bitmap ? keyed(std::false_type{}) : keyed(std::true_type{});
    if (status != kAssembleOk) return status;
    // In (row, cell) order (by bitmap where the band's keys are few, else sorted): each row's
    // nonzeros are one run, written from the row's cursor, which is held in a register while the
    // run lasts (not stored and loaded again for each nonzero) and stored when it ends.
    bool overflow = false;
    int64_t run_row = -1, at = 0, run_end = 0;
    auto emit = [&](uint64_t key, int32_t value) {
      const int64_t r = seg.row0 + static_cast<int64_t>(key >> cell_bits);
      if (r != run_row) {
        if (run_row >= 0) cur[run_row] = at;
        run_row = r;
        at = cur[r];
        // Bounded by the output too: the cursors were checked, but another thread could change them.
        run_end = at < 0 ? at : std::min(limit[r], size);
      }
      if (at >= run_end) {
        overflow = true;
        return;
      }
      indices[at] = static_cast<I>(first_cell + static_cast<int64_t>(key & cell_mask));
      data[at] = static_cast<D>(value);
      ++at;
    };
    if (by_bitmap) {
      if (bitmap.order<T>(a.data(), m, keys, emit)) {
        if (run_row >= 0) cur[run_row] = at;
        if (overflow) return kAssembleRowOverflow;
        continue;
      }
      for (int64_t i = 0; i < m; ++i) count_digits(hist.data(), plan, T::key(a[i]));  // a key repeats: sort
    }
    const Item* sorted = radix_sort<T>(a.data(), b.data(), m, plan, hist.data());
    for (int64_t i = 0; i < m && !overflow; ++i) emit(T::key(sorted[i]), T::value(sorted[i]));
    if (run_row >= 0) cur[run_row] = at;
    if (overflow) return kAssembleRowOverflow;
  }
  *checksum = total;
  return kAssembleOk;
}

}  // namespace

template <typename I, typename D>
int place_by_cell(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                  Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                  Span<const int64_t> rank_of_row, Span<const int64_t> genes_of_row, int64_t base,
                  Span<int64_t> out_indptr, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                  PlaceScratch* scratch, int threads) {
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  if (rows.size != n || cols.size != n || rank_of_row.size != n_rows || n_cells < 0 ||
      out_indptr.size < n_cells + 1 || !fits(base, n, out_indices.size) || !fits(base, n, out_data.size))
    return kAssembleBadOutput;
  // Each row's rank and each rank's gene, copied once checked (the ranks must be a permutation of
  // the rows): what the kernel reads later cannot change under it.
  if (n_rows > INT32_MAX) return kAssembleBadTable;
  std::vector<int32_t> rank(static_cast<size_t>(n_rows));
  std::vector<int64_t> gene_of_rank(static_cast<size_t>(n_rows));
  std::vector<char> seen(static_cast<size_t>(n_rows), 0);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t k = rank_of_row[r];
    if (k < 0 || k >= n_rows || seen[k]) return kAssembleBadTable;
    seen[k] = 1;
    rank[r] = static_cast<int32_t>(k);
    gene_of_rank[k] = genes_of_row[r];
  }
  const int rank_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_rows - 1, 0)));
  std::optional<PlaceScratch> own;  // only when the caller keeps none
  PlaceScratch::Parts& parts = (scratch ? *scratch : own.emplace()).parts();
  std::lock_guard<std::mutex> hold(parts.busy);
  const int status = place_by_cell_columns(rows, cols, values, cell_original, first_cell, n_cells, base, out_indptr,
                                           out_indices, out_data, checksum, rank_bits, rank, gene_of_rank, parts,
                                           threads);
  if (status >= 0) return status;
  return place_by_cell_impl(rows, cols, values, cell_original, first_cell, n_cells, rank_of_row, genes_of_row, base,
                            out_indptr, out_indices, out_data, checksum, rank_bits, rank, gene_of_rank);
}

template <typename I, typename D>
int place_by_row(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int32_t> values,
                 Span<const int64_t> cell_original, int64_t first_cell, int64_t n_cells,
                 Span<const int64_t> genes_of_row, Span<int64_t> cursor, Span<const int64_t> limit,
                 Span<const int64_t> band_rows, Span<I> out_indices, Span<D> out_data, uint64_t* checksum,
                 int threads) {
  const int64_t n = values.size;
  const int64_t n_rows = genes_of_row.size;
  if (rows.size != n || cols.size != n || cursor.size != n_rows || limit.size != n_rows || n_cells < 0)
    return kAssembleBadOutput;
  const int64_t size = std::min(out_indices.size, out_data.size);
  // The rows this call places, the only cursors it reads, checks and leaves at their limits: those of
  // band_rows' bands where they fit (a gene-major read may place a chunk's bands in parts, on other
  // threads at once), else every row. A nonzero of another row is refused (kAssembleBadRow).
  int64_t first_row = 0, end_row = n_rows;
  if (bands_fit(band_rows, n_rows)) {
    first_row = band_rows[0];
    end_row = band_rows[band_rows.size - 1];
  }
  for (int64_t r = first_row; r < end_row; ++r)
    if (cursor[r] < 0 || cursor[r] > limit[r] || limit[r] > size) return kAssembleBadOutput;
  std::vector<Segment> segments = band_segments(rows, band_rows, n_rows);
  if (segments.empty() && n) segments.push_back({0, n, first_row, end_row - first_row});
  int64_t tallest = 1;
  for (const Segment& seg : segments) tallest = std::max(tallest, seg.rows);
  const int cell_bits = bit_length(static_cast<uint64_t>(std::max<int64_t>(n_cells - 1, 0)));
  const bool packed = bit_length(static_cast<uint64_t>(tallest - 1)) + cell_bits <= 32;
  // Thread p places the segments that begin in nonzeros n p / P .. n (p + 1) / P - 1.
  const int n_threads =
      threads > 1 && n_rows <= INT32_MAX &&
              rows_write_apart(genes_of_row.sub(first_row, end_row - first_row),
                               Span<const int64_t>{cursor.data + first_row, end_row - first_row},
                               limit.sub(first_row, end_row - first_row))
          ? static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, n / kThreadNonzeros)))
          : 1;
  std::vector<size_t> first(static_cast<size_t>(n_threads) + 1, segments.size());
  for (int p = 0; p < n_threads; ++p) {
    const int64_t from = n * p / n_threads;
    first[p] = std::lower_bound(segments.begin(), segments.end(), from,
                                [](const Segment& seg, int64_t i) { return seg.lo < i; }) -
               segments.begin();
  }
  std::vector<uint64_t> totals(static_cast<size_t>(n_threads), 0);
  std::vector<int> statuses(static_cast<size_t>(n_threads), kAssembleOk);
  run_on_threads(n_threads, [&](int p) {
    const size_t s0 = first[p], s1 = first[p + 1];
    if (s0 >= s1) return;
    statuses[p] = packed ? place_by_row_impl<Packed>(rows, cols, values, cell_original, first_cell, n_cells,
                                                     genes_of_row, cursor, limit, out_indices, out_data, &totals[p],
                                                     segments, s0, s1, cell_bits)
                         : place_by_row_impl<Wide>(rows, cols, values, cell_original, first_cell, n_cells,
                                                   genes_of_row, cursor, limit, out_indices, out_data, &totals[p],
                                                   segments, s0, s1, cell_bits);
  });
  uint64_t total = 0;
  for (int p = 0; p < n_threads; ++p) {
    if (statuses[p] != kAssembleOk) return statuses[p];
    total += totals[p];
  }
  for (int64_t r = first_row; r < end_row; ++r)
    if (cursor[r] != limit[r]) return kAssembleRowOverflow;
  *checksum = total;
  return kAssembleOk;
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
    if (from < at || !fits(from, count, size)) return kAssembleBadCounts;  // changed since checked
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
  std::vector<int64_t> firsts, lasts;
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
    firsts.push_back(first);
    lasts.push_back(last);
    total += last - first;
  }
  out->tiles.resize(static_cast<size_t>(total));
  out->pair.resize(static_cast<size_t>(total));
  int64_t at = 0;
  for (size_t i = 0; i < out->chunks.size(); ++i) {
    const int64_t c = out->chunks[i];
    for (int64_t t = firsts[i]; t < lasts[i]; ++t) {
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
                                   int64_t, Span<int64_t>, Span<I>, Span<D>, uint64_t*, PlaceScratch*, int);     \
  template int place_by_row<I, D>(Span<const int32_t>, Span<const int32_t>, Span<const int32_t>,                 \
                                  Span<const int64_t>, int64_t, int64_t, Span<const int64_t>, Span<int64_t>,      \
                                  Span<const int64_t>, Span<const int64_t>, Span<I>, Span<D>, uint64_t*, int);
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
