// The tile codec: encode_tiles, decode_tiles, count_rows, decode_entry (see tile.hpp).
#include "sinr/tile.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "sinr/lanes3.hpp"
#include "sinr/models.hpp"
#include "sinr/rans.hpp"
#include "sinr/siren.hpp"
#include "sinr/threads.hpp"
#include "sinr/tile3.hpp"

namespace sinr {

using rans::kProbBits;
using rans::kProbScale;
using rans::kRansLow;
using rans::Reader;

namespace {

constexpr int kCumColumns = kNumBins + 1;

// Write to out the positions of 0..n-1 not among the first `count` sorted positions; return how
// many. A tile more than half full codes its zeros, so both sides take complements.
template <typename In, typename Out>
int64_t complement(const In* sorted_positions, int64_t count, int64_t n, Out* out) {
  int64_t filled = 0;
  int64_t p = 0;
  for (int64_t idx = 0; idx <= count; ++idx) {
    const int64_t stop = idx < count ? static_cast<int64_t>(sorted_positions[idx]) : n;
    while (p < stop) out[filled++] = static_cast<Out>(p++);
    p = stop + 1;
  }
  return filled;
}

// ------------------------------------------------------------------------------------- encode

struct SymbolSink {
  uint32_t* starts;
  uint32_t* freqs;
  int64_t n;
  int64_t capacity;

  void push(uint32_t start, uint32_t freq) {
    if (n >= capacity) throw std::invalid_argument("encode_tiles: a tile has more symbols than max_symbols");
    starts[n] = start;
    freqs[n] = freq;
    ++n;
  }
};

}  // namespace

namespace rans {

int64_t encode_symbols(const uint32_t* starts, const uint32_t* freqs, int64_t n, uint8_t* scratch, uint8_t* out) {
  if (n == 0) return 0;
  // bytes are emitted backwards into scratch, so that they end up in decoding order
  uint8_t* const scratch_end = scratch + 2 * n;
  uint8_t* emit = scratch_end;
  uint32_t x = kRansLow;
  for (int64_t i = n - 1; i >= 0; --i) {
    const uint32_t freq = freqs[i];
    const uint32_t limit = ((kRansLow >> kProbBits) << 8) * freq;
    while (x >= limit) {
      *--emit = static_cast<uint8_t>(x & 0xFF);
      x >>= 8;
    }
    x = ((x / freq) << kProbBits) + (x % freq) + starts[i];
  }
  for (int b = 0; b < kStateBytes; ++b) out[b] = static_cast<uint8_t>(x >> (8 * b));
  const int64_t emitted = scratch_end - emit;
  std::copy(emit, scratch_end, out + kStateBytes);
  return kStateBytes + emitted;
}

}  // namespace rans

EncodeStats encode_tiles(Span<const int64_t> tile_k, Span<const int64_t> tile_n, Span<const int32_t> positions,
                         Span<const int32_t> u, Span<const int32_t> contexts, Span2<const int64_t> cum,
                         bool code_values, int64_t max_symbols, Span<uint8_t> out, Span<const double> log2_table,
                         Span<int64_t> lengths) {
  const int64_t n_tiles = tile_k.size;
  if (tile_n.size != n_tiles || lengths.size != n_tiles)
    throw std::invalid_argument("encode_tiles: tile_k, tile_n and lengths differ in length");
  if (u.size != positions.size || contexts.size != positions.size)
    throw std::invalid_argument("encode_tiles: positions, u and contexts differ in length");
  if (log2_table.size <= static_cast<int64_t>(kProbScale))
    throw std::invalid_argument("encode_tiles: log2_table needs 2**16 + 1 entries");
  if (code_values && cum.cols < kCumColumns)
    throw std::invalid_argument("encode_tiles: cum needs kNumBins + 1 columns");
  if (max_symbols < 0) throw std::invalid_argument("encode_tiles: negative max_symbols");
  int64_t most_entries = 1;
  for (int64_t t = 0; t < n_tiles; ++t) {
    if (tile_n[t] < 0 || tile_n[t] > kMaxTileEntries || tile_k[t] < 0 || tile_k[t] > tile_n[t])
      throw std::invalid_argument("encode_tiles: a tile's nonzeros or entries are out of range");
    most_entries = std::max(most_entries, tile_n[t]);
  }
  std::vector<uint32_t> starts(static_cast<size_t>(max_symbols) + 1), freqs(static_cast<size_t>(max_symbols) + 1);
  std::vector<uint8_t> scratch(2 * static_cast<size_t>(max_symbols) + 8);
  std::vector<int32_t> zeros(static_cast<size_t>(most_entries));  // positions below kMaxTileEntries
  EncodeStats stats;
  int64_t first = 0;
  int64_t written = 0;
  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t k = tile_k[t];
    const int64_t n = tile_n[t];
    if (k > positions.size - first) throw std::invalid_argument("encode_tiles: tiles hold more nonzeros than given");
    const int32_t* pos = positions.data + first;
    SymbolSink sink{starts.data(), freqs.data(), 0, max_symbols};
    int64_t n_position = 0;
    if (k > 0) {
      for (int64_t idx = 0; idx < k; ++idx)
        if (pos[idx] < 0 || pos[idx] >= n || (idx > 0 && pos[idx] <= pos[idx - 1]))
          throw std::invalid_argument("encode_tiles: a tile's positions are not ascending inside it");
      const int32_t* coded = pos;
      int64_t m = k;
      if (2 * k > n) {  // code the zeros
        m = complement(pos, k, n, zeros.data());
        coded = zeros.data();
      }
      if (m > 0) {
        const int64_t gap_m = golomb_parameter(n, m);
        const bool has_quotients = (n - m) / gap_m > 0;
        int64_t previous = -1;
        for (int64_t idx = 0; idx < m; ++idx) {
          const int64_t gap = coded[idx] - previous - 1;
          previous = coded[idx];
          if (has_quotients) rans::push_quotient(sink, static_cast<uint64_t>(gap / gap_m));
          if (gap_m > 1) rans::push_uniform(sink, static_cast<uint64_t>(gap % gap_m), static_cast<uint64_t>(gap_m));
        }
      }
      n_position = sink.n;
      if (code_values) {
        for (int64_t idx = 0; idx < k; ++idx) {
          const int64_t value = u[first + idx];
          const int64_t ctx = contexts[first + idx];
          if (value < 0 || value > kMaxCount - 1 || ctx < 0 || ctx >= cum.rows)
            throw std::invalid_argument("encode_tiles: a value or context is out of range");
          const Bin b = bin_of(value);
          const int64_t* row = cum[ctx];
          const int64_t start = row[b.bin];
          const int64_t freq = row[b.bin + 1] - start;
          if (start < 0 || freq < 1 || start + freq > kProbScale)
            throw std::invalid_argument("encode_tiles: a value's bin has no frequency in its context");
          sink.push(static_cast<uint32_t>(start), static_cast<uint32_t>(freq));
          if (b.bits > kProbBits) {
            rans::push_bits(sink, static_cast<uint32_t>(b.offset >> kProbBits), b.bits - kProbBits);
            rans::push_bits(sink, static_cast<uint32_t>(b.offset & (kProbScale - 1)), kProbBits);
          } else if (b.bits > 0) {
            rans::push_bits(sink, static_cast<uint32_t>(b.offset), b.bits);
          }
        }
      }
    }
    const int64_t count = sink.n;
    for (int64_t idx = 0; idx < count; ++idx) {
      const double bits = kProbBits - log2_table[freqs[idx]];
      if (idx < n_position)
        stats.position_bits += bits;
      else
        stats.value_bits += bits;
    }
    if (count > 0 && out.size - written < rans::kStateBytes + 2 * count)
      throw std::invalid_argument("encode_tiles: out is too small");
    lengths[t] = rans::encode_symbols(starts.data(), freqs.data(), count, scratch.data(), out.data + written);
    written += lengths[t];
    first += k;
  }
  return stats;
}

