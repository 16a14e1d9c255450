// The tile codec of format 3.0: its encode and decode halves side by side.
//
// Format 3.0's tile streams are specified by spec/sinr-format.md §6 (cited §n below; the rule ids
// T1..T9 and G1..G3 are its §9.3 and §9.4). Format 3 files are what writers write by default; format
// 2's tiles (Appendix C) keep the codec of tile.hpp. tests/test_tile3_native.py holds this codec to
// the spec's independent implementation, spec/tiles3.py: identical tables and stream bytes on every
// tile of real fixtures and of random tiles, the spec's worked example (§13.10), and hostile streams
// failing with the status of the spec's rule.
//
// A tile of n_t = h x w entries has k nonzeros; entry (i, j) has position i*w + j. Its coded set
// is its nonzero positions, or when 2k > n_t its n_t - k zero positions (m of them). Its stream:
// - one rANS state of 32 bits in [2**16, 2**32), 12-bit probabilities, renormalised one 16-bit
//   little-endian word at a time (§6.1); the initial state and the words run forward from byte 0;
// - symbols, in decoding order (§6.7): if m >= 1, the bin (models.hpp's bins) of every gap
//   g = p_i - p_{i-1} - 1 of the coded set under the gap table of the tile's density class (§6.2);
//   unless values are not coded (mode inr-only), the bin of every nonzero's u under the value
//   table of its context, in position order;
// - each bin's offset bits as a raw field of the raw bit string, stored at the end of the stream
//   and read backward from its last byte (bit j is bit j mod 8 of byte len - 1 - j div 8, §6.1.5).
// A tile with m = 0 and (k = 0 or values not coded) has no symbol and an empty stream (§6.7).
// The tables of a chunk (§6.4) come from its counts: 32 gap classes and 96 value contexts, each a
// row of kNumBins counts scaled to 2**12.
//
// Hostile input. decode_tile reads streams and tile shapes it cannot trust; every check of the
// spec is a status (format 2's TileStatus codes, tile.hpp), and nothing is read or written outside
// the spans given:
//   kTruncated        T2 (a stream under 4 bytes, or an initial state below 2**16), T3 (a word
//                     past the stream's end or into the raw bytes taken), T4 (a raw field past the
//                     stream's start or into the words taken); in decode_tiles also a stream whose
//                     bytes lie outside the buffer;
//   kBeyondTile       T5 (a decoded position >= n_t), or a tile shape that contradicts the spans it
//                     indexes (k > n_t, n_t above kMaxTileEntries, too few terms or output room);
//   kBadEnding        T7 (final state not 2**16), T8 (words and raw bits do not meet exactly),
//                     T9 (a padding bit of the last raw byte read is not 0);
//   kUnusedContext    T6 (a value's context has no used table); also a gap class with no used
//                     table, which the chunk rule G2 excludes when the caller has checked it;
//   kUnexpectedBytes  T1 (a tile without symbols has bytes).
// T3 and T4 are checked at every read, so a stream gets the status of the spec's first rule it
// breaks. The chunk rules G1..G3 (count sections) are the caller's. Arguments a caller gets wrong
// whatever the file (table spans of the wrong size, an encoder's invalid tile) throw
// std::invalid_argument.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "sinr/models.hpp"
#include "sinr/span.hpp"
#include "sinr/tile.hpp"

