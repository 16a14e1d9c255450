"""Whole-matrix decodes written straight into their final arrays.

Chunks are decoded in parallel threads, one chunk per thread at a time; each thread scatters its
chunk's nonzeros to their final places (the kernels release the GIL), so the peak memory is the
result plus one chunk's scratch per thread. Cell-major output (10x's CSC, AnnData's CSR) needs one
pass, since a chunk's cells are consecutive and its place in the output is known from the chunk
index. Gene-major output (CSR genes x cells) first counts each chunk's nonzeros per row by
decoding positions only. Every chunk's content checksum is verified on the way.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit

from .._pending_numba import JIT, bit_length, mix
from ..codec.tile import STATUS_TEXT, count_rows
from ..errors import CorruptFileError
from .decode import _buffer, _pool, decode_batch, gather
from .index import Chunk, MatrixIndex


RADIX_BITS = 10  # 1024 buckets per pass: few enough write streams for the caches and TLB


@njit(**JIT)
def _radix_sort(keys: np.ndarray, first: np.ndarray, second: np.ndarray, key_bits: int):
    """(keys, first, second) sorted by keys (non-negative, below 2**key_bits), stably, by least
    significant digit first: every pass reads sequentially and writes to at most 2**RADIX_BITS
    places, which is what makes it faster than one counting sort over many buckets."""
    n = keys.size
    keys_out = np.empty_like(keys)
    first_out = np.empty_like(first)
    second_out = np.empty_like(second)
    buckets = 1 << RADIX_BITS
    shift = 0
    while shift < max(key_bits, 1):
        starts = np.zeros(buckets + 1, dtype=np.int64)
        for idx in range(n):
            starts[((keys[idx] >> shift) & (buckets - 1)) + 1] += 1
        for b in range(buckets):
            starts[b + 1] += starts[b]
        for idx in range(n):
            digit = (keys[idx] >> shift) & (buckets - 1)
            at = starts[digit]
            starts[digit] = at + 1
            keys_out[at] = keys[idx]
            first_out[at] = first[idx]
            second_out[at] = second[idx]
        keys, keys_out = keys_out, keys
        first, first_out = first_out, first
        second, second_out = second_out, second
        shift += RADIX_BITS
    return keys, first, second


@njit(**JIT)
def _place_by_cell(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, cell_original: np.ndarray, first_cell: int,
                   n_cells: int, rank_of_row: np.ndarray, genes_of_row: np.ndarray, base: int, out_indptr: np.ndarray,
                   out_indices: np.ndarray, out_data: np.ndarray) -> np.uint64:
    """Write a chunk's nonzeros cell by cell (genes ascending in each) from `base`, and its cells'
    index pointers into out_indptr[1:]; return the chunk's content checksum. Two stable counting
    sorts, by gene rank and then by cell, put them in exactly their output order."""
    n = rows.size
    n_ranks = rank_of_row.size
    rank_starts = np.zeros(n_ranks + 1, dtype=np.int64)
    for idx in range(n):
        rank_starts[rank_of_row[rows[idx]] + 1] += 1
    for r in range(n_ranks):
        rank_starts[r + 1] += rank_starts[r]
    ranked_cell = np.empty(n, dtype=np.int32)
    ranked_gene = np.empty(n, dtype=np.int32)
    ranked_value = np.empty(n, dtype=values.dtype)
    cell_counts = np.zeros(n_cells, dtype=np.int64)
    checksum = np.uint64(0)
    for idx in range(n):
        row = rows[idx]
        at = rank_starts[rank_of_row[row]]
        rank_starts[rank_of_row[row]] = at + 1
        cell = cell_original[cols[idx]]
        gene = genes_of_row[row]
        ranked_cell[at] = cell - first_cell
        ranked_gene[at] = gene
        ranked_value[at] = values[idx]
        cell_counts[cell - first_cell] += 1
        key = np.uint64(gene) + (np.uint64(cell) << np.uint64(32))
        checksum += mix(mix(key) ^ np.uint64(values[idx]))
    cursor = np.empty(n_cells, dtype=np.int64)
    running = base
    for c in range(n_cells):
        cursor[c] = running
        running += cell_counts[c]
        out_indptr[c + 1] = running
    for idx in range(n):
        c = ranked_cell[idx]
        at = cursor[c]
        cursor[c] = at + 1
        out_indices[at] = ranked_gene[idx]
        out_data[at] = ranked_value[idx]
    return checksum


@njit(**JIT)
def _place_by_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, cell_original: np.ndarray, first_cell: int,
                  n_cells: int, genes_of_row: np.ndarray, cursor: np.ndarray, out_indices: np.ndarray,
                  out_data: np.ndarray, key_dtype) -> np.uint64:
    """Write a chunk's nonzeros at each row's cursor, cells ascending; return the checksum. A radix
    sort by (row, cell) makes each row's run contiguous, copied to its place in one go."""
    cell_bits = bit_length(n_cells - 1)
    keys = np.empty(rows.size, dtype=key_dtype)
    cells = np.empty(rows.size, dtype=np.int32)
    for idx in range(rows.size):
        cell = cell_original[cols[idx]]
        keys[idx] = (np.int64(rows[idx]) << cell_bits) | (cell - first_cell)
        cells[idx] = cell
    keys, cells, sorted_values = _radix_sort(keys, cells, values, cell_bits + bit_length(genes_of_row.size - 1))
    checksum = np.uint64(0)
    for idx in range(keys.size):
        r = keys[idx] >> cell_bits
        out_indices[cursor[r]] = cells[idx]
        out_data[cursor[r]] = sorted_values[idx]
        cursor[r] += 1
        key = np.uint64(genes_of_row[r]) + (np.uint64(cells[idx]) << np.uint64(32))
        checksum += mix(mix(key) ^ np.uint64(sorted_values[idx]))
    return checksum


