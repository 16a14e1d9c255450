// Format 3's lockstep tile decoder (see lanes3.hpp).
//
// Eight lanes decode eight tiles of one run: tiles of one chunk's tables whose streams lie in one
// window of the buffer below 2**31 bytes, so that every gather has one base and 32-bit offsets.
// One step decodes one symbol in every lane (lane_step): the slot x & 4095; the lane's table (its
// gap class's row in the gap phase, its next value's context row in the value phase: a masked
// gather from the lane's contexts) and the packed entry (tile3.hpp's Table12) in one gather from
// the chunk's rows laid end to end; the state update in 32-bit lanes; renormalisation by the
// 16-bit word at the lane's word offset (read before the state is known: the 4 bytes that end
// with the word, clamped into the stream); the bin's first value and offset bits computed
// (models.hpp's kBins); the raw field from the 4 bytes that end with its first byte, byte-swapped
// (the raw bit string runs backward from the stream's end, §6.1.5). The checks of a step (T3 and T4
// as one: word bytes and raw bytes taken never cross; T5; a raw field over 25 bits) are one mask;
// a lane that fails any hands its tile to the scalar decoder, which gives the tile its exact
// status and triples.
//
// Lane j writes its symbol of step s at out[j] + 4 s (its coded positions in the gap phase, its
// value indices in the value phase, or a sink when idle), so one step counter serves all lanes.
// The rare events (a phase's last symbol, a failed check) leave the step loop: the registers are
// spilled and scalar bookkeeping moves lanes from gaps to values (their contexts, T6), finishes
// tiles (T7, T8, T9, then their triples), and hands each free lane the batch's next tile. An idle
// lane decodes through a constant entry (freq 4096: its state never moves) and reads nothing.
//
// The count mode (count_tiles, count_rows's first pass of a gene-major read) runs the same steps
// on tiles that code positions and ends each tile with its gap phase: a stream codes every gap
// before any value (§6.7), so the coded set is complete there, and the tile's rows are counted
// from it (a tile more than half full codes its zeros: a row holds w less its zeros).
#include "sinr/lanes3.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "sinr/models.hpp"
#include "sinr/tile3.hpp"
#include "sinr/vec8.hpp"

