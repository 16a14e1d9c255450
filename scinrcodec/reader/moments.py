"""One pass over a matrix that summarises both axes at once (BPCells' matrix_stats): each gene's
and each cell's nonzero count, sum and sum of squares, accumulated from each chunk as it is
decoded, never placed, so that QC totals, means and variances of an atlas cost one decode and
memory for the summaries alone. Exact: sums in 64 bits, sums of squares in 128 (two words),
variances rounded once; every chunk's content checksum is verified on the way. What
SinrMatrix.sum, mean, var and count_nonzero answer from."""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from .. import _native
from ..errors import CorruptFileError, InvalidInputError, SinrIndexError
from ..limits import check_allocation
from .assemble import Workspace, check_chunk_sum, chunk_threads, decode_chunk, for_each_chunk
from .index import Chunk, MatrixIndex


class AxisMoments(NamedTuple):
    """One axis's summaries of its items, or of those `items` lists (ascending; the others hold no
    nonzero): nonzero counts and sums (int64), and sums of squares as 128-bit integers in two words
    (uint64 low and high)."""

    items: np.ndarray | None
    nonzeros: np.ndarray
    sums: np.ndarray
    squares_low: np.ndarray
    squares_high: np.ndarray

    @classmethod
    def zeros(cls, n: int, items: np.ndarray | None = None) -> "AxisMoments":
        """Summaries of n items (those of `items`, when given) before any nonzero is added."""
        check_allocation(32 * n, f"summaries of {n:,} items")
        return cls(items, np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.uint64), np.zeros(n, np.uint64))

    @property
    def moments(self) -> tuple[np.ndarray, ...]:
        """The four arrays the native kernels add to."""
        return self.nonzeros, self.sums, self.squares_low, self.squares_high

    def add(self, other: "AxisMoments") -> None:
        """Add another thread's summaries of the same items to these, in place."""
        _native.add_moments(*self.moments, *other.moments)

    def spread(self, values: np.ndarray, size: int, fill=0) -> np.ndarray:
        """A fresh array of every item of the axis: the values of the items held, `fill` for the
        others (zeros are pages never touched: a file of 2**31 declared genes costs its stored ones)."""
        if self.items is None:
            return values.copy()
        out = np.zeros(size, dtype=values.dtype) if fill == 0 else np.full(size, fill, dtype=values.dtype)
        out[self.items] = values
        return out

    def total_squares(self) -> int:
        """The sum of squares over every item, exactly (a Python int): the low words in 32-bit halves,
        whose sums over fewer than 2**32 items fit 64 bits, as the high words' do."""
        low, high = self.squares_low, self.squares_high
        return (int((low & 0xFFFFFFFF).sum()) + (int((low >> np.uint64(32)).sum()) << 32)
                + (int(high.sum()) << 64))

    def mean(self, entries: int) -> np.ndarray:
        """Each held item's mean over `entries` entries, rounded once: NaN over no entries."""
        out = np.full(self.sums.size, np.nan)
        if entries and _native.moments_mean(self.sums, entries, out):
            raise CorruptFileError("negative sums of counts (file is corrupt)")
        return out

    def variance(self, entries: int, ddof: int) -> np.ndarray:
        """Each held item's variance over `entries` entries (its zeros included), `ddof` delta degrees
        of freedom (below entries), computed exactly and rounded once: NaN over no entries."""
        out = np.full(self.sums.size, np.nan)
        if entries and _native.moments_variance(self.sums, self.squares_low, self.squares_high, entries, ddof, out):
            raise CorruptFileError(f"sums over {entries:,} entries that no counts can have (file is corrupt)")
        return out


class MatrixMoments(NamedTuple):
    """Both axes' summaries: genes (each gene a chunk stores, over every cell) and cells."""

    genes: AxisMoments
    cells: AxisMoments