def _for_each_chunk(index: MatrixIndex, jobs: int | None, work, ids: Sequence[int] | None = None) -> None:
    """Run work(chunk) for every chunk (or those of `ids`) on `jobs` threads (chunks load in the
    calling thread)."""
    chunks = [index.chunk(c) for c in (range(index.n_chunks) if ids is None else ids)]
    workers = max(1, min(jobs or os.cpu_count() or 1, len(chunks)))
    if workers == 1:
        for chunk in chunks:
            work(chunk)
        return
    for future in [_pool().submit(work, chunk) for chunk in chunks]:
        future.result()


def _decode_chunk(index: MatrixIndex, chunk: Chunk):
    batch = gather(index, [(chunk, slice(0, chunk.geometry.n_tiles))])
    rows, cols, values = decode_batch(index, batch, jobs=1, value_dtype=np.int32)
    if values.size != chunk.nnz:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to {values.size} nonzeros, not {chunk.nnz}")
    return rows, cols, values


def _check(index: MatrixIndex, chunk: Chunk, checksum) -> None:
    if int(checksum) != chunk.checksum:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to content that fails its checksum "
                               "(file is corrupt)")


def _gene_order_arrays(index: MatrixIndex) -> tuple[np.ndarray, np.ndarray]:
    """Original gene of each row up to the deepest chunk's rows, and each such row's rank by gene."""
    deepest = index.deepest_chunk()
    n_rows = deepest.n_rows if deepest is not None else 0
    genes = index.row_genes(np.arange(n_rows, dtype=np.int64))
    rank = np.empty(n_rows, dtype=np.int64)
    rank[np.argsort(genes, kind="stable")] = np.arange(n_rows)
    return genes, rank


def _key_dtype(n_rows: int, n_cells: int):
    """The narrowest type holding a (row, cell) sort key: a 32-bit key halves the sort's traffic."""
    return np.uint32 if int(n_rows - 1).bit_length() + int(n_cells - 1).bit_length() <= 32 else np.int64


def _index_dtype(size: int):
    return np.int32 if size < 2**31 else np.int64


