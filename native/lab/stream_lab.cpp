// The stream lab: candidate format-3 tile streams measured on the tiles format 2 codes.
//
// Input: files written by benchmarks/stream_lab/dump_tiles.py (each tile's nonzero positions,
// value indices and contexts, from real datasets). For every candidate the lab encodes every tile,
// decodes it back (checking every position and value), and reports bits per nonzero (tile streams
// and their flushes; tables estimated) and the single-thread decode time per nonzero (median of
// repeated passes over all tiles, in the thread's CPU time, the decoded positions and values written to memory, not placed).
//
// Candidates:
//   f2          format 2: byte-wise renormalisation, one 31-bit state, Golomb gaps (quotient and
//               remainder symbols), value bins and their offset bits all through rANS.
//   f2-word     the same symbols on a 32-bit state renormalised 16 bits at a time (at most one
//               read per symbol, no loop).
//   gap-bins/P  one symbol per gap: the gap's bin (the bins of values) from a per-chunk table of
//               the tile's density class, one symbol per value from the context's table, every
//               offset bit in a separate raw bit stream; word renormalisation; probabilities of
//               P bits (12: one direct lookup table per context; 16: format 2's lookup and search).
//   gap-bins/12p  the 12-bit tables through one packed lookup per slot (bin, freq, start).
//   .../x2, x4  the same streams, two (four) tiles decoded in lockstep (independent states: the
//               interleaving costs no flush and no format change).
//   gap-bins/12p/simd8  the same streams, eight tiles in lockstep, one per lane of an AVX2 register
//               (vec8.hpp; the portable lanes where AVX2 is missing, or as .../simd8-portable);
//               a lane whose tile ends takes the chunk's next one. .../simd8-norefill: groups of
//               eight tiles, each group waiting for its longest; .../simd8x2: two groups of eight.
//   gap-bins/12p/interleaved8  size only: eight states interleaved inside each tile's stream
//               (a format change), each with its own flush.
//
// Build: cmake -S native -B build/lab -DSINR_LAB=ON -DCMAKE_BUILD_TYPE=Release && cmake --build build/lab
// Run:   build/lab/stream_lab /tmp/lab/*.bin   (LAB_ONLY=<candidate>, LAB_PASSES=<passes>)
#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sinr/models.hpp"
#include "sinr/rans.hpp"
#include "sinr/tile.hpp"
#include "sinr/vec8.hpp"

using namespace sinr;

namespace {

constexpr int kGapClasses = 16;

struct Chunk {
  int64_t n_tiles = 0, nnz = 0, n_cells = 0, n_rows = 0;
  std::vector<int64_t> k, h, w, row0, col0, first;
  std::vector<int32_t> pos, u, ctx, rows, cols;
  std::vector<int64_t> hist;  // 48 x 231 value counts
};

template <typename T>
void read_into(std::ifstream& f, std::vector<T>& v, int64_t n) {
  v.resize(static_cast<size_t>(n));
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  if (!f) throw std::runtime_error("truncated lab file");
}

std::vector<Chunk> load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "SLAB0001", 8) != 0) throw std::runtime_error("not a lab file: " + path);
  std::vector<Chunk> chunks;
  for (;;) {
    int64_t head[4];
    f.read(reinterpret_cast<char*>(head), 8);
    if (head[0] < 0) break;
    f.read(reinterpret_cast<char*>(head + 1), 24);
    Chunk c;
    c.n_tiles = head[0], c.nnz = head[1], c.n_cells = head[2], c.n_rows = head[3];
    read_into(f, c.k, c.n_tiles), read_into(f, c.h, c.n_tiles), read_into(f, c.w, c.n_tiles);
    read_into(f, c.row0, c.n_tiles), read_into(f, c.col0, c.n_tiles);
    read_into(f, c.pos, c.nnz), read_into(f, c.u, c.nnz), read_into(f, c.ctx, c.nnz);
    read_into(f, c.rows, c.nnz), read_into(f, c.cols, c.nnz);
    read_into(f, c.hist, kNumContexts * kNumBins);
    c.first.assign(static_cast<size_t>(c.n_tiles) + 1, 0);
    for (int64_t t = 0; t < c.n_tiles; ++t) c.first[t + 1] = c.first[t] + c.k[t];
    chunks.push_back(std::move(c));
  }
  return chunks;
}

// ------------------------------------------------------------------------------- frequency tables

// Format 2's scaling (spec §C.4) to 2**pb.
struct Table {
  std::vector<uint32_t> freq, cum;
  std::vector<uint8_t> lut;  // pb = 12: the bin of every slot; pb = 16: format 2's coarse lut
  std::vector<uint32_t> packed;  // pb = 12: per slot, bin | (freq - 1) << 8 | start << 20
  bool used = false;
};

Table make_table(const int64_t* counts, int pb) {
  Table t;
  t.freq.assign(kNumBins, 0);
  t.cum.assign(kNumBins + 1, 0);
  int64_t total = 0, kinds = 0, most = 0;
  for (int b = 0; b < kNumBins; ++b) {
    total += counts[b];
    kinds += counts[b] > 0;
    if (counts[b] > counts[most]) most = b;
  }
  const int64_t scale = int64_t{1} << pb;
  if (total > 0) {
    t.used = true;
    int64_t sum = 0;
    for (int b = 0; b < kNumBins; ++b)
      if (counts[b] > 0) sum += t.freq[b] = static_cast<uint32_t>(1 + counts[b] * (scale - kinds) / total);
    t.freq[most] += static_cast<uint32_t>(scale - sum);
  }
  for (int b = 0; b < kNumBins; ++b) t.cum[b + 1] = t.cum[b] + t.freq[b];
  const int lut_bits = pb == 12 ? 12 : 8;
  t.lut.assign(size_t{1} << lut_bits, 0);
  if (t.used)
    for (int b = 0; b < kNumBins; ++b)
      for (uint32_t s = t.cum[b]; s < t.cum[b + 1]; ++s)
        if ((s & ((1u << (pb - lut_bits)) - 1)) == 0) t.lut[s >> (pb - lut_bits)] = static_cast<uint8_t>(b);
  if (pb == 12) {
    t.packed.assign(4096, 0);
    if (t.used)
      for (uint32_t slot = 0; slot < 4096; ++slot) {
        const uint32_t b = t.lut[slot];
        t.packed[slot] = b | ((t.freq[b] - 1) << 8) | (t.cum[b] << 20);
      }
  }
  if (t.used && pb != 12)  // a coarse entry must be at or before its slot's bin: fill forward from 0
    for (size_t j = 1; j < t.lut.size(); ++j)
      if (t.cum[t.lut[j]] > (j << (pb - lut_bits))) t.lut[j] = t.lut[j - 1];
  return t;
}