namespace sinr::tile3 {

constexpr int kProbBits = 12;                          // §6.1.1
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kStateLow = 1u << 16;               // 2**16 <= x < 2**32 between symbols
constexpr int kStateBytes = 4;                         // the initial state: words 0 and 1
constexpr int kGapClasses = 32;                        // §6.2, §6.4
constexpr int kContexts = kFineContexts;               // §6.4, §6.5
constexpr uint64_t kCountLimit = uint64_t{1} << 40;    // every count of a section is below (G1, G3)
constexpr int kMaxRawBits = 27;                        // the widest raw field (bin kNumBins - 1)

// One row's 12-bit table (§6.4, §6.1.4). A used row: freq[b] (0 for bins it never codes) summing to
// 4096, start[b] the sum of the freqs before b, and per slot s in 0..4095 the packed entry
// bin | (freq - 1) << 8 | start << 20 of the bin holding s: the decoder's one lookup per symbol.
// An unused row (no count) has used false and freq and start 0; its packed entries are never read
// (build_table leaves them as they were, so that a chunk's many unused rows cost no 16 KiB each).
struct Table12 {
  uint16_t freq[kNumBins];
  uint16_t start[kNumBins];
  uint32_t packed[kProbScale];
  bool used;
};

// The packed entry's fields.
inline uint32_t packed_bin(uint32_t e) { return e & 0xFF; }
inline uint32_t packed_freq(uint32_t e) { return ((e >> 8) & (kProbScale - 1)) + 1; }
inline uint32_t packed_start(uint32_t e) { return e >> 20; }

// §6.4: one row of kNumBins counts (each below kCountLimit, else std::invalid_argument) to its table.
void build_table(const uint64_t* counts, Table12& table);

// A chunk's tables: counts is rows x kNumBins, row-major (rows = kGapClasses for gaps.counts,
// kContexts for values.counts).
std::vector<Table12> build_tables(Span<const uint64_t> counts, int64_t rows);

// One used row of a 12-bit table in compact form (§6.4): the start of every bin (cum[b], with
// cum[kNumBins] = 4096) and, per 16 slots, the bin holding the first of them, from which a symbol
// is found by a short search. 720 bytes a row: a random read touches few cache lines.
struct CompactRow {
  static constexpr int kBucketBits = 4;
  uint16_t cum[kNumBins + 1];
  uint8_t lut[kProbScale >> kBucketBits];
};

// A chunk's decoding tables for the read kernels (§6.4), built once when a reader first uses the
// chunk, from its two count sections; only used rows are kept, in compact form (about 40 KiB a
// chunk: what a reader keeps for every chunk it has touched).
class ChunkTables {
 public:
  // gap_counts kGapClasses x kNumBins, value_counts kContexts x kNumBins or empty (values not
  // coded), row-major; std::invalid_argument on other sizes or a count >= kCountLimit (G1, G3's
  // bound). The sums (G2, G3) are the caller's to check.
  ChunkTables(Span<const uint64_t> gap_counts, Span<const uint64_t> value_counts);
  // The row of a density class or of a context; nullptr when the row is unused (or out of range).
  const CompactRow* gap(int64_t cls) const { return row(cls >= 0 && cls < kGapClasses ? gap_row_[cls] : -1); }
  const CompactRow* value(int64_t ctx) const { return row(ctx >= 0 && ctx < kContexts ? value_row_[ctx] : -1); }
  int64_t bytes() const { return static_cast<int64_t>(rows_.size() * sizeof(CompactRow)); }
  int64_t used_rows() const { return static_cast<int64_t>(rows_.size()); }

 private:
  friend class PackedTables;
  const CompactRow* row(int32_t r) const { return r < 0 ? nullptr : rows_.data() + r; }
  std::vector<CompactRow> rows_;
  int32_t gap_row_[kGapClasses];
  int32_t value_row_[kContexts];
};

// A chunk's tables with one packed entry per slot (Table12::packed, 16 KiB a row): a single lookup
// per symbol and what the lockstep decoder gathers from, for bulk decodes. Built for a call from
// the ChunkTables (4096 entries a used row), so that an open file keeps only the compact rows;
// gaps_only packs the gap rows alone (a count of positions reads no value row: value_index is
// then -1 for every context).
class PackedTables {
 public:
  explicit PackedTables(const ChunkTables& tables, bool gaps_only = false);
  // Its storage goes back to the thread's few spare buffers (PackedTables built again soon, as a
  // cell read's are, then write to pages already in memory).
  ~PackedTables();
  PackedTables(PackedTables&&) = default;
  PackedTables& operator=(PackedTables&&) = delete;
  PackedTables(const PackedTables&) = delete;
  PackedTables& operator=(const PackedTables&) = delete;
  const uint32_t* gap(int64_t cls) const { return row(gap_index(cls)); }
  const uint32_t* value(int64_t ctx) const { return row(value_index(ctx)); }
  // For gathers (the lockstep decoder, lanes3.cpp): every used row's packed entries back to back
  // from packed(), and a row's index there (-1 when unused or out of range): entry `slot` of row r
  // is packed()[r << kProbBits | slot].
  const uint32_t* packed() const { return packed_.data(); }
  int32_t gap_index(int64_t cls) const { return cls >= 0 && cls < kGapClasses ? gap_row_[cls] : -1; }
  int32_t value_index(int64_t ctx) const { return ctx >= 0 && ctx < kContexts ? value_row_[ctx] : -1; }

