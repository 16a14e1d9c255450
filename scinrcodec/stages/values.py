"""Entropy coding of the nonzero values of a tile given a context from the predictor.

A value u >= 0 (count - 1, or the quantised index in --max-error mode) is split into a bin and
an offset: e = u + 1 is exact below 2**MANTISSA_BITS and above that keeps its leading
MANTISSA_BITS + 1 bits in the bin (eight bins per octave), the rest going to a uniform offset.
The bin is coded with the histogram of its context: the predicted mean's log1p in quarter steps.
Histograms are the file's own statistics (stored, a few kB), so the code adapts to any dataset.
Within a tile, values are coded grouped by context, one concrete model per group.
"""
from __future__ import annotations

import numpy as np

from ..container import pack_array, unpack_array
from ..errors import CorruptFileError
from .entropy import UNIFORM_FAMILY, AnsCoder, categorical_model, decoding_errors
from .registry import Stage, register_stage

MANTISSA_BITS = 3
MAX_EXPONENT = 31
N_BINS = (1 << MANTISSA_BITS) - 1 + (MAX_EXPONENT - MANTISSA_BITS + 1) * (1 << MANTISSA_BITS)
N_CONTEXTS = 48
OFFSET_PART_BITS = 16
CONTEXT_STEPS_PER_NAT = 4
LOG_MEAN_UNITS = 16
CONTEXT_SHIFT = (LOG_MEAN_UNITS // CONTEXT_STEPS_PER_NAT).bit_length() - 1


def _context_edges() -> np.ndarray:
    """Lower edges, in value space, of the contexts: expm1(k/4) rounded to a 2**-20 grid.

    The rounding makes the table identical on every platform: no edge is within 1e-6 of a
    rounding tie, far above any libm's error (checked here and in the tests).
    """
    scaled = np.expm1(np.arange(N_CONTEXTS) / CONTEXT_STEPS_PER_NAT) * 2.0**20
    assert np.all(np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6)
    return np.round(scaled) / 2.0**20


CONTEXT_EDGES = _context_edges()


def context_of_mean(mean: np.ndarray) -> np.ndarray:
    """Context of a predicted mean count (value space)."""
    return np.clip(np.searchsorted(CONTEXT_EDGES, mean, side="right") - 1, 0, N_CONTEXTS - 1)


def context_of_log_mean(log_mean_sixteenths: np.ndarray) -> np.ndarray:
    """Context of a predicted log1p mean given in integer units of 1/16."""
    return np.minimum(np.maximum(log_mean_sixteenths >> CONTEXT_SHIFT, 0), N_CONTEXTS - 1)


def to_bins(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split u >= 0 into (bin, offset, offset range); offset range 1 means nothing to code."""
    e = u.astype(np.int64) + 1
    exponent = np.frexp(e.astype(np.float64))[1].astype(np.int64) - 1
    drop = np.maximum(exponent - MANTISSA_BITS, 0)
    small = exponent < MANTISSA_BITS
    bins = np.where(small, e - 1, (1 << MANTISSA_BITS) - 1 + drop * (1 << MANTISSA_BITS)
                    + ((e >> drop) - (1 << MANTISSA_BITS)))
    return bins, e & ((1 << drop) - 1), 1 << drop


def _bin_tables() -> tuple[np.ndarray, np.ndarray]:
    """Smallest u and offset range of every bin, so decoding a bin is two table lookups."""
    bins = np.arange(N_BINS)
    rel = np.maximum(bins - ((1 << MANTISSA_BITS) - 1), 0)
    drop = rel >> MANTISSA_BITS
    lead = (1 << MANTISSA_BITS) + (rel & ((1 << MANTISSA_BITS) - 1))
    big = bins >= (1 << MANTISSA_BITS) - 1
    return np.where(big, (lead << drop) - 1, bins), np.where(big, 1 << drop, 1)


BIN_START, BIN_RANGE = _bin_tables()


def from_bins(bins: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return BIN_START[bins] + offsets


@register_stage
class ContextValueCoder(Stage):
    codec_id = "context-binned-values"

    def __init__(self) -> None:
        self.histograms = np.zeros((N_CONTEXTS, N_BINS), dtype=np.int64)
        self._models: list = []

    def fit(self, bins: np.ndarray, contexts: np.ndarray) -> None:
        """Histograms of bins per context: the probability model both sides share."""
        flat = np.bincount(contexts * N_BINS + bins, minlength=N_CONTEXTS * N_BINS)
        self.histograms = flat.reshape(N_CONTEXTS, N_BINS).astype(np.int64)
        self._models = []

    def code_length_bits(self, bins: np.ndarray, contexts: np.ndarray) -> float:
        """Ideal code length of bins under the fitted histograms (offsets excluded)."""
        totals = self.histograms.sum(axis=1)
        probs = self.histograms[contexts, bins] / np.maximum(totals[contexts], 1)
        return float(-np.log2(np.maximum(probs, 2.0**-24)).sum())

    def pack(self) -> bytes:
        return pack_array(self.histograms.ravel().astype(np.uint32))

    @classmethod
    def unpack(cls, payload) -> "ContextValueCoder":
        coder = cls()
        coder.histograms = unpack_array(payload, "u4", N_CONTEXTS * N_BINS, what="value histograms").astype(
            np.int64).reshape(N_CONTEXTS, N_BINS)
        return coder

    def _all_models(self) -> list:
        """One categorical model per context, built once per file (both sides quantise alike)."""
        if not self._models:
            self._models = [categorical_model(weights if weights.any() else np.ones(N_BINS))
                            for weights in self.histograms.astype(np.float64)]
        return self._models

    def encode_tile(self, coder: AnsCoder, u: np.ndarray, contexts: np.ndarray) -> None:
        bins, offsets, ranges = to_bins(u)
        for part_offsets, part_ranges in reversed(_offset_parts(offsets, ranges)):
            coder.encode_reverse(part_offsets.astype(np.int32), UNIFORM_FAMILY, part_ranges.astype(np.int32))
        models = self._all_models()
        order = np.argsort(contexts, kind="stable")
        sorted_ctx = contexts[order]
        cuts = np.flatnonzero(np.diff(sorted_ctx)) + 1
        for group in reversed(np.split(order, cuts)):
            coder.encode_reverse(bins[group].astype(np.int32), models[int(contexts[group[0]])])

    def decode_tiles(self, coders: list[AnsCoder], contexts: np.ndarray, sizes: np.ndarray,
                     needed: np.ndarray | None = None) -> np.ndarray:
        """u of the nonzeros of several tiles (each tile's nonzeros contiguous, in position order).

        A tile's stream holds its bins grouped by context, in increasing context, then its
        offsets. With `needed` (a boolean mask), a tile's groups are read only up to the last one
        holding a needed nonzero, unless a needed bin has an offset; other entries are then -1.
        """
        sizes = np.asarray(sizes, dtype=np.int64)
        tile_of = np.repeat(np.arange(sizes.size), sizes)
        key = tile_of * N_CONTEXTS + contexts
        narrow = key.astype(np.uint16) if sizes.size * N_CONTEXTS <= 1 << 16 else key
        order = np.argsort(narrow, kind="stable")  # a radix sort for 16-bit keys
        counts = np.bincount(key, minlength=sizes.size * N_CONTEXTS)
        last = np.full(sizes.size, np.iinfo(np.int64).max)
        if needed is not None:
            last[:] = -1
            np.maximum.at(last, tile_of[needed], key[needed])
        bins = np.full(contexts.size, -1, dtype=np.int64)

        models = self._all_models()

        def read_groups(keys: np.ndarray) -> None:
            """Decode the (tile, context) groups `keys`, in increasing order: one call per group."""
            if keys.size == 0:
                return
            with decoding_errors():
                parts = [coders[tile].decode(models[context], n) for tile, context, n
                         in zip((keys // N_CONTEXTS).tolist(), (keys % N_CONTEXTS).tolist(), counts[keys].tolist())]
            chosen = np.zeros(counts.size, dtype=bool)
            chosen[keys] = True
            bins[order[chosen[key[order]]]] = np.concatenate(parts)

        present = np.flatnonzero(counts)
        early = present <= last[present // N_CONTEXTS]
        def decoded_ranges() -> tuple[np.ndarray, np.ndarray]:
            if bins.max(initial=0) >= N_BINS:
                raise CorruptFileError("coded block is corrupt (value bin out of range)")
            decoded = bins >= 0
            return decoded, np.where(decoded, BIN_RANGE[np.where(decoded, bins, 0)], 1)

        read_groups(present[early])
        decoded, ranges = decoded_ranges()
        wide_tiles = np.unique(tile_of[(ranges > 1) & (decoded if needed is None else needed)])
        if wide_tiles.size == 0:
            return np.where(decoded, BIN_START[np.where(decoded, bins, 0)], -1)
        late = present[~early]
        read_groups(late[np.isin(late // N_CONTEXTS, wide_tiles)])
        decoded, ranges = decoded_ranges()
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        offsets = np.zeros(bins.size, dtype=np.int64)
        for tile in wide_tiles.tolist():
            offsets[bounds[tile]: bounds[tile + 1]] = _read_offsets(coders[tile], ranges[bounds[tile]: bounds[tile + 1]])
        return np.where(decoded, BIN_START[np.where(decoded, bins, 0)] + offsets, -1)

    def decode_one(self, coder: AnsCoder, contexts: np.ndarray, index: int) -> int:
        """u of nonzero `index` of one tile: bins are read group by group up to its own, and
        the rest of the tile only when its bin has an offset (the lean path of m[i, j])."""
        counts = np.bincount(contexts, minlength=N_CONTEXTS)
        target = int(contexts[index])
        models = self._all_models()
        bins = np.empty(contexts.size, dtype=np.int64)
        with decoding_errors():
            for k in np.flatnonzero(counts[: target + 1]).tolist():
                bins[contexts == k] = coder.decode(models[k], int(counts[k]))
            found = int(bins[index])
            if found >= N_BINS:
                raise CorruptFileError("coded block is corrupt (value bin out of range)")
            if BIN_RANGE[found] == 1:
                return int(BIN_START[found])
            for k in (np.flatnonzero(counts[target + 1:]) + target + 1).tolist():
                bins[contexts == k] = coder.decode(models[k], int(counts[k]))
        if bins.max() >= N_BINS:
            raise CorruptFileError("coded block is corrupt (value bin out of range)")
        return int(BIN_START[found] + _read_offsets(coder, BIN_RANGE[bins])[index])


def _read_offsets(coder: AnsCoder, ranges: np.ndarray) -> np.ndarray:
    """Offsets of a tile's nonzeros given their bins' ranges. The stream holds the low parts, then
    the high parts; being consecutive, both are read in one call."""
    offsets = np.zeros(ranges.size, dtype=np.int64)
    wide = np.flatnonzero(ranges > 1)
    if wide.size == 0:
        return offsets
    low, high = np.minimum(ranges[wide], 1 << OFFSET_PART_BITS), ranges[wide] >> OFFSET_PART_BITS
    high_wide = np.flatnonzero(high > 1)
    with decoding_errors():
        parts = coder.decode(UNIFORM_FAMILY, np.concatenate([low, high[high_wide]]).astype(np.int32))
    offsets[wide] = parts[: wide.size]
    offsets[wide[high_wide]] += parts[wide.size:].astype(np.int64) << OFFSET_PART_BITS
    return offsets


def _offset_parts(offsets: np.ndarray, ranges: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Offsets as a low and a high part of at most OFFSET_PART_BITS bits each (constriction's
    uniform model takes ranges below 2**24), in decoding order, entries with range 1 left out."""
    parts = []
    for part_ranges, part_offsets in ((np.minimum(ranges, 1 << OFFSET_PART_BITS),
                                       offsets & ((1 << OFFSET_PART_BITS) - 1)),
                                      (ranges >> OFFSET_PART_BITS, offsets >> OFFSET_PART_BITS)):
        wide = part_ranges > 1
        parts.append((part_offsets[wide], part_ranges[wide]))
    return parts