// Estimated bits of storing a table's counts (zstd of uint64 counts is close to this: each used
// bin's count in bit_length + 2 bits, plus 2 bits per unused bin).
double table_bits(const int64_t* counts) {
  double bits = 0;
  for (int b = 0; b < kNumBins; ++b) bits += counts[b] > 0 ? bit_length(static_cast<uint64_t>(counts[b])) + 2 : 0.1;
  return bits;
}

int gap_class(int64_t n, int64_t m) {
  return std::min<int>(bit_length(static_cast<uint64_t>((n - m) / m)), kGapClasses - 1);
}

// ------------------------------------------------------------------------------- word rANS coder

// 32-bit state in [2**16, 2**32), renormalised 16 bits at a time; probabilities of PB bits.
constexpr uint32_t kWordLow = 1u << 16;

struct Sym {
  uint32_t start, freq;
};

template <int PB>
size_t word_encode(const std::vector<Sym>& syms, std::vector<uint16_t>& out) {
  if (syms.empty()) return 0;
  std::vector<uint16_t> rev;
  uint64_t x = kWordLow;
  for (size_t i = syms.size(); i-- > 0;) {
    const Sym s = syms[i];
    const uint64_t limit = (uint64_t{kWordLow} >> PB << 16) * s.freq;
    if (x >= limit) {
      rev.push_back(static_cast<uint16_t>(x & 0xFFFF));
      x >>= 16;
    }
    x = ((x / s.freq) << PB) + (x % s.freq) + s.start;
  }
  out.push_back(static_cast<uint16_t>(x & 0xFFFF));
  out.push_back(static_cast<uint16_t>(x >> 16));
  out.insert(out.end(), rev.rbegin(), rev.rend());
  return 2 + rev.size();
}

struct WordReader {
  uint32_t x;
  const uint16_t* p;
};

inline void word_start(WordReader& r, const uint16_t* p) {
  r.x = uint32_t{p[0]} | (uint32_t{p[1]} << 16);
  r.p = p + 2;
}

template <int PB>
inline void word_advance(WordReader& r, uint32_t slot, uint32_t start, uint32_t freq) {
  r.x = freq * (r.x >> PB) + slot - start;
  if (r.x < kWordLow) r.x = (r.x << 16) | *r.p++;
}

// A symbol of a 12-bit table through its packed lookup: one load on the state's dependency chain.
inline uint32_t word_packed(WordReader& r, const Table& t) {
  const uint32_t slot = r.x & 4095;
  const uint32_t e = t.packed[slot];
  r.x = (((e >> 8) & 4095) + 1) * (r.x >> 12) + slot - (e >> 20);
  if (r.x < kWordLow) r.x = (r.x << 16) | *r.p++;
  return e & 255;
}

// A symbol of a table; pb = 12 looks the bin up directly, pb = 16 as format 2 does.
template <int PB>
inline uint32_t word_table(WordReader& r, const Table& t) {
  const uint32_t slot = r.x & ((1u << PB) - 1);
  uint32_t s;
  if (PB == 12) {
    s = t.lut[slot];
  } else {
    s = t.lut[slot >> 8];
    while (t.cum[s + 1] <= slot) ++s;
  }
  word_advance<PB>(r, slot, t.cum[s], t.freq[s]);
  return s;
}

// ------------------------------------------------------------------------------- raw bit stream

struct BitWriter {
  std::vector<uint8_t>& out;
  uint64_t acc = 0;
  int n = 0;
  void put(uint32_t v, int bits) {
    acc |= uint64_t{v} << n;
    n += bits;
    while (n >= 8) out.push_back(static_cast<uint8_t>(acc)), acc >>= 8, n -= 8;
  }
  void finish() {
    if (n > 0) out.push_back(static_cast<uint8_t>(acc));
    acc = 0, n = 0;
  }
};

struct BitReader {
  const uint8_t* p;
  uint64_t acc;
  int n;
  void start(const uint8_t* q) { p = q, acc = 0, n = 0; }
  inline uint32_t get(int bits) {
    if (n < bits) {
      uint64_t more;
      std::memcpy(&more, p, 8);  // the lab pads every stream by 8 bytes
      acc |= more << n;
      const int take = (63 - n) >> 3;
      p += take;
      n += take * 8;
    }
    const uint32_t v = static_cast<uint32_t>(acc & ((uint64_t{1} << bits) - 1));
    acc >>= bits;
    n -= bits;
    return v;
  }
};

// ------------------------------------------------------------------------------- candidates

struct Encoded {
  // per chunk: every tile's words (or bytes) and raw bits, with offsets
  std::vector<std::vector<uint16_t>> words;
  std::vector<std::vector<uint8_t>> bytes;  // f2 and the raw bit streams
  std::vector<std::vector<int64_t>> word_off, byte_off;
  double stream_bits = 0, table_bits = 0;
  std::vector<std::vector<Table>> value_tables, gap_tables;
  std::vector<std::vector<uint32_t>> packed;  // pb = 12: every packed table of the chunk (packed_tables)
};

struct Output {
  std::vector<int32_t> pos, u;
};

// f2 and f2-word: format 2's symbol sequence.
// The coded set of a tile (nonzeros, or zeros when more than half full) into coded.
void coded_set(const Chunk& c, int64_t t, std::vector<int32_t>& coded) {
  const int64_t k = c.k[t], n = c.h[t] * c.w[t];
  const int32_t* pos = c.pos.data() + c.first[t];
  coded.assign(pos, pos + k);
  if (2 * k > n) {
    coded.clear();
    int64_t j = 0;
    for (int64_t p = 0; p < n; ++p) {
      if (j < k && pos[j] == p) {
        ++j;
        continue;
      }
      coded.push_back(static_cast<int32_t>(p));
    }
  }
}