 private:
  const uint32_t* row(int32_t r) const { return r < 0 ? nullptr : packed_.data() + static_cast<size_t>(r) * kProbScale; }
  std::vector<uint32_t> packed_;  // at least the packed rows' entries (a spare buffer may be longer)
  int32_t gap_row_[kGapClasses];
  int32_t value_row_[kContexts];
};

// §6.2: the density class of a tile of n_t entries coding m >= 1 positions (m <= n_t).
inline int density_class(int64_t n_t, int64_t m) {
  const uint64_t r = n_t <= INT32_MAX  // a 32-bit division where it fits (every tile of a file): 2-3x faster
                         ? static_cast<uint32_t>(n_t - m) / static_cast<uint32_t>(m)
                         : static_cast<uint64_t>((n_t - m) / m);
  const int c = bit_length((r + 1) * (r + 1)) - 1;
  return c < kGapClasses - 1 ? c : kGapClasses - 1;
}

// The coded set's size: k, or n_t - k when more than half the entries are nonzero.
inline int64_t coded_count(int64_t n_t, int64_t k) { return 2 * k <= n_t ? k : n_t - k; }

// G2's right-hand side: the coded positions of a chunk's tiles (n_t entries, k nonzeros each) per
// density class, into out[kGapClasses] (zeroed first). std::invalid_argument on a tile shape the
// geometry cannot give (k < 0 or k > n_t).
void coded_per_class(Span<const int64_t> tile_n, Span<const int64_t> tile_k, int64_t* out);

// §6.5: the baseline context of a nonzero from its gene term and cell term (1/16 nat).
inline int baseline_context(int64_t gene_term, int64_t cell_term) {
  const int64_t kappa = (gene_term + cell_term) >> 1;
  return static_cast<int>(kappa < 0 ? 0 : kappa > kContexts - 1 ? kContexts - 1 : kappa);
}

// The most bytes a stream of `symbols` symbols can take (2 per word, every raw field at its widest).
inline int64_t stream_bound(int64_t symbols) {
  return symbols == 0 ? 0 : kStateBytes + 2 * symbols + (kMaxRawBits * symbols + 7) / 8;
}

// ------------------------------------------------------------------------------------- encode

// Calls f(gap) for each gap g_i = p_i - p_{i-1} - 1 (p_{-1} = -1) of the coded set of a tile of n_t
// entries whose nonzeros are at `positions` (ascending, below n_t: the caller has checked): the
// nonzeros, or when 2k > n_t the zeros, every entry between consecutive nonzeros and after the last.
template <typename F>
void for_each_gap(int64_t n_t, Span<const int32_t> positions, F&& f) {
  const int64_t k = positions.size;
  int64_t previous = -1;
  if (coded_count(n_t, k) == k) {
    for (int64_t i = 0; i < k; ++i) f(positions[i] - previous - 1), previous = positions[i];
    return;
  }
  for (int64_t i = 0, p = 0; p < n_t; ++p) {
    if (i < k && positions[i] == p) {
      ++i;
      continue;
    }
    f(p - previous - 1);
    previous = p;
  }
}

// §6.4: a chunk's gaps.counts from its tiles (tile_n entries and tile_k nonzeros each, their
// positions back to back, ascending in each tile): out[c * kNumBins + bin] (kGapClasses x kNumBins,
// zeroed first) counts the coded gaps of bin `bin` of the tiles of density class c. Throws
// std::invalid_argument as encode_tiles does on a tile that breaks these rules.
void gap_counts(Span<const int64_t> tile_n, Span<const int64_t> tile_k, Span<const int32_t> positions,
                Span<uint64_t> out);

// The most bytes encode_tiles writes for these tiles (stream_bound of each tile's symbols), whose
// nonzeros must be the `nonzeros` given (std::invalid_argument otherwise, as on a tile out of range):
// checked before a caller takes that room.
int64_t tiles_bound(Span<const int64_t> tile_n, Span<const int64_t> tile_k, int64_t nonzeros, bool code_values);

// Encodes tiles, reusing its scratch between them. gap_tables holds kGapClasses rows and
// value_tables kContexts rows (may be empty when values are not coded).
class TileEncoder {
 public:
  TileEncoder(Span<const Table12> gap_tables, Span<const Table12> value_tables);

