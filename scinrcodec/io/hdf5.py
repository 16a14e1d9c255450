"""HDF5 helpers shared by the 10x .h5 and .h5ad readers (and whole-file storage): h5py errors as one
clear InvalidInputError, datasets checked for their shape and kind before use, and the sources that
read cells as slices of an HDF5 group (CSR/CSC arrays, or rows of a dense X); and the copying of
HDF5 trees with their exact types, attributes and creation properties, as skeletons whose large
datasets are left empty and filled back in later (how whole-file storage keeps a 10x file)."""
from __future__ import annotations

import contextlib
import errno
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InvalidInputError, SinrError
from ..limits import check_allocation, check_chunk
from ..progress import Progress, Shared
from .h5chunks import DatasetSlices, check_inflation
from .sources import (CANONICAL, CellBlock, RandomAccessSource, SourceSpec, check_shape, checked_pointers, decode_names,
                      one_line, validated_block)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
H5_CACHE_BYTES = 16 << 20  # HDF5 chunk cache: a slice re-read across chunk boundaries is not inflated twice
NAME_BATCH = 1 << 16  # cell names checked this many at a time
DENSE_READ_BYTES = 32 << 20  # rows of a dense X read at a time
NAME_OVERHEAD_BYTES = 80  # what a name read into Python costs besides its text (its bytes and str objects)


@contextlib.contextmanager
def h5_errors(what: str):
    """HDF5 and h5py failures on a damaged or unexpected file, as one clear error."""
    try:
        yield
    except SinrError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        raise InvalidInputError(f"{what}: unreadable HDF5 content ({one_line(exc)})") from exc


# errno of HDF5's "unable to lock file" where the file system has no working locks (NFS without a lock
# daemon, some parallel file systems): ENOLCK, ENOSYS, EOPNOTSUPP
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
_HELD = (errno.EAGAIN, errno.EWOULDBLOCK)  # the lock is another process's (it has the file open for writing)


def open_h5(path: Path):
    """An HDF5 file, read-only, with a chunk cache large enough that slices crossing chunk boundaries do not
    inflate a chunk twice; refused unless it holds its own data and chunks that can be inflated
    (check_self_contained, check_chunks). HDF5 locks the
    file as it opens it: where another process holds the lock (it has the file open for writing) that
    is said, not 'unreadable HDF5 content'; where the file system has no locks to take, every HDF5 input
    had failed so: it is read without one, as HDF5_USE_FILE_LOCKING=FALSE reads it."""
    import h5py

    try:
        f = h5py.File(path, "r", rdcc_nbytes=H5_CACHE_BYTES)
    except OSError as exc:
        if "unable to lock file" in str(exc):
            if exc.errno in _HELD:
                raise InvalidInputError(f"{path}: another process has it open for writing (it holds HDF5's lock "
                                        "on the file); read it once that process has closed it") from exc
            if exc.errno not in _NO_LOCKS:
                raise InvalidInputError(f"{path}: HDF5 could not lock it to read it ({one_line(exc)})") from exc
        elif "file locking flag values don't match" not in str(exc):
            raise
        # the file system has no locks, or (the flags differ) this process has the file open already, so read
        f = h5py.File(path, "r", rdcc_nbytes=H5_CACHE_BYTES, locking=False)
    try:
        check_self_contained(f, path)
    except BaseException:
        f.close()
        raise
    return f


def check_self_contained(f, path) -> None:
    """Refuse an HDF5 file that reaches outside itself: an external link, or a virtual dataset (whose
    data are other files' or mappings of this one). h5py follows them silently: a hostile input could
    pull any HDF5 file its reader can read into the .sinr, a virtual dataset whose source is missing
    reads as its fill value (counts that are in no file), and one mapping its own file crashed the
    process inside HDF5. Its own datasets' chunks are then checked (check_chunks)."""
    import h5py

    found: list[str] = []
    datasets = []

    def visit(name: str, link) -> bool | None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"{name} is an external link to {link.filename}")
        elif isinstance(link, h5py.HardLink):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                found.append(f"{name} is a virtual dataset")
            elif isinstance(obj, h5py.Dataset):
                datasets.append(obj)
        return True if found else None  # a value stops the walk (h5py loses an exception raised here)

    f.visititems_links(visit)
    if found:
        raise InvalidInputError(f"{path}: {found[0]}; .sinr reads only data the file holds itself")
    for ds in datasets:
        check_chunks(ds, path)


