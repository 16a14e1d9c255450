"""What simple statistics allow: the code length of a static per-gene model."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln


def static_model_bits(counts: sp.csr_matrix) -> float:
    """Bits per nonzero of per-gene binomial positions plus per-gene empirical value entropy.

    Positions: log2 C(n_cells, nnz_g) per gene (the enumerative code given each gene's count).
    Values: each gene's own histogram of its nonzero values (parameters not charged).
    """
    counts = counts.tocsr()
    n_cells = counts.shape[1]
    per_gene = np.diff(counts.indptr)
    if counts.nnz == 0:
        return 0.0
    positions = (gammaln(n_cells + 1) - gammaln(per_gene + 1) - gammaln(n_cells - per_gene + 1)).sum() / np.log(2)
    genes = np.repeat(np.arange(counts.shape[0]), per_gene)
    _, inverse, pair_counts = np.unique(np.stack([genes, counts.data]), axis=1, return_inverse=True,
                                        return_counts=True)
    probability = pair_counts[inverse.ravel()] / per_gene[genes]
    values = -np.log2(probability).sum()
    return float((positions + values) / counts.nnz)
