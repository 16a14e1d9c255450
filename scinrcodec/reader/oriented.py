"""A .sinr matrix in AnnData's orientation: cells x genes, so that code written for AnnData's
X (x[cells, genes], obs_names, var_names, n_obs, n_vars) works on an open file unchanged.
It is a view: every read goes to the matrix, decoding only the tiles it touches."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from ..io.dtypes import READ_DTYPE
from .moments import check_axis
from .selection import two_keys

_TURNED_LAYOUT = {"csr": "csc", "csc": "csr"}  # the view's layout as the genes x cells matrix's


class GenesByCells(Protocol):
    """What the view reads through: an open matrix (reader.matrix.MatrixReader), genes x cells.
    A protocol, so that this module needs nothing of the class that returns the view."""

    n_obs: int
    n_vars: int
    nnz: int
    dtype: np.dtype
    obs_names: object
    var_names: object

    def __getitem__(self, key): ...

    def __iter__(self): ...

    def select(self, genes, cells, *, cells_major: bool = False):
        """m[genes, cells], or its transpose (cells x genes CSR) with cells_major."""

    def to_scipy(self, layout: str = "csr", dtype=READ_DTYPE, *, progress=False) -> sp.spmatrix:
        """The whole matrix, genes x cells."""

    def count_nonzero(self, axis: int | None = None):
        """Nonzeros of each cell (axis 0), each gene (axis 1) or all."""

    def sum(self, axis: int | None = None, dtype=None):
        """Sums likewise."""

    def mean(self, axis: int | None = None, dtype=None):
        """Means likewise."""

    def var(self, axis: int | None = None, ddof: int = 0, dtype=None):
        """Variances likewise."""


def _turned(axis) -> int | None:
    """An axis of the cells x genes view as the genes x cells matrix's."""
    axis = check_axis(axis)
    return None if axis is None else 1 - axis


class CellsByGenes:
    """SinrMatrix.T: the same file, cells x genes."""

    def __init__(self, matrix: GenesByCells) -> None:
        self.T = matrix

    @property
    def shape(self) -> tuple[int, int]:
        return self.T.n_obs, self.T.n_vars

    @property
    def nnz(self) -> int:
        return self.T.nnz

    ndim = 2

    @property
    def dtype(self) -> np.dtype:
        return self.T.dtype

    @property
    def n_obs(self) -> int:
        return self.T.n_obs

    @property
    def n_vars(self) -> int:
        return self.T.n_vars

    @property
    def obs_names(self):
        return self.T.obs_names

    @property
    def var_names(self):
        return self.T.var_names

    def __iter__(self):
        """Not iterable, as the matrix is not."""
        return iter(self.T)

    def __getitem__(self, key):
        """x[cells, genes] as AnnData indexes X: one int for two scalars, else cells x genes CSR."""
        cells, genes = two_keys(key, "x[cells, genes]")
        return self.T.select(genes, cells, cells_major=True)

    def to_scipy(self, layout: str = "csr", dtype=READ_DTYPE, *, progress=False) -> sp.spmatrix:
        """The whole matrix, cells x genes, exact: CSR by default (decoded cell-major: the fast way),
        or layout='csc' (gene-major), as SinrMatrix.to_scipy takes them."""
        return self.T.to_scipy(_TURNED_LAYOUT.get(layout, layout), dtype=dtype, progress=progress).T

    def count_nonzero(self, axis: int | None = None):
        """Nonzeros of each gene (axis=0, over cells, as AnnData's X), each cell (axis=1) or all:
        the matrix's summaries (one pass over the file) with the axis turned."""
        return self.T.count_nonzero(_turned(axis))

    def sum(self, axis: int | None = None, dtype=None):
        """Sums of each gene (axis=0), each cell (axis=1) or all, exact, numpy's dtype (see count_nonzero)."""
        return self.T.sum(_turned(axis), dtype=dtype)

    def mean(self, axis: int | None = None, dtype=None):
        """Means of each gene (axis=0), each cell (axis=1) or all, numpy's dtype (see count_nonzero)."""
        return self.T.mean(_turned(axis), dtype=dtype)

    def var(self, axis: int | None = None, ddof: int = 0, dtype=None):
        """Variances of each gene (axis=0), each cell (axis=1) or all, numpy's ddof and dtype (see count_nonzero)."""
        return self.T.var(_turned(axis), ddof=ddof, dtype=dtype)

    def __repr__(self) -> str:
        return f"<SinrMatrix.T {self.shape[0]} cells x {self.shape[1]} genes, nnz={self.nnz}>"
