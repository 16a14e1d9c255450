"""Entropy coding of the nonzero values of a tile given a context from the predictor.

A value u >= 0 (count - 1, or the quantised index in --max-error mode) is split into a bin and
an offset: e = u + 1 is exact below 2**MANTISSA_BITS and above that keeps its leading
MANTISSA_BITS + 1 bits in the bin (eight bins per octave), the rest being offset bits.
The bin is coded with the histogram of its context: the predicted mean's log1p in quarter steps.
Histograms are the file's own statistics (stored, a few kB), so the code adapts to any dataset.
Within a tile, bins are coded grouped by context, one concrete model per group. Offset bits are
uniform, so they are stored raw, in the same group order, in a bitstream of their own (each
tile's start is in a directory): a reader finds a value's offset from the bins before it, and
never decodes beyond its group.
"""
from __future__ import annotations

import numpy as np

from ..container import pack_array, unpack_array
from ..errors import CorruptFileError
from .entropy import AnsCoder, categorical_model, decoding_errors
from .registry import Stage, register_stage

MANTISSA_BITS = 3
MAX_EXPONENT = 31
N_BINS = (1 << MANTISSA_BITS) - 1 + (MAX_EXPONENT - MANTISSA_BITS + 1) * (1 << MANTISSA_BITS)
N_CONTEXTS = 48
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
    """Split u >= 0 into (bin, offset, number of offset bits)."""
    e = u.astype(np.int64) + 1
    exponent = np.frexp(e.astype(np.float64))[1].astype(np.int64) - 1
    drop = np.maximum(exponent - MANTISSA_BITS, 0)
    small = exponent < MANTISSA_BITS
    bins = np.where(small, e - 1, (1 << MANTISSA_BITS) - 1 + drop * (1 << MANTISSA_BITS)
                    + ((e >> drop) - (1 << MANTISSA_BITS)))
    return bins, e & ((1 << drop) - 1), drop


def _bin_tables() -> tuple[np.ndarray, np.ndarray]:
    """Smallest u and number of offset bits of every bin, so decoding a bin is two lookups."""
    bins = np.arange(N_BINS)
    rel = np.maximum(bins - ((1 << MANTISSA_BITS) - 1), 0)
    drop = rel >> MANTISSA_BITS
    lead = (1 << MANTISSA_BITS) + (rel & ((1 << MANTISSA_BITS) - 1))
    big = bins >= (1 << MANTISSA_BITS) - 1
    return np.where(big, (lead << drop) - 1, bins), np.where(big, drop, 0)


