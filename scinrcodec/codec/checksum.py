"""The content checksum of a chunk: a sum of per-entry hashes, so any order of decoding agrees.

checksum = sum over nonzeros of H(gene, cell, value) mod 2**64, where gene and cell are the
original indices, value the decoded value, and H(g, c, v) = mix(mix(g + c * 2**32) xor v) with mix
the splitmix64 finaliser (spec §6.6). A full decode and `sinr verify` recompute it, so an edit that
keeps every CRC valid still cannot turn into wrong numbers unnoticed.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .rans import INLINE, JIT

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)


@njit(**INLINE)
def mix(z: np.uint64) -> np.uint64:
    z = z + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    return z ^ (z >> np.uint64(31))


@njit(**JIT)
def content_checksum(genes: np.ndarray, cells: np.ndarray, values: np.ndarray) -> np.uint64:
    total = np.uint64(0)
    for idx in range(values.size):
        key = np.uint64(genes[idx]) + (np.uint64(cells[idx]) << np.uint64(32))
        total += mix(mix(key) ^ np.uint64(values[idx]))
    return total