void f2_symbols(const Chunk& c, int64_t t, const std::vector<Table>& tables, std::vector<Sym>& syms) {
  syms.clear();
  const int64_t k = c.k[t], n = c.h[t] * c.w[t];
  std::vector<int32_t> coded;
  coded_set(c, t, coded);
  const int64_t m = static_cast<int64_t>(coded.size());
  if (m > 0) {
    const int64_t gm = golomb_parameter(n, m);
    const bool quotients = (n - m) / gm > 0;
    int64_t prev = -1;
    for (const int64_t p : coded) {
      const int64_t gap = p - prev - 1;
      prev = p;
      if (quotients) {
        int64_t q = gap / gm;
        while (q >= rans::kQuotientEscape) {
          auto s = rans::quotient_symbol(rans::kQuotientEscape);
          syms.push_back({s.start, s.freq});
          q -= rans::kQuotientEscape;
        }
        auto s = rans::quotient_symbol(static_cast<int>(q));
        syms.push_back({s.start, s.freq});
      }
      if (gm > 1) {
        const int64_t r = gap % gm;
        const int low = std::max(0, bit_length(static_cast<uint64_t>(gm - 1)) - 16);
        auto s = rans::uniform_symbol(static_cast<uint32_t>(r >> low), static_cast<uint32_t>(((gm - 1) >> low) + 1));
        syms.push_back({s.start, s.freq});
        if (low) syms.push_back({static_cast<uint32_t>(r & ((1 << low) - 1)) << (16 - low), 1u << (16 - low)});
      }
    }
  }
  if (k == 0) return;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t idx = c.first[t] + i;
    const Bin b = bin_of(c.u[idx]);
    const Table& tab = tables[c.ctx[idx]];
    syms.push_back({tab.cum[b.bin], tab.freq[b.bin]});
    if (b.bits > 16) throw std::runtime_error("lab: offsets above 16 bits");
    if (b.bits > 0) syms.push_back({static_cast<uint32_t>(b.offset) << (16 - b.bits), 1u << (16 - b.bits)});
  }
}

Encoded encode_f2(const std::vector<Chunk>& chunks, bool word) {
  Encoded e;
  std::vector<Sym> syms;
  for (const Chunk& c : chunks) {
    std::vector<Table> tables;
    for (int x = 0; x < kNumContexts; ++x) {
      tables.push_back(make_table(c.hist.data() + x * kNumBins, 16));
      e.table_bits += table_bits(c.hist.data() + x * kNumBins);
    }
    e.words.emplace_back(), e.bytes.emplace_back(), e.word_off.emplace_back(1, 0), e.byte_off.emplace_back(1, 0);
    for (int64_t t = 0; t < c.n_tiles; ++t) {
      f2_symbols(c, t, tables, syms);
      if (word) {
        word_encode<16>(syms, e.words.back());
      } else if (!syms.empty()) {
        std::vector<uint32_t> st(syms.size()), fr(syms.size());
        for (size_t i = 0; i < syms.size(); ++i) st[i] = syms[i].start, fr[i] = syms[i].freq;
        std::vector<uint8_t> scratch(2 * syms.size() + 8), out(4 + 2 * syms.size());
        const int64_t len = rans::encode_symbols(st.data(), fr.data(), static_cast<int64_t>(syms.size()),
                                                 scratch.data(), out.data());
        e.bytes.back().insert(e.bytes.back().end(), out.begin(), out.begin() + len);
      }
      e.word_off.back().push_back(static_cast<int64_t>(e.words.back().size()));
      e.byte_off.back().push_back(static_cast<int64_t>(e.bytes.back().size()));
    }
    e.stream_bits += 16.0 * e.words.back().size() + 8.0 * e.bytes.back().size();
    e.bytes.back().resize(e.bytes.back().size() + 8);
    e.words.back().resize(e.words.back().size() + 8);
    e.value_tables.push_back(std::move(tables));
  }
  return e;
}


constexpr uint32_t kGapTable0 = kNumContexts;                // the packed table of gap class g: kGapTable0 + g
constexpr uint32_t kIdleTable = kNumContexts + kGapClasses;  // one more: freq 4096, start 0 in every slot

// Every 12-bit table of a chunk in one array, 4096 entries each: the value tables by context, the
// gap tables by class, and the idle table (it leaves a state unchanged: an idle lane's table). One
// gather with per-lane element offsets (table << 12 | slot) then reads each lane's entry, packed as
// start | bin << 12 | (freq - 1) << 20: freq - 1 is one shift away, the start of the state's
// dependency chain (freq * (x >> 12) = (freq - 1) * (x >> 12) + (x >> 12)).
std::vector<uint32_t> packed_tables(const std::vector<Table>& vt, const std::vector<Table>& gt) {
  std::vector<uint32_t> all;
  for (const auto* tables : {&vt, &gt})
    for (const Table& t : *tables)
      for (uint32_t slot = 0; slot < 4096; ++slot) {
        const uint32_t b = t.lut[slot];
        all.push_back(t.used ? t.cum[b] | b << 12 | (t.freq[b] - 1) << 20 : 0);
      }
  all.resize(all.size() + 4096, 4095u << 20);
  return all;
}

