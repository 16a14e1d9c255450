"""Whole-matrix decodes written straight into their final arrays.

Chunks are decoded in parallel threads, one chunk per thread at a time; each thread scatters its
chunk's nonzeros to their final places (the kernels release the GIL), so the peak memory is the
result plus one chunk's scratch per thread. A read of too few chunks to keep every thread busy so
(a small file, one chunk of a loader) instead decodes and places each chunk on every thread
(cell-major), or each chunk in band parts, one per thread (gene-major). Cell-major output (10x's CSC, AnnData's CSR) needs one
pass, since a chunk's cells are consecutive and its place in the output is known from the chunk
index. Gene-major output (CSR genes x cells) first counts each chunk's nonzeros per row by
decoding positions only. Every chunk's content checksum is verified on the way.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .. import _native
from ..codec.checksum import mapped_checksum
from ..codec.tile import STATUS_TEXT, count_rows
from ..errors import CorruptFileError
from ..io.dtypes import check_exact, count_dtype
from ..limits import check_allocation, read_threads
from ..progress import Progress
from .decode import Buffers, tile_bytes, decode_batch, gather, run_all
from .index import Chunk, MatrixIndex
from .pages import fresh_array


# Output value types the placing kernels write directly (of those io.dtypes.count_dtype admits);
# others are placed as int32 (every decoded value fits) and converted once at the end.
_NATIVE_VALUE_TYPES = frozenset(np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64))


def _placed(index: MatrixIndex, chunk: Chunk, result: tuple[int, int]) -> None:
    """Raise CorruptFileError unless a placing kernel succeeded with the chunk's content checksum."""
    status, checksum = result
    _check_status(index, chunk, status)
    check_chunk_sum(index, chunk, checksum)


def _check_status(index: MatrixIndex, chunk: Chunk, status: int) -> None:
    if status:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index}: {_native.assemble_status_text(status)} "
                               "(file is corrupt)")


def for_each_chunk(index: MatrixIndex, jobs: int | None, work, ids: Sequence[int] | None = None,
                    parts: int = 1) -> None:
    """Run work(chunk, part) for parts 0 .. parts - 1 of every chunk (or those of `ids`) on `jobs`
    threads. Chunks load in the calling thread as their blocks can be read (a remote file's arrive
    concurrently, the first decoding while the others are on the way), at most one per thread ahead
    of the decoders."""
    ids = list(range(index.n_chunks) if ids is None else ids)
    workers = max(1, min(read_threads(jobs), len(ids) * parts))
    chunks = index.stream_chunks(ids)
    try:
        if workers == 1:
            for chunk in chunks:
                for part in range(parts):
                    work(chunk, part)
        else:
            run_all(work, ((chunk, part) for chunk in chunks for part in range(parts)), window=2 * workers)
    finally:
        chunks.close()  # a failed read stops the fetches still under way


class Workspace(threading.local):
    """What each thread of a whole-matrix read reuses from chunk to chunk: a read makes its own
    (freed with it); a loader keeps one for an epoch's blocks (BlockScratch), whose chunk-sized
    scratch then gets fresh pages once rather than at every block."""

    def __init__(self) -> None:
        self.buffers = Buffers()
        self.scratch = _native.PlaceScratch()


class BlockScratch:
    """What a loader's blocks of chunks reuse from one to the next: the decoding threads' Workspace
    and the blocks' output arrays, two sets taken in turn (a block decodes while the one before it
    is cut into batches, which copy its rows, so a block's arrays are free again two blocks later).
    Fresh output arrays (68 MB for 4 chunks of 2.1M nonzeros) cost their page faults at every block."""

    def __init__(self) -> None:
        self.workspace = Workspace()
        self._sets: list[dict[str, np.ndarray]] = [{}, {}]
        self._turn = 0

    def outputs(self) -> dict[str, np.ndarray]:
        """The next block's set of arrays (not thread-safe: one block decodes at a time)."""
        self._turn ^= 1
        return self._sets[self._turn]


