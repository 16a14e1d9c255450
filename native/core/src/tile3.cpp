// Format 3.0's tile codec (see tile3.hpp; spec/sinr-format.md §6).
#include "sinr/tile3.hpp"

#include <algorithm>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace sinr::tile3 {

namespace {

// x / freq for the coder step (§6.1.3), where x < 2**20 freq and 1 <= freq <= 2**12: the high word of
// x times ceil(2**64 / freq) where the compiler has 128-bit products (exact: the error term stays
// below x / 2**64 < 1 / freq), a division elsewhere; the same quotient either way.
#if defined(__SIZEOF_INT128__)
struct Reciprocals {
  uint64_t of[kProbScale + 1];
  Reciprocals() {
    of[0] = of[1] = 0;  // freq 1 divides without one
    for (uint32_t f = 2; f <= kProbScale; ++f) of[f] = ~uint64_t{0} / f + 1;
  }
};

const Reciprocals reciprocals;  // built once, at load: no guard on the coder's path

inline uint32_t quotient(uint32_t x, uint32_t freq) {
  if (freq == 1) return x;
  return static_cast<uint32_t>((static_cast<unsigned __int128>(x) * reciprocals.of[freq]) >> 64);
}
#else
inline uint32_t quotient(uint32_t x, uint32_t freq) { return x / freq; }
#endif

void check_tables(Span<const Table12> gaps, Span<const Table12> values, bool code_values, const char* who) {
  if (gaps.size != kGapClasses || (code_values && values.size != kContexts))
    throw std::invalid_argument(std::string(who) + ": needs 32 gap tables and, when values are coded, 96 value tables");
}

}  // namespace

// ------------------------------------------------------------------------------------- tables

void build_table(const uint64_t* counts, Table12& table) {
  for (int b = 0; b < kNumBins; ++b)
    if (counts[b] >= kCountLimit) throw std::invalid_argument("build_table: a count is not below 2**40");
  std::fill(table.freq, table.freq + kNumBins, uint16_t{0});
  std::fill(table.start, table.start + kNumBins, uint16_t{0});
  int64_t freq[kNumBins];
  table.used = normalised_frequencies(counts, kProbScale, freq);
  if (!table.used) return;  // packed is left as it was: nothing reads it
  uint32_t start = 0;
  for (int b = 0; b < kNumBins; ++b) {
    const uint32_t f = static_cast<uint32_t>(freq[b]);
    table.freq[b] = static_cast<uint16_t>(f);
    table.start[b] = static_cast<uint16_t>(start);
    for (uint32_t s = start; s < start + f; ++s)
      table.packed[s] = static_cast<uint32_t>(b) | ((f - 1) << 8) | (start << 20);
    start += f;
  }
}

std::vector<Table12> build_tables(Span<const uint64_t> counts, int64_t rows) {
  if (rows < 0 || counts.size != rows * kNumBins)
    throw std::invalid_argument("build_tables: counts must hold rows x 231 items");
  std::vector<Table12> tables(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) build_table(counts.data + r * kNumBins, tables[static_cast<size_t>(r)]);
  return tables;
}

namespace {

// One row's compact form (§6.4), unless the row is unused; returns whether it is used.
bool compact_row(const uint64_t* counts, std::vector<CompactRow>& rows) {
  uint64_t any_bits = 0;  // every count is below 2**40 exactly when their OR is
  for (int b = 0; b < kNumBins; ++b) any_bits |= counts[b];
  if (any_bits >= kCountLimit) throw std::invalid_argument("ChunkTables: a count is not below 2**40");
  int64_t freq[kNumBins];
  if (!normalised_frequencies(counts, kProbScale, freq)) return false;
  rows.emplace_back();
  CompactRow& row = rows.back();
  row.cum[0] = 0;
  for (int b = 0; b < kNumBins; ++b) row.cum[b + 1] = static_cast<uint16_t>(row.cum[b] + freq[b]);
  // The bin of slot 16 j is the b with cum[b] <= 16 j < cum[b + 1]: bin b holds the buckets j from
  // ceil(cum[b] / 16) to ceil(cum[b + 1] / 16) - 1 (none when its frequency is 0).
  constexpr uint32_t round_up = (1u << CompactRow::kBucketBits) - 1;
  for (int b = 0; b < kNumBins; ++b) {
    const uint32_t lo = (row.cum[b] + round_up) >> CompactRow::kBucketBits;
    const uint32_t hi = (row.cum[b + 1] + round_up) >> CompactRow::kBucketBits;
    for (uint32_t j = lo; j < hi; ++j) row.lut[j] = static_cast<uint8_t>(b);
  }
  return true;
}

}  // namespace