// kStates = 8: each tile's symbols dealt round-robin to eight states interleaved in one stream
// (ryg-style, for a SIMD decoder inside one tile: a format change). Only its size is measured: each
// state's words are counted (the interleaving orders them, it does not change their number), each
// state that codes a symbol pays its own 32-bit flush.
template <int PB, int kStates = 1>
Encoded encode_gap_bins(const std::vector<Chunk>& chunks) {
  Encoded e;
  std::vector<int32_t> coded;
  std::vector<Sym> syms;
  for (const Chunk& c : chunks) {
    // the chunk's gap histogram per density class
    std::vector<int64_t> gap_hist(kGapClasses * kNumBins, 0);
    for (int64_t t = 0; t < c.n_tiles; ++t) {
      coded_set(c, t, coded);
      const int64_t m = static_cast<int64_t>(coded.size()), n = c.h[t] * c.w[t];
      if (m == 0) continue;
      const int cls = gap_class(n, m);
      int64_t prev = -1;
      for (int32_t p : coded) gap_hist[cls * kNumBins + bin_of(p - prev - 1).bin]++, prev = p;
    }
    std::vector<Table> vt, gt;
    for (int x = 0; x < kNumContexts; ++x) {
      vt.push_back(make_table(c.hist.data() + x * kNumBins, PB));
      e.table_bits += table_bits(c.hist.data() + x * kNumBins);
    }
    for (int x = 0; x < kGapClasses; ++x) {
      gt.push_back(make_table(gap_hist.data() + x * kNumBins, PB));
      e.table_bits += table_bits(gap_hist.data() + x * kNumBins);
    }
    e.words.emplace_back(), e.bytes.emplace_back(), e.word_off.emplace_back(1, 0), e.byte_off.emplace_back(1, 0);
    BitWriter bits{e.bytes.back()};
    for (int64_t t = 0; t < c.n_tiles; ++t) {
      syms.clear();
      coded_set(c, t, coded);
      const int64_t m = static_cast<int64_t>(coded.size()), n = c.h[t] * c.w[t];
      if (m > 0) {
        const Table& g = gt[gap_class(n, m)];
        int64_t prev = -1;
        for (int32_t p : coded) {
          const Bin b = bin_of(p - prev - 1);
          prev = p;
          syms.push_back({g.cum[b.bin], g.freq[b.bin]});
          if (b.bits) bits.put(static_cast<uint32_t>(b.offset), b.bits);
        }
      }
      for (int64_t i = 0; i < c.k[t]; ++i) {
        const int64_t idx = c.first[t] + i;
        const Bin b = bin_of(c.u[idx]);
        const Table& v = vt[c.ctx[idx]];
        syms.push_back({v.cum[b.bin], v.freq[b.bin]});
        if (b.bits) bits.put(static_cast<uint32_t>(b.offset), b.bits);
      }
      if (kStates == 1) {
        word_encode<PB>(syms, e.words.back());
      } else {
        std::vector<Sym> dealt;
        for (int j = 0; j < kStates; ++j) {
          dealt.clear();
          for (size_t i = static_cast<size_t>(j); i < syms.size(); i += kStates) dealt.push_back(syms[i]);
          word_encode<PB>(dealt, e.words.back());
        }
      }
      const bool had_bits = bits.n > 0 || e.bytes.back().size() > static_cast<size_t>(e.byte_off.back().back());
      bits.finish();
      if (had_bits) e.stream_bits += 1;  // the end mark a real stream needs to find its last bit
      e.word_off.back().push_back(static_cast<int64_t>(e.words.back().size()));
      e.byte_off.back().push_back(static_cast<int64_t>(e.bytes.back().size()));
    }
    e.stream_bits += 16.0 * e.words.back().size() + 8.0 * e.bytes.back().size();
    e.bytes.back().resize(e.bytes.back().size() + 8);
    e.words.back().resize(e.words.back().size() + 8);
    if (PB == 12 && kStates == 1) e.packed.push_back(packed_tables(vt, gt));
    e.value_tables.push_back(std::move(vt));
    e.gap_tables.push_back(std::move(gt));
  }
  return e;
}

// ------------------------------------------------------------------------------- decoders

// Fill in the nonzero positions from the coded zeros of a more-than-half-full tile.
inline void complement_into(const int32_t* zeros, int64_t m, int64_t n, int32_t* out) {
  int64_t filled = 0, p = 0;
  for (int64_t i = 0; i <= m; ++i) {
    const int64_t stop = i < m ? zeros[i] : n;
    while (p < stop) out[filled++] = static_cast<int32_t>(p++);
    p = stop + 1;
  }
}

// Format 2's symbols read through the byte-renormalised coder of the core (rans.hpp).
struct ByteCoder {
  rans::Reader r;
  void start(const Encoded& e, size_t ci, int64_t t) {
    const uint8_t* base = e.bytes[ci].data();
    rans::start_decoding(r, base + e.byte_off[ci][t], base + e.byte_off[ci][t + 1]);
  }
  uint64_t quotient() {
    uint64_t q = 0;
    rans::decode_quotient(r, q);
    return q;
  }
  uint64_t remainder(const rans::UniformModel& um) {
    uint64_t rem = 0;
    rans::decode_uniform(r, um, rem);
    return rem;
  }
  uint32_t bin(const Table& tab) {
    const uint32_t slot = r.x & 0xFFFF;
    uint32_t s = tab.lut[slot >> 8];
    while (tab.cum[s + 1] <= slot) ++s;
    rans::advance(r, slot, tab.cum[s], tab.freq[s]);
    return s;
  }
  uint32_t raw(int bits) {
    uint32_t v = 0;
    rans::decode_bits(r, bits, v);
    return v;
  }
};

// The same symbols through the word-renormalised coder (one read at most per symbol).
struct WordCoder {
  WordReader r;
  void start(const Encoded& e, size_t ci, int64_t t) { word_start(r, e.words[ci].data() + e.word_off[ci][t]); }
  uint32_t raw(int bits) {
    const uint32_t slot = r.x & 0xFFFF, v = slot >> (16 - bits);
    word_advance<16>(r, slot, v << (16 - bits), 1u << (16 - bits));
    return v;
  }
  uint64_t quotient() {
    uint64_t q = 0;
    for (;;) {
      const uint32_t slot = r.x & 0xFFFF;
      const int sym = rans::quotient_of_slot(slot);
      const auto s = rans::quotient_symbol(sym);
      word_advance<16>(r, slot, s.start, s.freq);
      q += static_cast<uint64_t>(sym);
      if (sym < rans::kQuotientEscape) return q;
    }
  }
  uint64_t remainder(const rans::UniformModel& um) {
    const uint32_t slot = r.x & 0xFFFF, bnd = um.extra * (um.base + 1);
    uint32_t v, start, freq;
    if (slot < bnd) {
      v = static_cast<uint32_t>((slot * um.inv_wide) >> 32), start = v * (um.base + 1), freq = um.base + 1;
    } else {
      v = um.extra + static_cast<uint32_t>(((slot - bnd) * um.inv_narrow) >> 32);
      start = bnd + (v - um.extra) * um.base, freq = um.base;
    }
    word_advance<16>(r, slot, start, freq);
    return um.low_bits ? (uint64_t{v} << um.low_bits) | raw(um.low_bits) : v;
  }
  uint32_t bin(const Table& tab) { return word_table<16>(r, tab); }
};