// ------------------------------------------------------------------------------------- decode

namespace {

struct TileResult {
  int64_t count;
  int64_t status;
};

// Whether a tile's shape is one the format allows, and its nonzeros fit it.
inline bool shape_ok(int64_t k, int64_t h, int64_t w) {
  return h >= 0 && w >= 0 && (w == 0 || h <= kMaxTileEntries / w) && k >= 0 && k <= h * w;
}

// Whether a used row of a value model is safe for rans::decode_table: cum runs from 0 to 2**16
// without decreasing, and each lut entry names a bin whose start is at or before its slot.
bool row_is_valid(const int32_t* cum, const uint8_t* lut) {
  if (cum[0] != 0 || cum[kNumBins] != static_cast<int32_t>(kProbScale)) return false;
  for (int s = 0; s < kNumBins; ++s)
    if (cum[s + 1] < cum[s]) return false;
  for (int j = 0; j < kLutSize; ++j)
    if (lut[j] >= kNumBins || cum[lut[j]] > (j << 8)) return false;
  return true;
}

#if defined(__GNUC__) || defined(__clang__)
#define SINR_NOINLINE __attribute__((noinline))
#define SINR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SINR_NOINLINE
#define SINR_UNLIKELY(x) (x)
#endif

constexpr BinTables kBinTable{};  // this unit's own copy: addressed directly, not through the GOT

// ---- format 2's tile coding (spec Appendix C): byte-wise rANS, Golomb positions, 48 contexts

// How a tile codes its gaps' remainders: not at all (M = 1), as raw bits (M a power of two up to
// 2**16, where the uniform model is exactly raw bits), or through the uniform model.
enum Remainders { kNoRemainder, kRawBits, kUniform };

// m coded positions of n, as Golomb gaps of parameter gap_m, into coded[:m]; returns a status. The
// loop is compiled for each way of coding quotients and remainders, so that it tests neither per
// position.
template <bool kQuotients, Remainders kRemainders>
int64_t read_gaps(Reader& r, int64_t m, int64_t n, int64_t gap_m, int32_t* coded) {
  const rans::UniformModel model = rans::uniform_model(static_cast<uint64_t>(gap_m));
  const int bits = bit_length(static_cast<uint64_t>(gap_m)) - 1;  // of a power of two
  Reader s = r;  // a local copy: its three words live in registers
  int64_t previous = -1;
  for (int64_t idx = 0; idx < m; ++idx) {
    uint64_t q = 0;
    if (kQuotients && !rans::decode_quotient(s, q)) return kTruncated;
    uint64_t rem = 0;
    if (kRemainders == kRawBits) {
      uint32_t v;
      if (!rans::decode_bits(s, bits, v)) return kTruncated;
      rem = v;
    } else if (kRemainders == kUniform) {
      if (!rans::decode_uniform(s, model, rem)) return kTruncated;
      if (rem >= static_cast<uint64_t>(gap_m)) return kBeyondTile;
    }
    if (q >= static_cast<uint64_t>(n)) return kBeyondTile;  // q * gap_m alone passes the tile's end
    previous += static_cast<int64_t>(q) * gap_m + static_cast<int64_t>(rem) + 1;
    if (previous >= n) return kBeyondTile;
    coded[idx] = static_cast<int32_t>(previous);
  }
  r = s;
  return kOk;
}

template <bool kQuotients>
int64_t read_gaps(Reader& r, int64_t m, int64_t n, int64_t gap_m, int32_t* coded) {
  if (gap_m == 1) return read_gaps<kQuotients, kNoRemainder>(r, m, n, gap_m, coded);
  if (gap_m <= kProbScale && (gap_m & (gap_m - 1)) == 0) return read_gaps<kQuotients, kRawBits>(r, m, n, gap_m, coded);
  return read_gaps<kQuotients, kUniform>(r, m, n, gap_m, coded);
}

// Format 2's coder behind the decoder's interface (see TileDecoder). A model is one chunk's value
// model, its used rows checked on first use in a call (state: 0 unchecked, 1 valid, 2 unusable).
class Format2 {
 public:
  using Stream = Reader;
  struct Model {
    const int32_t* cum;
    const uint8_t* lut;
    const uint8_t* used;
    uint8_t* state;
  };

  explicit Format2(const ValueModels& models) : models_(models) {
    const int64_t rows = std::max<int64_t>(models.n_models, 0) * std::max<int64_t>(models.n_contexts, 0);
    row_state_.assign(static_cast<size_t>(rows), 0);
  }

  bool select(int64_t model, Model& view) {
    if (model < 0 || model >= models_.n_models || models_.n_contexts != kNumContexts) return false;
    view = Model{models_.cum + model * kNumContexts * kCumColumns, models_.lut + model * kNumContexts * kLutSize,
                 models_.used + model * kNumContexts, row_state_.data() + model * kNumContexts};
    return true;
  }
  static bool start(Stream& r, const uint8_t* begin, const uint8_t* end) { return rans::start_decoding(r, begin, end); }
  static Stream empty(const uint8_t* end) { return Reader{kRansLow, end, end}; }
  static bool finished(const Stream& r) { return r.x == kRansLow && r.pos == r.end; }
  static int context(uint64_t term) { return baseline_context(static_cast<int64_t>(term)); }
  static int siren_context(int kind, double offset, double scale, int64_t y) {
    return context_of_output(kind, offset, scale, y);
  }
  static bool value_ok(const Model& model, int ctx) { return model.state[ctx] == 1 || check_context(model, ctx); }

