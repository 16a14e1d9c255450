"""Each benchmarked format: how it is written, and how a user reads it back (whole, entry, gene, cell)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import scipy.sparse as sp

import scinrcodec as sinr
from scinrcodec import CountMatrix
from scinrcodec.io.h5ad import to_anndata
from scinrcodec.io.tenx_h5 import write_10x_h5


class Reader:
    """An open file: the queries every format answers, in original gene/cell indices."""

    def full(self) -> sp.csr_matrix: ...
    def entry(self, i: int, j: int) -> int: ...
    def gene(self, i: int) -> np.ndarray: ...
    def cell(self, j: int) -> np.ndarray: ...
    def close(self) -> None: ...


class SinrReader(Reader):
    def __init__(self, path: Path) -> None:
        self.m = sinr.open(path)

    def full(self):
        return self.m.to_scipy()

    def entry(self, i, j):
        return self.m[i, j]

    def gene(self, i):
        return self.m.gene(i)

    def cell(self, j):
        return self.m.cell(j)

    def close(self):
        self.m.close()


class CompressedHdf5Reader(Reader):
    """CSC (by cell, as 10x) or CSR (by gene) arrays in HDF5, read with h5py as users do."""

    def __init__(self, path: Path, by_cell: bool) -> None:
        self.f = h5py.File(path, "r")
        self.g = self.f["matrix"]
        self.by_cell = by_cell
        self.shape = tuple(int(x) for x in self.g["shape"][:])
        self.indptr = self.g["indptr"][:]

    def _major(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[k]), int(self.indptr[k + 1])
        return self.g["indices"][a:b], self.g["data"][a:b]

    def full(self):
        cls = sp.csc_matrix if self.by_cell else sp.csr_matrix
        return cls((self.g["data"][:], self.g["indices"][:], self.indptr), shape=self.shape).tocsr()

    def entry(self, i, j):
        major, minor = (j, i) if self.by_cell else (i, j)
        idx, data = self._major(major)
        k = np.searchsorted(idx, minor)
        return int(data[k]) if k < idx.size and idx[k] == minor else 0

    def _dense_major(self, k: int, length: int) -> np.ndarray:
        out = np.zeros(length, dtype=np.int64)
        idx, data = self._major(k)
        out[idx] = data
        return out

    def _dense_minor(self, k: int, length: int) -> np.ndarray:
        idx, data = self.g["indices"][:], self.g["data"][:]
        hit = np.flatnonzero(idx == k)
        out = np.zeros(length, dtype=np.int64)
        out[np.searchsorted(self.indptr, hit, side="right") - 1] = data[hit]
        return out

    def gene(self, i):
        return self._dense_minor(i, self.shape[1]) if self.by_cell else self._dense_major(i, self.shape[1])

    def cell(self, j):
        return self._dense_major(j, self.shape[0]) if self.by_cell else self._dense_minor(j, self.shape[0])

    def close(self):
        self.f.close()


def write_hdf5_arrays(path: Path, m: CountMatrix, *, by_cell: bool, **compression) -> None:
    """CSC/CSR arrays (int32 data, int64 indices) with the given h5py compression, names included."""
    matrix = m.counts.tocsc() if by_cell else m.counts.tocsr()
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        for name, arr, dtype in (("data", matrix.data, np.int32), ("indices", matrix.indices, np.int64),
                                 ("indptr", matrix.indptr, np.int64)):
            arr = np.asarray(arr, dtype=dtype)
            chunks = (min(80_000, max(arr.size, 1)),) if compression else None
            g.create_dataset(name, data=arr, chunks=chunks, **compression)
        g.create_dataset("shape", data=np.array(matrix.shape, dtype=np.int32))
        for name, values in (("barcodes", m.filled_cell_names()), ("gene_ids", m.filled_gene_ids()),
                             ("gene_names", m.filled_gene_names())):
            g.create_dataset(name, data=np.array([v.encode() for v in values]), **compression)


@dataclass
class Format:
    """A named way of storing the matrix; `write` returns encoder statistics or None."""

    name: str
    suffix: str
    write: Callable[[CountMatrix, Path], dict | None]
    open: Callable[[Path], Reader]
    lossy: bool = False


def _sinr(**options) -> Callable[[CountMatrix, Path], dict]:
    return lambda m, path: sinr.encode(m, path, force=True, progress=False, **options)


def _hdf5(by_cell: bool, **compression):
    return lambda m, path: write_hdf5_arrays(path, m, by_cell=by_cell, **compression)


def _anndata(compression: str | None):
    def write(m: CountMatrix, path: Path) -> None:
        to_anndata(m).write_h5ad(path, compression=compression)
    return write


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x)


class H5adReader(Reader):
    """AnnData opened in backed mode, as users query a file too big to load (cells x genes CSR)."""

    def __init__(self, path: Path) -> None:
        import anndata

        self.path = path
        self.adata = anndata.read_h5ad(path, backed="r")

    def full(self):
        import anndata

        return sp.csr_matrix(anndata.read_h5ad(self.path).X.T)

    def entry(self, i, j):
        return int(_dense(self.adata.X[j, i]).ravel()[0])

    def gene(self, i):
        return _dense(self.adata.X[:, i]).ravel()

    def cell(self, j):
        return _dense(self.adata.X[j]).ravel()

    def close(self):
        self.adata.file.close()


class ZarrReader(Reader):
    """AnnData zarr store; random access through anndata's lazy sparse dataset over X."""

    def __init__(self, path: Path) -> None:
        import anndata
        import zarr

        self.path = path
        self.x = anndata.io.sparse_dataset(zarr.open(str(path), mode="r")["X"])

    def full(self):
        import anndata

        return sp.csr_matrix(anndata.read_zarr(self.path).X.T)

    def entry(self, i, j):
        return int(_dense(self.x[j, i]).ravel()[0])

    def gene(self, i):
        return _dense(self.x[:, i]).ravel()

    def cell(self, j):
        return _dense(self.x[j]).ravel()

    def close(self):
        pass