// Format 2's tile decoding (Golomb gaps, then bins and offsets) with either coder.
template <typename Coder>
void decode_f2_with(const std::vector<Chunk>& chunks, const Encoded& e, Output& o) {
  static std::vector<int32_t> zeros(size_t{1} << 23);
  int64_t out_at = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const Chunk& c = chunks[ci];
    const auto& tables = e.value_tables[ci];
    for (int64_t t = 0; t < c.n_tiles; ++t) {
      const int64_t k = c.k[t], n = c.h[t] * c.w[t];
      if (k == 0) continue;
      Coder coder;
      coder.start(e, ci, t);
      const int64_t m = 2 * k <= n ? k : n - k;
      int32_t* pos = o.pos.data() + out_at;
      int32_t* coded = m == k ? pos : zeros.data();
      if (m > 0) {
        const int64_t gm = golomb_parameter(n, m);
        const bool quotients = (n - m) / gm > 0;
        const rans::UniformModel um = rans::uniform_model(static_cast<uint64_t>(gm));
        int64_t prev = -1;
        for (int64_t i = 0; i < m; ++i) {
          const uint64_t q = quotients ? coder.quotient() : 0;
          const uint64_t rem = gm > 1 ? coder.remainder(um) : 0;
          prev += static_cast<int64_t>(q) * gm + static_cast<int64_t>(rem) + 1;
          coded[i] = static_cast<int32_t>(prev);
        }
        if (m != k) complement_into(zeros.data(), m, n, pos);
      } else {
        for (int64_t i = 0; i < k; ++i) pos[i] = static_cast<int32_t>(i);
      }
      for (int64_t i = 0; i < k; ++i) {
        const uint32_t s = coder.bin(tables[c.ctx[c.first[t] + i]]);
        const int bits = bin_offset_bits(s);
        o.u[out_at + i] = static_cast<int32_t>(bin_start(s) + (bits ? coder.raw(bits) : 0));
      }
      out_at += k;
    }
  }
}

constexpr BinTables kBinTab{};

// One lane of the gap-bin decoder: a tile's rANS state, raw bits and progress.
struct Lane {
  WordReader r;
  BitReader b;
  const Table* gaps;
  int64_t m, k, n, prev, i;
  int32_t* coded;
  int32_t* pos;
  int32_t* u;
  const int32_t* ctx;
};

template <int PB>
inline uint32_t lane_symbol(WordReader& r, const Table& t) {
  if (PB == 13) return word_packed(r, t);  // 13: the 12-bit tables read through their packed lookup
  return word_table<PB>(r, t);
}

template <int PB>
inline void lane_gap(Lane& l) {
  const uint32_t s = lane_symbol<PB>(l.r, *l.gaps);
  const int bits = kBinTab.bits[s];
  const uint32_t off = bits ? l.b.get(bits) : 0;
  l.prev += kBinTab.start[s] + off + 1;
  l.coded[l.i++] = static_cast<int32_t>(l.prev);
}

template <int PB>
inline void lane_value(Lane& l, const std::vector<Table>& vt) {
  const uint32_t s = lane_symbol<PB>(l.r, vt[l.ctx[l.i]]);
  const int bits = kBinTab.bits[s];
  const uint32_t off = bits ? l.b.get(bits) : 0;
  l.u[l.i++] = static_cast<int32_t>(kBinTab.start[s] + off);
}

template <int PB, int kLanes>
void decode_gap_bins(const std::vector<Chunk>& chunks, const Encoded& e, Output& o) {
  static std::vector<int32_t> zeros(size_t{kLanes} << 23);
  int64_t out_at = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const Chunk& c = chunks[ci];
    const auto& vt = e.value_tables[ci];
    const auto& gt = e.gap_tables[ci];
    for (int64_t t0 = 0; t0 < c.n_tiles; t0 += kLanes) {
      Lane lanes[kLanes];
      int active = 0;
      for (int j = 0; j < kLanes && t0 + j < c.n_tiles; ++j) {
        const int64_t t = t0 + j;
        Lane& l = lanes[active];
        l.k = c.k[t], l.n = c.h[t] * c.w[t];
        if (l.k == 0) continue;
        l.m = 2 * l.k <= l.n ? l.k : l.n - l.k;
        word_start(l.r, e.words[ci].data() + e.word_off[ci][t]);
        l.b.start(e.bytes[ci].data() + e.byte_off[ci][t]);
        l.gaps = l.m ? &gt[gap_class(l.n, l.m)] : nullptr;
        l.pos = o.pos.data() + out_at;
        l.u = o.u.data() + out_at;
        l.coded = l.m == l.k ? l.pos : zeros.data() + (static_cast<size_t>(active) << 23);
        l.ctx = c.ctx.data() + c.first[t];
        l.prev = -1, l.i = 0;
        out_at += l.k;
        ++active;
      }
      // positions, in lockstep while every lane has gaps left; each loop works on local copies of
      // the lanes (their states stay in registers: the output stores cannot alias them)
      if (kLanes > 1 && active == kLanes) {
        Lane L[kLanes];
        for (int j = 0; j < kLanes; ++j) L[j] = lanes[j];
        int64_t all = L[0].m;
        for (int j = 1; j < kLanes; ++j) all = std::min(all, L[j].m);
        for (int64_t i = 0; i < all; ++i) {
#pragma GCC unroll 4
          for (int j = 0; j < kLanes; ++j) lane_gap<PB>(L[j]);
        }
        for (int j = 0; j < kLanes; ++j) lanes[j] = L[j];
      }
      for (int j = 0; j < active; ++j) {
        Lane l = lanes[j];
        while (l.i < l.m) lane_gap<PB>(l);
        if (l.m == 0)
          for (int64_t i = 0; i < l.k; ++i) l.pos[i] = static_cast<int32_t>(i);
        else if (l.m != l.k)
          complement_into(l.coded, l.m, l.n, l.pos);
        l.i = 0;
        lanes[j] = l;
      }
      if (kLanes > 1 && active == kLanes) {
        Lane L[kLanes];
        for (int j = 0; j < kLanes; ++j) L[j] = lanes[j];
        int64_t all = L[0].k;
        for (int j = 1; j < kLanes; ++j) all = std::min(all, L[j].k);
        for (int64_t i = 0; i < all; ++i) {
#pragma GCC unroll 4
          for (int j = 0; j < kLanes; ++j) lane_value<PB>(L[j], vt);
        }
        for (int j = 0; j < kLanes; ++j) lanes[j] = L[j];
      }
      for (int j = 0; j < active; ++j) {
        Lane l = lanes[j];
        while (l.i < l.k) lane_value<PB>(l, vt);
      }
    }
  }
}

// ------------------------------------------------------------------------------- 8 tiles in lockstep

