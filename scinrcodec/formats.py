"""Reading and writing the formats users already have: 10x mtx, 10x HDF5, AnnData .h5ad, scipy .npz.

Every reader returns a `CountMatrix` (genes x cells, as 10x stores features x barcodes) and every
writer is atomic: it writes a temporary sibling and renames it into place.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import scipy.io
import scipy.sparse as sp

from .errors import InvalidInputError, OutputExistsError

MAX_COUNT = 2**31 - 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class CountMatrix:
    """A genes x cells count matrix with its names (any name list may be None when unknown)."""

    counts: sp.csr_matrix
    gene_ids: list[str] | None = None
    gene_names: list[str] | None = None
    cell_names: list[str] | None = None
    feature_types: list[str] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape

    def filled_gene_ids(self) -> list[str]:
        return self.gene_ids or self.gene_names or [f"gene_{i}" for i in range(self.shape[0])]

    def filled_gene_names(self) -> list[str]:
        return self.gene_names or self.gene_ids or [f"gene_{i}" for i in range(self.shape[0])]

    def filled_cell_names(self) -> list[str]:
        return self.cell_names or [f"cell_{j}" for j in range(self.shape[1])]

    def filled_feature_types(self) -> list[str]:
        return self.feature_types or ["Gene Expression"] * self.shape[0]


def validate_counts(matrix: sp.spmatrix | np.ndarray, *, what: str = "input") -> sp.csr_matrix:
    """Return an int64 CSR copy of `matrix`, raising if any value is not a non-negative integer."""
    if not sp.issparse(matrix):
        matrix = np.asarray(matrix)
        if matrix.ndim != 2:
            raise InvalidInputError(f"{what}: expected a 2-D matrix, got {matrix.ndim} dimensions")
    csr = sp.csr_matrix(matrix)
    data = csr.data
    if data.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what}: values of type {data.dtype} are not counts")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise InvalidInputError(f"{what}: contains NaN or infinite values")
        if np.any(data != np.rint(data)):
            raise InvalidInputError(f"{what}: contains non-integer values (counts must be whole numbers)")
    if data.size and data.min() < 0:
        raise InvalidInputError(f"{what}: contains negative values (counts must be >= 0)")
    if data.size and data.max() > MAX_COUNT:
        raise InvalidInputError(f"{what}: contains values above {MAX_COUNT}")
    csr = sp.csr_matrix((data.astype(np.int64), csr.indices, csr.indptr), shape=csr.shape)
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


def _check_names(names: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    if names is None:
        return None
    names = [str(x) for x in names]
    if len(names) != n:
        raise InvalidInputError(f"{what}: {len(names)} names for {n} entries")
    return names


def make_count_matrix(counts, gene_ids=None, gene_names=None, cell_names=None,
                      feature_types=None, *, what: str = "input") -> CountMatrix:
    """Validate counts and names together."""
    csr = validate_counts(counts, what=what)
    n_genes, n_cells = csr.shape
    return CountMatrix(
        csr,
        _check_names(gene_ids, n_genes, f"{what} gene ids"),
        _check_names(gene_names, n_genes, f"{what} gene names"),
        _check_names(cell_names, n_cells, f"{what} cell names"),
        _check_names(feature_types, n_genes, f"{what} feature types"),
    )


# ---------------------------------------------------------------------------------------- reading

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


def read_mtx(path: Path) -> CountMatrix:
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
    return make_count_matrix(counts, gene_ids, gene_names, cell_names, feature_types, what=str(path))


def _decode_strings(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_10x_h5(path: Path) -> CountMatrix:
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
            shape = tuple(int(x) for x in g["shape"][:])
            counts = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)
            cell_names = _decode_strings(g["barcodes"][:])
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable 10x HDF5 file ({exc})") from exc
    return make_count_matrix(counts, gene_ids, gene_names, cell_names, feature_types, what=str(path))


def anndata_to_count_matrix(adata, layer: str | None = None, *, what: str = "AnnData") -> CountMatrix:
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
    return make_count_matrix(x, gene_ids, gene_names, cell_names, feature_types, what=what)


def read_h5ad(path: Path, layer: str | None = None) -> CountMatrix:
    import anndata

    try:
        adata = anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types for unreadable files
        raise InvalidInputError(f"{path}: unreadable .h5ad file ({exc})") from exc
    return anndata_to_count_matrix(adata, layer, what=str(path))


def read_npz(path: Path) -> CountMatrix:
    try:
        counts = sp.load_npz(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{path}: unreadable scipy .npz file ({exc})") from exc
    return make_count_matrix(counts, what=str(path))


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
    from .container import MAGIC

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


def read_matrix(path: str | os.PathLike, layer: str | None = None) -> CountMatrix:
    """Read any supported input format, validating that it holds non-negative integer counts."""
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


# ---------------------------------------------------------------------------------------- writing

def check_writable(target: str | os.PathLike, *, force: bool) -> Path:
    """Fail before any work when the output exists (and --force was not given) or has no folder."""
    target = Path(target)
    if target.exists() and not force:
        raise OutputExistsError(f"{target}: already exists (use --force to overwrite)")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"{target}: folder {parent} does not exist")
    return parent


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, force: bool, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; rename it over `target` only when the block succeeds."""
    target = Path(target)
    parent = check_writable(target, force=force)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir and target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_10x_h5(path: Path, m: CountMatrix) -> None:
    """Write as Cell Ranger does: CSC by cell, int32 data, int64 indices, gzip 4 + shuffle."""
    import h5py

    csc = m.counts.tocsc()
    chunked = dict(compression="gzip", compression_opts=4, shuffle=True)

    def strings(values: list[str]) -> np.ndarray:
        encoded = [v.encode("utf-8") for v in values]
        width = max((len(v) for v in encoded), default=1) or 1
        return np.array(encoded, dtype=f"S{width}")

    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        for name, arr, dtype in (("data", csc.data, np.int32), ("indices", csc.indices, np.int64),
                                 ("indptr", csc.indptr, np.int64)):
            arr = np.asarray(arr, dtype=dtype)
            g.create_dataset(name, data=arr, chunks=(min(80_000, max(arr.size, 1)),), maxshape=(None,), **chunked)
        g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        g.create_dataset("barcodes", data=strings(m.filled_cell_names()), **chunked)
        feats = g.create_group("features")
        n_genes = m.shape[0]
        feats.create_dataset("id", data=strings(m.filled_gene_ids()), **chunked)
        feats.create_dataset("name", data=strings(m.filled_gene_names()), **chunked)
        feats.create_dataset("feature_type", data=strings(m.filled_feature_types()), **chunked)
        feats.create_dataset("genome", data=strings([""] * n_genes), **chunked)
        feats.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


