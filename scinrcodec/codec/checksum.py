"""The content checksum of a chunk: a sum of per-entry hashes, so any order of decoding agrees.

checksum = sum over nonzeros of H(gene, cell, value) mod 2**64, where gene and cell are the
original indices, value the decoded value, and H(g, c, v) = mix(mix(g + c * 2**32) xor v) with mix
the splitmix64 finaliser (spec §6.6). A full decode and `sinr verify` recompute it, so an edit that
keeps every CRC valid still cannot turn into wrong numbers unnoticed. The native core computes it
(native/core/include/sinr/checksum.hpp).
"""
from __future__ import annotations

import numpy as np

from .. import _native

_INDEX_TYPES = (np.int32, np.int64)


def mix(z) -> int:
    """The splitmix64 finaliser, of z mod 2**64."""
    return _native.mix(int(z) & 0xFFFFFFFFFFFFFFFF)


def content_checksum(genes: np.ndarray, cells: np.ndarray, values: np.ndarray) -> np.uint64:
    """The checksum of nonzeros given by original gene, original cell and value (non-negative
    integers, any integer dtype: others than int32 and int64 are converted)."""
    genes, cells, values = (np.ascontiguousarray(a) for a in (genes, cells, values))
    if genes.dtype != cells.dtype or genes.dtype.type not in _INDEX_TYPES:
        genes, cells = genes.astype(np.int64), cells.astype(np.int64)
    if values.dtype.type not in _INDEX_TYPES:
        values = values.astype(np.int64)
    return np.uint64(_native.content_checksum(genes, cells, values))


def mapped_checksum(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, gene_of_row: np.ndarray,
                    cell_of_col: np.ndarray) -> np.uint64:
    """The checksum of nonzeros given by row, column and value (integers), with gene_of_row and
    cell_of_col (int64 tables) giving each row's gene and each column's cell: one pass, no gathered
    copies."""
    index = np.int32 if rows.dtype == cols.dtype == np.int32 else np.int64
    rows, cols = (np.ascontiguousarray(a, index) for a in (rows, cols))
    values = np.ascontiguousarray(values, np.int32 if values.dtype == np.int32 else np.int64)
    return np.uint64(_native.content_checksum_mapped(rows, cols, values, np.ascontiguousarray(gene_of_row, np.int64),
                                                     np.ascontiguousarray(cell_of_col, np.int64)))
