// The range asymmetric numeral system (rANS) coder of format 2's tiles (spec §C.1).
//
// State: an integer x in [kRansLow, 2**31), a uint32. Probabilities have kProbBits = 16 bits: a
// symbol is (start, freq) with 0 < freq and start + freq <= 2**16. Renormalisation moves one byte
// at a time. The encoder starts from x = kRansLow, codes symbols in reverse decoding order and ends
// with the state, written first as 4 little-endian bytes, followed by the bytes it emitted, last
// emitted first. The decoder reads the state, decodes, and must end at x = kRansLow with every
// byte consumed: a free integrity check of each stream.
//
// Decoder primitives work on a Reader held by value in the caller's loop (its three words stay in
// registers) and return false when the stream ends too early; they never read outside
// [pos, end). Every model below keeps a valid state valid; a hostile stream can only make them
// fail or decode other symbols, never leave the buffer.
#pragma once
#include <cstdint>

#include "sinr/models.hpp"

namespace sinr::rans {

constexpr int kProbBits = 16;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kRansLow = 1u << 23;
constexpr int kStateBytes = 4;
constexpr int kQuotientEscape = 15;  // symbol 15 of the quotient model: "add 15 and read another"

// ---------------------------------------------------------------------------------- symbols

struct Symbol {
  uint32_t start;
  uint32_t freq;
};

// (start, freq) of value under the uniform model over 0..size-1, 2 <= size <= 2**16: the first
// kProbScale mod size values get one more slot than the others.
inline Symbol uniform_symbol(uint32_t value, uint32_t size) {
  const uint32_t base = kProbScale / size;
  const uint32_t extra = kProbScale - base * size;
  if (value < extra) return {value * (base + 1), base + 1};
  return {extra * (base + 1) + (value - extra) * base, base};
}

// (start, freq) of quotient symbol q in 0..15: P(q) = 2**-(q+1) for q < 15, 2**-15 for 15.
inline Symbol quotient_symbol(int q) {
  if (q == kQuotientEscape) return {kProbScale - 2, 2};
  return {kProbScale - (1u << (kProbBits - q)), 1u << (kProbBits - 1 - q)};
}

// ---------------------------------------------------------------------------------- encoder

// The symbol pushers write through a sink with push(start, freq) (the encoder's own buffers, or
// the bindings' checked arrays).

// A uniform `bits`-bit value (1..16 bits): exactly `bits` bits of code.
template <typename Sink>
inline void push_bits(Sink& sink, uint32_t value, int bits) {
  const int shift = kProbBits - bits;
  sink.push(value << shift, 1u << shift);
}

// value in 0..size-1, size >= 2: uniform over size, split above 2**16 into a uniform high part
// and (bit_length(size - 1) - 16) raw low bits.
template <typename Sink>
inline void push_uniform(Sink& sink, uint64_t value, uint64_t size) {
  if (size <= kProbScale) {
    const Symbol s = uniform_symbol(static_cast<uint32_t>(value), static_cast<uint32_t>(size));
    sink.push(s.start, s.freq);
    return;
  }
  const int low_bits = bit_length(size - 1) - kProbBits;
  const Symbol s = uniform_symbol(static_cast<uint32_t>(value >> low_bits),
                                  static_cast<uint32_t>(((size - 1) >> low_bits) + 1));
  sink.push(s.start, s.freq);
  push_bits(sink, static_cast<uint32_t>(value & ((uint64_t{1} << low_bits) - 1)), low_bits);
}

// A Golomb quotient: escapes of 15 while q >= 15, then q's symbol.
template <typename Sink>
inline void push_quotient(Sink& sink, uint64_t q) {
  while (q >= kQuotientEscape) {
    const Symbol s = quotient_symbol(kQuotientEscape);
    sink.push(s.start, s.freq);
    q -= kQuotientEscape;
  }
  const Symbol s = quotient_symbol(static_cast<int>(q));
  sink.push(s.start, s.freq);
}

// Code symbols 0..n-1 (in decoding order) into out; return the bytes written (0 for no symbol).
// Every freq must be in 1..2**16 and start + freq <= 2**16. scratch must hold 2 * n bytes (a
// symbol emits at most 16 bits) and out 4 + 2 * n.
int64_t encode_symbols(const uint32_t* starts, const uint32_t* freqs, int64_t n, uint8_t* scratch, uint8_t* out);

// ---------------------------------------------------------------------------------- decoder

struct Reader {
  uint32_t x;
  const uint8_t* pos;
  const uint8_t* end;
};

// A byte at a time, each checked against the end. (After a symbol x >= 2**7, so this takes at most
// two bytes; branches beat a branch-free form here, whose longer dependency chain costs more than
// the mispredictions.)
inline bool renormalise(Reader& r) {
  while (r.x < kRansLow) {
    if (r.pos == r.end) return false;
    r.x = (r.x << 8) | *r.pos++;
  }
  return true;
}

// Read the initial state; false if the stream is too short or the state out of range.
inline bool start_decoding(Reader& r, const uint8_t* pos, const uint8_t* end) {
  r.pos = pos;
  r.end = end;
  r.x = 0;
  if (end - pos < kStateBytes) return false;
  const uint32_t x = uint32_t{pos[0]} | (uint32_t{pos[1]} << 8) | (uint32_t{pos[2]} << 16) | (uint32_t{pos[3]} << 24);
  r.x = x;
  if (x < kRansLow || x >= (kRansLow << 8)) return false;
  r.pos = pos + kStateBytes;
  return true;
}

// Take the symbol (start, freq) holding slot = x mod 2**16 off the state. freq >= 1 and
// start <= slot < start + freq keep x within uint32.
inline bool advance(Reader& r, uint32_t slot, uint32_t start, uint32_t freq) {
  r.x = freq * (r.x >> kProbBits) + slot - start;
  return renormalise(r);
}

// A symbol of a frequency table: cum its cumulative frequencies (cum[0] = 0, cum[kNumBins] = 2**16,
// non-decreasing), lut[s >> 8] a symbol at or before the one holding slot s, where a short search
// starts. The caller checks these properties once per table (see tile.cpp).
inline bool decode_table(Reader& r, const int32_t* cum, const uint8_t* lut, uint32_t& symbol) {
  const uint32_t slot = r.x & (kProbScale - 1);
  uint32_t s = lut[slot >> 8];
  while (static_cast<uint32_t>(cum[s + 1]) <= slot) ++s;
  symbol = s;
  const uint32_t start = static_cast<uint32_t>(cum[s]);
  return advance(r, slot, start, static_cast<uint32_t>(cum[s + 1]) - start);
}

// `bits` raw bits, 1..16.
inline bool decode_bits(Reader& r, int bits, uint32_t& value) {
  const int shift = kProbBits - bits;
  const uint32_t slot = r.x & (kProbScale - 1);
  value = slot >> shift;
  r.x = ((r.x >> kProbBits) << shift) + (slot & ((1u << shift) - 1));
  return renormalise(r);
}

// The uniform model over 0..size-1, computed once per tile: reciprocals ceil(2**32 / d) divide
// any slot exactly.
struct UniformModel {
  uint32_t base;
  uint32_t extra;
  uint64_t inv_wide;
  uint64_t inv_narrow;
  int low_bits;
};

inline UniformModel uniform_model(uint64_t size) {
  const int b = bit_length(size - 1) - kProbBits;
  const int low_bits = b > 0 ? b : 0;
  const uint64_t coded = ((size - 1) >> low_bits) + 1;
  const uint32_t base = static_cast<uint32_t>(kProbScale / coded);
  const uint32_t extra = static_cast<uint32_t>(kProbScale - base * coded);
  const uint64_t two32 = uint64_t{1} << 32;
  return {base, extra, (two32 + base) / (base + 1), (two32 + base - 1) / base, low_bits};
}

// A value of a uniform model; the inverse of push_uniform. The model must come from uniform_model
// (the bindings check hand-made ones).
inline bool decode_uniform(Reader& r, const UniformModel& u, uint64_t& value) {
  const uint32_t slot = r.x & (kProbScale - 1);
  const uint32_t boundary = u.extra * (u.base + 1);
  // both halves computed, one selected by a mask: no branch on the slot
  const uint32_t v_wide = static_cast<uint32_t>((slot * u.inv_wide) >> 32);
  const uint32_t above = slot - boundary;  // wraps when the slot is below: then unused
  const uint32_t v_narrow = u.extra + static_cast<uint32_t>((above * u.inv_narrow) >> 32);
  const uint32_t wide = 0u - static_cast<uint32_t>(slot < boundary);
  const uint32_t v = (v_wide & wide) | (v_narrow & ~wide);
  const uint32_t start = ((v_wide * (u.base + 1)) & wide) | ((boundary + (v_narrow - u.extra) * u.base) & ~wide);
  const uint32_t freq = u.base + (1 & wide);
  bool ok = advance(r, slot, start, freq);
  value = v;
  if (u.low_bits == 0 || !ok) return ok;
  uint32_t low;
  ok = decode_bits(r, u.low_bits, low);
  value = (value << u.low_bits) | low;
  return ok;
}

// Leading ones of a byte (spec §C.1.4's quotient model, for compilers without a clz builtin).
struct LeadingOnes {
  uint8_t of[256];
  constexpr LeadingOnes() : of() {
    for (int b = 0; b < 256; ++b) {
      int n = 0;
      while (n < 8 && (b & (0x80 >> n))) ++n;
      of[b] = static_cast<uint8_t>(n);
    }
  }
};
inline constexpr LeadingOnes kLeadingOnes{};

// Leading ones of a 16-bit slot, capped at 15: the leading zeros of its complement, with bit 16 set
// so that the count stops at 15.
inline int quotient_of_slot(uint32_t slot) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_clz(((~slot & 0xFFFFu) << 16) | 0x10000u);
#else
  int q = kLeadingOnes.of[slot >> 8];
  if (q == 8) q += kLeadingOnes.of[slot & 0xFF];
  return q > kQuotientEscape ? kQuotientEscape : q;
#endif
}

