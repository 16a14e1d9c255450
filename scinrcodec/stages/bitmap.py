"""Which entries of a tile are nonzero: a rank/select bitmap coded per tile.

The rank directory is the list of nonzeros per tile (its prefix sum gives the global index of
each tile's first nonzero). Inside a tile, with rows and columns sorted by detection rate and
depth, nonzeros are close to i.i.d., so the gaps between them (row-major) are near-geometric and
are Golomb-coded through ANS: quotient with P(q) = 2**-(q+1) (63 and above escaped to a uniform
excess, so models stay small), remainder uniform. A tile more than
half full codes its zeros instead. rank(pos) and select(k) then cost one tile decode.
"""
from __future__ import annotations

import numpy as np

from ..container import pack_array, unpack_array
from ..errors import CorruptFileError
from .entropy import AnsCoder, decoding_errors, halving_model, uniform_model
from .registry import Stage, register_stage


QUOTIENT_SYMBOLS = 64


def golomb_parameter(n_entries: int, n_marked: int) -> int:
    """Golomb M ~ ln(2) x mean gap, in integer arithmetic so every platform agrees."""
    return max(1, ((n_entries - n_marked) * 69 + 50 * n_marked) // (100 * n_marked))


@register_stage
class GolombBitmap(Stage):
    codec_id = "golomb-ans-bitmap"

    def encode_tile(self, coder: AnsCoder, positions: np.ndarray, n_entries: int) -> None:
        """Push the sorted nonzero positions of a tile with `n_entries` entries."""
        marked = _marked(positions, n_entries)
        k = marked.size
        if k == 0:
            return
        m = golomb_parameter(n_entries, k)
        gaps = np.diff(marked, prepend=-1) - 1
        q, r = np.divmod(gaps, m)
        if m > 1:
            coder.encode_reverse(r.astype(np.int32), uniform_model(m))
        n_q = (n_entries - k) // m + 1
        if n_q > QUOTIENT_SYMBOLS:
            escaped = q >= QUOTIENT_SYMBOLS - 1
            if escaped.any():
                coder.encode_reverse((q[escaped] - (QUOTIENT_SYMBOLS - 1)).astype(np.int32),
                                     uniform_model(n_q - QUOTIENT_SYMBOLS + 1))
            q = np.minimum(q, QUOTIENT_SYMBOLS - 1)
        if n_q > 1:
            coder.encode_reverse(q.astype(np.int32), halving_model(min(n_q, QUOTIENT_SYMBOLS)))

    def decode_tile(self, coder: AnsCoder, n_nonzero: int, n_entries: int) -> np.ndarray:
        """Sorted positions of one tile's nonzeros (the lean path for single-entry reads)."""
        k = min(n_nonzero, n_entries - n_nonzero)
        if k == 0:
            return np.arange(n_nonzero, dtype=np.int64)
        with decoding_errors():
            steps = _read_gaps(coder, k, n_entries)
        positions = np.cumsum(steps + 1, dtype=np.int64)
        positions -= 1
        if positions[-1] >= n_entries:
            raise CorruptFileError("coded block is corrupt (position beyond its tile)")
        if n_nonzero == k:
            return positions
        keep = np.ones(n_entries, dtype=bool)
        keep[positions] = False
        return np.flatnonzero(keep)

    def decode_tiles(self, coders: list[AnsCoder], nonzeros: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """Sorted nonzero positions of several tiles, concatenated tile after tile.

        The ANS reads are per tile; turning gaps into positions is one vectorised pass.
        """
        nonzeros, entries = np.asarray(nonzeros, np.int64), np.asarray(entries, np.int64)
        marked = np.minimum(nonzeros, entries - nonzeros)
        steps = []
        with decoding_errors():  # the loop is lean on purpose: it runs once per tile of a read
            for coder, k, n in zip(coders, marked.tolist(), entries.tolist()):
                if k:
                    steps.append(_read_gaps(coder, k, n))
        if not steps:
            positions = np.zeros(0, dtype=np.int64)
        else:
            gaps = np.concatenate(steps) + 1
            running = np.cumsum(gaps, dtype=np.int64)
            coded = marked > 0
            starts = np.concatenate([[0], np.cumsum(marked)[:-1]])
            base = np.zeros(marked.size, dtype=np.int64)
            base[coded] = running[starts[coded]] - gaps[starts[coded]]
            positions = running - np.repeat(base, marked) - 1
            if np.any(positions[starts[coded] + marked[coded] - 1] >= entries[coded]):
                raise CorruptFileError("coded block is corrupt (position beyond its tile)")
        flipped = marked != nonzeros
        if not flipped.any():
            return positions
        # Tiles that coded their zeros: lay their entries end to end, clear the zeros, keep the rest.
        flipped_entries = entries * flipped
        entry_base = np.cumsum(flipped_entries) - flipped_entries
        marked_tile = np.repeat(np.arange(marked.size), marked)
        of_flipped = flipped[marked_tile]
        keep = np.ones(int(flipped_entries.sum()), dtype=bool)
        keep[positions[of_flipped] + entry_base[marked_tile[of_flipped]]] = False
        kept = np.flatnonzero(keep)
        kept -= entry_base[np.repeat(np.flatnonzero(flipped), nonzeros[flipped])]
        out_flipped = flipped[np.repeat(np.arange(nonzeros.size), nonzeros)]
        out = np.empty(out_flipped.size, dtype=np.int64)
        out[out_flipped] = kept
        out[~out_flipped] = positions[~of_flipped]
        return out

    @staticmethod
    def pack_directory(nnz_per_tile: np.ndarray) -> bytes:
        return pack_array(nnz_per_tile.astype(np.uint32))

    @staticmethod
    def unpack_directory(payload, n_tiles: int) -> np.ndarray:
        return unpack_array(payload, "u4", n_tiles, what="rank directory").astype(np.int64)


def _read_gaps(coder: AnsCoder, count: int, n_entries: int) -> np.ndarray:
    """The `count` Golomb-coded gaps of a tile (int32: tiles hold fewer than 2**24 entries)."""
    m = golomb_parameter(n_entries, count)
    n_quotients = (n_entries - count) // m + 1
    gaps = _read_quotients(coder, count, n_quotients) * m if n_quotients > 1 else np.zeros(count, dtype=np.int32)
    if m > 1:
        gaps += coder.decode(uniform_model(m), count)
    return gaps


def _read_quotients(coder: AnsCoder, count: int, n_quotients: int) -> np.ndarray:
    """Golomb quotients (n_quotients > 1): symbols 0..62 directly, 63 an escape followed by a
    uniform excess."""
    q = coder.decode(halving_model(min(n_quotients, QUOTIENT_SYMBOLS)), count)
    if n_quotients > QUOTIENT_SYMBOLS and q.max() == QUOTIENT_SYMBOLS - 1:
        escaped = np.flatnonzero(q == QUOTIENT_SYMBOLS - 1)
        q[escaped] += coder.decode(uniform_model(n_quotients - QUOTIENT_SYMBOLS + 1), escaped.size)
    return q


def _marked(positions: np.ndarray, n_entries: int) -> np.ndarray:
    """The positions to code: the nonzeros, or the zeros when the tile is more than half full."""
    if 2 * positions.size <= n_entries:
        return positions
    keep = np.ones(n_entries, dtype=bool)
    keep[positions] = False
    return np.flatnonzero(keep)