def _output(arrays: dict[str, np.ndarray] | None, name: str, size: int, dtype) -> np.ndarray:
    """An uninitialised array of `size` items: fresh, or the front of the one `arrays` keeps under
    `name` (replaced when too small or of another type)."""
    if arrays is None:
        return fresh_array(size, dtype)
    kept = arrays.get(name)
    if kept is None or kept.size < size or kept.dtype != np.dtype(dtype):
        arrays.pop(name, None)  # the old one goes before the new one is touched
        kept = arrays[name] = fresh_array(size, dtype)
    return kept[:size]


def decode_chunk(index: MatrixIndex, chunk: Chunk, buffers: Buffers | None = None, jobs: int = 1,
                 by_cell: bool = False, bands: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole chunk's (rows, columns, values), or those of its bands `bands` (first, end), their
    nonzero count checked: what every whole-matrix assembly places (views of `buffers` when given),
    decoded on `jobs` threads. Its rows count from its segment's first, as the placing kernels take
    them with the segment's tables (_segment_ranks).

    The tiles come band after band (a gene-major placing writes each row in order), or with
    `by_cell` by their first column: a cell-major placing then writes to the cells of a few tiles'
    width at a time, not to every cell of the chunk in each band, and its writes stay in cache."""
    if bands is not None:
        tiles = _band_tiles(chunk, bands)
        expected = int(chunk.tile_k[tiles].sum())
    else:
        tiles = np.argsort(chunk.tile_first, kind="stable") if by_cell else slice(0, chunk.geometry.n_tiles)
        expected = chunk.nnz
    batch = gather(index, [(chunk, tiles)])
    if buffers is not None:
        buffers.expect(index.largest_chunk_nnz)  # a thread's first chunk sizes them for all
    rows, cols, values = decode_batch(index, batch, jobs=jobs, value_dtype=np.int32, buffers=buffers)
    if values.size != expected:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to {values.size} nonzeros, not {expected}")
    if chunk.row_base:
        rows -= chunk.row_base
    return rows, cols, values


def check_chunk_sum(index: MatrixIndex, chunk: Chunk, checksum) -> None:
    """Raise CorruptFileError unless a chunk decoded to its stored content checksum."""
    if int(checksum) != chunk.checksum:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to content that fails its checksum "
                               "(file is corrupt)")


def check_whole_chunks(index: MatrixIndex, chunks: Sequence[Chunk], rows: np.ndarray, cols: np.ndarray,
                       values: np.ndarray) -> None:
    """W1 (spec §6.6) for the chunks of a selection that it decoded whole, every row and cell of each:
    a read that decodes a whole chunk checks its checksum, however it came to. The triples are a
    decode_batch's of parts named chunk after chunk in ascending order (each chunk's are one run),
    rows stored rows and columns reordered ones of the file."""
    if not chunks:
        return
    gene_of_row = index.row_genes(np.arange(index.n_stored))
    chunk_of = np.searchsorted(index.chunk_starts, cols, side="right") - 1  # ascending: chunks are runs
    for chunk in chunks:
        lo, hi = np.searchsorted(chunk_of, [chunk.index, chunk.index + 1]).tolist()
        check_chunk_sum(index, chunk, mapped_checksum(rows[lo:hi], cols[lo:hi], values[lo:hi], gene_of_row,
                                                      index.cell_original))


def _segment_ranks(index: MatrixIndex, segments) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each segment of `segments`: the original gene of each of its rows (no chunk of it has
    more rows), and each such row's rank by gene. A placing kernel takes one segment's, with the
    chunk's rows counted from the segment's first (decode_chunk); they are known before any chunk
    is loaded, so chunks decode as they arrive."""
    tables = {}
    for segment in segments:
        genes = index.segment_genes(segment)
        rank = np.empty(genes.size, dtype=np.int64)
        rank[np.argsort(genes, kind="stable")] = np.arange(genes.size)
        tables[segment] = genes, rank
    return tables


# A gene-major read cuts each chunk into band parts, one per thread, where whole chunks would leave a
# thread this much beyond the even share: parts cost nearly nothing (their rows are apart), so it
# takes little imbalance (3 chunks on 2 threads: 1.33x).
_SPLIT_ABOVE = 1.1