def check_chunks(ds, what) -> None:
    """Refuse a dataset whose chunk HDF5 cannot inflate within the memory free, or is far larger
    than the dataset (limits.check_chunk); HDF5 sizes a chunk's buffer by its type's size in the
    file, a variable-length item's too."""
    if ds.chunks is not None:
        check_chunk(ds.name, ds.chunks, ds.shape, ds.id.get_type().get_size(), what, "HDF5")


def checked_dataset(group, name: str, what: str, kinds: str, ndim: int = 1):
    """group[name] when it is a dataset of `ndim` dimensions whose dtype kind is one of `kinds`."""
    import h5py

    obj = group.get(name) if isinstance(group, h5py.Group) else None
    if not isinstance(obj, h5py.Dataset):
        raise InvalidInputError(f"{what}: has no {name!r} dataset where the format keeps it")
    kind = "S" if is_string_dataset(obj) else obj.dtype.kind
    if obj.ndim != ndim or kind not in kinds:
        raise InvalidInputError(f"{what}: {obj.name} is a {obj.ndim}-D {obj.dtype} dataset, not what the format "
                                "stores there")
    return obj


def is_string_dataset(obj) -> bool:
    """Whether obj is a dataset of strings, fixed-length or variable."""
    import h5py

    return isinstance(obj, h5py.Dataset) and (obj.dtype.kind == "S" or h5py.check_string_dtype(obj.dtype) is not None)


def string_dataset(group, name: str, n: int, what: str) -> list[str]:
    """A 1-D dataset of `n` names, checked to hold exactly `n` valid UTF-8 names."""
    ds = checked_dataset(group, name, what, "S")
    if ds.shape[0] != n:
        raise InvalidInputError(f"{what}: {ds.name} holds {ds.shape[0]:,} names for {n:,} entries")
    check_name_read(ds, ds.shape[0], what)
    return decode_names(ds[:], f"{what} {ds.name}")


def check_name_read(ds, count: int, what: str) -> None:
    """Refuse to read `count` names of a string dataset where their type's width (a fixed-length
    type pads every name to it) would take more memory than is free: 30 names of a 100 MB type had
    been read whole before any name was measured."""
    check_allocation(count * (ds.dtype.itemsize + NAME_OVERHEAD_BYTES), f"{what}: reading {count:,} names of "
                                                                        f"{ds.name} ({ds.dtype.itemsize:,} bytes each)")


def _datasets(obj) -> list:
    """A dataset, or every dataset under a group."""
    import h5py

    datasets = [obj] if isinstance(obj, h5py.Dataset) else []
    if isinstance(obj, h5py.Group):
        obj.visititems(lambda _, member: datasets.append(member) if isinstance(member, h5py.Dataset) else None)
    return datasets


def _declared_bytes(datasets: list) -> int:
    """Bytes that reading the datasets takes by the shapes and types they declare (metadata only,
    nothing read): items x their size, a string's Python object (NAME_OVERHEAD_BYTES) besides; a
    variable-length string's text is the file's own bytes."""
    return sum((ds.size or 0) * (ds.dtype.itemsize + (NAME_OVERHEAD_BYTES if is_string_dataset(ds) else 0))
               for ds in datasets)


def check_declared(obj, what: str) -> None:
    """Refuse to read `obj` whole (as anndata's read_elem does) where its _declared_bytes exceed the
    memory free (a 26 kB .h5ad's obs column declaring 2**28 items took 2.2 GB to read), or where a
    chunk inflates to more than it declares (h5chunks.check_inflation)."""
    datasets = _datasets(obj)
    check_allocation(_declared_bytes(datasets), what)
    for ds in datasets:
        check_inflation(ds, what)