namespace sinr {

namespace {

std::atomic<int> g_lanes{static_cast<int>(TileLanes::kAuto)};
std::atomic<int64_t> g_finished{0}, g_handed_back{0};

void add_counts(const lanes3::LaneCounts& c) {
  g_finished.fetch_add(c.finished, std::memory_order_relaxed);
  g_handed_back.fetch_add(c.handed_back, std::memory_order_relaxed);
}

enum class Path { kScalar, kPortable, kAvx2 };

bool cpu_has_avx2() {
#ifdef SINR_HAVE_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
#else
  return false;
#endif
}

Path path_now() {
  switch (tile_lanes()) {
    case TileLanes::kScalar:
      return Path::kScalar;
    case TileLanes::kPortable:
      return Path::kPortable;
    default:
      return cpu_has_avx2() ? Path::kAvx2 : Path::kScalar;
  }
}

}  // namespace

void set_tile_lanes(TileLanes lanes) { g_lanes.store(static_cast<int>(lanes)); }

TileLanes tile_lanes() { return static_cast<TileLanes>(g_lanes.load()); }

const char* tile_lanes_path() {
  switch (path_now()) {
    case Path::kAvx2:
      return "avx2";
    case Path::kPortable:
      return "portable";
    default:
      return "scalar";
  }
}

namespace lanes3 {

LaneCounts lane_counts() { return {g_finished.load(), g_handed_back.load()}; }

namespace {

using tile3::kProbBits;
using tile3::kProbScale;
using tile3::kStateBytes;
using tile3::kStateLow;

constexpr int kLanes = 8;
constexpr uint32_t kSinkLength = 1024;               // an idle lane's outputs: rewound every kSinkLength steps
constexpr int kWidestRaw = 25;                       // the widest raw field one 4-byte read holds at any bit
constexpr int64_t kMostK = int64_t{1} << 16;         // a lane's tiles have at most this many nonzeros (scratch)
constexpr int64_t kLongest = int64_t{1} << 24;       // and streams of at most this many bytes (bit counts fit)
// a run's streams lie in a window this long: every offset, and an offset plus the raw bytes a lane
// may have taken before its check fails, stays below 2**31
constexpr int64_t kWindow = (int64_t{1} << 31) - 4 * kLongest;
constexpr uint32_t kIdleEntry = (kProbScale - 1) << 8;  // bin 0, freq 4096, start 0: x stays x

// Whether a tile's shape is one the format allows and its nonzeros fit it (tile.cpp's shape_ok).
bool shape_ok(int64_t k, int64_t h, int64_t w) {
  return h >= 0 && w >= 0 && (w == 0 || h <= kMaxTileEntries / w) && k >= 0 && k <= h * w;
}

// The lanes' registers as arrays (spilled at events only), offsets relative to the run's base.
struct Lanes {
  uint32_t x[kLanes], pos[kLanes], end[kLanes], bit[kLanes];  // state, next word byte, stream end, raw bits taken
  uint32_t table[kLanes];   // the gap phase's row
  uint32_t ctx_at[kLanes];  // the value phase's next context, an index into the contexts scratch
  uint32_t gap[kLanes];     // all ones in the gap phase
  uint32_t prev[kLanes];    // the last position decoded (-1 before the first)
  uint32_t last[kLanes];    // n_t - 1 (T5)
  uint32_t live[kLanes];    // all ones where the lane has a tile
  int64_t tile[kLanes];     // -1: idle
  uint64_t stop[kLanes];    // the step at which the lane's phase ends
  uintptr_t out[kLanes];    // lane j writes its step-s symbol at out[j] + 4 s
  uint64_t step = 0;
  uint64_t next_stop = 0;   // the first of stop
  int32_t sink[kLanes][kSinkLength];
};

template <typename V>
struct Regs {
  V x, pos, end, bit, table, ctx_at, gap, prev, last, live;
  Regs() = default;
  explicit Regs(const Lanes& L)
      : x(V::load(L.x)), pos(V::load(L.pos)), end(V::load(L.end)), bit(V::load(L.bit)), table(V::load(L.table)),
        ctx_at(V::load(L.ctx_at)), gap(V::load(L.gap)), prev(V::load(L.prev)), last(V::load(L.last)),
        live(V::load(L.live)) {}
  void spill(Lanes& L) const {
    V::store(L.x, x), V::store(L.pos, pos), V::store(L.bit, bit), V::store(L.prev, prev), V::store(L.ctx_at, ctx_at);
  }
};

// One symbol in each lane; returns the lanes that failed a check (bit j: lane j). kCount: every
// live lane is in its gap phase (count_tiles), so no lane gathers a context.
template <typename V, bool kCount>
inline int lane_step(Regs<V>& r, Lanes& L, uint64_t step, const uint32_t* packed, const uint8_t* bytes,
                     const int32_t* contexts) {
  const V zero = V::splat(0), one = V::splat(1), seven = V::splat(7), slot_mask = V::splat(kProbScale - 1);
  const V slot = V::and_(r.x, slot_mask);
  const V high = V::template srli<kProbBits>(r.x);
  V table = r.table;
  if constexpr (!kCount) table = V::template gather_where<4>(r.table, contexts, r.ctx_at, V::andnot(r.gap, r.live));
  const V entry = V::template gather_where<4>(V::splat(kIdleEntry), packed,
                                              V::or_(V::template slli<kProbBits>(table), slot), r.live);
  // the word at pos as the high half of the 4 bytes ending with it (pos >= start + 4), clamped
  // into the stream: a clamped read is never used, as the word would then cross the stream's end
  const V word_at = V::min_signed(V::sub(r.pos, V::splat(2)), V::sub(r.end, V::splat(4)));
  const V word = V::template srli<16>(V::template gather_where<1>(zero, bytes, word_at, r.live));
  // x = freq * (x >> 12) + slot - start, with freq - 1 in the entry
  const V freq_less = V::and_(V::template srli<8>(entry), slot_mask);
  const V x = V::add(V::mul(freq_less, high), V::sub(V::add(high, slot), V::template srli<20>(entry)));
  const V renorm = V::eq(V::template srli<16>(x), zero);
  r.x = V::select(renorm, x, V::or_(V::template slli<16>(x), word));
  r.pos = V::sub(r.pos, V::add(renorm, renorm));  // renorm lanes are all ones: + 2
  // the bin's first value and offset bits (models.hpp's BinTables)
  const V exact = V::splat((1u << kMantissaBits) - 1);  // bins below are their value, with no bits
  const V bin = V::and_(entry, V::splat(0xFF));
  const V rel = V::sub(V::max(bin, exact), exact);
  const V bits = V::template srli<kMantissaBits>(rel);
  const V lead = V::add(V::and_(rel, exact), V::splat(1u << kMantissaBits));
  const V first = V::select(V::gt_signed(exact, bin), V::sub(V::sllv(lead, bits), one), bin);
  // the raw field: bit b of the raw string is bit b & 7 of byte end - 1 - b / 8, read from the 4
  // bytes ending with its first byte (at or after the stream's byte 0: the checks keep the raw
  // bytes taken off the word bytes, which begin with the state's 4)
  const V raw_at = V::sub(V::sub(r.end, V::splat(4)), V::template srli<3>(r.bit));
  const V raw_bytes = V::bswap(V::template gather_where<1>(zero, bytes, raw_at, r.live));
  const V raw = V::and_(V::srlv(raw_bytes, V::and_(r.bit, seven)), V::sub(V::sllv(one, bits), one));
  r.bit = V::add(r.bit, bits);
  const V value = V::add(first, raw);
  r.prev = V::add(r.prev, V::and_(r.gap, V::add(value, one)));
  uint32_t o[kLanes];
  V::store(o, kCount ? r.prev : V::select(r.gap, value, r.prev));
  for (int j = 0; j < kLanes; ++j) *reinterpret_cast<int32_t*>(L.out[j] + 4 * step) = static_cast<int32_t>(o[j]);
  r.ctx_at = V::add(r.ctx_at, one);
  const V crossed = V::gt_signed(V::add(r.pos, V::template srli<3>(V::add(r.bit, seven))), r.end);  // T3, T4
  const V beyond = V::gt_signed(r.prev, r.last);                                                   // T5
  const V wide = V::gt_signed(bits, V::splat(kWidestRaw));
  return V::bits(V::or_(V::or_(crossed, beyond), wide));
}

// A tile's nonzeros for the value phase: from each position p (below n_t < 2**24) its row and
// column, and the table row of its context (§6.5), -1 where the context has no table.
struct TileTerms {
  const int32_t* positions;
  int64_t k, w, row0, col0;
  const int64_t* gene_terms;  // the tile's first row's
  const int32_t* cell_terms;  // the tile's first column's
  const int32_t* value_rows;  // kContexts: each context's table row, -1 where unused
  int32_t* contexts;
  int32_t* rows;
  int32_t* cols;
};

// Nonzeros from..k-1 of a tile; returns the OR of their table rows (negative: T6).
int32_t tile_terms(const TileTerms& t, int64_t from) {
  const Divider d(t.w);
  int32_t rows_seen = 0;
  for (int64_t idx = from; idx < t.k; ++idx) {
    const uint64_t p = static_cast<uint32_t>(t.positions[idx]);
    const int64_t i = static_cast<int64_t>((p * d.magic) >> d.shift);
    const int64_t c = static_cast<int64_t>(p) - i * t.w;
    const uint64_t term = static_cast<uint64_t>(t.gene_terms[i]) + static_cast<uint64_t>(t.cell_terms[c]);
    const int32_t row = t.value_rows[tile3::baseline_context(static_cast<int64_t>(term), 0)];
    rows_seen |= row;
    t.contexts[idx] = row;
    t.rows[idx] = static_cast<int32_t>(t.row0 + i);  // inside the format's limits: int32
    t.cols[idx] = static_cast<int32_t>(t.col0 + c);
  }
  return rows_seen;
}

#ifdef SINR_HAVE_AVX2
// tile_terms, eight nonzeros at a time (the last k mod 8 by tile_terms): the same arithmetic, in
// 32-bit lanes for positions, quotients and rows and in 64-bit lanes for the terms' sum.
__attribute__((target("avx2"))) int32_t tile_terms_avx2(const TileTerms& t) {
  const Divider d(t.w);
  const __m256i magic = _mm256_set1_epi64x(static_cast<int64_t>(d.magic));
  const __m128i shift = _mm_cvtsi32_si128(d.shift);
  const __m256i w = _mm256_set1_epi32(static_cast<int32_t>(t.w));
  const __m256i row0 = _mm256_set1_epi32(static_cast<int32_t>(t.row0));
  const __m256i col0 = _mm256_set1_epi32(static_cast<int32_t>(t.col0));
  const __m256i zero = _mm256_setzero_si256(), low = _mm256_set1_epi64x(191);
  const __m256i top = _mm256_set1_epi64x(tile3::kContexts - 1);
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // the low halves of 64-bit lanes first
  __m256i rows_seen = zero;
  const int64_t whole = t.k & ~int64_t{7};
  for (int64_t idx = 0; idx < whole; idx += 8) {
    const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.positions + idx));
    const __m256i q_even = _mm256_srl_epi64(_mm256_mul_epu32(p, magic), shift);
    const __m256i q_odd = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(p, 32), magic), shift);
    const __m256i i = _mm256_blend_epi32(q_even, _mm256_slli_epi64(q_odd, 32), 0xAA);
    const __m256i c = _mm256_sub_epi32(p, _mm256_mullo_epi32(i, w));
    const __m256i cell = _mm256_i32gather_epi32(t.cell_terms, c, 4);
    __m256i ctx[2];
    for (int half = 0; half < 2; ++half) {
      const __m128i i4 = half ? _mm256_extracti128_si256(i, 1) : _mm256_castsi256_si128(i);
      const __m128i cell4 = half ? _mm256_extracti128_si256(cell, 1) : _mm256_castsi256_si128(cell);
      const __m256i gene = _mm256_i32gather_epi64(reinterpret_cast<const long long*>(t.gene_terms), i4, 8);
      const __m256i sum = _mm256_add_epi64(gene, _mm256_cvtepi32_epi64(cell4));  // wraps as uint64 does
      // §6.5: clamp(sum >> 1, 0, kContexts - 1)
      const __m256i kappa = _mm256_blendv_epi8(_mm256_srli_epi64(sum, 1), top, _mm256_cmpgt_epi64(sum, low));
      ctx[half] = _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, sum), kappa);
    }
    // eight contexts in 32-bit lanes, in order: each half's low words, then the halves together
    const __m256i lo = _mm256_permutevar8x32_epi32(ctx[0], even), hi = _mm256_permutevar8x32_epi32(ctx[1], even);
    const __m256i contexts = _mm256_permute2x128_si256(lo, hi, 0x20);
    const __m256i row = _mm256_i32gather_epi32(t.value_rows, contexts, 4);
    rows_seen = _mm256_or_si256(rows_seen, row);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t.contexts + idx), row);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t.rows + idx), _mm256_add_epi32(row0, i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t.cols + idx), _mm256_add_epi32(col0, c));
  }
  return _mm256_movemask_ps(_mm256_castsi256_ps(rows_seen)) ? -1 : tile_terms(t, whole);
}
#endif