def chunk_threads(chunk_nnz: np.ndarray, jobs: int | None) -> tuple[int, int]:
    """(threads taking whole chunks, threads inside each chunk) for a cell-major read of chunks of
    these sizes on `jobs` threads: each chunk on every thread where whole chunks would leave threads
    idle, by the core's rule and cost (_native.share_chunks, SHARED_CHUNK_COST), as its own whole
    reads decide."""
    workers = read_threads(jobs)
    if workers > 1 and _native.share_chunks(chunk_nnz, workers, _native.SHARED_CHUNK_COST):
        return 1, workers
    return workers, 1


# A gene-major read takes threads of the shared pool for its passes from this many nonzeros: below
# it, their start (the pool's, a workspace each) costs more than they save. First reads in fresh
# processes, real cuts of pbmc4k, frozen_pbmc and visium (medians of 9): 20,000 nonzeros 4.8 ms on
# one thread against 8.6 on two, 200,000 11.1 against 14.3, 600,000 25.2 against 22.4.
_POOL_FROM_NNZ = 1 << 18


def _parts(chunk_nnz: np.ndarray, jobs: int | None) -> tuple[int, int]:
    """(threads, band parts of each chunk) for a gene-major read of chunks of these sizes on `jobs`
    threads (one below _POOL_FROM_NNZ nonzeros): a part per thread where whole chunks would leave
    threads idle."""
    workers = read_threads(jobs) if chunk_nnz.sum() >= _POOL_FROM_NNZ else 1
    if workers > 1 and _native.share_chunks(chunk_nnz, workers, _SPLIT_ABOVE):
        return workers, workers
    return workers, 1


def _index_dtype(size: int):
    return np.int32 if size < 2**31 else np.int64


def cell_major(index: MatrixIndex, dtype, jobs: int | None, chunks: Sequence[int] | None = None,
               scratch: BlockScratch | None = None, head: sp.csr_matrix | None = None,
               progress: Progress | None = None) -> sp.csr_matrix:
    """Cells x genes CSR (the transpose of genes x cells CSC) of the cells of `chunks` (distinct
    chunk ids, default all), in the order listed, exact, checksums verified; with `scratch`, decoded
    in its workspace into its arrays (valid until the block after next); with `head` (cells x genes
    CSR, sorted indices), its rows first (a loader's cells carried over from its last block); each
    chunk's nonzeros counted on `progress` once placed."""
    chunks = range(index.n_chunks) if chunks is None else chunks
    ids = np.asarray(chunks, dtype=np.int64)
    head_rows, head_nnz = (0, 0) if head is None else (head.shape[0], int(head.indptr[-1]))
    row_starts = head_rows + np.concatenate([[0], np.cumsum(index.chunk_starts[ids + 1] - index.chunk_starts[ids])])
    nnz_starts = head_nnz + np.concatenate([[0], np.cumsum(index.nnz_starts[ids + 1] - index.nnz_starts[ids])])
    slot = {int(c): i for i, c in enumerate(ids)}
    n_genes = index.n_genes
    dtype = count_dtype(dtype)
    if scratch is None:  # a loader's arrays are its own, made once
        check_allocation(int(nnz_starts[-1]) * (max(dtype.itemsize, 4) + np.dtype(_index_dtype(n_genes)).itemsize)
                         + 8 * int(row_starts[-1]), f"{index.what}: reading {int(row_starts[-1]):,} cells")
    arrays = scratch.outputs() if scratch is not None else None
    data = _output(arrays, "data", int(nnz_starts[-1]), dtype if dtype in _NATIVE_VALUE_TYPES else np.int32)
    indices = _output(arrays, "indices", data.size, _index_dtype(n_genes))
    indptr = np.zeros(int(row_starts[-1]) + 1, dtype=np.int64)
    if head_rows:
        indptr[:head_rows + 1] = head.indptr
        data[:head_nnz] = head.data
        indices[:head_nnz] = head.indices
    tables = _segment_ranks(index, np.unique(index.chunk_segment[ids]).tolist())

    workspace = scratch.workspace if scratch is not None else Workspace()
    outside, inside = chunk_threads(np.diff(nnz_starts), jobs)

    def work(chunk: Chunk, _part: int) -> None:
        i = slot[chunk.index]
        genes_of_row, rank = tables[chunk.segment]
        rows, cols, values = decode_chunk(index, chunk, workspace.buffers, inside, by_cell=True)
        _placed(index, chunk, _native.place_by_cell(rows, cols, values, index.cell_original, chunk.first_cell,
                                                    chunk.n_cells, rank, genes_of_row, int(nnz_starts[i]),
                                                    indptr[row_starts[i]:], indices, data, workspace.scratch, inside))
        if progress is not None:
            progress.update(chunk.nnz)

    for_each_chunk(index, outside, work, chunks)
    data = data.astype(dtype, copy=False)
    check_exact(data, dtype, index.what, lambda: cell_major(index, np.int64, jobs, chunks, None, head if head is None
                                                           else head.astype(np.int64)).data)
    return sp.csr_matrix((data, indices, indptr), shape=(int(row_starts[-1]), n_genes))