class H5Cells(RandomAccessSource):
    """Cells of an HDF5 file, with cell names read per block from one string dataset (or given as a
    list, where the file encodes them otherwise: an .h5ad's categorical obs index)."""

    path: Path
    _names: str | list[str] | None = None

    def _check_cell_names(self, f, names: str | list[str] | None) -> None:
        self._names = names
        if names is None:
            return
        if isinstance(names, list):
            if len(names) != self.shape[1]:
                raise InvalidInputError(f"{self.description}: {len(names):,} cell names for {self.shape[1]:,} cells")
            return
        ds = checked_dataset(f, names, self.description, "S")
        check_name_read(ds, min(ds.shape[0], NAME_BATCH), self.description)
        if ds.shape[0] != self.shape[1]:
            raise InvalidInputError(f"{self.description}: {ds.shape[0]:,} cell names for {self.shape[1]:,} cells")
        for start in range(0, self.shape[1], NAME_BATCH):
            decode_names(ds[start: start + NAME_BATCH], f"{self.description} cell names")

    @property
    def has_cell_names(self) -> bool:
        return self._names is not None

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """Names of cells start..stop-1, read from the file (None when it has none)."""
        if self._names is None:
            return None
        self._check_range(start, stop)
        if isinstance(self._names, list):
            return self._names[start:stop]
        with h5_errors(self.description), open_h5(self.path) as f:
            return decode_names(f[self._names][start:stop], f"{self.description} cell names")

    def block(self, start: int, stop: int) -> CellBlock:
        """Cells start..stop-1, the file opened for this read only."""
        self._check_range(start, stop)
        with h5_errors(self.description), open_h5(self.path) as f:
            return self._reader(f)(start, stop)

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """Every cell in blocks, through one open file."""
        with h5_errors(self.description), open_h5(self.path) as f:
            read = self._reader(f)
            for start in range(0, self.shape[1], cells_per_block):
                yield read(start, min(start + cells_per_block, self.shape[1]))

    def _reader(self, f) -> Callable[[int, int], CellBlock]:
        """What reads cells start..stop-1 of the open file f (consecutive blocks share its state)."""
        raise NotImplementedError


class CompressedH5Source(H5Cells):
    """Cells as slices of one HDF5 group's data/indices/indptr: a 10x .h5 matrix (CSC, genes x
    cells) or an .h5ad X in CSR (cells x genes): the same three arrays."""

    _canonical = False  # require_canonical

    def __init__(self, f, path: Path, group: str, shape: tuple[int, int], *, cell_names: str | None,
                 gene_ids=None, gene_names=None, feature_types=None, spec: SourceSpec, description: str) -> None:
        self.path, self.description, self.paths, self._spec = path, description, (str(path),), spec
        self.shape = shape
        self.gene_ids, self.gene_names, self.feature_types = gene_ids, gene_names, feature_types
        self._group = group
        g = f[group]
        data = checked_dataset(g, "data", description, "biuf")
        indices = checked_dataset(g, "indices", description, "iu")
        indptr = checked_dataset(g, "indptr", description, "iu")
        if indptr.shape[0] != shape[1] + 1:
            raise InvalidInputError(f"{description}: {indptr.name} holds {indptr.shape[0]:,} index pointers for "
                                    f"{shape[1]:,} cells")
        if indices.shape[0] != data.shape[0]:
            raise InvalidInputError(f"{description}: {indices.shape[0]:,} indices for {data.shape[0]:,} values")
        first, last = int(indptr[0]), int(indptr[-1])
        if first != 0 or last != data.shape[0]:
            raise InvalidInputError(f"{description}: index pointers run from {first:,} to {last:,}, not from 0 to "
                                    f"the {data.shape[0]:,} stored values")
        self.nnz = int(data.shape[0])
        self._check_cell_names(f, cell_names)

    def spec(self) -> SourceSpec:
        """How to open this source again in another process."""
        return self._spec

    def _reader(self, f) -> Callable[[int, int], CellBlock]:
        g = f[self._group]
        indices, data = DatasetSlices(g["indices"], self.description), DatasetSlices(g["data"], self.description)
        return partial(self._read, g, indices, data)

    def require_canonical(self) -> None:
        """Refuse, from now on and in every process its spec opens it again, a block whose arrays are
        not canonical CSC (stored zeros, genes out of order): for a whole 10x file (validated_block)."""
        self._canonical = True
        self._spec = SourceSpec(self._spec.kind, {**self._spec.args, CANONICAL: True})

    def _read(self, g, indices: DatasetSlices, data: DatasetSlices, start: int, stop: int) -> CellBlock:
        ptr = checked_pointers(g["indptr"][start: stop + 1], self.nnz, self.shape[0],
                               f"{self.description} (cells {start:,}..{stop - 1:,})")
        lo, hi = int(ptr[0]), int(ptr[-1])
        return validated_block(start, ptr - lo, indices.read(lo, hi), data.read(lo, hi), self.shape[0],
                               self.description, canonical=self._canonical)