template <typename R, typename V>
class Engine {
 public:
  Engine(const Batch& b, Triples<R, V> out, Span<int64_t> out_count, Span<int64_t> status,
         const std::function<void(int64_t)>& scalar, int64_t cap, bool avx2)
      : b_(b), tiles_(*b.tiles), out_(out), out_size_(std::min(out.rows.size, std::min(out.cols.size, out.values.size))),
        out_count_(out_count), status_(status), scalar_(scalar), value_of_(b.mode, b.max_error), cap_(cap), avx2_(avx2),
        positions_(per_lane(cap)), zeros_(per_lane(cap)), u_(per_lane(cap)), contexts_(per_lane(cap)),
        rows_(per_lane(cap)), cols_(per_lane(cap)),
        flags_(new uint8_t[2 * cap]), L_(new Lanes) {
    for (int j = 0; j < kLanes; ++j) idle(j);
  }

  // The count mode (count_tiles): each tile's gaps only, its nonzeros per row into row_counts.
  Engine(const Batch& b, Span<int64_t> row_counts, Span<int64_t> status, const std::function<void(int64_t)>& scalar,
         int64_t cap, bool avx2)
      : Engine(b, Triples<R, V>{}, Span<int64_t>{}, status, scalar, cap, avx2) {
    row_counts_ = row_counts;
    counting_ = true;
  }