  // One tile of n_t entries: its k nonzero positions (strictly ascending, below n_t), their u
  // (0 .. kMaxCount - 1) and contexts (0 .. kContexts - 1, each with a used table holding u's bin);
  // code_values false codes the positions only (inr-only: u and contexts are then ignored).
  // Writes the stream to the front of out and returns its length (0: no symbol); throws
  // std::invalid_argument on a tile that breaks these rules or an out shorter than the stream.
  int64_t encode(int64_t n_t, Span<const int32_t> positions, Span<const int32_t> u, Span<const int32_t> contexts,
                 bool code_values, Span<uint8_t> out);

 private:
  Span<const Table12> gaps_, values_;
  std::vector<uint32_t> symbols_;  // the tile's symbols in decoding order: start | freq << 16
  std::vector<uint8_t> raw_;       // their offsets' raw bits, in the same order, 8 a byte
  std::vector<uint16_t> emitted_;  // words, in emission order (the reverse of decoding)
};

// Consecutive tiles (tile_n entries and tile_k nonzeros each, their nonzeros back to back in
// positions, u and contexts) into out, back to back; each stream's length into lengths. Returns
// the bytes written. Throws std::invalid_argument as TileEncoder::encode does.
int64_t encode_tiles(Span<const int64_t> tile_n, Span<const int64_t> tile_k, Span<const int32_t> positions,
                     Span<const int32_t> u, Span<const int32_t> contexts, Span<const Table12> gap_tables,
                     Span<const Table12> value_tables, bool code_values, Span<uint8_t> out, Span<int64_t> lengths);

// ------------------------------------------------------------------------------------- decode

// The 8 bytes at p as a big-endian number (p[7] the least significant byte).
inline uint64_t load_be64(const uint8_t* p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_bswap64(v);
#else
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
#endif
}

// §6.1.2 and §6.1.6: a stream's state, the word bytes taken from the front (pos) and the raw bits
// taken from the back (bits); every read checks that the two areas stay apart inside the stream.
// Shared by decode_tile and the read kernels of tile.cpp.
class StreamReader {
 public:
  StreamReader() = default;
  explicit StreamReader(Span<const uint8_t> s) : s_(s) {}

  // §6.1.2 step 1 (T2).
  bool start() {
    if (s_.size < kStateBytes) return false;
    x_ = uint32_t{s_[0]} | (uint32_t{s_[1]} << 8) | (uint32_t{s_[2]} << 16) | (uint32_t{s_[3]} << 24);
    pos_ = kStateBytes;
    return x_ >= kStateLow;
  }

  // §6.1.2 step 2: one symbol of a used table (its packed entries), its bin into bin; false on T3.
  bool symbol(const uint32_t* packed, uint32_t& bin) {
    const uint32_t slot = x_ & (kProbScale - 1);
    const uint32_t e = packed[slot];
    bin = packed_bin(e);
    x_ = packed_freq(e) * (x_ >> kProbBits) + slot - packed_start(e);
    if (x_ >= kStateLow) return true;
    if (pos_ + 2 + raw_bytes(bits_) > s_.size) return false;  // T3
    x_ = (x_ << 16) | uint32_t{s_[pos_]} | (uint32_t{s_[pos_ + 1]} << 8);
    pos_ += 2;
    return true;
  }

