"""The baseline predictor: log1p(value) ~ gene term + cell term, in units of 1/16 nat.

Gene terms are global (one per stored gene, from the first pass over the input): the mean over a
gene's nonzeros of log1p(v) minus its cell's mean log1p. Cell terms are per chunk, fitted given
the gene terms: the mean over a cell's nonzeros of log1p(v) - gene term. Their sum, in quarter
nats, is the coding context of a nonzero outside SIREN bands.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from ..codec.models import LOG_MEAN_UNITS, int32_items

TERM_MIN, TERM_MAX = -32768, 32767


def quantise_terms(terms: np.ndarray) -> np.ndarray:
    """Terms in nats to the stored int16 units of 1/16 nat (clipped to int16)."""
    return np.clip(np.rint(terms * LOG_MEAN_UNITS), TERM_MIN, TERM_MAX).astype(np.int64)


_VALUE_TYPES = frozenset(np.dtype(t) for t in (np.int64, np.int32, np.float64, np.float32))


def accumulate_gene_stats(indptr: np.ndarray, genes: np.ndarray, values: np.ndarray, gene_nnz: np.ndarray,
                          gene_deviation: np.ndarray) -> None:
    """First pass over a block of cells (CSC, genes int32 as a block holds them): per gene,
    nonzeros and the sum of log1p(v) minus the cell's mean log1p (added to gene_nnz and
    gene_deviation, int64 and float64)."""
    values = np.asarray(values)
    if values.dtype not in _VALUE_TYPES:  # log1p of float64(v) either way
        values = values.astype(np.float64)
    _native.accumulate_gene_stats(np.ascontiguousarray(indptr, dtype=np.int64),
                                  np.ascontiguousarray(genes), np.ascontiguousarray(values),
                                  gene_nnz, gene_deviation)


def fit_cell_terms(cols: np.ndarray, rows: np.ndarray, values: np.ndarray, gene_terms: np.ndarray,
                   n_cells: int) -> np.ndarray:
    """Per (reordered) cell: rint(16 x mean over its nonzeros of log1p(v) - gene term / 16)."""
    return _native.fit_cell_terms(cols, rows, int32_items(values),
                                  np.ascontiguousarray(gene_terms, dtype=np.int64), int(n_cells))
