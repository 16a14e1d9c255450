"""What `scale` measures for each format: how it is written from the 10x input, and how a user
reads it (open, entry, gene, cell, a set of cells, everything), in original gene/cell indices."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import scipy.sparse as sp

from scinrcodec import CountMatrix

from . import formats


def load_10x(path: Path, names: bool = True) -> CountMatrix:
    """The whole 10x HDF5 file in memory as users load it with h5py (scipy CSC, genes x cells)."""
    with h5py.File(path, "r") as f:
        g = f["matrix"]
        shape = tuple(int(x) for x in g["shape"][:])
        counts = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)
        if not names:
            return CountMatrix(counts)
        text = lambda d: [v.decode() for v in d[:]]  # noqa: E731
        feats = g["features"]
        return CountMatrix(counts, text(feats["id"]), text(feats["name"]), text(g["barcodes"]),
                           text(feats["feature_type"]))


def as_entries(result, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query's result, genes x cells (a scipy matrix, a dense vector of one gene or one cell, or
    a number), as global (genes, cells, values); rows/cols are the global indices it covers."""
    if not sp.issparse(result):
        result = np.asarray(result).reshape(len(rows), len(cols))
    coo = sp.coo_matrix(result)
    return np.asarray(rows)[coo.row], np.asarray(cols)[coo.col], coo.data


class Reader:
    """An open file answering the benchmark's queries in genes x cells orientation."""

    def entry(self, i: int, j: int) -> int: ...
    def gene(self, i: int): ...
    def cell(self, j: int): ...
    def cells(self, cols: list[int]): ...


class SinrReader(formats.SinrReader, Reader):
    """The dataset benchmark's .sinr reader, with a set of cells."""

    def cells(self, cols):
        return self.m[:, cols]


class TenxReader(Reader):
    """10x HDF5 with h5py as users query it: the cell index pointers loaded at open, a cell's slice
    per cell; a gene needs every cell, read one block of 8M nonzeros at a time to bound memory."""

    BLOCK = 100 * 80_000

    def __init__(self, path: Path) -> None:
        self.f = h5py.File(path, "r")
        self.g = self.f["matrix"]
        self.shape = tuple(int(x) for x in self.g["shape"][:])
        self.indptr = self.g["indptr"][:]

    def _slice(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[j]), int(self.indptr[j + 1])
        return self.g["indices"][a:b], self.g["data"][a:b]

    def entry(self, i, j):
        genes, values = self._slice(j)
        k = np.searchsorted(genes, i)
        return int(values[k]) if k < genes.size and genes[k] == i else 0

    def gene(self, i):
        out = np.zeros(self.shape[1], dtype=np.int64)
        for a in range(0, int(self.indptr[-1]), self.BLOCK):
            b = min(a + self.BLOCK, int(self.indptr[-1]))
            hit = np.flatnonzero(self.g["indices"][a:b] == i)
            if hit.size:
                out[np.searchsorted(self.indptr, a + hit, side="right") - 1] = self.g["data"][a:b][hit]
        return out

    def cell(self, j):
        out = np.zeros(self.shape[0], dtype=np.int64)
        genes, values = self._slice(j)
        out[genes] = values
        return out

    def cells(self, cols):
        parts = [self._slice(j) for j in cols]
        indptr = np.concatenate([[0], np.cumsum([p[0].size for p in parts])])
        return sp.csc_matrix((np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts]), indptr),
                             shape=(self.shape[0], len(cols)))


class H5adReader(Reader):
    """AnnData in backed mode, as users query a file too big to load (X is cells x genes CSR)."""

    def __init__(self, path: Path) -> None:
        import anndata

        self.x = anndata.read_h5ad(path, backed="r").X

    def entry(self, i, j):
        x = self.x[j, i]
        return int(x.toarray()[0, 0] if sp.issparse(x) else np.asarray(x).ravel()[0])

    def gene(self, i):
        return self.x[:, i].T

    def cell(self, j):
        return self.x[j].T

    def cells(self, cols):
        return self.x[cols].T


class BPCellsReader(Reader):
    """BPCells DirMatrix written cell-major (genes x cells), the layout of the 10x file."""

    def __init__(self, path: Path) -> None:
        from bpcells.experimental import DirMatrix

        self.m = DirMatrix(str(path))

    def entry(self, i, j):
        return int(self.m[[i], [j]].toarray()[0, 0])

    def gene(self, i):
        return self.m[[i], :]

    def cell(self, j):
        return self.m[:, [j]]

    def cells(self, cols):
        return self.m[:, cols]


def writer(fmt: str, source: Path, siren: str, from_memory: bool = False) -> Callable[[Path], None]:
    """What writes the 10x input `source` as `fmt`: .sinr straight from the file (the encoder reads
    it, which the timing includes) or, with from_memory, from the matrix and names loaded with h5py
    (as a user holding it encodes it); the others from the matrix in memory, as their libraries
    need, loaded here before the timing starts."""
    if fmt == "sinr":
        import scinrcodec

        data = load_10x(source) if from_memory else source
        return lambda out: scinrcodec.encode(data, out, force=True, progress=True, siren=siren)
    m = load_10x(source, names=fmt != "bpcells")
    if fmt == "10x":
        from scinrcodec.io.tenx_h5 import write_10x_h5

        return lambda out: write_10x_h5(out, m)
    if fmt == "h5ad":
        from scinrcodec.io.h5ad import to_anndata

        return lambda out: to_anndata(m).write_h5ad(out)
    from bpcells.experimental import DirMatrix

    return lambda out: DirMatrix.from_scipy_sparse(m.counts.astype(np.uint32), str(out))


def full(fmt: str, path: Path, layout: str | None = None):
    """Everything in memory, in the format's own orientation, as its users read it."""
    if fmt == "sinr":
        import scinrcodec

        m = scinrcodec.open(path)
        return m.to_scipy() if layout is None else m.to_scipy(layout=layout)
    if fmt == "10x":
        return load_10x(path, names=False).counts
    if fmt == "h5ad":
        import anndata

        return anndata.read_h5ad(path).X
    from bpcells.experimental import DirMatrix

    return DirMatrix(str(path))[:, :]


READERS = {"sinr": SinrReader, "10x": TenxReader, "h5ad": H5adReader, "bpcells": BPCellsReader}