class BPCellsReader(Reader):
    """BPCells DirMatrix; gene-major files store cells x genes and are read through .T."""

    def __init__(self, path: Path, gene_major: bool) -> None:
        from bpcells.experimental import DirMatrix

        self.m = DirMatrix(str(path)).T if gene_major else DirMatrix(str(path))

    def full(self):
        return sp.csr_matrix(self.m[:, :])

    def entry(self, i, j):
        return int(self.m[[i], [j]].toarray()[0, 0])

    def gene(self, i):
        return self.m[[i], :].toarray().ravel()

    def cell(self, j):
        return self.m[:, [j]].toarray().ravel()

    def close(self):
        pass


def _bpcells(gene_major: bool):
    def write(m: CountMatrix, path: Path) -> None:
        from bpcells.experimental import DirMatrix

        matrix = (m.counts.T if gene_major else m.counts).tocsc().astype(np.uint32)
        DirMatrix.from_scipy_sparse(matrix, str(path))
    return write


def _zarr(m: CountMatrix, path: Path) -> None:
    to_anndata(m).write_zarr(path)


def reference_format() -> Format:
    """10x Cell Ranger HDF5: the file every ratio is taken against."""
    return Format("10x HDF5 (Cell Ranger)", ".h5", lambda m, p: write_10x_h5(p, m),
                  lambda p: CompressedHdf5Reader(p, by_cell=True))


def _hdf5_formats() -> list[Format]:
    gzip = lambda level: dict(compression="gzip", compression_opts=level, shuffle=True)  # noqa: E731
    compressions = [("uncompressed", {}), ("gzip-1", gzip(1)), ("gzip-4", gzip(4)), ("gzip-9", gzip(9)),
                    ("lzf", dict(compression="lzf", shuffle=True))]
    try:
        import hdf5plugin

        compressions.append(("zstd-19", dict(hdf5plugin.Zstd(clevel=19))))
    except ImportError:
        pass
    listed = []
    for label, by_cell in (("CSC", True), ("CSR", False)):
        for name, options in compressions:
            listed.append(Format(f"{label} HDF5 {name}", ".h5", _hdf5(by_cell, **options),
                                 lambda p, by_cell=by_cell: CompressedHdf5Reader(p, by_cell)))
    return listed


def bpcells_formats() -> list[Format]:
    """BPCells, when it installs (a note is printed where it does not)."""
    try:
        import bpcells.experimental  # noqa: F401
    except ImportError:
        print("note: bpcells is not installed; BPCells formats skipped")
        return []
    return [Format("BPCells cell-major", "", _bpcells(False), lambda p: BPCellsReader(p, False)),
            Format("BPCells gene-major", "", _bpcells(True), lambda p: BPCellsReader(p, True))]


def formats(quick: bool) -> list[Format]:
    siren_steps = dict(steps=40) if quick else {}
    return [
        reference_format(),
        *_hdf5_formats(),
        Format("AnnData .h5ad (default)", ".h5ad", _anndata(None), H5adReader),
        Format("AnnData .h5ad gzip", ".h5ad", _anndata("gzip"), H5adReader),
        Format("AnnData zarr", ".zarr", _zarr, ZarrReader),
        *bpcells_formats(),
        Format(".sinr lossless", ".sinr", _sinr(**siren_steps), SinrReader),
        Format(".sinr lossless, no SIREN", ".sinr", _sinr(siren="never"), SinrReader),
        Format(".sinr --max-error 1", ".sinr", _sinr(mode="max-error", max_error=1, siren="never"), SinrReader,
               lossy=True),
        Format(".sinr --max-error 3", ".sinr", _sinr(mode="max-error", max_error=3, siren="never"), SinrReader,
               lossy=True),
        Format(".sinr --inr-only", ".sinr", _sinr(mode="inr-only", **siren_steps), SinrReader, lossy=True),
    ]
