"""A decoded count matrix with its names: what the writers of user formats take."""
from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp


@dataclass
class CountMatrix:
    """A genes x cells count matrix with its names (any name list may be None when unknown)."""

    counts: sp.spmatrix
    gene_ids: list[str] | None = None
    gene_names: list[str] | None = None
    cell_names: list[str] | None = None
    feature_types: list[str] | None = None
    genomes: list[str] | None = None  # each feature's reference genome, which 10x HDF5 files record

    @property
    def shape(self) -> tuple[int, int]:
        """(genes, cells)."""
        return self.counts.shape

    def filled_gene_ids(self) -> list[str]:
        """Gene ids, else names, else gene_<i>: formats that require ids always get some."""
        return self.gene_ids or self.gene_names or [f"gene_{i}" for i in range(self.shape[0])]

    def filled_gene_names(self) -> list[str]:
        """Gene names, else ids, else gene_<i>."""
        return self.gene_names or self.gene_ids or [f"gene_{i}" for i in range(self.shape[0])]

    def filled_cell_names(self) -> list[str]:
        """Cell names, else cell_<j>."""
        return self.cell_names or [f"cell_{j}" for j in range(self.shape[1])]

    def filled_feature_types(self) -> list[str]:
        """Feature types, else "Gene Expression" for every gene (the 10x default)."""
        return self.feature_types or ["Gene Expression"] * self.shape[0]