ChunkTables::ChunkTables(Span<const uint64_t> gap_counts, Span<const uint64_t> value_counts) {
  if (gap_counts.size != kGapClasses * kNumBins || (value_counts.size != 0 && value_counts.size != kContexts * kNumBins))
    throw std::invalid_argument("ChunkTables: needs 32 x 231 gap counts and 0 or 96 x 231 value counts");
  const auto any = [](const uint64_t* counts) { return std::any_of(counts, counts + kNumBins, [](uint64_t c) { return c > 0; }); };
  size_t used = 0;  // the rows kept, allocated once (growing the vector copied every row kept before)
  for (int c = 0; c < kGapClasses; ++c) used += any(gap_counts.data + c * kNumBins);
  for (int c = 0; c < kContexts && value_counts.size; ++c) used += any(value_counts.data + c * kNumBins);
  rows_.reserve(used);
  for (int c = 0; c < kGapClasses; ++c)
    gap_row_[c] = compact_row(gap_counts.data + c * kNumBins, rows_) ? static_cast<int32_t>(rows_.size()) - 1 : -1;
  for (int c = 0; c < kContexts; ++c)
    value_row_[c] = value_counts.size && compact_row(value_counts.data + c * kNumBins, rows_)
                        ? static_cast<int32_t>(rows_.size()) - 1 : -1;
}

namespace {

// Each thread's spare packed-table buffers, at most kSpareBytes of them: building a chunk's packed
// rows (about 1.6 MB) into fresh memory costs its page faults again at every read (the allocator
// returns freed memory to the system), more than a cell read's decoding gains from them.
constexpr size_t kSpareBytes = size_t{16} << 20;
struct Spares {
  std::vector<std::vector<uint32_t>> buffers;
  size_t bytes = 0;
};
thread_local Spares t_spares;

// A buffer of at least n entries (a spare one when there is one large enough).
std::vector<uint32_t> take_spare(size_t n) {
  std::vector<std::vector<uint32_t>>& spare = t_spares.buffers;
  for (size_t i = 0; i < spare.size(); ++i) {
    if (spare[i].size() < n) continue;
    std::vector<uint32_t> out = std::move(spare[i]);
    spare.erase(spare.begin() + static_cast<std::ptrdiff_t>(i));
    t_spares.bytes -= out.capacity() * sizeof(uint32_t);
    return out;
  }
  return std::vector<uint32_t>(n);
}

void give_spare(std::vector<uint32_t>&& buffer) {
  const size_t bytes = buffer.capacity() * sizeof(uint32_t);
  if (bytes == 0 || t_spares.bytes + bytes > kSpareBytes) return;
  t_spares.bytes += bytes;
  t_spares.buffers.push_back(std::move(buffer));
}

}  // namespace

PackedTables::~PackedTables() { give_spare(std::move(packed_)); }