def matrix_moments(index: MatrixIndex, jobs: int | None) -> MatrixMoments:
    """Summaries of every stored gene and every cell in one pass over the chunks, on `jobs`
    threads: each thread adds its chunks' nonzeros to summaries of its own (genes) or to those of
    its chunks' cells, which no other chunk holds; the genes' are added up at the end. The genes'
    are of the genes a segment stores (a gene of several segments has a row in each), never an item
    per gene the file declares."""
    segment_genes = [index.segment_genes(s) for s in range(index.n_segments)]
    stored = np.unique(np.concatenate(segment_genes)) if segment_genes else np.zeros(0, np.int64)
    slot_of_row = [np.searchsorted(stored, g).astype(np.int64) for g in segment_genes]
    cells = AxisMoments.zeros(index.n_cells)
    per_thread: list[AxisMoments] = []
    lock = threading.Lock()
    local = threading.local()
    outside, inside = chunk_threads(np.diff(index.nnz_starts), jobs)
    workspace = Workspace()

    def work(chunk: Chunk, _part: int) -> None:
        genes = getattr(local, "genes", None)
        if genes is None:
            genes = local.genes = AxisMoments.zeros(stored.size, stored)
            with lock:
                per_thread.append(genes)
        rows, cols, values = decode_chunk(index, chunk, workspace.buffers, inside)
        window = index.cell_original[chunk.first_cell: chunk.first_cell + chunk.n_cells]
        status, checksum = _native.accumulate_moments(rows, cols, values, segment_genes[chunk.segment],
                                                      slot_of_row[chunk.segment], window, chunk.first_cell,
                                                      *genes.moments, *cells.moments)
        if status:
            raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to nonzeros outside its genes or cells "
                                   "(file is corrupt)")
        check_chunk_sum(index, chunk, checksum)

    for_each_chunk(index, outside, work)
    genes = AxisMoments.zeros(stored.size, stored)
    for part in per_thread:
        genes.add(part)
    return MatrixMoments(genes, cells)


def check_axis(axis) -> int | None:
    """axis as the summaries of a genes x cells matrix take it: 0 (each cell, over the genes), 1
    (each gene), -2 and -1 for them, or None (the whole matrix)."""
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -2 <= axis <= 1:
        raise SinrIndexError(f"axis must be 0 (each cell), 1 (each gene) or None, not {axis!r}")
    return int(axis) % 2


def check_ddof(ddof, entries: int) -> int:
    """ddof as numpy's var takes it, a non-negative integer, below the entries it divides among
    (where there are any: no entries give NaN)."""
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise InvalidInputError(f"ddof must be a non-negative integer, not {ddof!r}")
    if entries and ddof >= entries:
        raise InvalidInputError(f"ddof {ddof} leaves no degrees of freedom over {entries:,} entries")
    return int(ddof)


def check_dtype(dtype) -> np.dtype | None:
    """dtype as numpy's sum, mean and var take it (the type of the result, and of numpy's
    accumulator): None for the default, else an integer or float type."""
    if dtype is None:
        return None
    try:
        out = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"dtype {dtype!r} is not a numpy type") from exc
    if out.kind not in "iuf":
        raise InvalidInputError(f"dtype must be an integer or float type, not {out}")
    return out


def in_dtype(exact, dtype: np.dtype):
    """Exact results (an array, or a Python int or float) as numpy's accumulation in `dtype` leaves
    them: an integer type wraps modulo its width (as numpy's sums in it do, whatever the order), a
    float type holds the exact value rounded once (numpy's float32 sums round at each step past
    2**24; this is the correctly rounded one)."""
    if isinstance(exact, np.ndarray) or dtype.kind == "f":
        return np.asarray(exact).astype(dtype)[()]
    return np.asarray(exact % 2**64, dtype=np.uint64).astype(dtype)[()]


def divided(total, count: int, dtype: np.dtype):
    """total / count put in `dtype` as numpy's mean and var put it: true division, then an unsafe
    cast (an integer type truncates toward zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # no entries: numpy's NaN, cast as numpy casts it
        return (np.asarray(total) / count).astype(dtype)[()]


def integer_variance(sums, squares, entries: int, ddof: int, dtype: np.dtype):
    """numpy's var in an integer `dtype` over `entries` entries of counts with these sums (an int64
    array, or a Python int) and sums of squares (with an array, their low 64 bits as uint64; with an
    int, the exact Python int): its mean summed and truncated in that type, then the sum of each entry's squared
    distance to it, S2 - 2 m S1 + n m**2, taken modulo 2**64 as numpy's int64 squares wrap, in that
    type, divided by entries - ddof and truncated."""
    mean = divided(in_dtype(sums, dtype), entries, dtype)
    if isinstance(sums, np.ndarray):
        m, s1 = mean.astype(np.int64).astype(np.uint64), sums.astype(np.uint64)
        n = np.uint64(entries % 2**64)
        spread = (squares - np.uint64(2) * m * s1 + n * m * m).astype(np.int64)
    else:
        spread = squares - 2 * int(mean) * sums + entries * int(mean) ** 2
    return divided(in_dtype(spread, dtype), max(entries - ddof, 0), dtype)
