"""Running the tile decoder over the tiles a read needs: one compiled call.

A read names tiles chunk by chunk; they are checked (band CRCs, first touch only), laid out as
flat per-tile arrays and decoded by one call of the core, which splits them into contiguous runs
of about equal work on its own threads (no Python thread pool: a cell read's 400 tiles take about
a millisecond). Each tile writes its triples at its own offset, so the threads never share output.
A filtered read too large for one output decodes in pieces per worker thread (_decode_in_pieces).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

import numpy as np

from .. import _native
from ..codec.stages import MODE_CODES
from ..codec.tile import STATUS_TEXT, decode_tiles
from ..errors import CorruptFileError
from ..limits import read_threads
from ..storage.container import crc32_ranges
from ..storage.source import fork_safe_lock
from .index import Chunk, MatrixIndex, TileTable
from .pages import fresh_array
from .selection import unique_sorted

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

PIECE_ENTRIES = 1 << 18  # a filtered read's scratch per worker, in triples (4 MB at int64 values)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = fork_safe_lock()  # threads' first reads at once make one pool, not one each


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is not None:
        return _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor  # a one-entry read never starts threads
            # as many as the machine has: a read asks for read_threads(jobs) and no more are started, so an
            # explicit jobs= beyond a container's quota is honoured, as the core honours it
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sinr-decode")
        return _POOL


def _forget_pool() -> None:
    """In a forked child (a torch DataLoader's workers by default): the parent's pool has no threads
    here, so work given to it would wait forever; the child starts its own."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_all(function: Callable, calls: Iterable[tuple], window: int | None = None) -> None:
    """function(*args) for each args of `calls` on the shared pool, waiting for all; with a
    window, `calls` is taken only while fewer than `window` calls are pending (so a stream of
    chunks still arriving is not drained ahead of the decoders). On any exception (Ctrl-C, a
    corrupt chunk) the calls not yet started are cancelled and those already running are waited
    for: an interrupted decode ends after them (a chunk's decode, which has no stop flag), not after
    the whole queue, and nothing of it still runs (reading a file its caller may close at once) once
    the exception is raised; a second Ctrl-C during that wait leaves them running."""
    from concurrent.futures import FIRST_COMPLETED, wait

    futures, pending = [], set()  # every call in order; those not finished when last looked at
    try:
        for args in calls:
            if window is not None and len(pending) >= window:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
            futures.append(_pool().submit(function, *args))
            pending.add(futures[-1])
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


class Buffers:
    """Arrays of decoded triples that one thread reuses from one chunk to the next: a whole-matrix
    read then pays their first touch (12 bytes a nonzero) once, not per chunk. Sized at first for
    the largest chunk the read expects (expect()): grown chunk by chunk instead, a 6e7 read on two
    threads took fresh arrays 12 times in 28 chunks (27 MB of new pages each)."""

    def __init__(self) -> None:
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._expected = 0

    def expect(self, size: int) -> None:
        """The most items a take() of this read may ask for: the first allocation holds them."""
        self._expected = max(self._expected, int(size))

    def take(self, size: int, value_dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Uninitialised rows, columns and values of `size` items, grown only when too small."""
        arrays = self._arrays
        if arrays is None or arrays[0].size < size or arrays[2].dtype != np.dtype(value_dtype):
            arrays = self._arrays = None  # the old ones go before the new ones are touched
            room = max(size, self._expected)
            arrays = self._arrays = tuple(fresh_array(room, t) for t in (np.int32, np.int32, value_dtype))
        return arrays[0][:size], arrays[1][:size], arrays[2][:size]


class TileBatch(NamedTuple):
    """Flat per-tile arrays of the tiles of one read; `data`, when the read already holds the
    tiles' bytes (read to check their bands' CRCs), is those bytes and each tile's offset in them."""

    offset: np.ndarray
    length: np.ndarray
    k: np.ndarray
    h: np.ndarray
    w: np.ndarray
    row: np.ndarray
    col: np.ndarray
    first: np.ndarray
    cells: np.ndarray
    model: np.ndarray
    siren: np.ndarray
    data: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def size(self) -> int:
        return int(self.k.size)


def gather(index: MatrixIndex, parts: list[tuple[Chunk, np.ndarray | slice]]) -> TileBatch:
    """The tiles `parts` names (chunk and tile ids, or a slice of them), CRC-checked, as one batch."""
    columns = {name: [] for name in TileBatch._fields if name != "data"}
    if index.source.batched:  # the bands holding the tiles (their CRCs cover whole bands), in one batch
        ranges = []
        for chunk, tiles in parts:
            ids = np.arange(tiles.start, tiles.stop) if isinstance(tiles, slice) else tiles
            bands = unique_sorted(np.searchsorted(chunk.geometry.tile_starts, ids, side="right") - 1)
            ranges += zip(*(a.tolist() for a in index.band_ranges(chunk, bands)))
        index.source.prefetch(ranges)
    held, held_at, base = [], [], 0  # the bytes read to check bands, while every part has them
    for chunk, tiles in parts:
        ids = np.arange(tiles.start, tiles.stop) if isinstance(tiles, slice) else tiles
        if not ids.size:
            continue
        band = np.searchsorted(chunk.geometry.tile_starts, ids, side="right") - 1
        bands, band_of = _unique_inverse(band)
        read = index.verify_bands(chunk, bands)
        if read is None or held is None:
            held = None
        else:
            buffer, shift = read
            held.append(buffer)
            held_at.append(base + shift[band_of] + chunk.tile_offset[ids])
            base += buffer.size
        columns["offset"].append(chunk.tile_offset[ids])
        columns["length"].append(chunk.tile_length[ids])
        columns["k"].append(chunk.tile_k[ids])
        columns["h"].append(chunk.tile_h[ids])
        columns["w"].append(chunk.tile_w[ids])
        columns["row"].append(chunk.tile_row[ids])
        columns["col"].append(chunk.first_cell + chunk.tile_first[ids])
        columns["first"].append(chunk.tile_first[ids])
        columns["cells"].append(np.full(ids.size, chunk.n_cells, np.int64))
        columns["model"].append(np.full(ids.size, chunk.index, np.int64))
        columns["siren"].append(chunk.band_siren[band])
    data = None
    if held:
        data = (held[0] if len(held) == 1 else np.concatenate(held), np.concatenate(held_at).astype(np.int64))
    return TileBatch(**{name: (np.concatenate(v) if v else np.zeros(0, np.int64)).astype(np.int64, copy=False)
                        for name, v in columns.items()}, data=data)


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) without its sort where values ascend already (the
    bands of a chunk's tiles named in order, as every read names them)."""
    if values.size > 1 and np.any(values[1:] < values[:-1]):
        return np.unique(values, return_inverse=True)
    starts = np.concatenate([[True], values[1:] != values[:-1]]) if values.size else np.zeros(0, bool)
    return values[starts], np.cumsum(starts) - 1


def table_batch(index: MatrixIndex, table: TileTable, chunks: np.ndarray, bands: np.ndarray, tiles: np.ndarray,
                pair: np.ndarray) -> TileBatch:
    """The batch of `tiles` (ids in the tile table), tile t of the (chunk, band) pair pair[t],
    CRC-checked (see band_tile_ranges). The tiles are whole bands, so the bytes read for them are
    the bands' bytes: one gather reads them, one native call checks the CRCs of those not checked
    yet, and the decoder takes the same bytes (a gene of a 60M-nonzero file had cost a read and a
    check per chunk, then a second read)."""
    base = table.chunk_base[chunks]  # band_tiles count each chunk's own tiles
    last = base + table.band_tiles[chunks, bands + 1] - 1  # every band has a tile (a chunk has cells)
    lo = table.offset[base + table.band_tiles[chunks, bands]]
    length = table.offset[last] + table.length[last] - lo
    unverified = ~table.band_verified[chunks, bands]
    whole = index.source.array()
    if whole is not None:
        buffer, at, data = whole, lo, None
    else:
        if index.source.batched:  # the bands in one batch of requests, which the gather then joins
            index.source.prefetch(list(zip(lo.tolist(), length.tolist())))
        buffer, at = index.source.gather(lo, length)
        data = (buffer, at[pair] + table.offset[tiles] - lo[pair])
    if unverified.any():
        bad = np.flatnonzero(unverified & (crc32_ranges(buffer, at, length) != table.band_crc[chunks, bands]))
        if bad.size:
            raise CorruptFileError(f"{index.what}: chunk {int(chunks[bad[0]])}: checksum mismatch in the tiles of "
                                   f"band {int(bands[bad[0]])} (file is corrupt)")
        table.band_verified[chunks, bands] = True
    chunk_of, band_of = chunks[pair], bands[pair]
    first = table.first[tiles].astype(np.int64)
    return TileBatch(table.offset[tiles], table.length[tiles].astype(np.int64), table.k[tiles].astype(np.int64),
                     table.h[tiles].astype(np.int64), table.w[tiles].astype(np.int64),
                     table.row[tiles].astype(np.int64), table.first_cell[chunk_of] + first, first,
                     table.n_cells[chunk_of], chunk_of, table.band_siren[chunk_of, band_of], data)


def compact_tiles(out_start: np.ndarray, counts: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  values: np.ndarray) -> int:
    """Move each tile's triples down to follow the previous tile's; return how many there are."""
    status, kept = _native.compact(out_start, counts, rows, cols, values)
    if status:
        raise CorruptFileError(f"tile decoding: {_native.assemble_status_text(status)} (file is corrupt)")
    return kept


def tile_bytes(index: MatrixIndex, batch: TileBatch) -> tuple[np.ndarray, np.ndarray]:
    """The bytes the tiles live in, and each tile's offset into them: bytes in memory themselves, or
    the tiles' bytes gathered by the source (storage.source.ByteSource.gather)."""
    whole = index.source.array()
    if whole is not None:
        return whole, batch.offset
    if batch.data is not None:
        return batch.data
    return index.source.gather(batch.offset, batch.length)


def decode_batch(index: MatrixIndex, batch: TileBatch, *, want_row: int = -1, want_col: int = -1,
                 col_mask: np.ndarray | None = None, row_mask: np.ndarray | None = None, jobs: int | None = None,
                 value_dtype=np.int64, buffers: Buffers | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, reordered column, value) of the kept nonzeros of a batch, tile after tile (values fit
    int32: every value is below 2**31); with `buffers`, views of them (valid until their next use).
    row_mask (a bool per row) keeps the nonzeros of the rows it marks, dropping the others piece by
    piece: a read of some genes of each band never holds every nonzero of those bands at once."""
    if batch.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, value_dtype)
    buffer, offsets = tile_bytes(index, batch)
    capacity = batch.k  # what each tile may return: all its nonzeros, or as many as the filter allows
    if want_row >= 0:
        capacity = np.minimum(capacity, batch.w)
    if want_col >= 0:
        capacity = np.minimum(capacity, batch.h)
    if col_mask is not None:
        wanted = np.concatenate([[0], np.cumsum(col_mask, dtype=np.int64)])
        capacity = np.minimum(capacity, batch.h * (wanted[batch.col + batch.w] - wanted[batch.col]))
    total = int(capacity.sum())
    counts = np.zeros(batch.size, np.int64)
    status = np.zeros(batch.size, np.int64)
    gene_terms = index.genes()[3]
    spec, norm, layers, params = index.sirens.arrays()
    mask = col_mask if col_mask is not None else np.zeros(0, bool)
    (cum, lut, used), model, tables3 = index.models(batch.model)

    def decode_into(lo: int, hi: int, out_start: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    values: np.ndarray, threads: int = 1) -> None:
        s = slice(lo, hi)
        decode_tiles(buffer, offsets[s], batch.length[s], batch.k[s], batch.h[s], batch.w[s], batch.row[s],
                     batch.col[s], batch.first[s], batch.cells[s], model[s], batch.siren[s], gene_terms,
                     index.cell_terms, cum, lut, used, spec, norm, layers, params, MODE_CODES[index.mode],
                     index.max_error, want_row, want_col, mask, out_start, rows, cols, values, counts[s], status[s],
                     tables3, threads)

    def check(lo: int = 0, hi: int | None = None) -> None:
        """Raise for the first tile of lo .. hi - 1 that failed."""
        bad = np.flatnonzero(status[lo:hi])
        if bad.size:
            raise CorruptFileError(f"{index.what}: {STATUS_TEXT.get(int(status[lo + bad[0]]), 'a tile is corrupt')} "
                                   "(file is corrupt)")

    work = np.cumsum(batch.k)
    workers = min(read_threads(jobs), batch.size) if work[-1] >= _native.PARALLEL_MIN_ENTRIES else 1
    filtered = want_row >= 0 or want_col >= 0 or col_mask is not None or row_mask is not None
    if filtered and buffers is None and total > PIECE_ENTRIES * workers:
        cuts = np.searchsorted(work, np.linspace(0, work[-1], workers + 1)[1:-1])
        bounds = [0, *np.unique(cuts).tolist(), batch.size]
        ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        return _decode_in_pieces(decode_into, check, ranges, capacity, counts, value_dtype, row_mask)
    out_start = np.concatenate([[0], np.cumsum(capacity)[:-1]]).astype(np.int64)
    if buffers is not None:
        rows, cols, values = buffers.take(total, value_dtype)
    else:
        rows, cols, values = fresh_array(total, np.int32), fresh_array(total, np.int32), fresh_array(total, value_dtype)

    decode_into(0, batch.size, out_start, rows, cols, values, threads=workers)  # the core cuts the runs
    check()
    kept = total if np.array_equal(counts, capacity) else compact_tiles(out_start, counts, rows, cols, values)
    return _rows_kept(rows[:kept], cols[:kept], values[:kept], row_mask)


def _rows_kept(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
               row_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triples of the rows row_mask marks (copies), or all of them (as they are) without one."""
    if row_mask is None:
        return rows, cols, values
    keep = row_mask[rows]
    return rows[keep], cols[keep], values[keep]


def _decode_in_pieces(decode_into: Callable, check: Callable, ranges: list[tuple[int, int]], capacity: np.ndarray,
                      counts: np.ndarray, value_dtype,
                      row_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A filtered read (a gene, a cell, a set of cells) bounds what each tile returns by its wanted
    rows or columns times its height or width, often 20x what it does return; output arrays of
    that size are touched by every tile, so every page of them is paid for (a fifth of the time
    of 1,000 random cells). Each worker instead decodes runs of its tiles into a scratch of about
    PIECE_ENTRIES triples that it reuses, keeps their compacted triples (of the rows row_mask
    marks), and the pieces are joined in tile order."""
    ends = np.cumsum(capacity)
    pieces: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in ranges]

    def work(part: int) -> None:
        lo, hi = ranges[part]
        scratch = None
        while lo < hi:
            base = int(ends[lo - 1]) if lo else 0
            stop = max(lo + 1, min(hi, int(np.searchsorted(ends, base + PIECE_ENTRIES, side="right"))))
            size = int(ends[stop - 1]) - base
            if scratch is None or scratch[0].size < size:
                scratch = (np.empty(size, np.int32), np.empty(size, np.int32), np.empty(size, value_dtype))
            rows, cols, values = (a[:size] for a in scratch)
            out_start = ends[lo:stop] - capacity[lo:stop] - base
            decode_into(lo, stop, out_start, rows, cols, values)
            check(lo, stop)
            kept = compact_tiles(out_start, counts[lo:stop], rows, cols, values)
            if row_mask is None:
                pieces[part].append((rows[:kept].copy(), cols[:kept].copy(), values[:kept].copy()))
            else:
                pieces[part].append(_rows_kept(rows[:kept], cols[:kept], values[:kept], row_mask))
            lo = stop

    if len(ranges) == 1:
        work(0)
    else:
        run_all(work, [(part,) for part in range(len(ranges))])
    joined = [list(piece) for part in pieces for piece in part]
    pieces.clear()
    out = []
    for i in range(3):  # each array of the pieces let go once joined: the join holds one twice, not all three
        out.append(np.concatenate([piece[i] for piece in joined]))
        for piece in joined:
            piece[i] = None
    return tuple(out)
