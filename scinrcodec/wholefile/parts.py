"""The parts of an AnnData to store, in memory, in an .h5ad file or in a zarr store, read one
element at a time; and which of them are count matrices a .sinr matrix holds exactly (whole numbers
0..MAX_COUNT in a format the file records)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..io.dask_cells import holds_counts, is_dask_array
from ..io.h5ad import cells_by_genes_source
from ..io.hdf5 import check_declared, h5_errors, open_h5, text_attr
from ..io.sources import MatrixSource, exceeds_max_count, one_line
from ..io.zarr_store import declared_bytes, is_zarr, open_zarr, read_zarr_elem, streamed, zarr_errors, zarr_matrix
from ..limits import check_allocation
from ..reader.contents import MATRIX_FORMATS

SLICE = 1 << 24  # values checked at a time


def whole_counts(values: np.ndarray) -> bool:
    """Every value is a count a .sinr matrix holds exactly: whole, 0 .. MAX_COUNT."""
    if values.dtype.kind not in "iuf":
        return False
    flat = values.reshape(-1)
    for start in range(0, flat.size, SLICE):
        part = np.asarray(flat[start: start + SLICE])
        if part.dtype.kind == "f" and not (np.isfinite(part).all() and np.array_equal(part, np.floor(part))):
            return False
        if part.size and part.min() < 0 or exceeds_max_count(part):
            return False
    return True


def memory_format(x) -> str | None:
    """The format name of an in-memory matrix that a .sinr matrix stores exactly, or None. AnnData's
    views of a format count as the format; a dask array of counts (a lazy AnnData's) as its blocks'
    format, each block computed once to tell."""
    if is_dask_array(x):
        meta = getattr(x, "_meta", None)
        name = "ndarray" if isinstance(meta, np.ndarray) else next(
            (n for n in MATRIX_FORMATS if n != "ndarray" and isinstance(meta, getattr(sp, n, ()))), None)
        return name if name is not None and holds_counts(x, whole_counts) else None
    name = next((name for name in MATRIX_FORMATS if isinstance(x, getattr(sp, name, np.ndarray))), None)
    if name is None or isinstance(x, np.matrix):
        return None
    if name == "ndarray":
        return name if x.ndim == 2 and whole_counts(x) else None
    if not whole_counts(x.data):
        return None
    if not x.has_canonical_format and not x.sorted_indices().has_canonical_format:
        return None  # repeated coordinates: scipy sums them, .sinr refuses them
    return name


def _is_group(obj) -> bool:
    """An HDF5 or zarr group."""
    return hasattr(obj, "keys") and not hasattr(obj, "dtype")


def _is_array(obj) -> bool:
    """An HDF5 dataset or a zarr array."""
    return hasattr(obj, "dtype") and not hasattr(obj, "keys")


def disk_format(obj) -> str | None:
    """The same for a matrix of an .h5ad file or a zarr store, read a slice at a time."""
    encoding = text_attr(obj, "encoding-type")
    if _is_group(obj) and encoding in ("csr_matrix", "csc_matrix") and _is_array(obj.get("data")):
        data, name = obj["data"], encoding
    elif _is_array(obj) and encoding == "array" and obj.ndim == 2:
        data, name = obj, "ndarray"
    else:
        return None
    if data.dtype.kind not in "iuf":
        return None
    if name != "ndarray":
        _check_extent(obj, data)
    rows = max(1, SLICE // max(1, int(np.prod(data.shape[1:]))))
    for start in range(0, data.shape[0], rows):
        if not whole_counts(data[start: start + rows]):
            return None
    return name


def _check_extent(group, data) -> None:
    """Refuse a sparse matrix whose values outnumber its entries or what its last index pointer says,
    before they are scanned (a tiny file declaring 2**36 values had been read to the end, 48 s, before
    its structure was checked); the readers check the rest of the structure as they stream it."""
    where = group.file.filename if hasattr(group, "file") else getattr(group.store, "root", group.store)  # HDF5, zarr
    what = f"{where}: {group.name}"
    shape = group.attrs.get("shape")
    if shape is not None and np.shape(shape) == (2,) and data.shape[0] > int(shape[0]) * int(shape[1]):
        raise InvalidInputError(f"{what} holds {data.shape[0]:,} values for {int(shape[0]):,} x {int(shape[1]):,} entries")
    indptr = group.get("indptr")
    if _is_array(indptr) and indptr.ndim == 1 and indptr.shape[0] and indptr.dtype.kind in "iu":
        last = int(indptr[-1])
        if last != data.shape[0]:
            raise InvalidInputError(f"{what} holds {data.shape[0]:,} values where its index pointers end at {last:,}")


# ------------------------------------------------------------------------------------- the parts

class MemoryParts:
    """The parts of an in-memory AnnData, by element path ('obs', 'layers/counts', 'raw/var')."""

    frames_as_stored = False  # its string columns are stored as write_h5ad stores them (categoricals)

    def __init__(self, adata, what: str) -> None:
        if adata.isbacked:  # a view of one holds only some of its file's cells: encoding the file would not do
            raise InvalidInputError(f"{what}: a view of a backed AnnData; load it first (adata.to_memory())"
                                    if adata.is_view else f"{what}: a backed AnnData; encode its file "
                                    f"({adata.filename}) instead, or load it first (adata.to_memory())")
        self.adata, self.what = adata, what
        self.shape = adata.shape

    def has(self, path: str) -> bool:
        """Whether 'X', 'raw' or 'raw/varm' is there."""
        a = self.adata
        has_raw = a.raw is not None
        return {"X": a.X is not None, "raw": has_raw, "raw/varm": has_raw and len(a.raw.varm) > 0}[path]

    def keys(self, part: str) -> list[str]:
        """The keys of a mapping part ('layers', 'obsm', ...)."""
        return list(getattr(self.adata, part).keys())

    def value(self, path: str):
        """One element by path ('obs', 'layers/counts', 'raw/var')."""
        a = self.adata
        if path.startswith("raw/"):
            return {"X": a.raw.X, "var": a.raw.var, "varm": dict(a.raw.varm)}[path[4:]]
        if "/" in path:
            part, key = path.split("/", 1)
            return getattr(a, part)[key]
        return getattr(a, path)

    def format(self, path: str) -> str | None:
        """The format a .sinr matrix would record for the element, or None when it is not counts."""
        return memory_format(self.value(path))

    def dtype(self, path: str) -> str:
        """The element's dtype, recorded so that it decodes to the same type."""
        return self.value(path).dtype.str

    def source(self, path: str) -> MatrixSource:
        """A count matrix as a genes x cells source to encode."""
        var = self.adata.raw.var if path == "raw/X" else self.adata.var
        return cells_by_genes_source(self.value(path), var, self.adata.obs_names, f"{self.what} {path}")


class FileParts:
    """The parts of an .h5ad file (anndata >= 0.8 layout), each read only when asked for; count
    matrices are streamed by the readers."""

    frames_as_stored = True  # its frames are kept as the file holds them (a string column stays one)

    def __init__(self, path: Path, f) -> None:
        self.file, self.path, self.what = f, path, str(path)
        self.shape = (_frame_length(f, "obs", self.what), _frame_length(f, "var", self.what))

    def has(self, path: str) -> bool:
        """Whether the file holds the element (anndata writes one that is None, such as the raw of an
        AnnData without one, as a dataset of encoding 'null': that is none)."""
        return path in self.file and text_attr(self.file[path], "encoding-type") != "null"

    def keys(self, part: str) -> list[str]:
        """The keys of a mapping part ('layers', 'obsm', ...), none when it is absent."""
        return list(self.file[part].keys()) if self.has(part) and hasattr(self.file[part], "keys") else []

    def value(self, path: str):
        """One element, read by anndata."""
        return _read_elem(self.file, path, self.what)

    def format(self, path: str) -> str | None:
        """As MemoryParts.format, reading the matrix a slice at a time."""
        return disk_format(self.file[path])

    def source(self, path: str) -> MatrixSource:
        """A count matrix, streamed by the readers (which open the file again: this one is closed
        once the plan is made)."""
        from ..io.readers import read_matrix

        if path != "layers/raw":
            return read_matrix(self.path, None if path == "X" else "raw" if path == "raw/X" else path[len("layers/"):])
        with h5_errors(str(self.path)), open_h5(self.path) as f:  # the readers' layer 'raw' is adata.raw
            return cells_by_genes_source(*(_read_elem(f, part, self.what) for part in (path, "var")),
                                         _read_elem(f, "obs", self.what).index, f"{self.what} {path}")

    def dtype(self, path: str) -> str:
        """The element's dtype, recorded so that it decodes to the same type."""
        obj = self.file[path]
        return (obj if text_attr(obj, "encoding-type") == "array" else obj["data"]).dtype.str


def _read_elem(f, path: str, what: str):
    """One element of an open .h5ad, read by anndata once its declared size fits the memory free; a
    failure names it."""
    from anndata.io import read_elem

    check_declared(f[path], f"{what}: {path}")
    try:
        return read_elem(f[path])
    except Exception as exc:  # anndata raises many types for elements it cannot read
        raise InvalidInputError(f"{what}: {path} is unreadable ({one_line(exc)})") from exc


def _frame_length(f, name: str, what: str) -> int:
    """Rows of an .h5ad's or zarr store's dataframe: its index's length (an array, or an encoded one
    such as a categorical or nullable-string index, whose codes or values give it)."""
    frame = f.get(name)
    index = text_attr(frame, "_index") if _is_group(frame) else None
    obj = None if index is None else frame.get(index)
    if _is_group(obj):
        obj = obj.get("codes", obj.get("values"))
    if not _is_array(obj) or obj.ndim != 1:
        raise InvalidInputError(f"{what}: {name} is not an anndata dataframe with an index")
    return obj.shape[0]


def _sorted_keys(value):
    """`value` with every dict in it (nested, as uns holds them) in the order of its keys."""
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    return value


class ZarrParts(FileParts):
    """The parts of an AnnData zarr store, as FileParts reads an .h5ad's: each read by anndata when
    asked for, the count matrices streamed (io.zarr_store)."""

    def keys(self, part: str) -> list[str]:
        """As FileParts.keys, sorted: a store's consolidated metadata lists a group's members sorted
        (as HDF5 lists an .h5ad's), a store without it as its folders are listed, in an order of the
        file system's, and the .sinr file's bytes would follow that order."""
        return sorted(super().keys(part))

    def value(self, path: str):
        """One element, read by anndata, its mappings' keys sorted (see keys)."""
        return _sorted_keys(read_zarr_elem(self.file, path, self.what))

    def format(self, path: str) -> str | None:
        """As FileParts.format, once a matrix read whole (all but a CSR one the readers stream) is known
        to fit the memory free: its scan for counts, a slice at a time, had taken 18 s over a 156 kB
        store declaring 2**34 zeros (chunks not stored) before its read refused it. A chunk zarr
        cannot read is one error."""
        with zarr_errors(self.what):
            obj = self.file[path]
            if path == "layers/raw" or not streamed(obj):  # see source
                check_allocation(declared_bytes(obj), f"{self.what}: {path}")
            return super().format(path)

    def source(self, path: str) -> MatrixSource:
        """A count matrix, as FileParts.source; a layer named 'raw' (which the readers' layer 'raw',
        adata.raw, hides) read whole."""
        if path != "layers/raw":
            return super().source(path)
        with zarr_errors(self.what):
            return zarr_matrix(self.file, self.path, path, "var", f"{self.what} {path}", None)


@contextlib.contextmanager
def parts_of(source):
    """The parts of an AnnData or of an .h5ad file's or zarr store's path, or None for anything else."""
    if type(source).__name__ == "AnnData":
        yield MemoryParts(source, "AnnData")
        return
    if isinstance(source, (str, os.PathLike)) and is_zarr(Path(source), b""):
        yield ZarrParts(Path(source), open_zarr(Path(source)))
        return
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        yield None
        return
    try:
        f = open_h5(Path(source))
    except OSError:
        yield None
        return
    with f:
        if text_attr(f, "encoding-type") != "anndata":
            yield None
            return
        yield FileParts(Path(source), f)