  LaneCounts counts() const { return counts_; }

  template <typename Vec, bool kCount>
  void run() {
    Lanes& L = *L_;
    for (int j = 0; j < kLanes; ++j) take(j);
    if (!settle()) return;
    Regs<Vec> r(L);
    const int32_t* const contexts = contexts_.get();
    const uint32_t* packed = packed_;
    const uint8_t* bytes = bytes_;
    uint64_t next_stop = L.next_stop;
    for (uint64_t step = L.step;; ++step) {
      const int failed = lane_step<Vec, kCount>(r, L, step, packed, bytes, contexts);
      if (!failed && step + 1 != next_stop) continue;
      L.step = step + 1;
      r.spill(L);
      if (!events(failed)) return;
      r = Regs<Vec>(L);
      packed = packed_, bytes = bytes_, next_stop = L.next_stop;
    }
  }

 private:
  static std::unique_ptr<int32_t[]> per_lane(int64_t cap) {
    return std::unique_ptr<int32_t[]>(new int32_t[kLanes * (cap + 1)]);
  }
  // lane j's part of a scratch array (one more than cap_: the complement's last write may be spare)
  int32_t* lane(const std::unique_ptr<int32_t[]>& a, int j) const { return a.get() + j * (cap_ + 1); }
  void set_out(int j, int32_t* p) { L_->out[j] = reinterpret_cast<uintptr_t>(p) - 4 * L_->step; }

  void idle(int j) {
    Lanes& L = *L_;
    L.tile[j] = -1;
    L.x[j] = kStateLow, L.pos[j] = 0, L.end[j] = 0, L.bit[j] = 0;
    L.table[j] = 0, L.ctx_at[j] = 0, L.gap[j] = 0, L.prev[j] = 0, L.last[j] = 0, L.live[j] = 0;
    L.stop[j] = L.step + kSinkLength;
    set_out(j, L.sink[j]);
  }