  // The value index u of one nonzero: its bin in its context's table, then its offset bits.
  static bool value(Stream& r, const Model& model, int ctx, int64_t& u) {
    const int32_t* cum = model.cum + ctx * kCumColumns;
    uint32_t b;
    if (!rans::decode_table(r, cum, model.lut + ctx * kLutSize, b)) return false;
    const int bits = kBinTable.bits[b];
    uint32_t offset = 0;
    bool ok = true;
    if (SINR_UNLIKELY(bits > 0)) {
      if (bits > kProbBits) {
        uint32_t high, low = 0;
        ok = rans::decode_bits(r, bits - kProbBits, high) && rans::decode_bits(r, kProbBits, low);
        offset = (high << kProbBits) | low;
      } else {
        ok = rans::decode_bits(r, bits, offset);
      }
    }
    u = kBinTable.start[b] + offset;
    return ok;
  }

  // m >= 1 coded positions of n into coded[:m] (format 2 needs no model for them).
  static int64_t positions(Stream& r, const Model*, int64_t m, int64_t n, int32_t* coded) {
    const int64_t gap_m = golomb_parameter(n, m);
    return (n - m) / gap_m > 0 ? read_gaps<true>(r, m, n, gap_m, coded) : read_gaps<false>(r, m, n, gap_m, coded);
  }

 private:
  // The first use of a context in a call: check its row (out of line, off the loops' fast path).
  SINR_NOINLINE static bool check_context(const Model& model, int ctx) {
    uint8_t s = model.state[ctx];
    if (s == 0) {
      s = model.used[ctx] && row_is_valid(model.cum + ctx * kCumColumns, model.lut + ctx * kLutSize) ? 1 : 2;
      model.state[ctx] = s;
    }
    return s == 1;
  }

  ValueModels models_;
  std::vector<uint8_t> row_state_;
};

// ---- format 3's tile coding (spec §6, §7.2): word-wise rANS with raw bits at the end, gap bins
// by density class, 96 contexts. A model is one chunk's ChunkTables, built by the core from the
// chunk's count sections (so its rows need no check).
template <class Tables>  // tile3::ChunkTables (compact rows) or tile3::PackedTables (a lookup per slot)
class Format3 {
 public:
  using Stream = tile3::StreamReader;
  using Model = const Tables*;

  Format3(const Tables* const* tables, int64_t n_models) : tables_(tables), n_models_(n_models) {}
  const Tables* const* tables() const { return tables_; }
  int64_t n_models() const { return n_models_; }

  bool select(int64_t model, Model& view) const {
    if (tables_ == nullptr || model < 0 || model >= n_models_ || !tables_[model]) return false;
    view = tables_[model];
    return true;
  }
  static bool start(Stream& r, const uint8_t* begin, const uint8_t* end) {
    r = Stream(Span<const uint8_t>{begin, end - begin});
    return r.start();  // T2
  }
  static Stream empty(const uint8_t*) { return Stream(); }
  static bool finished(const Stream& r) { return r.finish(); }  // T7, T8, T9
  static int context(uint64_t term) {  // spec §6.5
    const int64_t kappa = static_cast<int64_t>(term) >> 1;
    return static_cast<int>(kappa < 0 ? 0 : kappa > kFineContexts - 1 ? kFineContexts - 1 : kappa);
  }
  static int siren_context(int kind, double offset, double scale, int64_t y) {  // spec §7.2
    return fine_context_of_output(kind, offset, scale, y);
  }
  static bool value_ok(const Model& model, int ctx) { return model->value(ctx) != nullptr; }  // T6

  static bool value(Stream& r, const Model& model, int ctx, int64_t& u) {
    uint32_t bin, offset;
    if (!r.symbol(model->value(ctx), bin) || !r.raw(kBinTable.bits[bin], offset)) return false;  // T3, T4
    u = kBinTable.start[bin] + offset;
    return true;
  }

  // m >= 1 coded positions of n into coded[:m] (spec §6.2), under the gap table of the tile's class.
  static int64_t positions(Stream& r, const Model* model, int64_t m, int64_t n, int32_t* coded) {
    if (model == nullptr) return kUnusedContext;
    const auto* row = (*model)->gap(tile3::density_class(n, m));
    if (row == nullptr) return kUnusedContext;  // excluded by G2
    Stream s = r;
    int64_t previous = -1;
    uint32_t bin, offset;
    for (int64_t idx = 0; idx < m; ++idx) {
      if (!s.symbol(row, bin) || !s.raw(kBinTable.bits[bin], offset)) return kTruncated;  // T3, T4
      previous += kBinTable.start[bin] + static_cast<int64_t>(offset) + 1;
      if (previous >= n) return kBeyondTile;  // T5
      coded[idx] = static_cast<int32_t>(previous);
    }
    r = s;
    return kOk;
  }

 private:
  const Tables* const* tables_;
  int64_t n_models_;
};

// Everything a batch's tiles share, and the scratch they reuse: sized for the largest tile once,
// never allocated per tile. C is the tile coding (Format2 or Format3).
template <class C>
class TileDecoder {
 public:
  using Stream = typename C::Stream;
  using Model = typename C::Model;

  TileDecoder(C codec, Span<const uint8_t> buf, Span<const int64_t> gene_terms, Span<const int32_t> cell_terms,
              const SirenSet& sirens, int mode, int64_t max_error, const ReadFilter& filter, int64_t max_k)
      : codec_(std::move(codec)), buf_(buf), gene_terms_(gene_terms), cell_terms_(cell_terms), sirens_(sirens),
        mode_(mode), filter_(filter), value_of_(mode, max_error) {
    const int64_t size = std::max<int64_t>(max_k, 1);
    positions_.resize(static_cast<size_t>(size));
    zeros_.resize(static_cast<size_t>(size));
    max_k_ = size;
  }

  template <typename R, typename V>
  TileResult decode(const TileInfo& t, R* out_rows, R* out_cols, V* out_values, int64_t room);

