"""The range asymmetric numeral system (rANS) coder of .sinr, compiled with numba.

State: an integer x in [RANS_LOW, 2**31), kept in int64. Probabilities have PROB_BITS = 16 bits:
a symbol is (start, freq) with 0 < freq and start + freq <= 2**16. Renormalisation moves one byte
at a time. The encoder starts from x = RANS_LOW, codes symbols in reverse decoding order and ends
with the state, written first as 4 little-endian bytes, followed by the bytes it emitted, last
emitted first. The decoder reads the state, decodes, and must end at x = RANS_LOW with every byte
consumed: a free integrity check of each stream. spec/sinr-format.md §6.1 defines the same.

Decoder helpers return the new position, or -1 when the stream ends too early.
"""
from __future__ import annotations

import numpy as np
from numba import njit

PROB_BITS = 16
PROB_SCALE = 1 << PROB_BITS
RANS_LOW = 1 << 23
STATE_BYTES = 4
QUOTIENT_ESCAPE = 15  # symbol 15 of the quotient model: "add 15 and read another"
JIT = dict(nogil=True, cache=True)
INLINE = dict(nogil=True, cache=True, inline="always")  # small helpers of hot loops: numba's own inlining


# ------------------------------------------------------------------------------------ encoder

@njit(**JIT)
def encode_symbols(starts: np.ndarray, freqs: np.ndarray, n: int, scratch: np.ndarray, out: np.ndarray,
                   out_pos: int) -> int:
    """Code symbols 0..n-1 (in decoding order) into out[out_pos:]; return the bytes written.

    scratch must hold 2 * n bytes (a symbol emits at most 16 bits)."""
    if n == 0:
        return 0
    x = RANS_LOW
    emitted = 0
    for i in range(n - 1, -1, -1):
        freq = freqs[i]
        limit = ((RANS_LOW >> PROB_BITS) << 8) * freq
        while x >= limit:
            scratch[emitted] = x & 0xFF
            emitted += 1
            x >>= 8
        x = ((x // freq) << PROB_BITS) + (x % freq) + starts[i]
    for b in range(STATE_BYTES):
        out[out_pos + b] = (x >> (8 * b)) & 0xFF
    for j in range(emitted):
        out[out_pos + STATE_BYTES + j] = scratch[emitted - 1 - j]
    return STATE_BYTES + emitted


@njit(**INLINE)
def push(starts: np.ndarray, freqs: np.ndarray, n: int, start: int, freq: int) -> int:
    starts[n] = start
    freqs[n] = freq
    return n + 1


@njit(**INLINE)
def push_bits(starts: np.ndarray, freqs: np.ndarray, n: int, value: int, bits: int) -> int:
    """A uniform `bits`-bit value (1..16 bits): exactly `bits` bits of code."""
    shift = PROB_BITS - bits
    return push(starts, freqs, n, value << shift, 1 << shift)


@njit(**INLINE)
def uniform_symbol(value: int, size: int) -> tuple[int, int]:
    """(start, freq) of `value` under the uniform model over 0..size-1 (size <= 2**16): the first
    PROB_SCALE mod size values get one more slot than the others."""
    base = PROB_SCALE // size
    extra = PROB_SCALE - base * size
    if value < extra:
        return value * (base + 1), base + 1
    return extra * (base + 1) + (value - extra) * base, base


@njit(**INLINE)
def push_uniform(starts: np.ndarray, freqs: np.ndarray, n: int, value: int, size: int) -> int:
    """value in 0..size-1, size >= 2: uniform over size, split above 2**16 into a uniform high
    part and (bit_length(size - 1) - 16) raw low bits."""
    if size <= PROB_SCALE:
        start, freq = uniform_symbol(value, size)
        return push(starts, freqs, n, start, freq)
    low_bits = bit_length(size - 1) - PROB_BITS
    start, freq = uniform_symbol(value >> low_bits, ((size - 1) >> low_bits) + 1)
    n = push(starts, freqs, n, start, freq)
    return push_bits(starts, freqs, n, value & ((1 << low_bits) - 1), low_bits)


@njit(**INLINE)
def quotient_symbol(q: int) -> tuple[int, int]:
    """(start, freq) of quotient symbol q in 0..15: P(q) = 2**-(q+1) for q < 15, 2**-15 for 15."""
    if q == QUOTIENT_ESCAPE:
        return PROB_SCALE - 2, 2
    return PROB_SCALE - (1 << (PROB_BITS - q)), 1 << (PROB_BITS - 1 - q)


@njit(**INLINE)
def push_quotient(starts: np.ndarray, freqs: np.ndarray, n: int, q: int) -> int:
    while q >= QUOTIENT_ESCAPE:
        start, freq = quotient_symbol(QUOTIENT_ESCAPE)
        n = push(starts, freqs, n, start, freq)
        q -= QUOTIENT_ESCAPE
    start, freq = quotient_symbol(q)
    return push(starts, freqs, n, start, freq)


@njit(**INLINE)
def bit_length(v: int) -> int:
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


# ------------------------------------------------------------------------------------ decoder

@njit(**INLINE)
def renormalise(x: int, buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    while x < RANS_LOW:
        if pos >= end:
            return x, -1
        x = (x << 8) | np.int64(buf[pos])
        pos += 1
    return x, pos


@njit(**INLINE)
def start_decoding(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """Read the initial state; position -1 if the stream is too short or the state out of range."""
    if end - pos < STATE_BYTES:
        return 0, -1
    x = 0
    for b in range(STATE_BYTES):
        x |= np.int64(buf[pos + b]) << (8 * b)
    if x < RANS_LOW or x >= (RANS_LOW << 8):
        return x, -1
    return x, pos + STATE_BYTES


@njit(**INLINE)
def advance(x: int, buf: np.ndarray, pos: int, end: int, slot: int, start: int, freq: int) -> tuple[int, int]:
    return renormalise(freq * (x >> PROB_BITS) + slot - start, buf, pos, end)


@njit(**INLINE)
def decode_table(x: int, buf: np.ndarray, pos: int, end: int, cum: np.ndarray, lut: np.ndarray,
                 row: int) -> tuple[int, int, int]:
    """A symbol of frequency table `row`: cum[row] is its cumulative frequencies (0 first, 2**16
    last), lut[row, s >> 8] the symbol holding slot (s >> 8) << 8, where a short search starts."""
    slot = x & (PROB_SCALE - 1)
    symbol = np.int64(lut[row, slot >> 8])
    while cum[row, symbol + 1] <= slot:
        symbol += 1
    start = cum[row, symbol]
    x, pos = advance(x, buf, pos, end, slot, start, cum[row, symbol + 1] - start)
    return symbol, x, pos


@njit(**INLINE)
def decode_bits(x: int, buf: np.ndarray, pos: int, end: int, bits: int) -> tuple[int, int, int]:
    shift = PROB_BITS - bits
    slot = x & (PROB_SCALE - 1)
    value = slot >> shift
    x, pos = advance(x, buf, pos, end, slot, value << shift, 1 << shift)
    return value, x, pos


@njit(**INLINE)
def uniform_model(size: int) -> tuple[int, int, int, int, int]:
    """(base, extra, reciprocal of base + 1, reciprocal of base, low_bits) of the uniform model over
    0..size-1, computed once per tile. Reciprocals ceil(2**32 / d) divide any slot exactly."""
    low_bits = max(bit_length(size - 1) - PROB_BITS, 0)
    coded = ((size - 1) >> low_bits) + 1
    base = PROB_SCALE // coded
    return base, PROB_SCALE - base * coded, -(-(1 << 32) // (base + 1)), -(-(1 << 32) // base), low_bits


@njit(**INLINE)
def decode_uniform(x: int, buf: np.ndarray, pos: int, end: int, base: int, extra: int, inv_wide: int,
                   inv_narrow: int, low_bits: int) -> tuple[int, int, int]:
    """A value of a uniform model (see uniform_model); the inverse of push_uniform."""
    slot = x & (PROB_SCALE - 1)
    boundary = extra * (base + 1)
    if slot < boundary:
        value = (slot * inv_wide) >> 32
        x, pos = advance(x, buf, pos, end, slot, value * (base + 1), base + 1)
    else:
        value = extra + (((slot - boundary) * inv_narrow) >> 32)
        x, pos = advance(x, buf, pos, end, slot, boundary + (value - extra) * base, base)
    if low_bits == 0 or pos < 0:
        return value, x, pos
    low, x, pos = decode_bits(x, buf, pos, end, low_bits)
    return (value << low_bits) | low, x, pos


LEADING_ONES = np.array([8 - int(b ^ 0xFF).bit_length() for b in range(256)], dtype=np.int64)


@njit(**INLINE)
def decode_quotient(x: int, buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int]:
    """A Golomb quotient: symbols of the quotient model, summed while they are escapes. A symbol
    is the number of leading ones of its 16-bit slot, capped at 15 (two byte lookups)."""
    total = 0
    while True:
        slot = x & (PROB_SCALE - 1)
        q = LEADING_ONES[slot >> 8]
        if q == 8:
            q = min(8 + LEADING_ONES[slot & 0xFF], QUOTIENT_ESCAPE)
        start, freq = quotient_symbol(q)
        x, pos = advance(x, buf, pos, end, slot, start, freq)
        total += q
        if pos < 0 or q < QUOTIENT_ESCAPE:
            return total, x, pos
