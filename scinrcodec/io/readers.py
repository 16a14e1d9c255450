"""Reading the formats users have, as one table: 10x Matrix Market, 10x HDF5, AnnData .h5ad, scipy
.npz (one module each: mtx, tenx_h5, h5ad, npz), and in-memory objects.

Each reader returns a MatrixSource (sources.py) that yields validated blocks of cells and, where the
format allows, holds about one block of the input at a time; each module's docstring says how. The
format of a path is recognised from its content, never from its name, by the first entry of
INPUT_FORMATS that claims it; the messages that list the formats come from the same table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .h5ad import anndata_source, read_h5ad
from .hdf5 import HDF5_MAGIC, h5_errors, open_h5
from .mtx import GZIP_MAGIC, MtxSource, find_file
from .npz import read_npz
from .sources import MatrixSource, RandomAccessSource, ScipySource, SourceSpec
from .tenx_h5 import read_10x_h5


def _is_h5ad(path: Path, head: bytes) -> bool:
    if not head.startswith(HDF5_MAGIC):
        return False
    with h5_errors(str(path)), open_h5(path) as f:
        keys = set(f.keys())
    return "X" in keys or "obs" in keys


def _is_mtx(path: Path, head: bytes) -> bool:
    if path.is_dir():
        return find_file(path, ["matrix.mtx"]) is not None
    return head.lower().startswith(b"%%matrixmarket") or (head.startswith(GZIP_MAGIC) and ".mtx" in path.name)


@dataclass(frozen=True)
class InputFormat:
    """One input format: its name (what sniff_format returns), how users know it, how its content is
    recognised (from the path and the file's first 16 bytes), and how it opens."""

    name: str
    label: str
    detect: Callable[[Path, bytes], bool]
    open: Callable[[Path, str | None, bool], MatrixSource]  # path, layer, pattern_as_ones
    takes_layer: bool = False


# In order: the first format whose detect() claims a path is its format (an HDF5 file is an .h5ad
# when it has AnnData's groups, else a 10x file).
INPUT_FORMATS = (
    InputFormat("mtx", "10x mtx", _is_mtx, lambda path, layer, ones: MtxSource(path, pattern_as_ones=ones)),
    InputFormat("h5ad", ".h5ad", _is_h5ad, lambda path, layer, ones: read_h5ad(path, layer), takes_layer=True),
    InputFormat("10x-h5", "10x .h5", lambda path, head: head.startswith(HDF5_MAGIC),
                lambda path, layer, ones: read_10x_h5(path)),
    InputFormat("npz", ".npz", lambda path, head: head.startswith(b"PK"), lambda path, layer, ones: read_npz(path)),
)
FORMATS_BY_NAME = {f.name: f for f in INPUT_FORMATS}


def _listed(labels: list[str]) -> str:
    """'a, b or c'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def sniff_format(path: Path) -> str:
    """Name the format of `path` from its content: 'sinr' or the name of an INPUT_FORMATS entry."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or folder")
    head = b""
    if path.is_dir():
        folders = [f for f in INPUT_FORMATS if f.detect(path, head)]
        if not folders:
            raise InvalidInputError(f"{path}: folder holds no matrix.mtx(.gz)")
        return folders[0].name
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InvalidInputError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    from ..storage.container import MAGIC

    if head.startswith(MAGIC):
        return "sinr"
    for fmt in INPUT_FORMATS:
        if fmt.detect(path, head):
            return fmt.name
    raise InvalidInputError(f"{path}: unknown input format (expected {_listed([f.label for f in INPUT_FORMATS])})")


def read_matrix(path: str | os.PathLike, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """Open any supported input format as a source of validated blocks of cells. `layer` picks an
    .h5ad layer ('raw': adata.raw); pattern_as_ones reads a Matrix Market 'pattern' file's entries as 1."""
    path = Path(path)
    kind = sniff_format(path)
    if kind == "sinr":
        raise InvalidInputError(f"{path}: is already a .sinr file")
    fmt = FORMATS_BY_NAME[kind]
    if layer is not None and not fmt.takes_layer:
        layered = _listed([f.label for f in INPUT_FORMATS if f.takes_layer])
        raise InvalidInputError(f"{path}: --layer applies to {layered} input only")
    return fmt.open(path, layer, pattern_as_ones)


def open_source_spec(spec: SourceSpec) -> RandomAccessSource:
    """The source a RandomAccessSource.spec() describes, opened again (in another process)."""
    if spec.kind == "scipy":
        return ScipySource(**spec.args)
    source = read_matrix(spec.args["path"], spec.args.get("layer"))
    if not isinstance(source, RandomAccessSource):
        raise InvalidInputError(f"{spec.args['path']}: cannot be read by cell range")
    return source


def as_source(source, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """A path, a scipy.sparse matrix or ndarray (genes x cells), an AnnData, a CountMatrix or a
    MatrixSource, as a MatrixSource."""
    from .matrix import CountMatrix

    if isinstance(source, MatrixSource):
        return source
    if isinstance(source, CountMatrix):
        return ScipySource(source.counts, source.gene_ids, source.gene_names, source.cell_names,
                           source.feature_types)
    if isinstance(source, (str, os.PathLike)):
        return read_matrix(source, layer=layer, pattern_as_ones=pattern_as_ones)
    if sp.issparse(source) or isinstance(source, np.ndarray):
        return ScipySource(source)
    if type(source).__name__ == "AnnData":
        return anndata_source(source, layer)
    raise InvalidInputError(f"cannot encode an object of type {type(source).__name__}")