  // Positions only, for count_rows: the tile's coded set (m = coded_count(n, k) >= 1 positions, its
  // nonzeros or, more than half full, its zeros) into positions().
  int64_t coded_only(const TileInfo& t, int64_t n);
  const int32_t* positions() const { return positions_.data(); }

 private:
  int64_t read_positions(Stream& r, const Model* model, int64_t k, int64_t n);
  int64_t last_kept(int64_t lo, int64_t hi, int64_t w, int64_t col0) const;
  bool kept(int64_t idx, int64_t lo, int64_t c) const {
    return idx >= lo && (filter_.want_col < 0 || c == filter_.want_col) &&
           (filter_.col_mask.size == 0 || filter_.col_mask.data[c] != 0);
  }
  bool select_siren(int64_t siren, int& kind, double& offset, double& scale);

  template <bool kFiltered, typename R, typename V>
  TileResult baseline_values(Stream r, const TileInfo& t, const Model* model, int64_t lo, int64_t last, R* out_rows,
                             R* out_cols, V* out_values, int64_t room);
  template <typename R, typename V>
  TileResult siren_values(Stream r, const TileInfo& t, const Model* model, int64_t lo, int64_t hi, R* out_rows,
                          R* out_cols, V* out_values, int64_t room);

  C codec_;
  Span<const uint8_t> buf_;
  Span<const int64_t> gene_terms_;
  Span<const int32_t> cell_terms_;
  SirenSet sirens_;
  int mode_;
  ReadFilter filter_;
  ValueOf value_of_;
  int64_t max_k_;
  std::vector<int32_t> positions_, zeros_;
  std::vector<int32_t> rows_, cols_, contexts_;  // the SIREN path's, sized on first use
  std::vector<uint8_t> keep_;
  SirenEvaluator evaluator_;
  int64_t prepared_siren_ = -1;  // the SIREN evaluator_ holds
};

// The tile's nonzero positions into positions_[:k]; returns a status. k <= n <= kMaxTileEntries.
template <class C>
int64_t TileDecoder<C>::read_positions(Stream& r, const Model* model, int64_t k, int64_t n) {
  int32_t* out = positions_.data();
  const int64_t m = 2 * k <= n ? k : n - k;
  if (m == 0) {
    for (int64_t idx = 0; idx < k; ++idx) out[idx] = static_cast<int32_t>(idx);
    return kOk;
  }
  int32_t* coded = m == k ? out : zeros_.data();
  const int64_t st = C::positions(r, model, m, n, coded);
  if (st != kOk) return st;
  if (m != k) complement(zeros_.data(), m, n, out);  // the nonzeros lie between the coded zeros
  return kOk;
}

// The last of nonzeros lo..hi-1 that a read keeps, -1 if none: values are decoded up to it and no
// further.
template <class C>
int64_t TileDecoder<C>::last_kept(int64_t lo, int64_t hi, int64_t w, int64_t col0) const {
  if (filter_.want_col < 0 && filter_.col_mask.size == 0) return hi > lo ? hi - 1 : -1;
  const int32_t* positions = positions_.data();
  int64_t last = -1;
  int64_t row_end = w;
  for (int64_t idx = lo; idx < hi; ++idx) {
    const int64_t p = positions[idx];
    while (p >= row_end) row_end += w;
    const int64_t c = col0 + p - (row_end - w);
    if ((filter_.want_col < 0 || c == filter_.want_col) &&
        (filter_.col_mask.size == 0 || filter_.col_mask.data[c] != 0))
      last = idx;
  }
  return last;
}

template <class C>
bool TileDecoder<C>::select_siren(int64_t siren, int& kind, double& offset, double& scale) {
  if (siren < 0 || siren >= sirens_.n) return false;
  const int64_t* spec = sirens_.spec + siren * 3;
  const int64_t first_layer = spec[0], n_layers = spec[1];
  if (first_layer < 0 || n_layers < 0 || first_layer > sirens_.n_layer_rows ||
      n_layers > sirens_.n_layer_rows - first_layer)
    return false;
  kind = static_cast<int>(spec[2]);
  offset = sirens_.norm[siren * 2];
  scale = sirens_.norm[siren * 2 + 1];
  if (siren == prepared_siren_) return true;  // consecutive tiles of a band share its SIREN
  prepared_siren_ = -1;
  if (!evaluator_.prepare(SirenNet{sirens_.layers + first_layer * kLayerFields, n_layers, sirens_.params,
                                   sirens_.n_params}))
    return false;
  prepared_siren_ = siren;
  return true;
}

template <class C>
int64_t TileDecoder<C>::coded_only(const TileInfo& t, int64_t n) {
  Model model{};
  const bool have_model = codec_.select(t.model, model);
  Stream r;
  if (!C::start(r, buf_.data + t.start, buf_.data + t.start + t.length)) return kTruncated;
  return C::positions(r, have_model ? &model : nullptr, 2 * t.k <= n ? t.k : n - t.k, n, positions_.data());
}

// The common case in one pass: a baseline band's values, read up to the last one kept. Everything
// the loop reads lives in locals (registers), so that its stores cannot force reloads.
template <class C>
template <bool kFiltered, typename R, typename V>
TileResult TileDecoder<C>::baseline_values(Stream r, const TileInfo& t, const Model* chosen, int64_t lo, int64_t last,
                                           R* out_rows, R* out_cols, V* out_values, int64_t room) {
  const int64_t w = t.w;
  Model model{};
  if (last >= 0) {  // every index below stays inside its array
    if (t.row < 0 || t.row > gene_terms_.size - t.h || t.col < 0 || t.col > cell_terms_.size - w)
      return {0, kBeyondTile};
    if (chosen == nullptr) return {0, kUnusedContext};
    model = *chosen;
  }
  const int32_t* const positions = positions_.data();
  const int64_t* const gene_terms = gene_terms_.data + t.row;
  const int32_t* const cell_terms = cell_terms_.data + t.col;
  const ValueOf value_of = value_of_;
  const int64_t row0 = t.row, col0 = t.col;
  Stream s = r;
  int64_t i = 0;
  int64_t row_start = 0;
  int64_t gene_term = last >= 0 ? gene_terms[0] : 0;
  int64_t count = 0;
  for (int64_t idx = 0; idx <= last; ++idx) {
    const int64_t p = positions[idx];
    while (p >= row_start + w) {
      ++i;
      row_start += w;
      gene_term = gene_terms[i];
    }
    const int64_t j = p - row_start;
    const uint64_t term = static_cast<uint64_t>(gene_term) + static_cast<uint64_t>(cell_terms[j]);  // no overflow UB
    const int ctx = C::context(term);
    if (!C::value_ok(model, ctx)) return {count, kUnusedContext};
    int64_t code;
    if (!C::value(s, model, ctx, code)) return {count, kTruncated};
    if (!kFiltered || kept(idx, lo, col0 + j)) {
      if (SINR_UNLIKELY(count >= room)) return {count, kBeyondTile};
      out_rows[count] = static_cast<R>(row0 + i);
      out_cols[count] = static_cast<R>(col0 + j);
      out_values[count] = static_cast<V>(value_of(code));
      ++count;
    }
  }
  // every symbol read (whatever the first kept: the stream is read from its start): T7, T8, T9
  if (last == t.k - 1 && !C::finished(s)) return {count, kBadEnding};
  return {count, kOk};
}

template <class C>
template <typename R, typename V>
TileResult TileDecoder<C>::siren_values(Stream r, const TileInfo& t, const Model* model, int64_t lo, int64_t hi,
                                        R* out_rows, R* out_cols, V* out_values, int64_t room) {
  int kind;
  double offset, scale;
  if (!select_siren(t.siren, kind, offset, scale)) return {0, kUnusedContext};
  const bool inr_only = mode_ == kModeInrOnly;
  if (!inr_only && t.k > 0 && model == nullptr) return {0, kUnusedContext};
  if (rows_.empty()) {
    rows_.resize(static_cast<size_t>(max_k_));
    cols_.resize(static_cast<size_t>(max_k_));
    contexts_.resize(static_cast<size_t>(max_k_));
    keep_.resize(static_cast<size_t>(max_k_));
  }
  const int64_t last = last_kept(lo, hi, t.w, t.col);
  const int32_t* positions = positions_.data();
  int64_t i = 0;
  int64_t row_end = t.w;
  for (int64_t idx = 0; idx <= last; ++idx) {  // rows, columns, what to keep, contexts (or predictions)
    const int64_t p = positions[idx];
    while (p >= row_end) {
      ++i;
      row_end += t.w;
    }
    const int64_t j = p - (row_end - t.w);
    const int64_t c = t.col + j;
    rows_[idx] = static_cast<int32_t>(i);
    cols_[idx] = static_cast<int32_t>(c);
    keep_[idx] = kept(idx, lo, c);
    if (!inr_only || keep_[idx]) {
      const int64_t y = evaluator_.output(i, t.first + j, t.h, t.cells);
      contexts_[idx] = inr_only ? static_cast<int32_t>(prediction_of_output(kind, offset, scale, y))
                                : C::siren_context(kind, offset, scale, y);
    }
  }
  const bool whole = last == t.k - 1;  // every symbol read, whatever the first kept
  int64_t count = 0;
  for (int64_t idx = 0; idx <= last; ++idx) {
    int64_t value;
    if (inr_only) {
      value = contexts_[idx];
    } else {
      const int ctx = contexts_[idx];
      if (!C::value_ok(*model, ctx)) return {count, kUnusedContext};
      int64_t code;
      if (!C::value(r, *model, ctx, code)) return {count, kTruncated};
      value = value_of_(code);
    }
    if (keep_[idx]) {
      if (count >= room) return {count, kBeyondTile};
      out_rows[count] = static_cast<R>(t.row + rows_[idx]);
      out_cols[count] = static_cast<R>(cols_[idx]);
      out_values[count] = static_cast<V>(value);
      ++count;
    }
  }
  if (whole && !inr_only && !C::finished(r)) return {count, kBadEnding};
  return {count, kOk};
}

// Decode one tile, writing its kept triples to out_*[0: room].
template <class C>
template <typename R, typename V>
TileResult TileDecoder<C>::decode(const TileInfo& t, R* out_rows, R* out_cols, V* out_values, int64_t room) {
  if (t.start < 0 || t.length < 0 || t.start > buf_.size || t.length > buf_.size - t.start) return {0, kTruncated};
  if (!shape_ok(t.k, t.h, t.w) || t.k > max_k_) return {0, kBeyondTile};
  const int64_t n = t.h * t.w;
  const int64_t k = t.k;
  // rows and columns are output as they are (int32 at least): they lie inside the format's limits
  if (k > 0 && (t.row < 0 || t.row > kMaxDimension - t.h || t.col < 0 || t.col > kMaxDimension - t.w))
    return {0, kBeyondTile};
  Model model{};
  const bool have_model = codec_.select(t.model, model);
  const int64_t m = 2 * k <= n ? k : n - k;
  const uint8_t* end = buf_.data + t.start + t.length;
  Stream r;
  if (m == 0 && (k == 0 || mode_ == kModeInrOnly)) {
    if (t.length != 0) return {0, kUnexpectedBytes};
    r = C::empty(end);
  } else if (!C::start(r, buf_.data + t.start, end)) {
    return {0, kTruncated};
  }
  const int64_t st = read_positions(r, have_model ? &model : nullptr, k, n);
  if (st != kOk) return {0, st};
  if (mode_ == kModeInrOnly && m > 0 && !C::finished(r)) return {0, kBadEnding};
  if (k > 0 && filter_.col_mask.size > 0 && (t.col < 0 || t.col > filter_.col_mask.size - t.w))
    return {0, kBeyondTile};
  // which nonzeros to return: [lo, hi) in position order, further filtered by column
  int64_t lo = 0, hi = k;
  if (filter_.want_row >= 0) {
    const int32_t* positions = positions_.data();
    if (filter_.want_row < t.row) {
      hi = 0;
    } else if (filter_.want_row - t.row >= t.h) {
      lo = k;
    } else {
      const int64_t i = filter_.want_row - t.row;
      lo = std::lower_bound(positions, positions + k, static_cast<int32_t>(i * t.w)) - positions;
      hi = std::lower_bound(positions, positions + k, static_cast<int32_t>((i + 1) * t.w)) - positions;
    }
  }
  if (t.siren < 0 && mode_ != kModeInrOnly) {
    const bool whole = filter_.want_col < 0 && filter_.col_mask.size == 0 && lo == 0;
    const int64_t last = whole ? hi - 1 : last_kept(lo, hi, t.w, t.col);
    const Model* chosen = have_model ? &model : nullptr;
    if (whole) return baseline_values<false>(r, t, chosen, lo, last, out_rows, out_cols, out_values, room);
    return baseline_values<true>(r, t, chosen, lo, last, out_rows, out_cols, out_values, room);
  }
  if (t.siren < 0)  // an --inr-only band without a SIREN holds no nonzero (the reader checks)
    return {0, k == 0 ? kOk : kUnusedContext};
  return siren_values(r, t, have_model ? &model : nullptr, lo, hi, out_rows, out_cols, out_values, room);
}

// The most nonzeros of any tile that can be decoded: the scratch's size (a directory entry that
// contradicts its shape gets a status, not memory).
int64_t largest_k(const TileDirectory& tiles) {
  int64_t most = 0;
  for (int64_t t = 0; t < tiles.k.size; ++t)
    if (shape_ok(tiles.k[t], tiles.h[t], tiles.w[t])) most = std::max(most, tiles.k[t]);
  return most;
}

template <class C, typename R, typename V>
void decode_with(C codec, Span<const uint8_t> buf, const TileDirectory& tiles, Span<const int64_t> gene_terms,
                 Span<const int32_t> cell_terms, const SirenSet& sirens, int mode, int64_t max_error,
                 const ReadFilter& filter, Span<const int64_t> out_start, Triples<R, V> out, Span<int64_t> out_count,
                 Span<int64_t> status) {
  const int64_t n_tiles = tiles.k.size;
  const int64_t out_size = std::min(out.rows.size, std::min(out.cols.size, out.values.size));
  const tile3::PackedTables* const* packed = nullptr;  // what the lanes read: the bulk path's tables
  int64_t n_models = 0;
  if constexpr (std::is_same_v<C, Format3<tile3::PackedTables>>) {
    packed = codec.tables();
    n_models = codec.n_models();
  }
  TileDecoder<C> decoder(std::move(codec), buf, gene_terms, cell_terms, sirens, mode, max_error, filter,
                         largest_k(tiles));
  const auto scalar = [&](int64_t t) {
    const TileInfo info{tiles.offset[t], tiles.length[t], tiles.k[t],   tiles.h[t],     tiles.w[t],    tiles.row[t],
                        tiles.col[t],    tiles.first[t],  tiles.cells[t], tiles.model[t], tiles.siren[t]};
    const int64_t start = out_start[t];
    const bool placed = start >= 0 && start <= out_size;
    const TileResult result =
        placed ? decoder.decode(info, out.rows.data + start, out.cols.data + start, out.values.data + start,
                                out_size - start)
               : decoder.decode(info, out.rows.data, out.cols.data, out.values.data, 0);
    out_count[t] = result.count;
    status[t] = result.status;
  };
  // format 3's whole tiles of baseline bands, every column, those col_mask marks or want_col: eight
  // at a time in lockstep (lanes3.hpp)
  if constexpr (std::is_same_v<C, Format3<tile3::PackedTables>>) {
    if (lanes3::takes(filter, mode)) {
      const lanes3::Batch batch{buf,  &tiles,    gene_terms, cell_terms,     packed,         n_models,
                                mode, max_error, out_start,  filter.col_mask, filter.want_col};
      if (lanes3::decode_tiles(batch, out, out_count, status, std::function<void(int64_t)>(scalar))) return;
    }
  }
  for (int64_t t = 0; t < n_tiles; ++t) scalar(t);
}

template <class C>
void count_with(C codec, Span<const uint8_t> buf, const TileDirectory& tiles, Span<int64_t> counts,
                Span<int64_t> status) {
  const int64_t n_tiles = tiles.k.size;
  const tile3::PackedTables* const* packed = nullptr;  // what the lanes read
  int64_t n_models = 0;
  if constexpr (std::is_same_v<C, Format3<tile3::PackedTables>>) {
    packed = codec.tables();
    n_models = codec.n_models();
  }
  TileDecoder<C> decoder(std::move(codec), buf, {}, {}, SirenSet{}, kModeLossless, 0, ReadFilter{}, largest_k(tiles));
  const auto scalar = [&](int64_t t) {
    status[t] = kOk;
    const int64_t k = tiles.k[t], h = tiles.h[t], w = tiles.w[t], row = tiles.row[t];
    if (k == 0) return;
    const int64_t start = tiles.offset[t], length = tiles.length[t];
    if (start < 0 || length < 0 || start > buf.size || length > buf.size - start) {
      status[t] = kTruncated;
      return;
    }
    if (!shape_ok(k, h, w) || row < 0 || row > counts.size - h) {
      status[t] = kBeyondTile;
      return;
    }
    const int64_t n = h * w;
    if (k == n) {
      for (int64_t i = 0; i < h; ++i) counts[row + i] += w;
      return;
    }
    TileInfo info{start, length, k, h, w, row};
    info.model = t < tiles.model.size ? tiles.model[t] : -1;
    const int64_t st = decoder.coded_only(info, n);
    if (st != kOk) {
      status[t] = st;
      return;
    }
    const int64_t m = tile3::coded_count(n, k);
    add_row_counts(decoder.positions(), m, m != k, h, w, counts.data + row);
  };
  // format 3's tiles: eight at a time in lockstep, gaps only (lanes3.hpp)
  if constexpr (std::is_same_v<C, Format3<tile3::PackedTables>>) {
    const lanes3::Batch batch{buf, &tiles, {}, {}, packed, n_models, kModeLossless, 0, {}, {}};
    if (lanes3::count_tiles(batch, counts, status, std::function<void(int64_t)>(scalar))) return;
  }
  for (int64_t t = 0; t < n_tiles; ++t) scalar(t);
}

// Format 3's tables for a batch: the chunks' compact rows (the scalar decoder is fastest on them:
// few cache lines a row), or, when the lockstep decoder can take the batch and it decodes enough
// symbols for its tables' rows (whole chunks: whole-matrix and block reads, and count_rows; see
// set_packed_nnz_per_row), packed rows built for the call, which the lanes gather from: only the
// gap rows when gaps_only (a count reads no value).
std::atomic<int64_t> g_packed_nnz_per_row{128};

template <class Run>
void with_format3(const TileDirectory& tiles, const ValueModels& models, bool lanes, bool gaps_only, Run&& run) {
  // Only the models this call's tiles use: a read split into pieces (reader/decode.py) passes every
  // chunk's tables with each piece of tiles.
  const size_t n_models = static_cast<size_t>(std::max<int64_t>(models.n_models, 0));
  std::vector<char> used(n_models, 0);
  const auto packed_pays = [&] {
    int64_t symbols = 0, rows = 0;  // the symbols the lanes decode (a count's: its coded positions), rows packed
    for (int64_t t = 0; t < tiles.k.size; ++t) {
      const int64_t k = tiles.k[t];
      if (!gaps_only)
        symbols += std::max<int64_t>(k, 0);
      else if (shape_ok(k, tiles.h[t], tiles.w[t]))
        symbols += tile3::coded_count(tiles.h[t] * tiles.w[t], k);
      const int64_t m = t < tiles.model.size ? tiles.model[t] : -1;
      if (m >= 0 && static_cast<size_t>(m) < n_models) used[static_cast<size_t>(m)] = 1;
    }
    for (size_t m = 0; m < n_models; ++m) {
      const tile3::ChunkTables* tables = models.tables3[m];
      if (!used[m] || tables == nullptr) continue;
      if (!gaps_only) rows += tables->used_rows();
      for (int c = 0; gaps_only && c < tile3::kGapClasses; ++c) rows += tables->gap(c) != nullptr;
    }
    return symbols >= g_packed_nnz_per_row.load() * rows;
  };
  if (!lanes || !packed_pays()) {
    run(Format3<tile3::ChunkTables>(models.tables3, models.n_models));
    return;
  }
  std::vector<tile3::PackedTables> packed;
  std::vector<const tile3::PackedTables*> pointers(n_models, nullptr);
  packed.reserve(pointers.size());
  for (size_t m = 0; m < pointers.size(); ++m)
    if (used[m] && models.tables3[m] != nullptr) {
      packed.emplace_back(*models.tables3[m], gaps_only);
      pointers[m] = &packed.back();
    }
  run(Format3<tile3::PackedTables>(pointers.data(), models.n_models));
}

// Tiles lo .. lo + n - 1 of a directory (a field the directory leaves empty stays empty).
TileDirectory tiles_in(const TileDirectory& d, int64_t lo, int64_t n) {
  const auto part = [&](Span<const int64_t> a) { return a.empty() ? a : a.sub(lo, n); };
  return {part(d.offset), part(d.length), part(d.k),     part(d.h),     part(d.w),    part(d.row),
          part(d.col),    part(d.first),  part(d.cells), part(d.model), part(d.siren)};
}

// Where to cut tiles of k nonzeros each into at most `runs` runs of about equal nonzeros (none
// empty): 0, the cuts, then the tile count. A tile's nonzeros count as at least 1 (a directory's
// k is not trusted here: the decoder checks it).
std::vector<int64_t> work_runs(Span<const int64_t> k, int runs) {
  const int64_t n = k.size;
  std::vector<int64_t> cuts{0};
  if (runs > 1 && n > 1) {
    std::vector<int64_t> before(static_cast<size_t>(n) + 1, 0);
    for (int64_t t = 0; t < n; ++t)
      before[t + 1] = before[t] + std::clamp<int64_t>(k[t], 1, int64_t{1} << 32);
    for (int p = 1; p < runs; ++p) {
      const int64_t target = before[n] / runs * p + before[n] % runs * p / runs;
      const int64_t cut = std::lower_bound(before.begin(), before.end(), target) - before.begin();
      if (cut > cuts.back() && cut < n) cuts.push_back(cut);
    }
  }
  cuts.push_back(n);
  return cuts;
}

// Whether the runs cuts[p] .. cuts[p + 1] - 1 write to disjoint parts of the output, so that threads
// decoding them cannot race (and give what one thread gives): a tile writes from out_start[t] at
// most its nonzeros, at most one per row of a wanted column and one per column of a wanted row,
// and no further than the output's end. A caller's overlapping ranges (never the reader's) are
// then decoded on one thread.
bool runs_write_apart(const TileDirectory& tiles, const ReadFilter& filter, Span<const int64_t> out_start,
                      int64_t out_size, const std::vector<int64_t>& cuts) {
  std::vector<int64_t> marked;  // marked[c]: the columns below c that col_mask marks
  if (filter.col_mask.size > 0) {
    marked.assign(static_cast<size_t>(filter.col_mask.size) + 1, 0);
    for (int64_t c = 0; c < filter.col_mask.size; ++c) marked[c + 1] = marked[c] + (filter.col_mask[c] != 0);
  }
  std::vector<std::pair<int64_t, int64_t>> spans;  // each run's [first, end) of writes, if any
  for (size_t p = 0; p + 1 < cuts.size(); ++p) {
    int64_t first = INT64_MAX, end = INT64_MIN;
    for (int64_t t = cuts[p]; t < cuts[p + 1]; ++t) {
      const int64_t start = out_start[t], h = std::max<int64_t>(tiles.h[t], 0), w = std::max<int64_t>(tiles.w[t], 0);
      if (start < 0 || start >= out_size) continue;  // such a tile writes nothing
      int64_t most = std::max<int64_t>(tiles.k[t], 0);
      if (filter.want_row >= 0) most = std::min(most, w);
      if (filter.want_col >= 0) most = std::min(most, h);
      if (!marked.empty()) {
        const int64_t size = filter.col_mask.size, col = tiles.col[t];
        const int64_t lo = std::clamp<int64_t>(col, 0, size), hi = col > size - w ? size : std::clamp<int64_t>(col + w, 0, size);
        const int64_t columns = hi > lo ? marked[hi] - marked[lo] : 0;
        if (columns == 0 || h <= most / columns) most = std::min(most, h * columns);
      }
      most = std::min(most, out_size - start);
      if (most == 0) continue;
      first = std::min(first, start);
      end = std::max(end, start + most);
    }
    if (first < end) spans.emplace_back(first, end);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) return false;
  return true;
}

}  // namespace

