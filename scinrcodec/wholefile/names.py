"""The names of a .sinr matrix stored without an AnnData, as the obs and var frames scanpy expects
(and a 10x file's per-feature fields): what to_anndata, the lazy AnnData, the batches of cells and
concat give such a file."""
from __future__ import annotations

import scipy.sparse as sp

from ..io.matrix import CountMatrix
from ..io.h5ad import obs_frame, var_frame
from ..limits import check_allocation
from ..reader.contents import StoredContents
from .tenx import tenx_var

NAME_BYTES = 100  # memory a name takes in a pandas index (a Python str and its place), for check_allocation


def names_only(m):
    """A .sinr matrix's names, without its counts."""
    return CountMatrix(sp.csr_matrix(m.shape), m.gene_ids, m.gene_names, m.cell_names, m.feature_types)


def names_obs(m):
    """obs of a matrix stored without an AnnData: its cell names."""
    return obs_frame(names_only(m))


def name_frames(m, contents: StoredContents | None):
    """obs and var of a matrix stored without an AnnData: its names, as scanpy expects them (and
    a 10x file's per-feature fields)."""
    check_allocation(NAME_BYTES * (m.shape[0] + m.shape[1]), f"{m.source}: naming {m.shape[0]:,} genes and "
                                                             f"{m.shape[1]:,} cells")
    names = names_only(m)
    var = var_frame(names)
    for key, values in tenx_var(m, contents).items():
        if key not in var.columns:
            var[key] = values
    return obs_frame(names), var

