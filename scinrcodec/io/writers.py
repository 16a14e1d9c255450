"""Writing the formats users have: AnnData .h5ad, 10x HDF5, Matrix Market (file or 10x folder), .npz.

Every writer is atomic: it writes a temporary sibling and renames it into place. HDF5 outputs are
built in memory and written with ordinary file I/O: libhdf5 can crash when a write fails (a full
disk, a file size limit), where Python raises OSError and the temporary file is removed.
"""
from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import scipy.io
import scipy.sparse as sp

from ..errors import InvalidInputError
from .atomic import atomic_path, check_not_input, check_writable
from .h5ad_output import quiet_anndata
from .matrix import CountMatrix

MTX_FOLDER_FILES = frozenset(f"{stem}{suffix}" for stem in ("matrix.mtx", "features.tsv", "genes.tsv", "barcodes.tsv")
                             for suffix in ("", ".gz"))


def _write_hdf5(path: Path, fill: Callable) -> None:
    """Build an HDF5 file in memory with `fill(h5py.File)`, then write its bytes to `path`."""
    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        fill(f)
    with open(path, "wb") as fh:
        fh.write(image.getbuffer())


def _strings(values: list[str]) -> np.ndarray:
    encoded = [v.encode("utf-8") for v in values]
    width = max((len(v) for v in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _fill_10x(f, m: CountMatrix) -> None:
    """The Cell Ranger layout: CSC by cell, int32 data, int64 indices, gzip 4 + shuffle."""
    csc = m.counts.tocsc()
    chunked = dict(compression="gzip", compression_opts=4, shuffle=True)
    g = f.create_group("matrix")
    for name, arr, dtype in (("data", csc.data, np.int32), ("indices", csc.indices, np.int64),
                             ("indptr", csc.indptr, np.int64)):
        arr = np.asarray(arr, dtype=dtype)
        g.create_dataset(name, data=arr, chunks=(min(80_000, max(arr.size, 1)),), maxshape=(None,), **chunked)
    g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
    g.create_dataset("barcodes", data=_strings(m.filled_cell_names()), **chunked)
    feats = g.create_group("features")
    feats.create_dataset("id", data=_strings(m.filled_gene_ids()), **chunked)
    feats.create_dataset("name", data=_strings(m.filled_gene_names()), **chunked)
    feats.create_dataset("feature_type", data=_strings(m.filled_feature_types()), **chunked)
    feats.create_dataset("genome", data=_strings([""] * m.shape[0]), **chunked)
    feats.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


def write_10x_h5(path: Path, m: CountMatrix) -> None:
    """Write as Cell Ranger does (see _fill_10x)."""
    _write_hdf5(path, lambda f: _fill_10x(f, m))


def obs_frame(m: CountMatrix):
    """AnnData's obs of a matrix: its cell names, as scanpy expects them."""
    import pandas as pd

    return pd.DataFrame(index=pd.Index(m.filled_cell_names(), dtype=str))


def var_frame(m: CountMatrix):
    """AnnData's var of a matrix: gene names as the index, gene ids and feature types as columns."""
    import pandas as pd

    var = pd.DataFrame(index=pd.Index(m.filled_gene_names(), dtype=str))
    var["gene_ids"] = m.filled_gene_ids()
    var["feature_types"] = m.filled_feature_types()
    return var


def to_anndata(m: CountMatrix, dtype=None):
    """Cells x genes AnnData with names, as scanpy expects; X in the dtype policy's type
    (io.dtypes), checked to hold the counts exactly."""
    import anndata

    from .dtypes import anndata_dtype, check_exact

    wanted = anndata_dtype(dtype)
    x = sp.csr_matrix(m.counts.T.astype(wanted))
    check_exact(x.data, wanted, "the matrix")
    with quiet_anndata():
        adata = anndata.AnnData(X=x, obs=obs_frame(m), var=var_frame(m))
    return adata


def write_h5ad(path: Path, m: CountMatrix, *, compression: str = "auto", dtype=None) -> None:
    """Write as anndata.write_h5ad does (string columns as categoricals), gzip-compressed unless
    compression says otherwise (io.h5ad_output)."""
    from .h5ad_output import dataset_kwargs, h5ad_image

    kwargs = dataset_kwargs(compression)
    adata = to_anndata(m, dtype)
    with quiet_anndata():
        adata.strings_to_categoricals()
    image = h5ad_image(adata, kwargs)
    with open(path, "wb") as fh:
        fh.write(image)


def _write_tsv_gz(path: Path, rows: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(f"{r}\n" for r in rows)


def _write_mtx_file(path: Path, counts: sp.spmatrix, *, gz: bool) -> None:
    """Entries sorted by cell, then gene, as 10x writes them (so the reader streams them back)."""
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        scipy.io.mmwrite(fh, sp.csc_matrix(counts).tocoo(), field="integer")


def _write_npz(tmp: Path, path: Path, m: CountMatrix, compression: str, dtype) -> None:
    with open(tmp, "wb") as fh:
        sp.save_npz(fh, sp.csc_matrix(m.counts, dtype=np.int64))


def _write_mtx_folder(tmp: Path, path: Path, m: CountMatrix, compression: str, dtype) -> None:
    """The 10x triple: matrix.mtx.gz, features.tsv.gz (id, name, type) and barcodes.tsv.gz."""
    _write_mtx_file(tmp / "matrix.mtx.gz", m.counts, gz=True)
    ids, names, types = m.filled_gene_ids(), m.filled_gene_names(), m.filled_feature_types()
    _write_tsv_gz(tmp / "features.tsv.gz", [f"{a}\t{b}\t{c}" for a, b, c in zip(ids, names, types)])
    _write_tsv_gz(tmp / "barcodes.tsv.gz", m.filled_cell_names())


@dataclass(frozen=True)
class OutputFormat:
    """One output format: its name (what output_kind returns), how users know it, which paths
    choose it, and how it writes a matrix to the temporary path (the requested path tells .gz)."""

    name: str
    label: str
    matches: Callable[[Path], bool]
    write: Callable[[Path, Path, CountMatrix, str, object], None]  # tmp, path, matrix, compression, dtype
    is_dir: bool = False


def _ends(*suffixes: str) -> Callable[[Path], bool]:
    return lambda path: path.name.lower().endswith(suffixes)


# In order: the first format whose matches() takes a path is its format (.h5ad before .h5).
OUTPUT_FORMATS = (
    OutputFormat("h5ad", ".h5ad", _ends(".h5ad"),
                 lambda tmp, path, m, compression, dtype: write_h5ad(tmp, m, compression=compression, dtype=dtype)),
    OutputFormat("10x-h5", ".h5", _ends(".h5"), lambda tmp, path, m, compression, dtype: write_10x_h5(tmp, m)),
    OutputFormat("npz", ".npz", _ends(".npz"), _write_npz),
    OutputFormat("mtx-file", ".mtx(.gz)", _ends(".mtx", ".mtx.gz"),
                 lambda tmp, path, m, compression, dtype: _write_mtx_file(tmp, m.counts,
                                                                          gz=path.name.lower().endswith(".gz"))),
    OutputFormat("mtx-dir", "a folder", lambda path: "." not in path.name or path.is_dir(), _write_mtx_folder,
                 is_dir=True),
)
OUTPUTS_BY_NAME = {f.name: f for f in OUTPUT_FORMATS}


def output_kind(path: Path) -> str:
    """The name of the OUTPUT_FORMATS entry `path` chooses."""
    for fmt in OUTPUT_FORMATS:
        if fmt.matches(path):
            return fmt.name
    labels = [f.label for f in OUTPUT_FORMATS]
    raise InvalidInputError(f"{path}: unknown output format (use {', '.join(labels[:-1])} or {labels[-1]})")


def check_output(path: str | os.PathLike, *, force: bool, inputs: Iterable = ()) -> str:
    """Fail before any work when `path` cannot take a decoded matrix (see atomic.check_writable);
    return its format."""
    check_not_input(path, inputs)
    kind = output_kind(Path(path))
    check_writable(path, force=force, inputs=inputs, is_dir=OUTPUTS_BY_NAME[kind].is_dir, folder_files=MTX_FOLDER_FILES)
    return kind


def write_matrix(path: str | os.PathLike, m: CountMatrix, *, force: bool = False, compression: str = "auto",
                 dtype=None) -> str:
    """Write `m` in the format named by `path`'s extension (a folder gets the 10x mtx triple);
    compression and dtype apply to .h5ad (see write_h5ad)."""
    path = Path(path)
    fmt = OUTPUTS_BY_NAME[output_kind(path)]
    with atomic_path(path, force=force, is_dir=fmt.is_dir, folder_files=MTX_FOLDER_FILES) as tmp:
        fmt.write(tmp, path, m, compression, dtype)
    return fmt.name