int64_t set_packed_nnz_per_row(int64_t nnz_per_row) {
  if (nnz_per_row < 0) throw std::invalid_argument("set_packed_nnz_per_row: a negative count");
  return g_packed_nnz_per_row.exchange(nnz_per_row);
}

template <typename R, typename V>
void decode_tiles(Span<const uint8_t> buf, const TileDirectory& tiles, Span<const int64_t> gene_terms,
                  Span<const int32_t> cell_terms, const ValueModels& models, const SirenSet& sirens, int mode,
                  int64_t max_error, const ReadFilter& filter, Span<const int64_t> out_start, Triples<R, V> out,
                  Span<int64_t> out_count, Span<int64_t> status, int threads) {
  const int64_t n_tiles = tiles.k.size;
  const std::initializer_list<const Span<const int64_t>*> per_tile = {
      &tiles.offset, &tiles.length, &tiles.h,     &tiles.w,     &tiles.row, &tiles.col,
      &tiles.first,  &tiles.cells,  &tiles.model, &tiles.siren, &out_start};
  for (const Span<const int64_t>* a : per_tile)
    if (a->size != n_tiles) throw std::invalid_argument("decode_tiles: the per-tile arrays differ in length");
  if (out_count.size != n_tiles || status.size != n_tiles)
    throw std::invalid_argument("decode_tiles: out_count and status need one entry per tile");
  std::vector<int64_t> cuts = work_runs(tiles.k, threads);
  const int64_t out_size = std::min(out.rows.size, std::min(out.cols.size, out.values.size));
  if (cuts.size() > 2 && !runs_write_apart(tiles, filter, out_start, out_size, cuts)) cuts = {0, n_tiles};
  auto run = [&](auto codec) {
    run_on_threads(static_cast<int>(cuts.size()) - 1, [&](int p) {
      const int64_t lo = cuts[p], n = cuts[p + 1] - lo;
      decode_with(codec, buf, tiles_in(tiles, lo, n), gene_terms, cell_terms, sirens, mode, max_error, filter,
                  out_start.sub(lo, n), out, out_count.sub(lo, n), status.sub(lo, n));
    });
  };
  const bool lanes = lanes3::takes(filter, mode) && tile_lanes() != TileLanes::kScalar;
  if (models.tables3 != nullptr)
    with_format3(tiles, models, lanes, false, run);
  else
    run(Format2(models));
}