  // Whether tile t passes every check the scalar decoder (in the count mode count_rows's scalar
  // path) makes before its stream and fits a lane's scratch: the tiles a lane may take. A count
  // takes only tiles that code positions.
  bool takes(int64_t t) const {
    const int64_t start = tiles_.offset[t], length = tiles_.length[t];
    if (start < 0 || length < 0 || start > b_.buf.size || length > b_.buf.size - start) return false;
    const int64_t k = tiles_.k[t], h = tiles_.h[t], w = tiles_.w[t], row = tiles_.row[t];
    if (!shape_ok(k, h, w) || k == 0 || k > cap_) return false;
    const int64_t model = tiles_.model[t];
    if (model < 0 || model >= b_.n_models || b_.tables[model] == nullptr) return false;
    const int64_t n = h * w, m = tile3::coded_count(n, k);
    if (m > 0 && b_.tables[model]->gap_index(tile3::density_class(n, m)) < 0) return false;
    if (length < kStateBytes || length > kLongest) return false;
    if (counting_) return m > 0 && row >= 0 && row <= row_counts_.size - h;
    const int64_t col = tiles_.col[t];
    if (tiles_.siren[t] >= 0) return false;
    if (row < 0 || row > kMaxDimension - h || col < 0 || col > kMaxDimension - w) return false;
    if (row > b_.gene_terms.size - h || col > b_.cell_terms.size - w) return false;
    if (b_.col_mask.size > 0 && col > b_.col_mask.size - w) return false;
    const int64_t at = b_.out_start[t];
    return at >= 0 && at <= out_size_;  // and room for its triples, which finish() checks
  }

  // Hand lane j the batch's next tile that a lane takes (the others go to the scalar decoder on
  // the way), or make it idle: when none is left, or the next belongs to another run.
  void take(int j) {
    Lanes& L = *L_;
    const int64_t n_tiles = tiles_.k.size;
    while (!blocked_ && next_ < n_tiles) {
      const int64_t t = next_;
      if (!takes(t)) {
        ++next_;
        scalar_(t);
        continue;
      }
      const int64_t start = tiles_.offset[t], end = start + tiles_.length[t];
      if (b_.tables[tiles_.model[t]] != tables_ || start < base_ || end - base_ > kWindow) {
        blocked_ = true;
        break;
      }
      ++next_;
      const uint8_t* s = b_.buf.data + start;
      const uint32_t x = uint32_t{s[0]} | (uint32_t{s[1]} << 8) | (uint32_t{s[2]} << 16) | (uint32_t{s[3]} << 24);
      if (x < kStateLow) {  // T2
        hand_back(t);
        continue;
      }
      const int64_t k = tiles_.k[t], n = tiles_.h[t] * tiles_.w[t], m = tile3::coded_count(n, k);
      L.tile[j] = t;
      L.x[j] = x;
      L.pos[j] = static_cast<uint32_t>(start - base_ + kStateBytes);
      L.end[j] = static_cast<uint32_t>(end - base_);
      L.bit[j] = 0;
      L.prev[j] = ~0u;
      L.last[j] = static_cast<uint32_t>(n - 1);
      L.live[j] = ~0u;
      if (m == 0) {  // every entry is nonzero: positions 0..k-1, symbols only values
        int32_t* positions = lane(positions_, j);
        for (int64_t idx = 0; idx < k; ++idx) positions[idx] = static_cast<int32_t>(idx);
        if (begin_values(j)) return;
        hand_back(t);
        continue;
      }
      L.table[j] = static_cast<uint32_t>(tables_->gap_index(tile3::density_class(n, m)));
      L.gap[j] = ~0u;
      L.stop[j] = L.step + static_cast<uint64_t>(m);
      set_out(j, m == k ? lane(positions_, j) : lane(zeros_, j));
      return;
    }
    idle(j);
  }

  // Lane j's positions are decoded: each nonzero's row, column and context row (false on T6), then
  // the value phase.
  bool begin_values(int j) {
    Lanes& L = *L_;
    const int64_t t = L.tile[j];
    const int64_t k = tiles_.k[t], row0 = tiles_.row[t], col0 = tiles_.col[t];
    const TileTerms terms{lane(positions_, j), k, tiles_.w[t], row0, col0, b_.gene_terms.data + row0,
                          b_.cell_terms.data + col0, value_rows_, lane(contexts_, j), lane(rows_, j), lane(cols_, j)};
#ifdef SINR_HAVE_AVX2
    const int32_t unused = avx2_ ? tile_terms_avx2(terms) : tile_terms(terms, 0);
#else
    const int32_t unused = tile_terms(terms, 0);
#endif
    if (unused < 0) return false;  // T6
    values_[j] = values_wanted(k, lane(cols_, j));
    L.gap[j] = 0;
    L.ctx_at[j] = static_cast<uint32_t>(lane(contexts_, j) - contexts_.get());
    L.stop[j] = L.step + static_cast<uint64_t>(values_[j]);
    set_out(j, lane(u_, j));
    return true;
  }