// gap-bins/12p/simd8 decodes the gap-bins/12 streams (no format change) eight tiles at a time, one
// tile per lane of a Vec8 (vec8.hpp). Every step decodes one symbol in every lane: the slot
// x & 4095, one gather of the packed entry (the lane's table is its gap class in the gap phase, its
// value's context in the value phase: the gather's element offset is table << 12 | slot), the state
// update with 32-bit multiplies, renormalisation by a 16-bit word gathered at the lane's word index
// (all tiles of a chunk lie in one buffer), and the offset bits gathered from the lane's place in
// the raw bit stream (a 32-bit read at byte bit >> 3, shifted by bit & 7: exact for up to 25 bits).
//
// A lane's phase ends when its symbols of that phase are decoded (left reaches 0); the step loop
// then spills the registers and the scalar bookkeeping below switches the lane from gaps to values,
// or hands it the chunk's next tile (refill: lanes stay busy whatever the tiles' symbol counts), or
// makes it idle when the chunk has none left. An idle lane decodes through the idle table (state,
// word and bit positions unchanged) into a sink, so the step loop has no per-lane branch.

constexpr int kLanes8 = 8;
constexpr uint32_t kSinkLength = 1024;  // an idle lane's outputs: its sink is rewound every kSinkLength steps

// The lanes' registers as arrays (spilled only when a phase ends) and the scalar bookkeeping.
struct Lanes8 {
  uint32_t x[kLanes8], word[kLanes8], bit[kLanes8];  // state, next word index, next raw bit index
  uint32_t table[kLanes8];   // the gap phase's table (kIdleTable when idle)
  uint32_t ctx_at[kLanes8];  // index of the next value's context in the chunk's contexts
  uint32_t gap[kLanes8];     // all ones in the gap phase (positions: prefix sums of gaps)
  uint32_t prev[kLanes8];    // the last position decoded (gap phase)
  int64_t tile[kLanes8];     // -1: idle
  uint64_t end[kLanes8];     // the step at which the lane's phase ends (its last symbol is decoded)
  uint64_t next_end = 0;     // the first of them
  // The step loop writes lane j's output of step s at address out[j] + 4 * s: every lane advances
  // one output per step, so one step counter serves all eight (set_out keeps this true).
  uintptr_t out[kLanes8];
  std::vector<int32_t> zeros[kLanes8];  // the coded zeros of a more-than-half-full tile
  int32_t sink[kLanes8][kSinkLength];
  uint64_t step = 0;  // steps of all eight lanes so far (each decodes a symbol in every lane)
  uint64_t symbols = 0;
};

// Lane j's next output goes to p.
void set_out(Lanes8& L, int j, int32_t* p) { L.out[j] = reinterpret_cast<uintptr_t>(p) - 4 * L.step; }

// The chunk's tiles handed to lanes, in order; its output arrays start at pos and u.
struct LaneFeed {
  const Chunk& c;
  const Encoded& e;
  size_t ci;
  int32_t* pos;
  int32_t* u;
  bool refill;  // false: a group of eight tiles finishes before the next eight start
  int64_t next = 0;
};

void lane_idle(Lanes8& L, int j) {
  L.tile[j] = -1;
  L.x[j] = kWordLow, L.word[j] = 0, L.bit[j] = 0;  // any valid word and bit: the idle table reads none
  L.table[j] = kIdleTable, L.gap[j] = ~0u, L.prev[j] = 0;
  L.end[j] = L.step + kSinkLength;
  set_out(L, j, L.sink[j]);
}

// Start the feed's next tile with nonzeros on lane j, or make the lane idle.
void lane_take(Lanes8& L, int j, LaneFeed& f) {
  const Chunk& c = f.c;
  while (f.next < c.n_tiles && c.k[f.next] == 0) ++f.next;
  if (f.next == c.n_tiles) return lane_idle(L, j);
  const int64_t t = f.next++, k = c.k[t], n = c.h[t] * c.w[t], m = 2 * k <= n ? k : n - k;
  const uint16_t* w = f.e.words[f.ci].data() + f.e.word_off[f.ci][t];
  L.tile[j] = t;
  L.x[j] = uint32_t{w[0]} | (uint32_t{w[1]} << 16);
  L.word[j] = static_cast<uint32_t>(f.e.word_off[f.ci][t] + 2);
  L.bit[j] = static_cast<uint32_t>(8 * f.e.byte_off[f.ci][t]);
  L.prev[j] = ~0u;  // position -1
  L.symbols += static_cast<uint64_t>(m + k);
  if (m == 0) {  // a full tile: its positions are 0..k-1, its symbols only values
    for (int64_t i = 0; i < k; ++i) f.pos[c.first[t] + i] = static_cast<int32_t>(i);
    L.gap[j] = 0, L.end[j] = L.step + static_cast<uint64_t>(k);
    L.ctx_at[j] = static_cast<uint32_t>(c.first[t]);
    set_out(L, j, f.u + c.first[t]);
    return;
  }
  L.table[j] = kGapTable0 + static_cast<uint32_t>(gap_class(n, m));
  L.gap[j] = ~0u, L.end[j] = L.step + static_cast<uint64_t>(m);
  if (m == k) {
    set_out(L, j, f.pos + c.first[t]);
  } else {
    if (L.zeros[j].size() < static_cast<size_t>(m)) L.zeros[j].resize(static_cast<size_t>(m));
    set_out(L, j, L.zeros[j].data());
  }
}

// Lane j's phase ended: gaps go on to values, values to the next tile (or idle), idle rewinds.
void lane_phase_end(Lanes8& L, int j, LaneFeed& f) {
  if (L.tile[j] < 0) {
    L.end[j] = L.step + kSinkLength;
    set_out(L, j, L.sink[j]);
    return;
  }
  const Chunk& c = f.c;
  const int64_t t = L.tile[j];
  if (L.gap[j]) {
    const int64_t k = c.k[t], n = c.h[t] * c.w[t];
    if (2 * k > n) complement_into(L.zeros[j].data(), n - k, n, f.pos + c.first[t]);
    L.gap[j] = 0, L.end[j] = L.step + static_cast<uint64_t>(k);
    L.ctx_at[j] = static_cast<uint32_t>(c.first[t]);
    set_out(L, j, f.u + c.first[t]);
  } else if (f.refill) {
    lane_take(L, j, f);
  } else {
    lane_idle(L, j);
  }
}

// Every lane's phase ends at L.step or later: handle those that end now (the registers are
// spilled); false when every lane is idle for good.
__attribute__((noinline)) bool lanes_phase_ends(Lanes8& L, LaneFeed& f) {
  for (int j = 0; j < kLanes8; ++j)
    if (L.end[j] == L.step) lane_phase_end(L, j, f);
  bool busy = false;
  for (int j = 0; j < kLanes8; ++j) busy |= L.tile[j] >= 0;
  if (!busy && f.next < f.c.n_tiles)  // without refill: the next group of eight
    for (int j = 0; j < kLanes8; ++j) lane_take(L, j, f);
  busy = false;
  L.next_end = L.end[0];
  for (int j = 0; j < kLanes8; ++j) busy |= L.tile[j] >= 0, L.next_end = std::min(L.next_end, L.end[j]);
  return busy;
}