class DenseH5Source(H5Cells):
    """An .h5ad X stored dense (cells x genes): a block reads its rows, DENSE_READ_BYTES at a time
    (one row at least: _h5ad_source refuses longer rows), and keeps their nonzeros."""

    def __init__(self, f, path: Path, dataset: str, *, cell_names: str | None, gene_ids=None, gene_names=None,
                 feature_types=None, spec: SourceSpec, description: str) -> None:
        self.path, self.description, self.paths, self._spec = path, description, (str(path),), spec
        self._dataset = dataset
        ds = checked_dataset(f, dataset, description, "biuf", ndim=2)
        self.shape = check_shape((ds.shape[1], ds.shape[0]), description)
        self.gene_ids, self.gene_names, self.feature_types = gene_ids, gene_names, feature_types
        self._check_cell_names(f, cell_names)

    def spec(self) -> SourceSpec:
        """How to open this source again in another process."""
        return self._spec

    def _reader(self, f) -> Callable[[int, int], CellBlock]:
        return partial(self._read, f[self._dataset])

    def _read(self, ds, start: int, stop: int) -> CellBlock:
        step = max(1, DENSE_READ_BYTES // max(1, self.shape[0] * ds.dtype.itemsize))
        cells, genes, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, ds.dtype)]
        for first in range(start, stop, step):
            rows = ds[first: min(first + step, stop)]
            cell, gene = np.nonzero(rows)
            cells.append(cell + (first - start))
            genes.append(gene)
            values.append(rows[cell, gene])
        cells = np.concatenate(cells)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cells, minlength=stop - start))])
        return validated_block(start, indptr, np.concatenate(genes), np.concatenate(values), self.shape[0],
                               self.description)


def text_attr(obj, name: str) -> str | None:
    """An attribute as text (bytes decoded), or None when it is absent or not text: anndata and 10x write both
    kinds."""
    value = obj.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


# ------------------------------------------------------- copying trees (10x images in whole files)

def copy_attrs(src, dst) -> None:
    """Attributes with their exact HDF5 types and shapes (h5py would otherwise pick its own)."""
    for name in src.attrs:
        attr = src.attrs.get_id(name)
        dst.attrs.create(name, src.attrs[name], shape=attr.shape, dtype=attr.dtype)


def members(src, dst):
    """Copy a group's attributes and its soft and external links to dst; yield its other members
    as (name, object) for the caller to copy its own way."""
    import h5py

    copy_attrs(src, dst)
    for key in src:
        link = src.get(key, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            dst[key] = link
        else:
            yield key, src[key]


def untimed(plist):
    """A creation property list that records no creation time: an image built twice from the same
    file is the same bytes (Cell Ranger's datasets track times, and their copies would stamp now)."""
    plist.set_obj_track_times(False)
    return plist


def copy_skeleton(src, dst, skeletons: set[str]) -> None:
    """Copy a group's attributes and members; datasets in `skeletons` become empty datasets with
    the same type, creation properties (chunks, filters) and attributes."""
    import h5py

    for key, obj in members(src, dst):
        if obj.name.lstrip("/") in skeletons:
            space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED if obj.chunks else 0,))
            made = h5py.h5d.create(dst.id, key.encode(), obj.id.get_type(), space, dcpl=untimed(obj.id.get_create_plist()))
            copy_attrs(obj, h5py.Dataset(made))
        elif isinstance(obj, h5py.Group) and any(s.startswith(obj.name.lstrip("/") + "/") for s in skeletons):
            copy_skeleton(obj, dst.create_group(key), skeletons)
        else:
            src.copy(obj, dst, name=key)


