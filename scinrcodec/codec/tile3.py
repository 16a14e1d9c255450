"""Format 3's tiles, the encode half (spec/sinr-format.md §6, version 3's
tile coding): a chunk's `gaps.counts`, its tile streams, and the information content `sinr info` reports.

A tile's stream (spec §6.1, §6.2, §6.3.2) holds one rANS symbol per coded gap, under the gap table of the
tile's density class, and one per value, under the table of its context; each symbol's offset bits
are raw bits at the stream's end. The tables are 12-bit frequencies (§6.4) made from the chunk's
count sections, so the encoder stores counts, never tables. The kernels are the native core's
(native/core/include/sinr/tile3.hpp); the reader's half is the core's too.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from ..storage.layout import N_BINS, N_GAP_CLASSES
from .models import bin_tables, frequencies, int32_items

PROB_BITS = 12  # spec §6.1.1: a table's frequencies sum to 2**12


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def gap_counts(tile_n: np.ndarray, tile_k: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The chunk's `gaps.counts` (spec §6.4), N_GAP_CLASSES x N_BINS uint64: the coded gaps of its tiles
    (tile_n entries and tile_k nonzeros each, their positions back to back) by density class and
    bin."""
    out = np.zeros((N_GAP_CLASSES, N_BINS), np.uint64)
    _native.tile3_gap_counts(_i64(tile_n), _i64(tile_k), int32_items(positions), out)
    return out


def encode_tiles(tile_n: np.ndarray, tile_k: np.ndarray, positions: np.ndarray, u: np.ndarray,
                 contexts: np.ndarray, gaps: np.ndarray, values: np.ndarray | None) -> tuple[bytes, np.ndarray]:
    """The chunk's tile streams, back to back, and each one's length: tiles as gap_counts takes
    them, each nonzero's u and context (spec §6.5, §7.2), under the tables of the chunk's own count sections
    `gaps` and `values` (None: mode inr-only, no values coded). ValueError if the counts are not
    the tiles' own."""
    return _native.tile3_encode_chunk(
        _i64(tile_n), _i64(tile_k), int32_items(positions), int32_items(u), int32_items(contexts),
        np.ascontiguousarray(gaps, np.uint64), None if values is None else np.ascontiguousarray(values, np.uint64))


def information_bits(counts: np.ndarray) -> float:
    """The bits that symbols distributed as `counts` (rows of N_BINS) take in tile streams: each
    one's ideal code length under its row's 12-bit table, -log2(freq / 2**12), plus its bin's raw
    offset bits. The symbols' share of the streams, without the 4-byte state and the rounding of
    each tile's words and raw bits to whole bytes; what `sinr info` splits the streams by."""
    counts = np.asarray(counts, dtype=np.int64)
    freqs = frequencies(counts, 1 << PROB_BITS)
    present = counts > 0
    ideal = (counts[present] * (PROB_BITS - np.log2(freqs[present]))).sum()
    return float(ideal + (counts * bin_tables()[1]).sum())