BIN_START, BIN_OFFSET_BITS = _bin_tables()


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

    def encode_tile(self, coder: AnsCoder, u: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """Push the tile's bins; return its offset bits (0/1 bytes, in stream order)."""
        bins, offsets, offset_bits = to_bins(u)
        models = self._all_models()
        order = np.argsort(contexts, kind="stable")
        cuts = np.flatnonzero(np.diff(contexts[order])) + 1
        for group in reversed(np.split(order, cuts)):
            coder.encode_reverse(bins[group].astype(np.int32), models[int(contexts[group[0]])])
        return offset_bit_array(offsets[order], offset_bits[order])

    def decode_tiles(self, coders: list[AnsCoder], words: np.ndarray, bit_starts: np.ndarray,
                     bit_ends: np.ndarray, contexts: np.ndarray, sizes: np.ndarray,
                     needed: np.ndarray | None = None) -> np.ndarray:
        """u of the nonzeros of several tiles (each tile's nonzeros contiguous, in position order).

        A tile's stream holds its bins grouped by context, in increasing context; its offset bits,
        in the same order, are bits bit_starts[i] to bit_ends[i] of the bitstream `words`.
        With `needed` (a boolean mask), a tile's groups are read only up to the last one holding
        a needed nonzero; entries not read are then -1.
        """
        sizes = np.asarray(sizes, dtype=np.int64)
        tile_of = np.repeat(np.arange(sizes.size), sizes)
        key = tile_of * N_CONTEXTS + contexts
        narrow = key.astype(np.uint16) if sizes.size * N_CONTEXTS <= 1 << 16 else key
        order = np.argsort(narrow, kind="stable")  # a radix sort for 16-bit keys
        counts = np.bincount(key, minlength=sizes.size * N_CONTEXTS)
        present = np.flatnonzero(counts)
        if needed is not None:
            last = np.full(sizes.size, -1)
            np.maximum.at(last, tile_of[needed], key[needed])
            present = present[present <= last[present // N_CONTEXTS]]
        models = self._all_models()
        groups = zip((present // N_CONTEXTS).tolist(), (present % N_CONTEXTS).tolist(), counts[present].tolist())
        with decoding_errors():
            stream = [coders[tile].decode(models[context], n) for tile, context, n in groups]
        # The bins read, in stream order (tile, then context, then position), and where each belongs.
        stream_bins = np.concatenate(stream).astype(np.int64) if stream else np.zeros(0, dtype=np.int64)
        read = np.zeros(counts.size, dtype=bool)
        read[present] = True
        stream_index = order[read[key[order]]]
        stream_tile = np.repeat(present // N_CONTEXTS, counts[present])
        offset_bits = BIN_OFFSET_BITS[stream_bins]
        bit_starts, bit_ends = np.asarray(bit_starts, np.int64), np.asarray(bit_ends, np.int64)
        tile_bits = np.bincount(stream_tile, offset_bits, sizes.size).astype(np.int64)
        if needed is None and np.any(tile_bits != bit_ends - bit_starts):
            raise CorruptFileError("coded block is corrupt (offset bits disagree with their directory)")
        bits_before = np.cumsum(offset_bits) - offset_bits  # in the stream of the bins read
        tile_base = bit_starts - (np.cumsum(tile_bits) - tile_bits)
        take = np.arange(stream_bins.size) if needed is None else np.flatnonzero(needed[stream_index])
        tiles = stream_tile[take]
        offsets = read_bits(words, bits_before[take] + tile_base[tiles], offset_bits[take], bit_ends[tiles])
        values = np.full(contexts.size, -1, dtype=np.int64)
        values[stream_index[take]] = BIN_START[stream_bins[take]] + offsets
        return values

    def decode_one(self, coder: AnsCoder, words: np.ndarray, bit_start: int, bit_end: int, contexts: np.ndarray,
                   index: int) -> int:
        """u of nonzero `index` of one tile (offset bits bit_start to bit_end of `words`): bins
        are read group by group, up to the entry's own (the lean path of m[i, j])."""
        counts = np.bincount(contexts, minlength=N_CONTEXTS)
        target = int(contexts[index])
        models = self._all_models()
        bits_before = bit_start
        with decoding_errors():
            for k in np.flatnonzero(counts[:target]).tolist():
                bits_before += int(BIN_OFFSET_BITS[coder.decode(models[k], int(counts[k]))].sum())
            group = coder.decode(models[target], int(counts[target]))
        within = int(np.count_nonzero(contexts[:index] == target))
        found = int(group[within])
        bits_before += int(BIN_OFFSET_BITS[group[:within]].sum())
        offset = read_bits(words, np.array([bits_before]), BIN_OFFSET_BITS[[found]], bit_end)[0]
        return int(BIN_START[found] + offset)


def offset_bit_array(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """values[i] in widths[i] bits, least significant bit first, as one 0/1 byte per bit."""
    shifts = np.arange(int(widths.max(initial=0)))
    return ((values[:, None] >> shifts) & 1)[shifts < widths[:, None]].astype(np.uint8)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """A 0/1 bit array as little-endian u32 words, bit i being bit i % 32 of word i // 32."""
    packed = np.packbits(bits, bitorder="little")
    return np.frombuffer(packed.tobytes() + bytes(-packed.size % 4), dtype="<u4").copy()


def read_bits(words: np.ndarray, starts: np.ndarray, widths: np.ndarray, limits) -> np.ndarray:
    """The widths[i]-bit field at bit starts[i] of `words` (the inverse of pack_bits); a field
    must end by bit limits[i], the end of its tile's offsets."""
    used = widths > 0
    if not used.any():
        return np.zeros(widths.size, dtype=np.int64)
    if np.any((starts + widths > limits) & used):
        raise CorruptFileError("coded block is corrupt (offset bits beyond the tile's)")
    index = np.where(used, starts >> 5, 0)
    pair = words[index].astype(np.uint64) | (words[np.minimum(index + 1, words.size - 1)].astype(np.uint64) << 32)
    fields = (pair >> (starts & 31).astype(np.uint64)) & ((np.uint64(1) << widths.astype(np.uint64)) - 1)
    return fields.astype(np.int64)