def write_like(obj, out, key: str, data, resizable: bool, progress: Progress | Shared | None = None,
               dtype: np.dtype | None = None) -> None:
    """Write `data` (1-D) as dataset `key` of `out` in the type, creation properties (filters) and
    attributes of dataset `obj`, of its length, fixed or resizable; a fixed length shorter than
    obj's chunks gets chunks of that length (HDF5 refuses chunks past a fixed dimension: a subset's
    Cell Ranger features, written as one chunk each); an array's items counted on `progress`; in
    `dtype` instead of obj's type where given."""
    import h5py

    n = len(data)
    dcpl = untimed(obj.id.get_create_plist())
    if dcpl.get_layout() == h5py.h5d.CHUNKED and not resizable and dcpl.get_chunk()[0] > n:
        if n:
            dcpl.set_chunk((n,))
        else:
            resizable = True  # no chunk fits a fixed length of 0
    space = h5py.h5s.create_simple((n,), (h5py.h5s.UNLIMITED if resizable else n,))
    kind = obj.id.get_type() if dtype is None else h5py.h5t.py_create(np.dtype(dtype))
    made = h5py.Dataset(h5py.h5d.create(out.id, key.encode(), kind, space, dcpl=dcpl))
    if isinstance(data, np.ndarray):
        write_converted(made, data, progress)
    elif n:
        made[...] = typed_values(data, obj.dtype)
    copy_attrs(obj, made)


CONVERTED_SLICE = 1 << 22  # values converted to a dataset's type at a time (32 MB of int64)


def write_converted(dataset, values: np.ndarray, progress: Progress | Shared | None = None) -> None:
    """Write 1-D `values` into a 1-D dataset of their length, in the dataset's type, a slice at a
    time (whole chunks of it): the converted copy is a slice's, not the array's (a 6e7-nonzero
    matrix's int32 indices as a 10x file's int64 had taken 480 MB more); each slice's items counted
    on `progress` once written."""
    step = CONVERTED_SLICE
    if dataset.chunks:
        step = max(1, step // dataset.chunks[0]) * dataset.chunks[0]
    for start in range(0, values.size, step):
        dataset[start: start + step] = values[start: start + step].astype(dataset.dtype, copy=False)
        if progress is not None:
            progress.update(min(step, values.size - start))


def fill_skeleton(skeleton, out, fills: dict[str, tuple[str, bool]], values: dict[str, np.ndarray | list[str]],
                  counted: dict[str, Shared] | None = None, types: dict[str, np.dtype] | None = None) -> None:
    """Copy an image back, writing each skeleton dataset with its values in its own type (or the one
    `types` gives its fill), the items of the values `counted` names counted on its Shared."""
    import h5py

    counted, types = counted or {}, types or {}
    for key, obj in members(skeleton, out):
        path = obj.name.lstrip("/")
        if path in fills:
            fill, resizable = fills[path]
            write_like(obj, out, key, values[fill], resizable, counted.get(fill), types.get(fill))
        elif isinstance(obj, h5py.Group) and any(f.startswith(path + "/") for f in fills):
            fill_skeleton(obj, out.create_group(key), fills, values, counted, types)
        else:
            skeleton.copy(obj, out, name=key)


def typed_values(values, dtype: np.dtype) -> np.ndarray:
    """Values in a dataset's type: names as fixed-length bytes or variable-length text."""
    import h5py

    if isinstance(values, np.ndarray):
        return values.astype(dtype, copy=False)
    if dtype.kind == "S":
        return np.array([v.encode("utf-8") for v in values], dtype=dtype)
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.encoding == "ascii":
        return np.array([v.encode("utf-8") for v in values], dtype=object)
    return np.array(values, dtype=object)