// Offset bits of more than 25 (values from 2**28: never in these datasets) in a 64-bit read.
inline void wide_offsets(uint32_t* raw, const uint32_t* bit, const uint32_t* bits,
                                            const uint8_t* bytes) {
  for (int j = 0; j < kLanes8; ++j) {
    if (bits[j] <= 25) continue;
    uint64_t v;
    std::memcpy(&v, bytes + (bit[j] >> 3), 8);
    raw[j] = static_cast<uint32_t>((v >> (bit[j] & 7)) & ((uint64_t{1} << bits[j]) - 1));
  }
}

// The registers of one group of eight lanes between phase ends.
template <typename V>
struct LaneRegs {
  V x, word, bit, table, ctx_at, gap, prev;
  LaneRegs() = default;
  explicit LaneRegs(const Lanes8& L)
      : x(V::load(L.x)), word(V::load(L.word)), bit(V::load(L.bit)), table(V::load(L.table)),
        ctx_at(V::load(L.ctx_at)), gap(V::load(L.gap)), prev(V::load(L.prev)) {}
  void spill(Lanes8& L) const {
    V::store(L.x, x), V::store(L.word, word), V::store(L.bit, bit), V::store(L.table, table);
    V::store(L.ctx_at, ctx_at), V::store(L.gap, gap), V::store(L.prev, prev);
  }
};

// The lane logic, once for both Vec8 types: one symbol in each of eight lanes, written to the
// lanes' outputs.
template <typename V>
inline void lane_step(LaneRegs<V>& r, const Lanes8& L, uint64_t step, const uint32_t* packed, const uint16_t* words,
                     const uint8_t* bytes, const int32_t* ctx) {
  const V zero = V::splat(0), one = V::splat(1), seven = V::splat(7), slot_mask = V::splat(4095);
  // the next word of each lane is read before its state is known: off the dependency chain
  const V next_word = V::and_(V::template gather<2>(words, r.word), V::splat(0xFFFF));
  const V slot = V::and_(r.x, slot_mask);
  const V table = V::template gather_where<4>(r.table, ctx, r.ctx_at, V::eq(r.gap, zero));
  const V entry = V::template gather<4>(packed, V::or_(V::template slli<12>(table), slot));
  const V high = V::template srli<12>(r.x);
  const V x = V::add(V::mul(V::template srli<20>(entry), high), V::sub(V::add(high, slot), V::and_(entry, slot_mask)));
  const V renorm = V::eq(V::template srli<16>(x), zero);
  r.x = V::select(renorm, x, V::or_(V::template slli<16>(x), next_word));
  r.word = V::sub(r.word, renorm);  // renorm lanes are all ones: -1
  // the bin's first value and offset bits (models.hpp's bin_start and bin_offset_bits)
  const V bin = V::and_(V::template srli<12>(entry), V::splat(255));
  const V rel = V::sub(V::max(bin, seven), seven);
  const V bits = V::template srli<3>(rel);
  const V lead = V::add(V::and_(rel, seven), V::splat(8));
  const V first = V::select(V::gt_signed(seven, bin), V::sub(V::sllv(lead, bits), one), bin);
  V raw = V::and_(V::srlv(V::template gather<1>(bytes, V::template srli<3>(r.bit)), V::and_(r.bit, seven)),
                  V::sub(V::sllv(one, bits), one));
  if (V::bits(V::gt_signed(bits, V::splat(25)))) {
    uint32_t w[kLanes8], b[kLanes8], n[kLanes8];
    V::store(w, raw), V::store(b, r.bit), V::store(n, bits);
    wide_offsets(w, b, n, bytes);
    raw = V::load(w);
  }
  r.bit = V::add(r.bit, bits);
  const V value = V::add(first, raw);
  r.prev = V::add(r.prev, V::and_(r.gap, V::add(value, one)));
  uint32_t o[kLanes8];
  V::store(o, V::select(r.gap, value, r.prev));
  for (int j = 0; j < kLanes8; ++j) *reinterpret_cast<int32_t*>(L.out[j] + 4 * step) = static_cast<int32_t>(o[j]);
  r.ctx_at = V::add(r.ctx_at, one);
}

// Decode every tile of the feed's chunk on G groups of eight lanes stepped together (G = 2: two
// independent dependency chains, so one group's gathers wait while the other's work runs).
template <typename V, int G>
inline void lanes_decode_chunk(Lanes8* L, LaneFeed& f) {
  const uint32_t* packed = f.e.packed[f.ci].data();
  const uint16_t* words = f.e.words[f.ci].data();
  const uint8_t* bytes = f.e.bytes[f.ci].data();
  const int32_t* ctx = f.c.ctx.data();
  for (int g = 0; g < G; ++g) lanes_phase_ends(L[g], f);  // every lane is idle: each takes a tile
  LaneRegs<V> r[G];
  for (int g = 0; g < G; ++g) r[g] = LaneRegs<V>(L[g]);
  // the first phase end of any lane: a scalar compare per step, not a vector one
  uint64_t next_end = L[0].next_end;
  for (int g = 0; g < G; ++g) next_end = std::min(next_end, L[g].next_end);
  for (uint64_t step = L[0].step;; ++step) {
    for (int g = 0; g < G; ++g) lane_step<V>(r[g], L[g], step, packed, words, bytes, ctx);
    if (step + 1 != next_end) continue;
    bool busy = false;
    next_end = ~uint64_t{0};
    for (int g = 0; g < G; ++g) {
      L[g].step = step + 1;
      r[g].spill(L[g]);
      busy |= lanes_phase_ends(L[g], f);
      r[g] = LaneRegs<V>(L[g]);
      next_end = std::min(next_end, L[g].next_end);
    }
    if (!busy) break;
  }
}

#ifdef SINR_HAVE_AVX2
// flatten: the template and Vec8Avx2's operations are all inlined here, under this target
template <int G>
__attribute__((target("avx2"), flatten)) void lanes_decode_chunk_avx2(Lanes8* L, LaneFeed& f) {
  lanes_decode_chunk<simd::Vec8Avx2, G>(L, f);
}
#endif