template void decode_tiles<int32_t, int32_t>(Span<const uint8_t>, const TileDirectory&, Span<const int64_t>,
                                             Span<const int32_t>, const ValueModels&, const SirenSet&, int, int64_t,
                                             const ReadFilter&, Span<const int64_t>, Triples<int32_t, int32_t>,
                                             Span<int64_t>, Span<int64_t>, int);
template void decode_tiles<int32_t, int64_t>(Span<const uint8_t>, const TileDirectory&, Span<const int64_t>,
                                             Span<const int32_t>, const ValueModels&, const SirenSet&, int, int64_t,
                                             const ReadFilter&, Span<const int64_t>, Triples<int32_t, int64_t>,
                                             Span<int64_t>, Span<int64_t>, int);
template void decode_tiles<int64_t, int32_t>(Span<const uint8_t>, const TileDirectory&, Span<const int64_t>,
                                             Span<const int32_t>, const ValueModels&, const SirenSet&, int, int64_t,
                                             const ReadFilter&, Span<const int64_t>, Triples<int64_t, int32_t>,
                                             Span<int64_t>, Span<int64_t>, int);
template void decode_tiles<int64_t, int64_t>(Span<const uint8_t>, const TileDirectory&, Span<const int64_t>,
                                             Span<const int32_t>, const ValueModels&, const SirenSet&, int, int64_t,
                                             const ReadFilter&, Span<const int64_t>, Triples<int64_t, int64_t>,
                                             Span<int64_t>, Span<int64_t>, int);

