"""10x Genomics HDF5 (Cell Ranger v3 `matrix/` group, or v2 with one genome group): read as cells
as slices of its CSC arrays, gene ids, names and feature types read when the source opens; written
in the Cell Ranger v3 layout."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InvalidInputError
from ..progress import Progress, Shared
from .hdf5 import HDF5_MAGIC, CompressedH5Source, checked_dataset, h5_errors, open_h5, string_dataset, write_converted
from .matrix import CountMatrix
from .sources import check_shape, path_spec


def is_hdf5(path: Path, head: bytes) -> bool:
    """Any HDF5 file: the format table asks the .h5ad entry first, so what is left is a 10x file."""
    return head.startswith(HDF5_MAGIC)


def read_10x_h5(path: Path) -> CompressedH5Source:
    """Cell Ranger HDF5: the v3 `matrix/` group, or v2 with one genome group."""
    import h5py

    what = str(path)
    with h5_errors(what), open_h5(path) as f:
        if "matrix" in f:
            if not isinstance(f["matrix"], h5py.Group):  # a .loom file's /matrix is a dataset
                raise InvalidInputError(f"{path}: not a 10x HDF5 file (its 'matrix' is a dataset, not Cell Ranger's "
                                        "group; .loom files are not read)")
            group, features = "matrix", f["matrix"].get("features")
            ids, names, types = "id", "name", "feature_type"
        else:
            genomes = [k for k in f if isinstance(f[k], h5py.Group)]
            if not genomes:
                raise InvalidInputError(f"{path}: not a 10x HDF5 file (no 'matrix' group, and no genome group as "
                                        "Cell Ranger v2 writes)")
            if len(genomes) > 1:
                raise InvalidInputError(f"{path}: a Cell Ranger v2 file of {len(genomes)} genomes "
                                        f"({', '.join(genomes[:4])}), one matrix each, which .sinr does not read as "
                                        "one; encode each genome's AnnData (scanpy.read_10x_h5(path, genome=...))")
            group = genomes[0]
            features, ids, names, types = f[group], "genes", "gene_names", None
        g = f[group]
        shape = checked_dataset(g, "shape", what, "iu")
        if shape.shape != (2,):
            raise InvalidInputError(f"{path}: {shape.name} holds {shape.shape[0]:,} numbers, not 2")
        shape = check_shape(shape[:], what)
        gene_ids = string_dataset(features, ids, shape[0], what)
        gene_names = string_dataset(features, names, shape[0], what)
        feature_types = (string_dataset(features, types, shape[0], what)
                         if types is not None and types in features else None)
        barcodes = f"{group}/barcodes" if "barcodes" in g else None
        return CompressedH5Source(f, path, group, shape, cell_names=barcodes, gene_ids=gene_ids,
                                  gene_names=gene_names, feature_types=feature_types,
                                  spec=path_spec(path), description=what)


# ------------------------------------------------------------------------------------ writing

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


TENX_VALUES = np.dtype(np.int32)  # the type of a 10x file's values, as Cell Ranger writes them
TENX_MATRIX_VERSION = 2  # the matrix HDF5 layout of Cell Ranger 3 and later, as its `version` attribute says


def _fill_10x(f, m: CountMatrix, progress: Progress | None) -> None:
    """The Cell Ranger layout: CSC by cell, int32 data, int64 indices, gzip 4 + shuffle; the root
    attributes that say it is one (Cell Ranger's own loader refuses a file without filetype, and
    reads one without version as the layout of Cell Ranger 1 and 2). The nonzeros are counted on
    `progress` as their data and indices are written, half a nonzero each."""
    csc = m.counts.tocsc()
    counted = Shared(progress, 2) if progress is not None else None
    f.attrs["filetype"] = "matrix"
    f.attrs["version"] = np.int64(TENX_MATRIX_VERSION)
    chunked = dict(compression="gzip", compression_opts=4, shuffle=True)
    g = f.create_group("matrix")
    for name, arr, dtype in (("data", csc.data, TENX_VALUES), ("indices", csc.indices, np.int64),
                             ("indptr", csc.indptr, np.int64)):
        made = g.create_dataset(name, shape=arr.shape, dtype=dtype, chunks=(min(80_000, max(arr.size, 1)),),
                                maxshape=(None,), **chunked)
        write_converted(made, arr, counted if name != "indptr" else None)
    g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
    g.create_dataset("barcodes", data=_strings(m.filled_cell_names()), **chunked)
    feats = g.create_group("features")
    feats.create_dataset("id", data=_strings(m.filled_gene_ids()), **chunked)
    feats.create_dataset("name", data=_strings(m.filled_gene_names()), **chunked)
    feats.create_dataset("feature_type", data=_strings(m.filled_feature_types()), **chunked)
    feats.create_dataset("genome", data=_strings(m.genomes or [""] * m.shape[0]), **chunked)
    feats.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


def write_10x_h5(path: Path, m: CountMatrix, progress: Progress | None = None) -> None:
    """Write as Cell Ranger does (see _fill_10x), the file built in memory first (io.writers says why)."""
    _write_hdf5(path, lambda f: _fill_10x(f, m, progress))
