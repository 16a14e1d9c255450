"""A loader of shuffled batches of cells for training, straight from a .sinr file: whole chunks
decoded a buffer at a time (the next buffer decoding meanwhile), their cells shuffled together
(block shuffle), each batch with its obs rows. What SinrMatrix.iter_cells gives."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..io.dtypes import count_dtype
from ..limits import MAX_DIMENSION, MAX_JOBS, checked_integer, checked_jobs
from ..reader.assemble import BlockScratch
from ..reader.matrix import MatrixReader
from .names import names_obs


class CellBatch(NamedTuple):
    """A batch of cells: their counts (cells x genes CSR), their obs rows, their cell indices."""

    X: sp.csr_matrix
    obs: object  # a pandas DataFrame, or None
    cells: np.ndarray


def iter_cells(m: MatrixReader, batch_size: int = 256, *, shuffle: bool = True, seed: int | None = None,
               buffer: int = 4, dtype=np.float32, obs: bool = True, drop_last: bool = False,
               jobs: int | None = None, shard: tuple[int, int] | None = None) -> Iterator[CellBatch]:
    """One epoch of batches (see SinrMatrix.iter_cells)."""
    batch_size, buffer = (checked_integer(name, value, 1, MAX_DIMENSION)
                          for name, value in (("batch_size", batch_size), ("buffer", buffer)))
    seed = None if seed is None else checked_integer("seed", seed, 0, 2**63 - 1)
    jobs = checked_jobs(jobs)
    index, count = _checked_shard(shard, shuffle, seed)
    dtype = count_dtype(dtype)  # checked before the first batch (a 0-cell file makes none)
    bounds = m.chunk_bounds()
    n_chunks = bounds.size - 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_chunks) if shuffle else np.arange(n_chunks)
    pieces = _shard_pieces(order, np.diff(bounds), index, count)
    groups = [pieces[i: i + buffer] for i in range(0, len(pieces), buffer)]
    frame = _obs_frame(m) if obs else None
    return _batches(m, groups, bounds, int(batch_size), rng if shuffle else None, dtype, frame, drop_last,
                    jobs)


def _shard_pieces(order: np.ndarray, sizes: np.ndarray, index: int, count: int) -> list[tuple[int, int, int]]:
    """The (chunk, first, stop) cell ranges, chunk-local, of shard `index` of `count`: the epoch's
    cells, chunk after chunk in `order`, cut into `count` runs whose sizes differ by at most one cell
    (whole buffers had left shards empty: 2 chunks among 4 DataLoader workers). A chunk at a run's
    edge is decoded by each shard that holds some of its cells."""
    ends = np.cumsum(sizes[order])
    total = int(ends[-1]) if ends.size else 0
    lo, hi = total * index // count, total * (index + 1) // count
    pieces = []
    for chunk, end in zip(order.tolist(), ends.tolist()):
        start = end - int(sizes[chunk])
        if start < hi and end > lo:
            pieces.append((chunk, max(lo, start) - start, min(hi, end) - start))
    return pieces


def _checked_shard(shard, shuffle: bool, seed: int | None) -> tuple[int, int]:
    """(index, count) of a shard of the epoch (every worker of a torch DataLoader takes its own:
    together they give every cell once), (0, 1) for the whole epoch. The workers must draw the same
    order of chunks: with shuffle, a seed they share."""
    if shard is None:
        return 0, 1
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise InvalidInputError(f"shard must be (index, count), not {shard!r}")
    count = checked_integer("shard count", shard[1], 1, MAX_JOBS)
    index = checked_integer("shard index", shard[0], 0, count - 1)
    if shuffle and seed is None and count > 1:
        raise InvalidInputError("shards of a shuffled epoch need a seed every worker shares (seed=...), so that "
                                "they split one order of the chunks")
    return index, count


def _obs_frame(m: MatrixReader):
    """The stored AnnData's obs, else the cell names as obs."""
    contents = m.contents
    if contents is not None and contents.object == "anndata" and "obs" in contents.elements:
        return contents.read("obs")
    return names_obs(m)


def _block_rows(group: list[tuple[int, int, int]], bounds: np.ndarray,
                carry_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the cell of each row of a buffer's block, [carry; its chunks' cells], and the rows of the
    cells this shard takes: the carry and each chunk's range)."""
    cells = np.concatenate([carry_cells] + [np.arange(bounds[c], bounds[c + 1]) for c, _, _ in group])
    rows, at = [np.arange(carry_cells.size)], carry_cells.size
    for chunk, first, stop in group:
        rows.append(np.arange(at + first, at + stop))
        at += int(bounds[chunk + 1] - bounds[chunk])
    return cells, np.concatenate(rows)


def _batches(m: MatrixReader, groups: list[list[tuple[int, int, int]]], bounds: np.ndarray, batch_size: int,
             rng, dtype, frame, drop_last: bool, jobs: int | None) -> Iterator[CellBatch]:
    """Decode a buffer of chunks into one matrix (the next buffer decoding meanwhile), shuffle its
    cells (those of each chunk's range, _shard_pieces) with those left over from the last buffer, and
    cut them into batches. The cells left over are copied to the front of the next buffer's matrix
    as it is decoded (chunks_block's head), so that each batch is one gather of rows of one matrix: stacking carried rows onto each batch had
    copied most batches twice (a shuffled carry lands in nearly every batch of the next buffer).
    A process forked amid the epoch goes on with it on a thread and scratch of its own: the next
    buffer it waited for was decoding on its parent's thread, which the fork did not copy (forever)."""
    owner = os.getpid()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-batches")
    scratch = BlockScratch()  # the epoch's decoding scratch and block arrays, reused from block to block

    def start(k: int, head: sp.csr_matrix | None):
        return pool.submit(m.chunks_block, [chunk for chunk, _, _ in groups[k]], dtype, jobs=jobs, scratch=scratch,
                           head=head) if k < len(groups) else None

    try:
        carry_cells, carry_x = np.zeros(0, np.int64), None
        pending = start(0, None)
        for k in range(len(groups)):
            if os.getpid() != owner:  # forked since: this buffer decodes again here, into arrays of its own
                owner, scratch = os.getpid(), BlockScratch()
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-batches")
                pending = start(k, carry_x)
            block = pending.result()  # [carry; the buffer's chunks' cells]
            cells, rows = _block_rows(groups[k], bounds, carry_cells)
            order = rows[rng.permutation(rows.size)] if rng is not None else rows
            full = order.size - order.size % batch_size
            carry_rows = order[full:]
            carry_x, carry_cells = block[carry_rows], cells[carry_rows]  # copies: block's arrays are reused
            pending = start(k + 1, carry_x)
            for s in range(0, full, batch_size):
                picked = order[s: s + batch_size]
                batch_cells = cells[picked]
                yield CellBatch(block[picked], None if frame is None else frame.iloc[batch_cells], batch_cells)
        if carry_cells.size and not drop_last:
            yield CellBatch(carry_x, None if frame is None else frame.iloc[carry_cells], carry_cells)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
