"""Transitional: the numba helpers that kernels not yet ported to the native core still import.

The codec (codec/rans.py, codec/tile.py, codec/models.py, codec/checksum.py, model/siren.py) runs in
the native core and defines no numba helpers any more. The numba kernels of reader/assemble.py,
reader/decode.py, reader/index.py, encoder/chunk.py and model/baseline.py are being ported in their
own branches; until they land they import from here what they used to import from the codec.
Delete this module with the last of those ports (nothing else may import it).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .codec.models import CONTEXT_SHIFT, MANTISSA_BITS, N_CONTEXTS

JIT = dict(nogil=True, cache=True)
INLINE = dict(nogil=True, cache=True, inline="always")

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)


@njit(**INLINE)
def mix(z: np.uint64) -> np.uint64:
    z = z + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    return z ^ (z >> np.uint64(31))


@njit(**INLINE)
def bit_length(v: int) -> int:
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@njit(**INLINE)
def bin_of(u: int) -> tuple[int, int, int]:
    e = u + 1
    exponent = -1
    v = e
    while v > 0:
        v >>= 1
        exponent += 1
    if exponent < MANTISSA_BITS:
        return e - 1, 0, 0
    drop = exponent - MANTISSA_BITS
    return (1 << MANTISSA_BITS) - 1 + drop * (1 << MANTISSA_BITS) + ((e >> drop) - (1 << MANTISSA_BITS)), \
        e & ((1 << drop) - 1), drop


@njit(**INLINE)
def baseline_context(log_mean_sixteenths: int) -> int:
    k = log_mean_sixteenths >> CONTEXT_SHIFT
    return min(max(k, 0), N_CONTEXTS - 1)