PackedTables::PackedTables(const ChunkTables& tables, bool gaps_only) {
  // the rows packed, in the compact rows' order, and each one's index among them
  const size_t n_rows = tables.rows_.size();
  std::vector<bool> kept(n_rows, !gaps_only);
  for (int32_t r : tables.gap_row_)
    if (r >= 0) kept[static_cast<size_t>(r)] = true;
  std::vector<int32_t> packed_row(n_rows, -1);
  int32_t n_packed = 0;
  for (size_t r = 0; r < n_rows; ++r)
    if (kept[r]) packed_row[r] = n_packed++;
  const auto renumber = [&](int32_t r) { return r < 0 ? -1 : packed_row[static_cast<size_t>(r)]; };
  std::transform(tables.gap_row_, tables.gap_row_ + kGapClasses, gap_row_, renumber);
  std::transform(tables.value_row_, tables.value_row_ + kContexts, value_row_, renumber);
  packed_ = take_spare(static_cast<size_t>(n_packed) * kProbScale);
  for (size_t r = 0; r < n_rows; ++r) {
    if (packed_row[r] < 0) continue;
    const CompactRow& row = tables.rows_[r];
    uint32_t* out = packed_.data() + static_cast<size_t>(packed_row[r]) * kProbScale;
    for (uint32_t b = 0; b < kNumBins; ++b) {
      const uint32_t start = row.cum[b], f = row.cum[b + 1] - start;
      for (uint32_t s = start; s < start + f; ++s) out[s] = b | ((f - 1) << 8) | (start << 20);
    }
  }
}

void coded_per_class(Span<const int64_t> tile_n, Span<const int64_t> tile_k, int64_t* out) {
  if (tile_n.size != tile_k.size) throw std::invalid_argument("coded_per_class: tile_n and tile_k differ in length");
  std::fill(out, out + kGapClasses, int64_t{0});
  for (int64_t t = 0; t < tile_n.size; ++t) {
    const int64_t n = tile_n[t], k = tile_k[t];
    if (k < 0 || k > n) throw std::invalid_argument("coded_per_class: a tile has more nonzeros than entries");
    const int64_t m = coded_count(n, k);
    if (m > 0) out[density_class(n, m)] += m;
  }
}

// ------------------------------------------------------------------------------------- encode

TileEncoder::TileEncoder(Span<const Table12> gap_tables, Span<const Table12> value_tables)
    : gaps_(gap_tables), values_(value_tables) {
  if (gaps_.size != kGapClasses || (values_.size != 0 && values_.size != kContexts))
    throw std::invalid_argument("TileEncoder: needs 32 gap tables and 0 or 96 value tables");
}