def gene_major(index: MatrixIndex, dtype, jobs: int | None, progress: Progress | None = None) -> sp.csr_matrix:
    """Genes x cells CSR, exact, checksums verified: rows counted first, then filled in place, each
    a pass of `progress` that counts the nonzeros it has been through. Each
    segment's chunks are counted over its own rows; a gene's nonzeros follow chunk after chunk,
    so the cells of a gene stored in several segments ascend too. Where whole chunks would leave
    threads idle (a file of a few chunks), each chunk is read in band parts, one per thread: their
    rows are apart, and the chunk's checksum is the sum of its parts'."""
    n_genes, n_cells = index.n_genes, index.n_cells
    dtype = count_dtype(dtype)
    progress = progress or Progress(False, None, "", "")
    first_chunk = index.segment_chunk_starts
    genes = [index.segment_genes(s) for s in range(index.n_segments)]
    tables = sum(int(first_chunk[s + 1] - first_chunk[s]) * max(g.size, 1) for s, g in enumerate(genes))
    check_allocation(index.nnz * (max(dtype.itemsize, 4) + np.dtype(_index_dtype(n_cells)).itemsize)
                     + 3 * 8 * tables + 3 * 8 * n_genes,  # the counts, cursors and limits of each chunk's rows
                     f"{index.what}: reading {n_genes:,} genes")
    counts = [np.zeros((first_chunk[s + 1] - first_chunk[s], max(g.size, 1)), dtype=np.int64)
              for s, g in enumerate(genes)]  # [segment][chunk of it, row of it]
    workers, parts = _parts(np.diff(index.nnz_starts), jobs)
    runs, runs_lock = {}, threading.Lock()

    def band_parts(chunk: Chunk) -> list[tuple[int, int]]:
        """The chunk's runs of bands, worked out once for all its parts and both passes: at every part,
        a read on 4,096 threads (4,096 parts of each chunk) had taken 167 s, not 0.13 s."""
        with runs_lock:
            if chunk.index not in runs:
                runs[chunk.index] = _band_parts(chunk, parts)
            return runs[chunk.index]

    def count(chunk: Chunk, part: int) -> None:
        bands = band_parts(chunk)
        if part >= len(bands):
            return
        batch = gather(index, [(chunk, _band_tiles(chunk, bands[part]))])
        buffer, offsets = tile_bytes(index, batch)
        status = np.zeros(batch.size, dtype=np.int64)
        _, model, tables3 = index.models(batch.model)
        count_rows(buffer, offsets, batch.length, batch.k, batch.h, batch.w, batch.row - chunk.row_base,
                   counts[chunk.segment][chunk.index - first_chunk[chunk.segment]], status, model, tables3, 1)
        if np.any(status):
            raise CorruptFileError(f"{index.what}: {STATUS_TEXT.get(int(status[np.flatnonzero(status)[0]]))} "
                                   "(file is corrupt)")
        progress.update(int(batch.k.sum()))

    progress.begin("counting", index.nnz)
    for_each_chunk(index, workers, count, parts=parts)
    per_gene = np.zeros(n_genes, dtype=np.int64)
    for g, c in zip(genes, counts):
        per_gene[g] += c.sum(axis=0)[:g.size]  # a segment holds each gene once
    indptr = np.concatenate([[0], np.cumsum(per_gene)]).astype(np.int64)
    if indptr[-1] != index.nnz:
        raise CorruptFileError(f"{index.what}: tiles hold {indptr[-1]} nonzeros, the header says {index.nnz}")
    cursors, start = [], indptr[:-1].copy()  # where each gene's nonzeros of the next segment go
    for g, c in zip(genes, counts):
        c = c[:, :g.size]
        cursors.append(start[g] + np.concatenate([np.zeros((1, g.size), np.int64), np.cumsum(c[:-1], axis=0)]))
        start[g] += c.sum(axis=0)
    data = fresh_array(index.nnz, dtype if dtype in _NATIVE_VALUE_TYPES else np.int32)
    indices = fresh_array(index.nnz, _index_dtype(n_cells))

    # where each chunk's share of each row ends (before any part moves a cursor)
    limits = [cursor + c[:, :g.size] for cursor, c, g in zip(cursors, counts, genes)]
    workspace = Workspace()
    sums = _PartSums(index)

    def work(chunk: Chunk, part: int) -> None:
        bands = band_parts(chunk)
        if part >= len(bands):
            return
        rows, cols, values = decode_chunk(index, chunk, workspace.buffers, bands=bands[part])
        s, local = chunk.segment, chunk.index - first_chunk[chunk.segment]
        first, end = bands[part]
        status, checksum = _native.place_by_row(rows, cols, values, index.cell_original, chunk.first_cell,
                                                chunk.n_cells, genes[s], cursors[s][local], limits[s][local],
                                                chunk.geometry.row_starts[first:end + 1] - chunk.row_base, indices,
                                                data, 1)
        sums.add(chunk, len(bands), status, checksum)
        progress.update(values.size)

    progress.begin("decoding", index.nnz)
    for_each_chunk(index, workers, work, parts=parts)
    data = data.astype(dtype, copy=False)
    check_exact(data, dtype, index.what, lambda: gene_major(index, np.int64, jobs).data)
    return sp.csr_matrix((data, indices, indptr), shape=(n_genes, n_cells))


