"""The baseline predictor: log1p(value) ~ gene term + cell term, in units of 1/16 nat.

Gene terms are global (one per stored gene, from the first pass over the input): the mean over a
gene's nonzeros of log1p(v) minus its cell's mean log1p. Cell terms are per chunk, fitted given
the gene terms: the mean over a cell's nonzeros of log1p(v) - gene term. Their sum, in quarter
nats, is the coding context of a nonzero outside SIREN bands.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..codec.models import LOG_MEAN_UNITS
from .._pending_numba import JIT

TERM_MIN, TERM_MAX = -32768, 32767


def quantise_terms(terms: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(terms * LOG_MEAN_UNITS), TERM_MIN, TERM_MAX).astype(np.int64)


@njit(**JIT)
def accumulate_gene_stats(indptr: np.ndarray, genes: np.ndarray, values: np.ndarray, gene_nnz: np.ndarray,
                          gene_deviation: np.ndarray) -> None:
    """First pass over a block of cells (CSC): per gene, nonzeros and the sum of log1p(v) minus
    the cell's mean log1p."""
    for cell in range(indptr.size - 1):
        lo, hi = indptr[cell], indptr[cell + 1]
        if hi == lo:
            continue
        mean = 0.0
        for idx in range(lo, hi):
            mean += np.log1p(np.float64(values[idx]))
        mean /= hi - lo
        for idx in range(lo, hi):
            g = genes[idx]
            gene_nnz[g] += 1
            gene_deviation[g] += np.log1p(np.float64(values[idx])) - mean


@njit(**JIT)
def fit_cell_terms(cols: np.ndarray, rows: np.ndarray, values: np.ndarray, gene_terms: np.ndarray,
                   n_cells: int) -> np.ndarray:
    """Per (reordered) cell: rint(16 x mean over its nonzeros of log1p(v) - gene term / 16)."""
    total = np.zeros(n_cells)
    count = np.zeros(n_cells, dtype=np.int64)
    for idx in range(values.size):
        c = cols[idx]
        total[c] += np.log1p(np.float64(values[idx])) - gene_terms[rows[idx]] / LOG_MEAN_UNITS
        count[c] += 1
    out = np.zeros(n_cells, dtype=np.int64)
    for c in range(n_cells):
        if count[c]:
            out[c] = min(max(np.rint(total[c] / count[c] * LOG_MEAN_UNITS), TERM_MIN), TERM_MAX)
    return out
