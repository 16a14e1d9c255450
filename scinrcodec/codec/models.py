"""Value models: the binning of values, coding contexts, and per-context frequency tables.

A value u >= 0 (count - 1, or the quantised index with --max-error) is split into a bin and an
offset: e = u + 1 is exact below 2**MANTISSA_BITS and above that keeps its leading MANTISSA_BITS+1
bits in the bin (eight bins per octave); the rest are offset bits, coded as raw bits. A bin is
coded with the frequency table of its context: the predicted mean's log1p in quarter steps.
Each chunk stores its own tables: N_CONTEXTS rows of N_BINS frequencies summing to 2**16 (or all
zero for an unused context). Format 3 (spec §6.4, §6.5) has 96 contexts of eighth steps, and
its chunks store the counts from which both sides build tables of 2**12.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import _native
from ..errors import CorruptFileError
from ..storage.layout import CONTEXTS_BY_MAJOR, MANTISSA_BITS, N_BINS, N_CONTEXTS
from .rans import PROB_SCALE

LOG_MEAN_UNITS = 16  # the baseline's unit: 1/16 of a nat
CONTEXT_SHIFT = 2  # log-mean units to contexts: 16 / 4 = 2**2
LUT_SIZE = 256


def bin_of(u: int) -> tuple[int, int, int]:
    """(bin, offset, offset bits) of u in 0..2**31 - 2 (the native core's; bin_tables() inverts it)."""
    return _native.bin_of(int(u))


@functools.cache
def bin_tables() -> tuple[np.ndarray, np.ndarray]:
    """Smallest u and number of offset bits of every bin (built on first use: readers never need
    them, the native core has its own)."""
    bins = np.arange(N_BINS)
    rel = np.maximum(bins - ((1 << MANTISSA_BITS) - 1), 0)
    drop = rel >> MANTISSA_BITS
    lead = (1 << MANTISSA_BITS) + (rel & ((1 << MANTISSA_BITS) - 1))
    big = bins >= (1 << MANTISSA_BITS) - 1
    return np.where(big, (lead << drop) - 1, bins).astype(np.int64), np.where(big, drop, 0).astype(np.int64)


def fine_contexts(major: int) -> bool:
    """Whether format `major` has format 3's contexts of 1/8 nat (spec §6.5) instead of 1/4."""
    return CONTEXTS_BY_MAJOR[major] > N_CONTEXTS


def baseline_context(log_mean_sixteenths: int) -> int:
    """Context of a predicted log1p mean in units of 1/16 nat."""
    return min(max(int(log_mean_sixteenths) >> CONTEXT_SHIFT, 0), N_CONTEXTS - 1)


def frequencies(counts: np.ndarray, scale: int = PROB_SCALE) -> np.ndarray:
    """Frequencies summing to `scale` from bin counts, row by row (one row per context): the exact
    algorithm of spec §C.4 (2**16; format 3's tables, §6.4, use it with 2**12). Each present bin gets
    1 + floor(count * (scale - K) / total), K being the row's present bins, and what is left goes
    to its most frequent bin (the lowest on ties). A row of zeros stays zero (an unused context).
    Counts must be below 2**40."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, counts.shape[-1])
    present = counts > 0
    k = present.sum(axis=1, keepdims=True)
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    freqs = np.where(present, 1 + counts * (scale - k) // total, 0)
    used = k[:, 0] > 0
    rows = np.flatnonzero(used)
    freqs[rows, np.argmax(counts[rows], axis=1)] += scale - freqs[rows].sum(axis=1)
    return freqs


def decoding_tables(freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative frequencies, slot lookup and a used flag per context, from stored frequencies.

    A row must sum to 2**16 (a used context) or be all zero (an unused one)."""
    freqs = np.asarray(freqs, dtype=np.int64)
    if np.any(freqs < 0) or np.any(freqs > PROB_SCALE):
        raise CorruptFileError("a value frequency table holds an impossible frequency")
    cum = np.zeros((freqs.shape[0], freqs.shape[1] + 1), dtype=np.int64)
    np.cumsum(freqs, axis=1, out=cum[:, 1:])
    totals = cum[:, -1]
    used = totals == PROB_SCALE
    if not np.all(used | (totals == 0)):
        raise CorruptFileError("a value frequency table does not sum to 2**16")
    lut = np.zeros((freqs.shape[0], LUT_SIZE), dtype=np.uint8)
    slots = np.arange(LUT_SIZE, dtype=np.int64) * (PROB_SCALE // LUT_SIZE)
    for row in np.flatnonzero(used):
        lut[row] = np.searchsorted(cum[row, 1:], slots, side="right")
    return cum, lut, used


def int32_items(a) -> np.ndarray:
    """Integers as contiguous int32, what the encoder's kernels take a nonzero's position, coded value,
    bin and context as (each fits: spec §6.1, limits.MAX_COUNT): no copy of an int32 array; a float
    array is refused (TypeError), an item outside int32 too (ValueError), never truncated or wrapped."""
    a = np.asarray(a)
    if a.dtype != np.int32:
        if a.dtype.kind not in "biu":
            raise TypeError(f"items of type {a.dtype} are not integers")
        # compared in the items' own type (numpy compares any integer type with these exactly)
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ValueError("an item lies outside 32-bit integers")
    return np.ascontiguousarray(a, dtype=np.int32)


def histograms(contexts: np.ndarray, bins: np.ndarray, *, major: int) -> np.ndarray:
    """Per context, how many values fall in each bin (the counts `values.counts` stores), for the
    contexts of format `major`."""
    n_contexts = CONTEXTS_BY_MAJOR[major]
    flat = _native.value_counts(int32_items(contexts), int32_items(bins), n_contexts, N_BINS)
    return flat.reshape(n_contexts, N_BINS)


def code_length_bits(hist: np.ndarray, contexts: np.ndarray, bins: np.ndarray) -> float:
    """Ideal code length of bins under per-context histograms (offsets excluded)."""
    totals = hist.sum(axis=1)
    probs = hist[contexts, bins] / np.maximum(totals[contexts], 1)
    return float(-np.log2(np.maximum(probs, 2.0**-16)).sum())