  // The same from a compact row: the bin from the row's bucket, then a short search past the bins
  // that end at or before the slot.
  bool symbol(const CompactRow* row, uint32_t& bin) {
    const uint32_t slot = x_ & (kProbScale - 1);
    uint32_t b = row->lut[slot >> CompactRow::kBucketBits];
    while (row->cum[b + 1] <= slot) ++b;
    bin = b;
    const uint32_t start = row->cum[b];
    x_ = (row->cum[b + 1] - start) * (x_ >> kProbBits) + slot - start;
    if (x_ >= kStateLow) return true;
    if (pos_ + 2 + raw_bytes(bits_) > s_.size) return false;  // T3
    x_ = (x_ << 16) | uint32_t{s_[pos_]} | (uint32_t{s_[pos_ + 1]} << 8);
    pos_ += 2;
    return true;
  }

  // §6.1.5: the next d (0..27) raw bits, least significant first; false on T4. The field's bytes
  // (at most 5: 7 bits of shift and 27 of field) run backward from the first one it touches.
  bool raw(int d, uint32_t& value) {
    value = 0;
    if (d == 0) return true;
    if (pos_ + raw_bytes(bits_ + d) > s_.size) return false;  // T4
    const int shift = static_cast<int>(bits_ & 7);
    const int64_t at = s_.size - 1 - (bits_ >> 3);  // the field's first byte; the rest lie below it
    uint64_t v = 0;
    if (at >= 7) {  // the 8 bytes ending with it, the first the least significant: one load
      v = load_be64(s_.data + at - 7);
    } else {
      const int n = (shift + d + 7) >> 3;
      for (int i = 0; i < n; ++i) v |= uint64_t{s_.data[at - i]} << (8 * i);
    }
    value = static_cast<uint32_t>((v >> shift) & ((uint64_t{1} << d) - 1));
    bits_ += d;
    return true;
  }

  // §6.1.2 step 3 and §6.1.6: T7, T8, T9.
  bool finish() const {
    if (x_ != kStateLow || pos_ + raw_bytes(bits_) != s_.size) return false;
    return (bits_ & 7) == 0 || (s_[s_.size - raw_bytes(bits_)] >> (bits_ & 7)) == 0;
  }

 private:
  static int64_t raw_bytes(int64_t bits) { return (bits + 7) >> 3; }

  Span<const uint8_t> s_;
  uint32_t x_ = kStateLow;  // an empty stream is a finished one (§6.7)
  int64_t pos_ = 0;
  int64_t bits_ = 0;
};

// A tile to decode (§6.7): h x w entries, k nonzeros, its stream; gene_terms[i] is row i's term
// and cell_terms[j] column j's (at least h and w of them when values are coded).
struct TileView {
  Span<const uint8_t> stream;
  int64_t h = 0, w = 0, k = 0;
  Span<const int64_t> gene_terms;
  Span<const int32_t> cell_terms;
};

// Decode a whole tile: its k nonzero positions (ascending) into positions and, when code_values,
// their u into u (each span at least k long). Returns a TileStatus (see above). gap_tables and
// value_tables as TileEncoder's (std::invalid_argument when their sizes are wrong).
int64_t decode_tile(const TileView& tile, Span<const Table12> gap_tables, Span<const Table12> value_tables,
                    bool code_values, Span<int64_t> positions, Span<int64_t> u);

// Tiles of one chunk (all per-tile spans of one length): tile t's stream is buf[offset[t]:
// + length[t]], h[t] x w[t] entries with k[t] nonzeros, its rows' gene terms from gene_terms[row[t]]
// and its columns' cell terms from cell_terms[col[t]]; it writes its positions (and u) from
// out_start[t] on and its status into status[t]. A directory entry that points outside the
// buffer is kTruncated, outside the terms or the output kBeyondTile.
struct TileBatch {
  Span<const int64_t> offset, length, h, w, k, row, col, out_start;
};

void decode_tiles(Span<const uint8_t> buf, const TileBatch& tiles, Span<const int64_t> gene_terms,
                  Span<const int32_t> cell_terms, Span<const Table12> gap_tables, Span<const Table12> value_tables,
                  bool code_values, Span<int64_t> positions, Span<int64_t> u, Span<int64_t> status);

}  // namespace sinr::tile3
