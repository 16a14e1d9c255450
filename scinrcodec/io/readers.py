"""Reading the formats users have: 10x mtx, 10x HDF5, AnnData .h5ad, scipy .npz, in-memory objects.

Each reader returns a MatrixSource (see sources.py) that yields validated blocks of cells.
"""
from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io
import scipy.sparse as sp

from ..errors import InvalidInputError
from .sources import MatrixSource, ScipySource, check_shape, checked_compressed

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8") if gz else open(path, encoding="utf-8")


def _find(folder: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_tsv_columns(path: Path) -> list[list[str]]:
    with _open_text(path) as fh:
        return [line.rstrip("\n").split("\t") for line in fh if line.strip()]


def read_mtx(path: Path) -> ScipySource:
    """A 10x mtx directory, or a matrix.mtx(.gz) file with optional features/barcodes beside it."""
    folder = path if path.is_dir() else path.parent
    matrix_path = _find(folder, ["matrix.mtx"]) if path.is_dir() else path
    if matrix_path is None:
        raise InvalidInputError(f"{path}: no matrix.mtx or matrix.mtx.gz in this folder")
    try:
        with _open_text(matrix_path) as fh:
            head = fh.readline()
        if not head.startswith("%%MatrixMarket"):
            raise InvalidInputError(f"{matrix_path}: not a Matrix Market file")
        opener = gzip.open if str(matrix_path).endswith(".gz") else open
        with opener(matrix_path, "rb") as fh:
            counts = scipy.io.mmread(fh)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{matrix_path}: unreadable Matrix Market file ({exc})") from exc
    gene_ids = gene_names = feature_types = cell_names = None
    features = _find(folder, ["features.tsv", "genes.tsv"])
    if features is not None:
        rows = _read_tsv_columns(features)
        gene_ids = [r[0] for r in rows]
        gene_names = [r[1] if len(r) > 1 else r[0] for r in rows]
        feature_types = [r[2] for r in rows] if all(len(r) > 2 for r in rows) else None
    barcodes = _find(folder, ["barcodes.tsv"])
    if barcodes is not None:
        cell_names = [r[0] for r in _read_tsv_columns(barcodes)]
    return ScipySource(counts, gene_ids, gene_names, cell_names, feature_types, description=str(path))


def _decode_strings(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_10x_h5(path: Path) -> ScipySource:
    """Cell Ranger HDF5 (v3 `matrix/` layout, or v2 with one genome group)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "matrix" in f:
                g = f["matrix"]
                feats = g["features"]
                gene_ids = _decode_strings(feats["id"][:])
                gene_names = _decode_strings(feats["name"][:])
                feature_types = _decode_strings(feats["feature_type"][:]) if "feature_type" in feats else None
            else:
                genomes = list(f.keys())
                if len(genomes) != 1:
                    raise InvalidInputError(f"{path}: not a 10x HDF5 file (no 'matrix' group)")
                g = f[genomes[0]]
                gene_ids = _decode_strings(g["genes"][:])
                gene_names = _decode_strings(g["gene_names"][:])
                feature_types = None
            shape = check_shape(tuple(int(x) for x in g["shape"][:]), str(path))
            arrays = (g["data"][:], g["indices"][:], g["indptr"][:])
            cell_names = _decode_strings(g["barcodes"][:])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"{path}: unreadable 10x HDF5 file ({exc})") from exc
    counts = checked_compressed(*arrays, shape=shape, by_column=True, what=str(path))
    return ScipySource(counts, gene_ids, gene_names, cell_names, feature_types, description=str(path))


def anndata_source(adata, layer: str | None = None, *, what: str = "AnnData") -> ScipySource:
    """AnnData is cells x genes; `layer` picks a layer, or 'raw' for adata.raw."""
    if layer == "raw":
        if adata.raw is None:
            raise InvalidInputError(f"{what}: has no raw matrix")
        x, var = adata.raw.X, adata.raw.var
    elif layer is not None:
        if layer not in adata.layers:
            raise InvalidInputError(f"{what}: has no layer {layer!r} (layers: {sorted(adata.layers)})")
        x, var = adata.layers[layer], adata.var
    else:
        if adata.X is None:
            raise InvalidInputError(f"{what}: has no X matrix")
        x, var = adata.X, adata.var
    x = x.T
    gene_names = [str(v) for v in var.index]
    gene_ids = [str(v) for v in var["gene_ids"]] if "gene_ids" in var.columns else None
    feature_types = [str(v) for v in var["feature_types"]] if "feature_types" in var.columns else None
    cell_names = [str(v) for v in adata.obs_names]
    return ScipySource(x, gene_ids, gene_names, cell_names, feature_types, description=what)


def read_h5ad(path: Path, layer: str | None = None) -> ScipySource:
    import anndata

    try:
        adata = anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types for unreadable files
        raise InvalidInputError(f"{path}: unreadable .h5ad file ({exc})") from exc
    return anndata_source(adata, layer, what=str(path))


def read_npz(path: Path) -> ScipySource:
    try:
        counts = sp.load_npz(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{path}: unreadable scipy .npz file ({exc})") from exc
    return ScipySource(counts, description=str(path))


def sniff_format(path: Path) -> str:
    """Name the format of `path` from its content: 'sinr', 'mtx', '10x-h5', 'h5ad' or 'npz'."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or folder")
    if path.is_dir():
        if _find(path, ["matrix.mtx"]) is None:
            raise InvalidInputError(f"{path}: folder holds no matrix.mtx(.gz)")
        return "mtx"
    with open(path, "rb") as fh:
        head = fh.read(8)
    from ..storage.container import MAGIC

    if head.startswith(MAGIC):
        return "sinr"
    if head.startswith(HDF5_MAGIC):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())
        except OSError as exc:
            raise InvalidInputError(f"{path}: unreadable HDF5 file ({exc})") from exc
        if "X" in keys or "obs" in keys:
            return "h5ad"
        return "10x-h5"
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"%%Matrix") or (head.startswith(b"\x1f\x8b") and ".mtx" in path.name):
        return "mtx"
    raise InvalidInputError(f"{path}: unknown input format (expected 10x mtx, 10x .h5, .h5ad or .npz)")


def read_matrix(path: str | os.PathLike, layer: str | None = None) -> ScipySource:
    """Open any supported input format as a source of validated blocks of cells."""
    path = Path(path)
    kind = sniff_format(path)
    if layer is not None and kind != "h5ad":
        raise InvalidInputError(f"{path}: --layer applies to .h5ad input only")
    if kind == "sinr":
        raise InvalidInputError(f"{path}: is already a .sinr file")
    if kind == "mtx":
        return read_mtx(path)
    if kind == "10x-h5":
        return read_10x_h5(path)
    if kind == "h5ad":
        return read_h5ad(path, layer)
    return read_npz(path)


def as_source(source, layer: str | None = None) -> MatrixSource:
    """A path, a scipy.sparse matrix or ndarray (genes x cells), an AnnData, a CountMatrix or a
    MatrixSource, as a MatrixSource."""
    from .matrix import CountMatrix

    if isinstance(source, MatrixSource):
        return source
    if isinstance(source, CountMatrix):
        return ScipySource(source.counts, source.gene_ids, source.gene_names, source.cell_names,
                           source.feature_types)
    if isinstance(source, (str, os.PathLike)):
        return read_matrix(source, layer=layer)
    if sp.issparse(source) or isinstance(source, np.ndarray):
        return ScipySource(source)
    if type(source).__name__ == "AnnData":
        return anndata_source(source, layer)
    raise InvalidInputError(f"cannot encode an object of type {type(source).__name__}")