def cell_major(index: MatrixIndex, dtype, jobs: int | None, chunks: Sequence[int] | None = None) -> sp.csr_matrix:
    """Cells x genes CSR (the transpose of genes x cells CSC) of the cells of `chunks` (distinct
    chunk ids, default all), in the order listed, exact, checksums verified."""
    chunks = range(index.n_chunks) if chunks is None else chunks
    ids = np.asarray(chunks, dtype=np.int64)
    row_starts = np.concatenate([[0], np.cumsum(index.chunk_starts[ids + 1] - index.chunk_starts[ids])])
    nnz_starts = np.concatenate([[0], np.cumsum(index.nnz_starts[ids + 1] - index.nnz_starts[ids])])
    slot = {int(c): i for i, c in enumerate(ids)}
    n_genes = index.n_genes
    data = np.empty(int(nnz_starts[-1]), dtype=dtype)
    indices = np.empty(data.size, dtype=_index_dtype(n_genes))
    indptr = np.zeros(int(row_starts[-1]) + 1, dtype=np.int64)
    genes_of_row, rank = _gene_order_arrays(index)

    def work(chunk: Chunk) -> None:
        i = slot[chunk.index]
        rows, cols, values = _decode_chunk(index, chunk)
        _check(index, chunk, _place_by_cell(rows, cols, values, index.cell_original, chunk.first_cell, chunk.n_cells,
                                            rank, genes_of_row, int(nnz_starts[i]), indptr[row_starts[i]:], indices,
                                            data))

    _for_each_chunk(index, jobs, work, chunks)
    return sp.csr_matrix((data, indices, indptr), shape=(int(row_starts[-1]), n_genes))


def gene_major(index: MatrixIndex, dtype, jobs: int | None) -> sp.csr_matrix:
    """Genes x cells CSR, exact, checksums verified: rows counted first, then filled in place."""
    n_genes, n_cells = index.n_genes, index.n_cells
    genes_of_row, _ = _gene_order_arrays(index)
    n_rows = genes_of_row.size
    counts = np.zeros((index.n_chunks, max(n_rows, 1)), dtype=np.int64)

    def count(chunk: Chunk) -> None:
        batch = gather(index, [(chunk, slice(0, chunk.geometry.n_tiles))])
        buffer, offsets = _buffer(index, batch)
        status = np.zeros(batch.size, dtype=np.int64)
        count_rows(buffer, offsets, batch.length, batch.k, batch.h, batch.w, batch.row, counts[chunk.index], status)
        if np.any(status):
            raise CorruptFileError(f"{index.what}: {STATUS_TEXT.get(int(status[np.flatnonzero(status)[0]]))} "
                                   "(file is corrupt)")

    _for_each_chunk(index, jobs, count)
    per_gene = np.zeros(n_genes, dtype=np.int64)
    per_gene[genes_of_row] = counts.sum(axis=0)[:n_rows]
    indptr = np.concatenate([[0], np.cumsum(per_gene)]).astype(np.int64)
    if indptr[-1] != index.nnz:
        raise CorruptFileError(f"{index.what}: tiles hold {indptr[-1]} nonzeros, the header says {index.nnz}")
    cursors = indptr[:-1][genes_of_row] + np.concatenate([np.zeros((1, n_rows), np.int64),
                                                          np.cumsum(counts[:-1, :n_rows], axis=0)])
    data = np.empty(index.nnz, dtype=dtype)
    indices = np.empty(index.nnz, dtype=_index_dtype(n_cells))

    def work(chunk: Chunk) -> None:
        rows, cols, values = _decode_chunk(index, chunk)
        _check(index, chunk, _place_by_row(rows, cols, values, index.cell_original, chunk.first_cell, chunk.n_cells,
                                           genes_of_row, cursors[chunk.index], indices, data,
                                           _key_dtype(n_rows, chunk.n_cells)))

    _for_each_chunk(index, jobs, work)
    return sp.csr_matrix((data, indices, indptr), shape=(n_genes, n_cells))