int64_t TileEncoder::encode(int64_t n_t, Span<const int32_t> positions, Span<const int32_t> u,
                            Span<const int32_t> contexts, bool code_values, Span<uint8_t> out) {
  const int64_t k = positions.size;
  if (n_t < 0 || n_t > kMaxTileEntries || k > n_t)
    throw std::invalid_argument("tile3 encode: a tile's entries or nonzeros are out of range");
  if (code_values && (u.size != k || contexts.size != k))
    throw std::invalid_argument("tile3 encode: positions, u and contexts differ in length");
  if (code_values && values_.size != kContexts) throw std::invalid_argument("tile3 encode: no value tables");
  for (int64_t i = 0; i < k; ++i)
    if (positions[i] < 0 || positions[i] >= n_t || (i > 0 && positions[i] <= positions[i - 1]))
      throw std::invalid_argument("tile3 encode: a tile's positions are not ascending inside it");
  const int64_t m = coded_count(n_t, k);
  const size_t most = static_cast<size_t>(m + (code_values ? k : 0));
  if (symbols_.size() < most) symbols_.resize(most);
  if (raw_.size() < 4 * most + 8) raw_.resize(4 * most + 8);  // an offset has at most 31 bits
  if (emitted_.size() < most) emitted_.resize(most);            // a word a symbol at most

  // Each symbol queued as start | freq << 16, its offset bits appended to the raw bytes (raw bit j
  // is bit j mod 8 of raw_[j div 8]), in decoding order.
  uint32_t* symbol = symbols_.data();
  uint8_t* raw = raw_.data();
  uint64_t pending = 0;
  int n_pending = 0;
  const auto push = [&](const Table12& table, int64_t v) {
    const Bin b = bin_of(v);
    const uint32_t freq = table.freq[b.bin];
    if (!table.used || freq == 0) throw std::invalid_argument("tile3 encode: a bin has no frequency in its table");
    *symbol++ = table.start[b.bin] | (freq << 16);
    pending |= static_cast<uint64_t>(b.offset) << n_pending;
    for (n_pending += b.bits; n_pending >= 8; n_pending -= 8, pending >>= 8) *raw++ = static_cast<uint8_t>(pending);
  };
  // §6.2: the gaps of the coded set (the nonzeros, or the zeros of a tile more than half full)
  if (m > 0) {
    const Table12& table = gaps_[density_class(n_t, m)];
    for_each_gap(n_t, positions, [&](int64_t gap) { push(table, gap); });
  }
  // §6.3.2: the values in position order
  if (code_values)
    for (int64_t i = 0; i < k; ++i) {
      if (u[i] < 0 || u[i] > kMaxCount - 1 || contexts[i] < 0 || contexts[i] >= kContexts)
        throw std::invalid_argument("tile3 encode: a value or context is out of range");
      push(values_[contexts[i]], u[i]);
    }
  if (n_pending > 0) *raw++ = static_cast<uint8_t>(pending);  // the last byte's padding bits stay 0
  const int64_t n_symbols = symbol - symbols_.data();
  if (n_symbols == 0) return 0;  // §6.7: an empty stream

  // §6.1.3: the coder, from the last symbol to the first
  uint32_t x = kStateLow;
  uint16_t* emitted = emitted_.data();
  for (int64_t i = n_symbols - 1; i >= 0; --i) {
    const uint32_t start = symbols_[static_cast<size_t>(i)] & 0xFFFF, freq = symbols_[static_cast<size_t>(i)] >> 16;
    if (x >= (uint64_t{kStateLow >> kProbBits} << 16) * freq) {  // x >= 2**20 freq: up to 2**32, in 64 bits
      *emitted++ = static_cast<uint16_t>(x & 0xFFFF);
      x >>= 16;
    }
    const uint32_t q = quotient(x, freq);
    x = (q << kProbBits) + (x - q * freq) + start;
  }
  const int64_t raw_bytes = raw - raw_.data();
  const int64_t word_bytes = kStateBytes + 2 * (emitted - emitted_.data());
  const int64_t length = word_bytes + raw_bytes;
  if (out.size < length) throw std::invalid_argument("tile3 encode: out is too small");

  // §6.1.5: words forward (the state, then the words last emitted first), raw bytes backwards from
  // the end (raw bit j is bit j mod 8 of byte length - 1 - j div 8)
  for (int b = 0; b < kStateBytes; ++b) out[b] = static_cast<uint8_t>(x >> (8 * b));
  uint8_t* w = out.data + kStateBytes;
  while (emitted != emitted_.data()) {
    const uint16_t word = *--emitted;
    *w++ = static_cast<uint8_t>(word & 0xFF);
    *w++ = static_cast<uint8_t>(word >> 8);
  }
  std::reverse_copy(raw_.data(), raw, out.data + word_bytes);
  return length;
}

void gap_counts(Span<const int64_t> tile_n, Span<const int64_t> tile_k, Span<const int32_t> positions,
                Span<uint64_t> out) {
  if (tile_k.size != tile_n.size || out.size != kGapClasses * kNumBins)
    throw std::invalid_argument("tile3 gap_counts: tile_n and tile_k differ in length, or out is not 32 x 231");
  std::fill(out.data, out.data + out.size, uint64_t{0});
  int64_t first = 0;
  for (int64_t t = 0; t < tile_n.size; ++t) {
    const int64_t n_t = tile_n[t], k = tile_k[t];
    if (n_t < 0 || n_t > kMaxTileEntries || k < 0 || k > n_t || k > positions.size - first)
      throw std::invalid_argument("tile3 gap_counts: a tile's entries or nonzeros are out of range");
    const Span<const int32_t> tile = positions.sub(first, k);
    for (int64_t i = 0; i < k; ++i)
      if (tile[i] < 0 || tile[i] >= n_t || (i > 0 && tile[i] <= tile[i - 1]))
        throw std::invalid_argument("tile3 gap_counts: a tile's positions are not ascending inside it");
    const int64_t m = coded_count(n_t, k);
    if (m > 0) {
      uint64_t* row = out.data + density_class(n_t, m) * kNumBins;
      for_each_gap(n_t, tile, [&](int64_t gap) { ++row[bin_of(gap).bin]; });
    }
    first += k;
  }
}