  // The values a filtered read decodes of a tile's k nonzeros (columns in position order): as the
  // scalar decoder, up to the last one it keeps, so that the lanes fail wherever it does (at least
  // one, since a phase has a symbol: where none is kept the lanes may fail where it does not, and
  // hand the tile back). Every value otherwise.
  int64_t values_wanted(int64_t k, const int32_t* cols) const {
    int64_t last = k - 1;
    if (b_.want_col >= 0) {
      while (last >= 0 && cols[last] != b_.want_col) --last;
    } else if (b_.col_mask.size > 0) {
      while (last >= 0 && !b_.col_mask.data[cols[last]]) --last;
    }
    return std::max<int64_t>(last + 1, 1);
  }

  // Lane j's symbols are decoded: T7, T8, T9 where it decoded every value (a filtered read that
  // stops earlier checks no ending, as the scalar decoder), then the tile's triples (false, nothing
  // written, on a check that fails).
  bool finish(int j) const {
    const Lanes& L = *L_;
    const int64_t t = L.tile[j];
    const int64_t k = tiles_.k[t], at = b_.out_start[t];
    const uint32_t raw_bytes = (L.bit[j] + 7) >> 3;
    if (values_[j] == k) {
      if (L.x[j] != kStateLow || L.pos[j] + raw_bytes != L.end[j]) return false;
      if ((L.bit[j] & 7) != 0 && (bytes_[L.end[j] - raw_bytes] >> (L.bit[j] & 7)) != 0) return false;
    }
    R* __restrict const rows = out_.rows.data + at;
    R* __restrict const cols = out_.cols.data + at;
    V* __restrict const values = out_.values.data + at;
    const int32_t* __restrict const lane_rows = lane(rows_, j);
    const int32_t* __restrict const lane_cols = lane(cols_, j);
    const int32_t* __restrict const u = lane(u_, j);
    if (b_.col_mask.size > 0 || b_.want_col >= 0)
      return finish_kept(t, values_[j], rows, cols, values, lane_rows, lane_cols, u);
    if (k > out_size_ - at) return false;  // no room
    for (int64_t idx = 0; idx < k; ++idx) rows[idx] = static_cast<R>(lane_rows[idx]);
    for (int64_t idx = 0; idx < k; ++idx) cols[idx] = static_cast<R>(lane_cols[idx]);
    if (value_of_.lossless) {
      for (int64_t idx = 0; idx < k; ++idx) values[idx] = static_cast<V>(u[idx] + 1);  // u < 2**29
    } else {
      const ValueOf value_of = value_of_;
      for (int64_t idx = 0; idx < k; ++idx) values[idx] = static_cast<V>(value_of(u[idx]));
    }
    out_count_[t] = k;
    status_[t] = kOk;
    return true;
  }

  // A read of the columns col_mask marks or of column want_col: the triples of those columns, of the
  // `decoded` nonzeros whose values the lane decoded (values_wanted: every kept one).
  bool finish_kept(int64_t t, int64_t decoded, R* rows, R* cols, V* values, const int32_t* lane_rows,
                   const int32_t* lane_cols, const int32_t* u) const {
    const int64_t k = decoded;
    const uint8_t* const mask = b_.col_mask.size > 0 ? b_.col_mask.data : nullptr;
    const int64_t want = b_.want_col;
    const auto keep = [&](int64_t idx) { return mask ? mask[lane_cols[idx]] != 0 : lane_cols[idx] == want; };
    // Counted first only where the output may lack room for every decoded nonzero (a cell set's
    // tiles keep about one in fifty: the count was a sixth of the lanes' bookkeeping).
    if (k > out_size_ - b_.out_start[t]) {
      int64_t kept = 0;
      for (int64_t idx = 0; idx < k; ++idx) kept += keep(idx);
      if (kept > out_size_ - b_.out_start[t]) return false;  // no room
    }
    int64_t kept = 0;
    for (int64_t idx = 0; idx < k; ++idx) {
      if (!keep(idx)) continue;
      rows[kept] = static_cast<R>(lane_rows[idx]);
      cols[kept] = static_cast<R>(lane_cols[idx]);
      values[kept] = static_cast<V>(value_of_(u[idx]));
      ++kept;
    }
    out_count_[t] = kept;
    status_[t] = kOk;
    return true;
  }