// One symbol of the quotient model. Symbol q < 15 holds the slots with exactly q leading ones,
// start 2**16 - 2**(16-q) and freq 2**(15-q), so slot - start is the slot's low 15-q bits; the
// escape (15 or 16 leading ones) has freq 2 and slot - start its last bit. So advancing takes
// shifts and a mask, no multiply: x' = (x >> 16) << s | (x mod 2**s), s = max(15 - q, 1).
inline bool decode_quotient_symbol(Reader& r, int& q) {
  const int symbol = quotient_of_slot(r.x & (kProbScale - 1));
  const int s = symbol < kQuotientEscape - 1 ? kQuotientEscape - symbol : 1;
  r.x = ((r.x >> kProbBits) << s) | (r.x & ((1u << s) - 1));
  q = symbol;
  return renormalise(r);
}

// A Golomb quotient: symbols of the quotient model, summed while they are escapes. Each escape
// takes 15 bits of the stream, so a hostile stream ends the loop by running out of bytes.
inline bool decode_quotient(Reader& r, uint64_t& total) {
  uint64_t sum = 0;
  for (;;) {
    int q;
    const bool ok = decode_quotient_symbol(r, q);
    sum += static_cast<uint64_t>(q);
    if (!ok || q < kQuotientEscape) {
      total = sum;
      return ok;
    }
  }
}

}  // namespace sinr::rans
