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

import numpy as np
import scipy.sparse as sp
from numba import njit

from ..codec.checksum import mix
from ..codec.rans import JIT
from ..codec.tile import STATUS_TEXT, count_rows
from ..errors import CorruptFileError
from .decode import _buffer, _pool, decode_batch, gather
from .index import Chunk, MatrixIndex


@njit(**JIT)
def _stable_counting_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    starts = np.zeros(n_keys + 1, dtype=np.int64)
    for key in keys:
        starts[key + 1] += 1
    for b in range(n_keys):
        starts[b + 1] += starts[b]
    order = np.empty(keys.size, dtype=np.int64)
    for idx in range(keys.size):
        order[starts[keys[idx]]] = idx
        starts[keys[idx]] += 1
    return order


@njit(**JIT)
def _place_by_cell(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, cell_original: np.ndarray, first_cell: int,
                   n_cells: int, rank_of_row: np.ndarray, genes_of_row: np.ndarray, base: int, out_indptr: np.ndarray,
                   out_indices: np.ndarray, out_data: np.ndarray) -> np.uint64:
    """Write a chunk's nonzeros cell by cell (genes ascending in each) from `base`, and its cells'
    index pointers into out_indptr[1:]; return the chunk's content checksum. Nonzeros are first moved into gene order (a counting sort that
    carries them, so the second pass reads sequentially), then appended to their cells."""
    n_keys = rank_of_row.size
    starts = np.zeros(n_keys + 1, dtype=np.int64)
    cursor = np.zeros(n_cells + 1, dtype=np.int64)
    for idx in range(rows.size):
        starts[rank_of_row[rows[idx]] + 1] += 1
        cursor[cell_original[cols[idx]] - first_cell + 1] += 1
    for b in range(n_keys):
        starts[b + 1] += starts[b]
    cursor[0] = base
    for c in range(n_cells):
        cursor[c + 1] += cursor[c]
        out_indptr[c + 1] = cursor[c + 1]
    by_gene_cell = np.empty(rows.size, dtype=np.int32)
    by_gene_gene = np.empty(rows.size, dtype=np.int32)
    by_gene_value = np.empty(rows.size, dtype=values.dtype)
    for idx in range(rows.size):
        row = rows[idx]
        at = starts[rank_of_row[row]]
        starts[rank_of_row[row]] = at + 1
        by_gene_cell[at] = cell_original[cols[idx]] - first_cell
        by_gene_gene[at] = genes_of_row[row]
        by_gene_value[at] = values[idx]
    checksum = np.uint64(0)
    for idx in range(rows.size):
        c = by_gene_cell[idx]
        out_indices[cursor[c]] = by_gene_gene[idx]
        out_data[cursor[c]] = by_gene_value[idx]
        cursor[c] += 1
        key = np.uint64(by_gene_gene[idx]) + (np.uint64(first_cell + c) << np.uint64(32))
        checksum += mix(mix(key) ^ np.uint64(by_gene_value[idx]))
    return checksum


@njit(**JIT)
def _place_by_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, cell_original: np.ndarray, first_cell: int,
                  n_cells: int, genes_of_row: np.ndarray, cursor: np.ndarray, out_indices: np.ndarray,
                  out_data: np.ndarray) -> np.uint64:
    """Write a chunk's nonzeros at each row's cursor, cells ascending; return the checksum."""
    local = np.empty(rows.size, dtype=np.int64)
    for idx in range(rows.size):
        local[idx] = cell_original[cols[idx]] - first_cell
    checksum = np.uint64(0)
    for idx in _stable_counting_order(local, n_cells):
        r = rows[idx]
        cell = first_cell + local[idx]
        out_indices[cursor[r]] = cell
        out_data[cursor[r]] = values[idx]
        cursor[r] += 1
        key = np.uint64(genes_of_row[r]) + (np.uint64(cell) << np.uint64(32))
        checksum += mix(mix(key) ^ np.uint64(values[idx]))
    return checksum


def _for_each_chunk(index: MatrixIndex, jobs: int | None, work, ids: range | None = None) -> None:
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
    rows, cols, values = decode_batch(index, batch, jobs=1)
    if values.size != chunk.nnz:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to {values.size} nonzeros, not {chunk.nnz}")
    return rows, cols, values


def _check(index: MatrixIndex, chunk: Chunk, checksum) -> None:
    if int(checksum) != chunk.checksum:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to content that fails its checksum "
                               "(file is corrupt)")


def _gene_order_arrays(index: MatrixIndex) -> tuple[np.ndarray, np.ndarray]:
    """Original gene of each row up to the deepest chunk's rows, and each such row's rank by gene."""
    n_rows = max((index.chunk(c).n_rows for c in range(index.n_chunks)), default=0)
    genes = index.row_genes(np.arange(n_rows, dtype=np.int64))
    rank = np.empty(n_rows, dtype=np.int64)
    rank[np.argsort(genes, kind="stable")] = np.arange(n_rows)
    return genes, rank


def _index_dtype(size: int):
    return np.int32 if size < 2**31 else np.int64


def cell_major(index: MatrixIndex, dtype, jobs: int | None, chunks: range | None = None) -> sp.csr_matrix:
    """Cells x genes CSR (the transpose of genes x cells CSC) of the cells of `chunks` (default all),
    exact, checksums verified."""
    chunks = range(index.n_chunks) if chunks is None else chunks
    first_cell, last_cell = int(index.chunk_starts[chunks.start]), int(index.chunk_starts[chunks.stop])
    first_nnz = int(index.nnz_starts[chunks.start])
    nnz = int(index.nnz_starts[chunks.stop]) - first_nnz
    n_genes = index.n_genes
    data = np.empty(nnz, dtype=dtype)
    indices = np.empty(nnz, dtype=_index_dtype(n_genes))
    indptr = np.zeros(last_cell - first_cell + 1, dtype=np.int64)
    genes_of_row, rank = _gene_order_arrays(index)

    def work(chunk: Chunk) -> None:
        rows, cols, values = _decode_chunk(index, chunk)
        _check(index, chunk, _place_by_cell(rows, cols, values, index.cell_original, chunk.first_cell, chunk.n_cells,
                                            rank, genes_of_row, int(index.nnz_starts[chunk.index]) - first_nnz,
                                            indptr[chunk.first_cell - first_cell:], indices, data))

    _for_each_chunk(index, jobs, work, chunks)
    return sp.csr_matrix((data, indices, indptr), shape=(last_cell - first_cell, n_genes))


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
                                           genes_of_row, cursors[chunk.index], indices, data))

    _for_each_chunk(index, jobs, work)
    return sp.csr_matrix((data, indices, indptr), shape=(n_genes, n_cells))