void count_rows(Span<const uint8_t> buf, const TileDirectory& tiles, const ValueModels& models, Span<int64_t> counts,
                Span<int64_t> status, int threads) {
  const int64_t n_tiles = tiles.k.size;
  for (const Span<const int64_t>* a : {&tiles.offset, &tiles.length, &tiles.h, &tiles.w, &tiles.row})
    if (a->size != n_tiles) throw std::invalid_argument("count_rows: the per-tile arrays differ in length");
  if (status.size != n_tiles) throw std::invalid_argument("count_rows: status needs one entry per tile");
  if (models.tables3 != nullptr && tiles.model.size != n_tiles)
    throw std::invalid_argument("count_rows: format 3 needs each tile's model");
  if (tiles.model.size != 0 && tiles.model.size != n_tiles)
    throw std::invalid_argument("count_rows: the per-tile arrays differ in length");
  // a thread for every kThreadNonzeros nonzeros at most: each but the first adds a row array
  int64_t nonzeros = 0;
  for (int64_t t = 0; t < n_tiles; ++t) nonzeros += std::clamp<int64_t>(tiles.k[t], 0, kMaxTileEntries);
  threads = static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, nonzeros / kThreadNonzeros)));
  const std::vector<int64_t> cuts = work_runs(tiles.k, threads);
  const int runs = static_cast<int>(cuts.size()) - 1;
  // the first run counts into `counts`, each other into rows of its own (a band's tiles may span runs)
  std::vector<std::vector<int64_t>> own(static_cast<size_t>(std::max(runs - 1, 0)));
  auto run = [&](auto codec) {
    run_on_threads(runs, [&](int p) {
      const int64_t lo = cuts[p], n = cuts[p + 1] - lo;
      Span<int64_t> rows = counts;
      if (p > 0) {
        own[p - 1].assign(static_cast<size_t>(counts.size), 0);
        rows = Span<int64_t>{own[p - 1].data(), counts.size};
      }
      count_with(codec, buf, tiles_in(tiles, lo, n), rows, status.sub(lo, n));
    });
  };
  if (models.tables3 != nullptr)
    with_format3(tiles, models, tile_lanes() != TileLanes::kScalar, true, run);
  else
    run(Format2(models));
  for (const std::vector<int64_t>& rows : own)
    for (int64_t r = 0; r < counts.size; ++r) counts[r] += rows[r];
}

