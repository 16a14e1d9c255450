"""Reorder genes and cells so the matrix is smooth: the study's proposed next step.

Genes are sorted by detection rate (nonzeros per gene, descending), with all-zero genes moved to
the end in their original order, so only the order of expressed genes is stored. Cells are sorted
by total counts, descending, so neighbouring columns have similar depth and each block's
nonzeros are close to independent and identically distributed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..container import pack_array, unpack_array
from ..errors import CorruptFileError
from .registry import Stage, register_stage


@dataclass(frozen=True)
class Permutation:
    """Reordered position -> original index (`order`) and its inverse (`rank`)."""

    order: np.ndarray
    rank: np.ndarray

    @classmethod
    def from_order(cls, order: np.ndarray) -> "Permutation":
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size, dtype=order.dtype)
        return cls(order, rank)


@register_stage
class Reorder(Stage):
    codec_id = "reorder-detection-depth"

    def plan(self, counts: sp.csr_matrix) -> tuple[Permutation, Permutation, int]:
        """Gene and cell permutations, and the number of expressed genes (which come first)."""
        gene_nnz = np.diff(counts.indptr)
        n_expressed = int(np.count_nonzero(gene_nnz))
        gene_order = np.argsort(-gene_nnz, kind="stable").astype(np.int64)
        cell_totals = np.bincount(counts.indices, weights=counts.data, minlength=counts.shape[1])
        cell_order = np.argsort(-cell_totals, kind="stable").astype(np.int64)
        return Permutation.from_order(gene_order), Permutation.from_order(cell_order), n_expressed

    def encode(self, genes: Permutation, cells: Permutation, n_expressed: int) -> tuple[bytes, bytes]:
        return (pack_array(genes.order[:n_expressed].astype(np.uint32)),
                pack_array(cells.order.astype(np.uint32)))

    def decode(self, gene_payload, cell_payload, n_genes: int, n_cells: int,
               n_expressed: int) -> tuple[Permutation, Permutation]:
        expressed = unpack_array(gene_payload, "u4", n_expressed, what="gene order").astype(np.int64)
        cell_order = unpack_array(cell_payload, "u4", n_cells, what="cell order").astype(np.int64)
        if expressed.size and expressed.max() >= n_genes or not _is_permutation(cell_order, n_cells):
            raise CorruptFileError("stored permutation is not valid")
        silent = np.ones(n_genes, dtype=bool)
        silent[expressed] = False
        gene_order = np.concatenate([expressed, np.flatnonzero(silent)])
        if not _is_permutation(gene_order, n_genes):
            raise CorruptFileError("stored gene permutation is not valid")
        return Permutation.from_order(gene_order), Permutation.from_order(cell_order)


def _is_permutation(order: np.ndarray, n: int) -> bool:
    if order.size != n:
        return False
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    return bool(seen.all())
