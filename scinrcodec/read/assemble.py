"""Whole-matrix decodes written straight into their final arrays.

Chunks are decoded one after another (each with all threads), and each chunk's nonzeros are
scattered into the output at their final place, so the peak memory is the result plus one
chunk's scratch. Cell-major output (10x's CSC, AnnData's CSR) needs one pass: a chunk's cells are
consecutive. Gene-major output (CSR genes x cells) first counts each row's nonzeros by decoding
positions only.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from ..codec.checksum import content_checksum
from ..codec.rans import JIT
from ..codec.tile import STATUS_TEXT, count_rows
from ..errors import CorruptFileError
from .decode import _buffer, _pool, decode_batch, gather
from .index import MatrixIndex


@njit(**JIT)
def _scatter_by_cell(keys: np.ndarray, n_keys: int, rows: np.ndarray, cells: np.ndarray, values: np.ndarray,
                     cursor: np.ndarray, first_cell: int, out_indices: np.ndarray, out_data: np.ndarray,
                     index_of_row: np.ndarray) -> None:
    """Visit nonzeros in ascending key order (a counting sort) and write each at its cell's cursor."""
    starts = np.zeros(n_keys + 1, dtype=np.int64)
    for key in keys:
        starts[key + 1] += 1
    for b in range(n_keys):
        starts[b + 1] += starts[b]
    order = np.empty(keys.size, dtype=np.int64)
    for idx in range(keys.size):
        order[starts[keys[idx]]] = idx
        starts[keys[idx]] += 1
    for idx in order:
        c = cells[idx] - first_cell
        out_indices[cursor[c]] = index_of_row[rows[idx]]
        out_data[cursor[c]] = values[idx]
        cursor[c] += 1


@njit(**JIT)
def _scatter_by_row(rows: np.ndarray, cells: np.ndarray, values: np.ndarray, first_cell: int, n_cells: int,
                    cursor: np.ndarray, out_indices: np.ndarray, out_data: np.ndarray) -> None:
    """Visit nonzeros in ascending cell order (a counting sort) and write each at its row's cursor."""
    starts = np.zeros(n_cells + 1, dtype=np.int64)
    for c in cells:
        starts[c - first_cell + 1] += 1
    for b in range(n_cells):
        starts[b + 1] += starts[b]
    order = np.empty(cells.size, dtype=np.int64)
    for idx in range(cells.size):
        c = cells[idx] - first_cell
        order[starts[c]] = idx
        starts[c] += 1
    for idx in order:
        r = rows[idx]
        out_indices[cursor[r]] = cells[idx]
        out_data[cursor[r]] = values[idx]
        cursor[r] += 1


def _decode_chunk(index: MatrixIndex, c: int, jobs: int | None):
    chunk = index.chunk(c)
    rows, cols, values = decode_batch(index, gather(index, [(chunk, np.arange(chunk.geometry.n_tiles))]), jobs=jobs)
    return chunk, rows, index.cell_original[cols], values


def _check(index: MatrixIndex, chunk, genes: np.ndarray, cells: np.ndarray, values: np.ndarray) -> None:
    if values.size != chunk.nnz or int(content_checksum(genes, cells, values)) != chunk.checksum:
        raise CorruptFileError(f"{index.what}: chunk {chunk.index} decodes to content that fails its checksum "
                               "(file is corrupt)")


def _gene_order_arrays(index: MatrixIndex) -> tuple[np.ndarray, np.ndarray]:
    """Original gene of each row up to the deepest chunk's rows, and each such row's rank by gene."""
    n_rows = max((index.chunk(c).n_rows for c in range(index.n_chunks)), default=0)
    genes = index.row_genes(np.arange(n_rows, dtype=np.int64))
    rank = np.empty(n_rows, dtype=np.int64)
    rank[np.argsort(genes, kind="stable")] = np.arange(n_rows)
    return genes, rank


def cell_major(index: MatrixIndex, dtype, jobs: int | None) -> sp.csr_matrix:
    """Cells x genes CSR (the transpose of genes x cells CSC), exact, checksums verified."""
    n_genes, n_cells = index.n_genes, index.n_cells
    data = np.empty(index.nnz, dtype=dtype)
    indices = np.empty(index.nnz, dtype=np.int32 if n_genes < 2**31 else np.int64)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    genes_of_row, rank = _gene_order_arrays(index)
    for c in range(index.n_chunks):
        chunk, rows, cells, values = _decode_chunk(index, c, jobs)
        _check(index, chunk, genes_of_row[rows], cells, values)
        per_cell = np.bincount(cells - chunk.first_cell, minlength=chunk.n_cells)
        cursor = index.nnz_starts[c] + np.concatenate([[0], np.cumsum(per_cell)[:-1]])
        indptr[chunk.first_cell + 1: chunk.first_cell + chunk.n_cells + 1] = index.nnz_starts[c] + np.cumsum(per_cell)
        _scatter_by_cell(rank[rows], max(rank.size, 1), rows, cells, values, cursor.astype(np.int64),
                         chunk.first_cell, indices, data, genes_of_row)
    return sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def gene_major(index: MatrixIndex, dtype, jobs: int | None) -> sp.csr_matrix:
    """Genes x cells CSR, exact, checksums verified: rows counted first, then filled in place."""
    n_genes, n_cells = index.n_genes, index.n_cells
    genes_of_row, _ = _gene_order_arrays(index)
    row_counts = _count_all_rows(index, genes_of_row.size, jobs)
    per_gene = np.zeros(n_genes, dtype=np.int64)
    per_gene[genes_of_row] = row_counts
    indptr = np.concatenate([[0], np.cumsum(per_gene)]).astype(np.int64)
    if indptr[-1] != index.nnz:
        raise CorruptFileError(f"{index.what}: tiles hold {indptr[-1]} nonzeros, the header says {index.nnz}")
    data = np.empty(index.nnz, dtype=dtype)
    indices = np.empty(index.nnz, dtype=np.int32 if n_cells < 2**31 else np.int64)
    cursor = indptr[:-1][genes_of_row].copy()
    for c in range(index.n_chunks):
        chunk, rows, cells, values = _decode_chunk(index, c, jobs)
        _check(index, chunk, genes_of_row[rows], cells, values)
        _scatter_by_row(rows, cells, values, chunk.first_cell, chunk.n_cells, cursor, indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n_genes, n_cells))


def _count_all_rows(index: MatrixIndex, n_rows: int, jobs: int | None) -> np.ndarray:
    parts = [(index.chunk(c), np.arange(index.chunk(c).geometry.n_tiles)) for c in range(index.n_chunks)]
    batch = gather(index, parts)
    buffer, offsets = _buffer(index, batch)
    workers = max(1, min(jobs or 1, batch.size))
    cuts = np.linspace(0, batch.size, workers + 1).astype(np.int64)
    counts = np.zeros((workers, max(n_rows, 1)), dtype=np.int64)
    status = np.zeros(batch.size, dtype=np.int64)

    def run(w: int) -> None:
        s = slice(cuts[w], cuts[w + 1])
        count_rows(buffer, offsets[s], batch.length[s], batch.k[s], batch.h[s], batch.w[s], batch.row[s], counts[w],
                   status[s])

    for future in [_pool().submit(run, w) for w in range(workers)]:
        future.result()
    if np.any(status):
        raise CorruptFileError(f"{index.what}: {STATUS_TEXT.get(int(status[np.flatnonzero(status)[0]]), 'a tile is corrupt')} (file is corrupt)")
    return counts.sum(axis=0)[:n_rows]