  // Lane j's phase has ended: gaps go on to values, values finish the tile, idle rewinds its sink.
  void phase_end(int j) {
    Lanes& L = *L_;
    const int64_t t = L.tile[j];
    if (t < 0) {
      L.stop[j] = L.step + kSinkLength;
      set_out(j, L.sink[j]);
      return;
    }
    if (L.gap[j] && counting_) {
      count_tile(j);
      ++counts_.finished;
      return take(j);
    }
    if (L.gap[j]) {
      const int64_t k = tiles_.k[t], n = tiles_.h[t] * tiles_.w[t];
      if (2 * k > n) {  // the coded zeros (n < 2k entries): the nonzeros are the others
        const int32_t* __restrict zeros = lane(zeros_, j);
        int32_t* __restrict positions = lane(positions_, j);
        uint8_t* __restrict zero = flags_.get();
        std::fill(zero, zero + n, uint8_t{0});
        for (int64_t idx = 0; idx < n - k; ++idx) zero[zeros[idx]] = 1;
        int64_t filled = 0;
        for (int64_t p = 0; p < n; ++p) {  // without a branch: each entry is written, kept if nonzero
          positions[filled] = static_cast<int32_t>(p);
          filled += 1 - zero[p];
        }
      }
      if (begin_values(j)) return;
    } else if (finish(j)) {
      ++counts_.finished;
      return take(j);
    }
    hand_back(t);
    take(j);
  }

  // The count mode: lane j's coded set is decoded, every check passed.
  void count_tile(int j) {
    const int64_t t = L_->tile[j];
    const int64_t k = tiles_.k[t], h = tiles_.h[t], w = tiles_.w[t], m = tile3::coded_count(h * w, k);
    add_row_counts(m == k ? lane(positions_, j) : lane(zeros_, j), m, m != k, h, w, row_counts_.data + tiles_.row[t]);
    status_[t] = kOk;
  }

  // A tile a lane took fails a check: the scalar decoder gives it its status.
  void hand_back(int64_t t) {
    ++counts_.handed_back;
    scalar_(t);
  }

  // A new run from the next tile (every lane is idle): its chunk's tables and its stream's window.
  void begin_run() {
    const int64_t t = next_;
    tables_ = b_.tables[tiles_.model[t]];
    base_ = tiles_.offset[t];
    packed_ = tables_->packed();
    bytes_ = b_.buf.data + base_;
    for (int c = 0; c < tile3::kContexts; ++c) value_rows_[c] = tables_->value_index(c);
    blocked_ = false;
  }

  // The lanes that failed a check (bit j: lane j) and those whose phase ends now; false when
  // every lane is idle and no tile is left.
  __attribute__((noinline)) bool events(int failed) {
    Lanes& L = *L_;
    for (int j = 0; j < kLanes; ++j) {
      if ((failed >> j) & 1) {
        hand_back(L.tile[j]);
        take(j);
      } else if (L.stop[j] == L.step) {
        phase_end(j);
      }
    }
    return settle();
  }

  // Begin the next run when every lane is idle and the next tile needs one; false when every lane
  // is idle and every tile has been decoded.
  bool settle() {
    Lanes& L = *L_;
    bool busy = false;
    for (int j = 0; j < kLanes; ++j) busy |= L.tile[j] >= 0;
    while (!busy && blocked_) {
      begin_run();
      for (int j = 0; j < kLanes; ++j) take(j), busy |= L.tile[j] >= 0;
    }
    if (!busy) return false;  // take() stops at a tile for a new run or at the batch's end
    L.next_stop = L.stop[0];
    for (int j = 1; j < kLanes; ++j) L.next_stop = std::min(L.next_stop, L.stop[j]);
    return true;
  }

  const Batch& b_;
  const TileDirectory& tiles_;
  Triples<R, V> out_;
  int64_t out_size_;
  Span<int64_t> out_count_, status_;
  const std::function<void(int64_t)>& scalar_;
  ValueOf value_of_;
  int64_t cap_;
  bool avx2_;  // the AVX2 lanes: tile_terms_avx2 too
  Span<int64_t> row_counts_;  // the count mode's
  bool counting_ = false;
  std::unique_ptr<int32_t[]> positions_, zeros_, u_, contexts_, rows_, cols_;  // kLanes x (cap_ + 1) each
  std::unique_ptr<uint8_t[]> flags_;  // 2 cap_: the entries of a tile more than half full
  std::unique_ptr<Lanes> L_;
  int64_t next_ = 0;       // the next tile of the batch to hand out
  bool blocked_ = false;   // it is a lane's, but of another run than the lanes'
  const tile3::PackedTables* tables_ = nullptr;
  int64_t base_ = 0;     // the run's window starts at buf[base_]
  const uint32_t* packed_ = nullptr;
  const uint8_t* bytes_ = nullptr;
  int32_t value_rows_[tile3::kContexts];
  int64_t values_[kLanes] = {};  // the values lane j decodes of its tile (values_wanted)
  LaneCounts counts_;
};

