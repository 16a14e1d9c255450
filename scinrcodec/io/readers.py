"""Reading the formats users have (the table io.formats.FORMATS: 10x Matrix Market, 10x HDF5,
AnnData .h5ad and zarr stores, scipy .npz, one module each), and in-memory objects.

Each reader returns a MatrixSource (sources.py) that yields validated blocks of cells and, where the
format allows, holds about one block of the input at a time; each module's docstring says how. The
format of a path is recognised from its content, never from its name, by the first entry of
FORMATS that claims it; the messages that list the formats come from the same table.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import FileChangedError, InvalidInputError
from ..storage.container import MAGIC
from ..storage.source import NOT_A_FILE
from ..storage.urls import is_url, redacted
from .formats import BY_NAME, FORMATS, INPUT_LABELS, LAYERED_LABELS
from .h5ad import anndata_source
from .matrix import CountMatrix
from .mtx import GZIP_MAGIC
from .sources import CANONICAL, MatrixSource, RandomAccessSource, ScipySource, SourceSpec, file_version
from .zarr_store import not_anndata


def sniff_format(path: Path) -> str:
    """Name the format of `path` from its content: 'sinr' or the name of a FORMATS entry."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or folder")
    head = b""
    if path.is_dir():
        claimed = _claimed(path, head)
        if claimed is None:
            why = not_anndata(path) or "folder holds no matrix.mtx(.gz) and is no AnnData zarr store"
            inside = _inputs_inside(path)
            raise InvalidInputError(f"{path}: {why}" + (f"; inputs in it: {', '.join(inside)} (name one)" if inside
                                                           else ""))
        return claimed
    if not path.is_file():  # a pipe (`<(cmd)`), a FIFO or a device: read once, or never, where inputs are read twice
        raise InvalidInputError(f"{path}: {NOT_A_FILE}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InvalidInputError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    claimed = _claimed(path, head)
    if claimed is not None:
        return claimed
    if head.startswith(GZIP_MAGIC):  # x.h5ad.gz as a download gives it: only .mtx is read gzipped
        raise InvalidInputError(f"{path}: a gzip-compressed file (expected {INPUT_LABELS}; of them only .mtx is "
                                "read gzipped): decompress it first (gunzip -k)")
    raise InvalidInputError(f"{path}: unknown input format (expected {INPUT_LABELS})")


def _claimed(path: Path, head: bytes) -> str | None:
    """The format whose content `head` (a file's first 16 bytes, b"" for a folder) shows: 'sinr', the
    first FORMATS entry that claims it, or None."""
    if head.startswith(MAGIC):
        return "sinr"
    return next((f.name for f in FORMATS if f.sniff(path, head)), None)


_LOOKED_AT = 256  # entries of a folder that is no input looked at for inputs inside it


def _inputs_inside(folder: Path) -> list[str]:
    """The first few entries of a folder that are inputs themselves (Cell Ranger's outs/ holds
    filtered_feature_bc_matrix.h5 and the folder of the same name), for the message that refuses it."""
    found = []
    try:
        entries = sorted(itertools.islice(folder.iterdir(), _LOOKED_AT))
    except OSError:
        return found
    for entry in entries:
        try:
            if entry.is_dir():
                known = _claimed(entry, b"")
            elif not entry.is_file():  # a FIFO's open would wait for a writer
                continue
            else:
                with open(entry, "rb") as fh:
                    known = _claimed(entry, fh.read(16))
        except OSError:
            continue
        if known is not None:
            found.append(entry.name + ("/" if entry.is_dir() else ""))
        if len(found) == 3:
            break
    return found


def check_local_input(path: str | os.PathLike) -> None:
    """Refuse a URL as an input to encode (or append): inputs are local files, and a URL taken as a
    path had been 'no such file' under a name the user never typed (its // made /)."""
    if is_url(path):
        raise InvalidInputError(f"{redacted(path)}: an input to encode or append is a local file or folder (URLs "
                                "are read by sinr info, get, decode, subset and concat, and by scinrcodec.open); "
                                "download it first")


def read_matrix(path: str | os.PathLike, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """Open any supported input format as a source of validated blocks of cells. `layer` picks an
    .h5ad layer ('raw': adata.raw); pattern_as_ones reads a Matrix Market 'pattern' file's entries as 1."""
    check_local_input(path)
    path = Path(path)
    kind = sniff_format(path)
    if kind == "sinr":
        raise InvalidInputError(f"{path}: is already a .sinr file (sinr concat combines .sinr files, sinr subset "
                                "cuts one)")
    fmt = BY_NAME[kind]
    if layer is not None and not fmt.takes_layer:
        raise InvalidInputError(f"{path}: --layer applies to {LAYERED_LABELS} input only")
    before = file_version(path)
    source = fmt.open(path, layer, pattern_as_ones)
    spec = source.spec() if isinstance(source, RandomAccessSource) else None
    if spec is not None and spec.kind == "path" and None not in (before, spec.args["version"]) \
            and spec.args["version"] != before:  # the spec must name the version whose names and shape were read
        raise FileChangedError(f"{path}: changed while it was read (replaced or rewritten); read it again")
    return source


def open_source_spec(spec: SourceSpec) -> RandomAccessSource:
    """The source a RandomAccessSource.spec() describes, opened again (in another process)."""
    if spec.kind == "scipy":
        return ScipySource(**spec.args)
    path, version, here = spec.args["path"], spec.args.get("version"), file_version(spec.args["path"])
    if None not in (version, here) and here != tuple(version):  # a file gone: read_matrix says so
        raise FileChangedError(f"{path}: not the version the encode began with (another size or modification time "
                               "here: replaced or rewritten since, or another file of that name); encode it again, "
                               "from storage every worker shares")
    source = read_matrix(path, spec.args.get("layer"))
    if not isinstance(source, RandomAccessSource):
        raise InvalidInputError(f"{spec.args['path']}: cannot be read by cell range")
    if spec.args.get(CANONICAL):
        source.require_canonical()
    return source


def as_source(source, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """A path, a scipy.sparse matrix or ndarray (genes x cells), an AnnData, a CountMatrix or a
    MatrixSource, as a MatrixSource."""
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