namespace {

// Throws unless the tiles' nonzeros (each k >= 0) are exactly the `given` nonzeros.
void check_nonzeros(Span<const int64_t> tile_k, int64_t given, const char* what) {
  int64_t total = 0;
  for (const int64_t k : tile_k) {
    if (k < 0 || k > given - total) throw std::invalid_argument(std::string(what) + ": tiles hold more nonzeros than given");
    total += k;
  }
  if (total != given) throw std::invalid_argument(std::string(what) + ": tiles hold fewer nonzeros than given");
}

}  // namespace

int64_t tiles_bound(Span<const int64_t> tile_n, Span<const int64_t> tile_k, int64_t nonzeros, bool code_values) {
  if (tile_k.size != tile_n.size) throw std::invalid_argument("tile3 tiles_bound: tile_n and tile_k differ in length");
  check_nonzeros(tile_k, nonzeros, "tile3 tiles_bound");
  int64_t bound = 0;
  for (int64_t t = 0; t < tile_n.size; ++t) {
    const int64_t n_t = tile_n[t], k = tile_k[t];
    if (n_t < 0 || n_t > kMaxTileEntries || k > n_t)
      throw std::invalid_argument("tile3 tiles_bound: a tile's entries or nonzeros are out of range");
    bound += stream_bound(coded_count(n_t, k) + (code_values ? k : 0));
  }
  return bound;
}

int64_t encode_tiles(Span<const int64_t> tile_n, Span<const int64_t> tile_k, Span<const int32_t> positions,
                     Span<const int32_t> u, Span<const int32_t> contexts, Span<const Table12> gap_tables,
                     Span<const Table12> value_tables, bool code_values, Span<uint8_t> out, Span<int64_t> lengths) {
  const int64_t n_tiles = tile_n.size;
  if (tile_k.size != n_tiles || lengths.size != n_tiles)
    throw std::invalid_argument("tile3 encode_tiles: tile_n, tile_k and lengths differ in length");
  if (code_values && (u.size != positions.size || contexts.size != positions.size))
    throw std::invalid_argument("tile3 encode_tiles: positions, u and contexts differ in length");
  check_tables(gap_tables, value_tables, code_values, "tile3 encode_tiles");
  check_nonzeros(tile_k, positions.size, "tile3 encode_tiles");
  TileEncoder encoder(gap_tables, code_values ? value_tables : Span<const Table12>{});
  int64_t first = 0, written = 0;
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t k = tile_k[t];
    const Span<const int32_t> none{};
    lengths[t] = encoder.encode(tile_n[t], positions.sub(first, k), code_values ? u.sub(first, k) : none,
                                code_values ? contexts.sub(first, k) : none, code_values,
                                out.sub(written, out.size - written));
    written += lengths[t];
    first += k;
  }
  return written;
}

// ------------------------------------------------------------------------------------- decode


