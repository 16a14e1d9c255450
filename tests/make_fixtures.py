"""Cut the small real fixtures in tests/data from ../shared/data (run once; outputs are committed).

Each cut keeps the 60 most detected genes, 90 random other genes (some all-zero) and 80 random
cells of one dataset, with its gene ids, gene names and barcodes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from scinrcodec import CountMatrix, read_matrix, write_matrix

DATASETS = ["pbmc4k_v2_soupx_half", "frozen_pbmc_donor_a_v1", "visium_spaceranger3",
            "mouse_gut_cimseq_smartseq2", "pbmc500_3p_lt_x_50genes"]


def cut(source: Path, target: Path, seed: int = 7) -> None:
    m = read_matrix(source)
    counts = m.matrix().tocsr()
    rng = np.random.default_rng(seed)
    n_genes, n_cells = m.shape
    top = np.argsort(-np.diff(counts.indptr), kind="stable")[:60]
    rest = np.setdiff1d(np.arange(n_genes), top)
    genes = np.sort(np.concatenate([top, rng.choice(rest, size=min(90, rest.size), replace=False)]))
    cells = np.sort(rng.choice(n_cells, size=min(80, n_cells), replace=False))
    pick = lambda names, idx: None if names is None else [names[i] for i in idx]  # noqa: E731
    small = CountMatrix(counts[genes][:, cells].tocsr(), pick(m.gene_ids, genes), pick(m.gene_names, genes),
                        pick(m.cell_names(0, n_cells), cells), pick(m.feature_types, genes))
    write_matrix(target, small, force=True)


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    for name in DATASETS:
        cut(shared / name, Path(__file__).parent / "data" / name)