namespace {

template <class C>
EntryValue entry_with(C codec, Span<const uint8_t> buf, const TileInfo& tile, Span<const int64_t> gene_terms,
                      Span<const int32_t> cell_terms, const SirenSet& sirens, int mode, int64_t max_error, int64_t row,
                      int64_t col) {
  ReadFilter filter;
  filter.want_row = row;
  filter.want_col = col;
  TileDecoder<C> decoder(std::move(codec), buf, gene_terms, cell_terms, sirens, mode, max_error, filter,
                         shape_ok(tile.k, tile.h, tile.w) ? tile.k : 0);
  int64_t value = 0, out_row, out_col;
  const TileResult result = decoder.decode(tile, &out_row, &out_col, &value, 1);
  return {result.count ? value : 0, result.status};
}

}  // namespace

EntryValue decode_entry(Span<const uint8_t> buf, const TileInfo& tile, Span<const int64_t> gene_terms,
                        Span<const int32_t> cell_terms, const ValueModels& models, const SirenSet& sirens, int mode,
                        int64_t max_error, int64_t row, int64_t col) {
  if (models.tables3 != nullptr)  // one tile: the chunk's compact rows
    return entry_with(Format3<tile3::ChunkTables>(models.tables3, models.n_models), buf, tile, gene_terms, cell_terms,
                      sirens, mode, max_error, row, col);
  return entry_with(Format2(models), buf, tile, gene_terms, cell_terms, sirens, mode, max_error, row, col);
}

}  // namespace sinr