template <int G>
void lanes_decode_chunk_portable(Lanes8* L, LaneFeed& f) {
  lanes_decode_chunk<simd::Vec8Portable, G>(L, f);
}

// What the last simd8 decode cost in lockstep (reported on stderr).
struct LaneUse {
  uint64_t steps = 0, symbols = 0;
} g_lane_use;

enum class Simd8 { kAuto, kPortable, kNoRefill };

// G groups of eight lanes (G tiles per lane group in flight: 8 G tiles); kMode picks the path.
template <int G, Simd8 kMode>
void decode_simd8(const std::vector<Chunk>& chunks, const Encoded& e, Output& o) {
  static Lanes8 L[G];
#ifdef SINR_HAVE_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
#endif
  for (Lanes8& l : L) {
    l.step = l.symbols = 0;
    for (int j = 0; j < kLanes8; ++j) lane_idle(l, j);
  }
  int64_t out_at = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    LaneFeed f{chunks[ci], e, ci, o.pos.data() + out_at, o.u.data() + out_at, kMode != Simd8::kNoRefill};
#ifdef SINR_HAVE_AVX2
    if (kMode != Simd8::kPortable && avx2)
      lanes_decode_chunk_avx2<G>(L, f);
    else
#endif
      lanes_decode_chunk_portable<G>(L, f);
    out_at += chunks[ci].nnz;
  }
  g_lane_use = {};
  for (const Lanes8& l : L) g_lane_use.steps += l.step, g_lane_use.symbols += l.symbols;
}

// ------------------------------------------------------------------------------- driver

struct Candidate {
  const char* name;
  Encoded (*encode)(const std::vector<Chunk>&);
  void (*decode)(const std::vector<Chunk>&, const Encoded&, Output&);
};

double seconds_of(void (*decode)(const std::vector<Chunk>&, const Encoded&, Output&), const std::vector<Chunk>& ch,
                  const Encoded& e, Output& o, int passes) {
  std::vector<double> times;
  for (int i = 0; i < passes; ++i) {
    timespec a, b;  // this thread's CPU time: other processes on the machine do not count
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    decode(ch, e, o);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    times.push_back(double(b.tv_sec - a.tv_sec) + 1e-9 * double(b.tv_nsec - a.tv_nsec));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Candidate candidates[] = {
      {"f2", [](const std::vector<Chunk>& c) { return encode_f2(c, false); }, decode_f2_with<ByteCoder>},
      {"f2-word", [](const std::vector<Chunk>& c) { return encode_f2(c, true); }, decode_f2_with<WordCoder>},
      {"gap-bins/16", encode_gap_bins<16>, decode_gap_bins<16, 1>},
      {"gap-bins/16/x2", encode_gap_bins<16>, decode_gap_bins<16, 2>},
      {"gap-bins/12", encode_gap_bins<12>, decode_gap_bins<12, 1>},
      {"gap-bins/12/x2", encode_gap_bins<12>, decode_gap_bins<12, 2>},
      {"gap-bins/12p", encode_gap_bins<12>, decode_gap_bins<13, 1>},
      {"gap-bins/12p/x2", encode_gap_bins<12>, decode_gap_bins<13, 2>},
      {"gap-bins/12p/x4", encode_gap_bins<12>, decode_gap_bins<13, 4>},
      {"gap-bins/12p/simd8", encode_gap_bins<12>, decode_simd8<1, Simd8::kAuto>},
      {"gap-bins/12p/simd8-portable", encode_gap_bins<12>, decode_simd8<1, Simd8::kPortable>},
      {"gap-bins/12p/simd8-norefill", encode_gap_bins<12>, decode_simd8<1, Simd8::kNoRefill>},
      {"gap-bins/12p/simd8x2", encode_gap_bins<12>, decode_simd8<2, Simd8::kAuto>},
      {"gap-bins/12p/interleaved8", encode_gap_bins<12, 8>, nullptr},  // size only: not decoded
  };
  const int passes = std::getenv("LAB_PASSES") ? std::atoi(std::getenv("LAB_PASSES")) : 9;
  std::printf("dataset,candidate,nnz,tiles,stream_bits_per_nnz,table_bits_per_nnz,total_bits_per_nnz,decode_ns_per_nnz\n");
  for (int a = 1; a < argc; ++a) {
    const std::string path = argv[a];
    const std::vector<Chunk> chunks = load(path);
    int64_t nnz = 0, tiles = 0;
    for (const Chunk& c : chunks) nnz += c.nnz, tiles += c.n_tiles;
    std::string name = path.substr(path.find_last_of('/') + 1);
    name = name.substr(0, name.find('.'));
    const char* only = std::getenv("LAB_ONLY");
    for (const Candidate& cand : candidates) {
      if (only && std::strcmp(only, cand.name) != 0) continue;
      const Encoded e = cand.encode(chunks);
      Output o;
      o.pos.assign(static_cast<size_t>(nnz), -1);
      o.u.assign(static_cast<size_t>(nnz), -1);
      if (!cand.decode) {
        std::printf("%s,%s,%lld,%lld,%.4f,%.4f,%.4f,\n", name.c_str(), cand.name, (long long)nnz, (long long)tiles,
                    e.stream_bits / nnz, e.table_bits / nnz, (e.stream_bits + e.table_bits) / nnz);
        continue;
      }
      const double s = seconds_of(cand.decode, chunks, e, o, passes);
      int64_t at = 0;
      for (const Chunk& c : chunks)
        for (int64_t i = 0; i < c.nnz; ++i, ++at)
          if (o.pos[at] != c.pos[i] || o.u[at] != c.u[i]) {
            std::fprintf(stderr, "%s %s: nonzero %lld decoded wrong\n", name.c_str(), cand.name, (long long)at);
            return 1;
          }
      std::printf("%s,%s,%lld,%lld,%.4f,%.4f,%.4f,%.2f\n", name.c_str(), cand.name, (long long)nnz, (long long)tiles,
                  e.stream_bits / nnz, e.table_bits / nnz, (e.stream_bits + e.table_bits) / nnz, s * 1e9 / nnz);
      std::fflush(stdout);
      if (g_lane_use.steps)  // the lockstep's cost: lane steps that decoded no symbol
        std::fprintf(stderr, "%s %s: %.2f%% of lane steps idle\n", name.c_str(), cand.name,
                     100.0 * (1.0 - double(g_lane_use.symbols) / double(kLanes8 * g_lane_use.steps)));
      g_lane_use = {};
    }
  }
  return 0;
}