def to_anndata(m: CountMatrix):
    """Cells x genes AnnData with names, as scanpy expects."""
    import anndata
    import pandas as pd

    var = pd.DataFrame(index=pd.Index(m.filled_gene_names(), dtype=str))
    var["gene_ids"] = m.filled_gene_ids()
    var["feature_types"] = m.filled_feature_types()
    obs = pd.DataFrame(index=pd.Index(m.filled_cell_names(), dtype=str))
    x = sp.csr_matrix(m.counts.T.astype(np.int32))  # validated counts are below 2**31
    with _quiet_anndata():
        adata = anndata.AnnData(X=x, obs=obs, var=var)
    return adata


@contextlib.contextmanager
def _quiet_anndata():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="anndata")
        yield


def _write_tsv_gz(path: Path, rows: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(f"{r}\n" for r in rows)


def _write_mtx_file(path: Path, counts: sp.csr_matrix, *, gz: bool) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(counts), field="integer")


def output_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x-h5"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".mtx", ".mtx.gz")):
        return "mtx-file"
    if "." not in name or path.is_dir():
        return "mtx-dir"
    raise InvalidInputError(f"{path}: unknown output format (use .h5ad, .h5, .npz, .mtx(.gz) or a folder)")


def write_matrix(path: str | os.PathLike, m: CountMatrix, *, force: bool = False) -> str:
    """Write `m` in the format named by `path`'s extension (a folder gets the 10x mtx triple)."""
    path = Path(path)
    kind = output_kind(path)
    with atomic_path(path, force=force, is_dir=(kind == "mtx-dir")) as tmp:
        if kind == "h5ad":
            with _quiet_anndata():
                to_anndata(m).write_h5ad(tmp)
        elif kind == "10x-h5":
            write_10x_h5(tmp, m)
        elif kind == "npz":
            with open(tmp, "wb") as fh:
                sp.save_npz(fh, m.counts.astype(np.int64))
        elif kind == "mtx-file":
            _write_mtx_file(tmp, m.counts, gz=path.name.lower().endswith(".gz"))
        else:
            _write_mtx_file(tmp / "matrix.mtx.gz", m.counts, gz=True)
            ids, names, types = m.filled_gene_ids(), m.filled_gene_names(), m.filled_feature_types()
            _write_tsv_gz(tmp / "features.tsv.gz", [f"{a}\t{b}\t{c}" for a, b, c in zip(ids, names, types)])
            _write_tsv_gz(tmp / "barcodes.tsv.gz", m.filled_cell_names())
    return kind