#ifdef SINR_HAVE_AVX2
// flatten: the step loop and Vec8Avx2's operations are all inlined here, under this target
template <bool kCount, typename R, typename V>
__attribute__((target("avx2"), flatten)) void run_avx2(Engine<R, V>& engine) {
  engine.template run<simd::Vec8Avx2, kCount>();
}
#endif

// The engine on the path chosen (AVX2 where the machine has it, else the portable lanes), its lane
// counts added to the process's.
template <bool kCount, typename R, typename V>
void run_engine(Engine<R, V>& engine, Path path) {
#ifdef SINR_HAVE_AVX2
  if (path == Path::kAvx2) {
    run_avx2<kCount>(engine);
    add_counts(engine.counts());
    return;
  }
#endif
  (void)path;
  engine.template run<simd::Vec8Portable, kCount>();
  add_counts(engine.counts());
}

}  // namespace

bool takes(const ReadFilter& filter, int mode) {
  return filter.want_row < 0 && (filter.want_col < 0 || filter.col_mask.size == 0) &&
         (mode == kModeLossless || mode == kModeMaxError);
}

template <typename R, typename V>
bool decode_tiles(const Batch& batch, Triples<R, V> out, Span<int64_t> out_count, Span<int64_t> status,
                  const std::function<void(int64_t)>& scalar) {
  const Path path = path_now();
  if (path == Path::kScalar) return false;
  const TileDirectory& tiles = *batch.tiles;
  const int64_t out_size = std::min(out.rows.size, std::min(out.cols.size, out.values.size));
  // every range a tile may write (the scalar decoder's too) after the previous one, and the
  // largest tile a lane takes; a tile reading the columns col_mask marks writes at most h triples
  // of each
  const Span<const uint8_t> mask = batch.col_mask;
  std::vector<int64_t> marked;  // marked[c]: the columns before c that the mask marks
  if (mask.size > 0) {
    marked.assign(static_cast<size_t>(mask.size) + 1, 0);
    for (int64_t c = 0; c < mask.size; ++c) marked[c + 1] = marked[c] + (mask[c] != 0);
  }
  int64_t written_to = 0, cap = 0;
  for (int64_t t = 0; t < tiles.k.size; ++t) {
    const int64_t k = tiles.k[t], h = tiles.h[t], w = tiles.w[t], col = tiles.col[t], at = batch.out_start[t];
    if (!shape_ok(k, h, w) || k == 0 || at < 0 || at > out_size) continue;
    if (k <= kMostK) cap = std::max(cap, k);
    int64_t most = k;
    if (mask.size > 0) {
      if (col < 0 || col > mask.size - w) continue;  // refused before any triple
      most = std::min(k, h * (marked[col + w] - marked[col]));
    } else if (batch.want_col >= 0) {
      most = batch.want_col >= col && batch.want_col - col < w ? std::min(k, h) : 0;
    }
    if (most == 0) continue;
    if (at < written_to) return false;
    written_to = at + most;
  }
  if (cap == 0) return false;
  Engine<R, V> engine(batch, out, out_count, status, scalar, cap, path == Path::kAvx2);
  run_engine<false>(engine, path);
  return true;
}

bool count_tiles(const Batch& batch, Span<int64_t> counts, Span<int64_t> status,
                 const std::function<void(int64_t)>& scalar) {
  const Path path = path_now();
  if (path == Path::kScalar) return false;
  const TileDirectory& tiles = *batch.tiles;
  int64_t cap = 0;  // the largest tile a lane takes: one that codes positions
  for (int64_t t = 0; t < tiles.k.size; ++t) {
    const int64_t k = tiles.k[t], h = tiles.h[t], w = tiles.w[t];
    if (shape_ok(k, h, w) && k > 0 && k < h * w && k <= kMostK) cap = std::max(cap, k);
  }
  if (cap == 0) return false;
  Engine<int32_t, int32_t> engine(batch, counts, status, scalar, cap, path == Path::kAvx2);
  run_engine<true>(engine, path);
  return true;
}

template bool decode_tiles<int32_t, int32_t>(const Batch&, Triples<int32_t, int32_t>, Span<int64_t>, Span<int64_t>,
                                             const std::function<void(int64_t)>&);
template bool decode_tiles<int32_t, int64_t>(const Batch&, Triples<int32_t, int64_t>, Span<int64_t>, Span<int64_t>,
                                             const std::function<void(int64_t)>&);
template bool decode_tiles<int64_t, int32_t>(const Batch&, Triples<int64_t, int32_t>, Span<int64_t>, Span<int64_t>,
                                             const std::function<void(int64_t)>&);
template bool decode_tiles<int64_t, int64_t>(const Batch&, Triples<int64_t, int64_t>, Span<int64_t>, Span<int64_t>,
                                             const std::function<void(int64_t)>&);

}  // namespace lanes3
}  // namespace sinr