int64_t decode_tile(const TileView& tile, Span<const Table12> gap_tables, Span<const Table12> value_tables,
                    bool code_values, Span<int64_t> positions, Span<int64_t> u) {
  check_tables(gap_tables, value_tables, code_values, "tile3 decode_tile");
  const int64_t h = tile.h, w = tile.w, k = tile.k;
  if (h < 0 || w < 0 || (w > 0 && h > kMaxTileEntries / w)) return kBeyondTile;
  const int64_t n_t = h * w;
  if (k < 0 || k > n_t || positions.size < k || (code_values && (u.size < k || tile.gene_terms.size < h ||
                                                                  tile.cell_terms.size < w)))
    return kBeyondTile;
  const int64_t m = coded_count(n_t, k);
  if (m == 0 && (k == 0 || !code_values)) {  // §6.7: no symbol
    if (tile.stream.size != 0) return kUnexpectedBytes;  // T1
    for (int64_t i = 0; i < k; ++i) positions[i] = i;
    return kOk;
  }
  StreamReader r(tile.stream);
  if (!r.start()) return kTruncated;  // T2
  uint32_t bin, offset;
  if (m > 0) {
    const Table12& table = gap_tables[density_class(n_t, m)];
    if (!table.used) return kUnusedContext;  // excluded by G2
    const uint32_t* const packed = table.packed;
    const bool zeros = 2 * k > n_t;  // the coded set is the zeros, the nonzeros lie between them
    int64_t p = -1, filled = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (!r.symbol(packed, bin)) return kTruncated;                 // T3
      if (!r.raw(kBins.bits[bin], offset)) return kTruncated;        // T4
      const int64_t next = p + kBins.start[bin] + offset + 1;
      if (next >= n_t) return kBeyondTile;                           // T5
      if (zeros) {
        // the entries between two zeros are nonzeros; more than k of them leaves too little room
        // for the zeros still to come, so a later rule (T3, T4 or T5) rejects the tile: stop at k
        const int64_t stop = std::min(next, p + 1 + (k - filled));
        for (int64_t q = p + 1; q < stop; ++q) positions[filled++] = q;
      } else {
        positions[filled++] = next;
      }
      p = next;
    }
    if (zeros)
      for (int64_t q = p + 1; q < n_t; ++q) positions[filled++] = q;
  } else {  // every entry is nonzero: only values are coded
    for (int64_t i = 0; i < k; ++i) positions[i] = i;
  }
  if (code_values)
    for (int64_t i = 0; i < k; ++i) {
      const int64_t p = positions[i];
      const Table12& table = value_tables[baseline_context(tile.gene_terms[p / w], tile.cell_terms[p % w])];
      if (!table.used) return kUnusedContext;                        // T6
      if (!r.symbol(table.packed, bin)) return kTruncated;           // T3
      if (!r.raw(kBins.bits[bin], offset)) return kTruncated;        // T4
      u[i] = kBins.start[bin] + offset;
    }
  return r.finish() ? kOk : kBadEnding;  // T7, T8, T9
}

void decode_tiles(Span<const uint8_t> buf, const TileBatch& tiles, Span<const int64_t> gene_terms,
                  Span<const int32_t> cell_terms, Span<const Table12> gap_tables, Span<const Table12> value_tables,
                  bool code_values, Span<int64_t> positions, Span<int64_t> u, Span<int64_t> status) {
  const int64_t n_tiles = status.size;
  for (const Span<const int64_t>& s : {tiles.offset, tiles.length, tiles.h, tiles.w, tiles.k, tiles.row, tiles.col,
                                       tiles.out_start})
    if (s.size != n_tiles) throw std::invalid_argument("tile3 decode_tiles: the tile arrays differ in length");
  if (code_values && u.size != positions.size)
    throw std::invalid_argument("tile3 decode_tiles: positions and u differ in length");
  check_tables(gap_tables, value_tables, code_values, "tile3 decode_tiles");
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t offset = tiles.offset[t], length = tiles.length[t];
    if (offset < 0 || length < 0 || offset > buf.size || length > buf.size - offset) {
      status[t] = kTruncated;
      continue;
    }
    const int64_t row = tiles.row[t], col = tiles.col[t], start = tiles.out_start[t];
    if (row < 0 || row > gene_terms.size || col < 0 || col > cell_terms.size || start < 0 || start > positions.size) {
      status[t] = kBeyondTile;
      continue;
    }
    TileView tile;
    tile.stream = buf.sub(offset, length);
    tile.h = tiles.h[t];
    tile.w = tiles.w[t];
    tile.k = tiles.k[t];
    tile.gene_terms = gene_terms.sub(row, gene_terms.size - row);
    tile.cell_terms = cell_terms.sub(col, cell_terms.size - col);
    status[t] = decode_tile(tile, gap_tables, value_tables, code_values, positions.sub(start, positions.size - start),
                            code_values ? u.sub(start, u.size - start) : Span<int64_t>{});
  }
}

}  // namespace sinr::tile3
