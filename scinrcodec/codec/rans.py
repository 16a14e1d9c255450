"""The range asymmetric numeral system (rANS) coder of .sinr: its constants, and the native
core's primitives (native/core/include/sinr/rans.hpp) one symbol at a time.

State: an integer x in [RANS_LOW, 2**31). Probabilities have PROB_BITS = 16 bits: a symbol is
(start, freq) with 0 < freq and start + freq <= 2**16. Renormalisation moves one byte at a time.
The encoder starts from x = RANS_LOW, codes symbols in reverse decoding order and ends with the
state, written first as 4 little-endian bytes, followed by the bytes it emitted, last emitted
first. The decoder reads the state, decodes, and must end at x = RANS_LOW with every byte
consumed: a free integrity check of each stream. spec/sinr-format.md §C.1 defines the same.

The tile kernels (codec.tile) run these loops in C++; the functions here are for tests and tools
that look at a stream symbol by symbol. Decoder functions return the new position, or -1 when the
stream ends too early; pushers write into int64 arrays of starts and frequencies and return the
new count.
"""
from __future__ import annotations

import numpy as np

from .. import _native

PROB_BITS = 16
PROB_SCALE = 1 << PROB_BITS
RANS_LOW = 1 << 23


# ------------------------------------------------------------------------------------ encoder

def encode_symbols(starts: np.ndarray, freqs: np.ndarray, n: int, out: np.ndarray, out_pos: int) -> int:
    """Code symbols 0..n-1 (in decoding order) into out[out_pos:]; return the bytes written."""
    return _native.rans_encode_symbols(np.asarray(starts, np.int64), np.asarray(freqs, np.int64), int(n), out,
                                       int(out_pos))


def push_uniform(starts: np.ndarray, freqs: np.ndarray, n: int, value: int, size: int) -> int:
    """value in 0..size-1, size >= 2: uniform over size, split above 2**16 into a uniform high
    part and (bit_length(size - 1) - 16) raw low bits."""
    return _native.rans_push_uniform(starts, freqs, int(n), int(value), int(size))


def quotient_symbol(q: int) -> tuple[int, int]:
    """(start, freq) of quotient symbol q in 0..15: P(q) = 2**-(q+1) for q < 15, 2**-15 for 15."""
    return _native.rans_quotient_symbol(int(q))


def push_quotient(starts: np.ndarray, freqs: np.ndarray, n: int, q: int) -> int:
    """A Golomb quotient q: escapes of 15 while q >= 15, then q's own symbol."""
    return _native.rans_push_quotient(starts, freqs, int(n), int(q))


# ------------------------------------------------------------------------------------ decoder

def start_decoding(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """Read the initial state; position -1 if the stream is too short or the state out of range."""
    return _native.rans_start_decoding(buf, int(pos), int(end))


def decode_bits(x: int, buf: np.ndarray, pos: int, end: int, bits: int) -> tuple[int, int, int]:
    """`bits` raw bits (1..16): (value, new state, new position), position -1 if truncated."""
    return _native.rans_decode_bits(int(x), buf, int(pos), int(end), int(bits))


def uniform_model(size: int) -> tuple[int, int, int, int, int]:
    """(base, extra, reciprocal of base + 1, reciprocal of base, low_bits) of the uniform model over
    0..size-1, computed once per tile. Reciprocals ceil(2**32 / d) divide any slot exactly."""
    return _native.rans_uniform_model(int(size))


def decode_uniform(x: int, buf: np.ndarray, pos: int, end: int, base: int, extra: int, inv_wide: int,
                   inv_narrow: int, low_bits: int) -> tuple[int, int, int]:
    """A value of a uniform model (see uniform_model); the inverse of push_uniform."""
    return _native.rans_decode_uniform(int(x), buf, int(pos), int(end), int(base), int(extra), int(inv_wide),
                                       int(inv_narrow), int(low_bits))


def decode_quotient(x: int, buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int]:
    """A Golomb quotient: symbols of the quotient model, summed while they are escapes. A symbol
    is the number of leading ones of its 16-bit slot, capped at 15."""
    return _native.rans_decode_quotient(int(x), buf, int(pos), int(end))