def _band_parts(chunk: Chunk, parts: int) -> list[tuple[int, int]]:
    """The chunk's bands as at most `parts` runs (first, end) of about equal nonzeros, each a band or
    more (one run of every band for one part, or a chunk without bands)."""
    n_bands = chunk.geometry.n_bands
    if parts == 1 or n_bands <= 1:
        return [(0, n_bands)]
    before = np.concatenate([[0], np.cumsum(chunk.tile_k)])[chunk.geometry.tile_starts]  # nonzeros before each band
    cuts = np.searchsorted(before, np.arange(1, parts) * before[-1] / parts).tolist()
    bounds = sorted({0, n_bands, *(min(max(c, 1), n_bands - 1) for c in cuts)})
    return list(zip(bounds[:-1], bounds[1:]))


def _band_tiles(chunk: Chunk, bands: tuple[int, int]) -> slice:
    """The tiles of the chunk's bands first .. end - 1 (a band's tiles follow one another)."""
    return slice(*chunk.geometry.tile_starts[list(bands)].tolist())


class _PartSums:
    """A read in band parts: each part's placing checked at once, each chunk's content checksum once
    its last part is placed (the sum of its parts', mod 2**64)."""

    def __init__(self, index: MatrixIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._sums: dict[int, tuple[int, int]] = {}

    def add(self, chunk: Chunk, n_parts: int, status: int, checksum: int) -> None:
        _check_status(self.index, chunk, status)
        with self._lock:
            total, done = self._sums.get(chunk.index, (0, 0))
            total, done = (total + int(checksum)) % 2**64, done + 1
            self._sums[chunk.index] = (total, done)
        if done == n_parts:
            check_chunk_sum(self.index, chunk, total)
