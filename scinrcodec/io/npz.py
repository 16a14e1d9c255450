"""scipy .npz (scipy.sparse.save_npz): read whole, since a compressed zip cannot be sliced, once each
array's declared size has been checked against the archive, the matrix the other arrays describe and
the memory free; written as save_npz writes it."""
from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..limits import check_allocation
from .matrix import CountMatrix
from .sources import ScipySource, check_shape, checked_compressed, checked_coordinates, one_line, path_spec
from .zarr_store import ROOT_METADATA


_NPZ_ARRAYS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
               "coo": ("data", "row", "col")}
_FORMAT_BYTES = 16  # the name of a scipy format: save_npz writes 'csr' as |S3, older scipy as <U3 (12 bytes)


@dataclass(frozen=True)
class _Member:
    """One .npy member of an .npz, as its header declares it (checked against the zip's size for it)."""
    name: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    def declares(self) -> str:
        return f"array {self.name!r} declares {self.count:,} items ({self.nbytes:,} bytes)"


def _array_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(fh, max_header_size=1 << 16)


def _npz_member(archive: zipfile.ZipFile, name: str, what: str) -> _Member:
    """One member's header, before any of its items is read: its items' size must be the zip's for it."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise InvalidInputError(f"{what}: holds no {name!r} array") from None
    with archive.open(info) as fh:
        shape, fortran, dtype = _array_header(fh)
        member = _Member(name, info, shape, fortran, dtype)
        if dtype.hasobject or dtype.itemsize == 0:
            raise InvalidInputError(f"{what}: array {name!r} holds {dtype} items, not numbers")
        if member.nbytes != info.file_size - fh.tell():
            raise InvalidInputError(f"{what}: array {name!r} declares {member.count:,} items of {dtype} but holds "
                                    f"{info.file_size - fh.tell():,} bytes")
    return member


def _expect(member: _Member, items: int, where: str, what: str, *, at_most: bool = False) -> None:
    """Refuse a member declaring more items than (or other than) the matrix the others describe, before
    it is inflated: a zip of 2 MB may declare 2 GiB of zeros."""
    if member.count > items or (member.count != items and not at_most):
        raise InvalidInputError(f"{what}: {member.declares()} where {where}")


def _npz_array(archive: zipfile.ZipFile, member: _Member, what: str) -> np.ndarray:
    """A member's items, read into one array of its declared size."""
    check_allocation(member.nbytes, f"{what}: array {member.name!r}")
    with archive.open(member.info) as fh:
        _array_header(fh)
        array = np.empty(member.count, member.dtype)
        view = memoryview(array).cast("B")
        done = 0
        while done < member.nbytes:
            got = fh.readinto(view[done:])
            if not got:
                raise InvalidInputError(f"{what}: array {member.name!r} ends early")
            done += got
        fh.read(1)  # reach the end of the member, where zipfile checks its CRC
    return array.reshape(member.shape, order="F" if member.fortran else "C")


def _matrix_arrays(archive: zipfile.ZipFile, kind: str, shape: tuple[int, int], what: str) -> list[np.ndarray]:
    """The values and coordinates of a CSR, CSC or COO matrix of `shape`, each member's declared size
    checked against the matrix the others describe, and their sum against the memory free, before
    any is read."""
    members = [_npz_member(archive, name, what) for name in _NPZ_ARRAYS[kind]]
    data, first, second = members
    cells = shape[0] * shape[1]
    _expect(data, cells, f"a {shape[0]:,} x {shape[1]:,} matrix holds at most {cells:,}", what, at_most=True)
    _expect(first, data.count, data.declares(), what)
    if kind == "coo":
        _expect(second, data.count, data.declares(), what)
    else:
        pointers = (shape[1] if kind == "csc" else shape[0]) + 1
        _expect(second, pointers, f"a {shape[0]:,} x {shape[1]:,} {kind.upper()} matrix has {pointers:,}", what)
    check_allocation(sum(m.nbytes for m in members), f"{what}: its {kind.upper()} matrix")
    if kind == "coo":
        return [_npz_array(archive, m, what) for m in members]
    indptr = _npz_array(archive, second, what)
    if indptr.dtype.kind not in "iu":
        raise InvalidInputError(f"{what}: array 'indptr' holds {indptr.dtype} items, not integers")
    end = int(indptr.max())
    _expect(data, end, f"its index pointers reach at most {end:,}", what, at_most=True)
    return [_npz_array(archive, data, what), _npz_array(archive, first, what), indptr]


def is_npz(path: Path, head: bytes) -> bool:
    """A zip archive, as save_npz writes."""
    return head.startswith(b"PK")


def _is_zipped_zarr(archive: zipfile.ZipFile) -> bool:
    """Whether a zip holds a zarr group's root metadata at its top or in its one folder (a .zarr.zip,
    which a zip archive's content, unlike its name, would have taken for a damaged .npz)."""
    return any(name.count("/") <= 1 and name.rsplit("/", 1)[-1] in ROOT_METADATA for name in archive.namelist())


def read_npz(path: Path) -> ScipySource:
    """A scipy.sparse .npz (CSR, CSC or COO) of genes x cells."""
    what = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if _is_zipped_zarr(archive):
                raise InvalidInputError(f"{path}: a zip of a zarr store, which sinr does not read; unzip it and "
                                        "encode the store's folder")
            kind = _npz_member(archive, "format", what)
            if kind.count != 1 or kind.nbytes > _FORMAT_BYTES:
                raise InvalidInputError(f"{path}: {kind.declares()} where a format name is one item of at most "
                                        f"{_FORMAT_BYTES} bytes")
            kind = _npz_array(archive, kind, what)
            kind = kind.item().decode("ascii", "replace") if kind.dtype.kind == "S" else str(kind.item())
            if kind not in _NPZ_ARRAYS:
                raise InvalidInputError(f"{path}: holds a scipy '{kind}' matrix; save it as CSR, CSC or COO")
            shape = _npz_member(archive, "shape", what)
            shape = _npz_array(archive, shape, what) if shape.count == 2 else None
            if shape is None or shape.shape != (2,) or shape.dtype.kind not in "iu":
                raise InvalidInputError(f"{path}: its shape is not two whole numbers")
            shape = check_shape(shape, what)
            data, first, second = _matrix_arrays(archive, kind, shape, what)
    except (OSError, EOFError, ValueError, TypeError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, RuntimeError) as exc:  # a damaged array header reaches Python's tokenizer
        raise InvalidInputError(f"{path}: unreadable scipy .npz file ({one_line(exc)})") from exc
    if kind == "coo":
        counts = checked_coordinates(data, first, second, shape=shape, what=what)
    else:
        counts = checked_compressed(data, first, second, shape=shape, by_column=kind == "csc", what=what)
    return ScipySource(counts, description=what, spec=path_spec(path), paths=(str(path),))


NPZ_VALUES = np.dtype(np.int64)  # the type of the values write_npz stores


def write_npz(path: Path, m: CountMatrix) -> None:
    """The counts as scipy.sparse.save_npz writes them: CSC (by cell), int64, each array a deflated .npy
    member of a zip. The zip is closed here, a failed write's too: numpy 1's savez (under save_npz) left
    it to the garbage collector, whose close of the closed output printed a traceback."""
    counts = sp.csc_matrix(m.counts, dtype=NPZ_VALUES)
    arrays = {"indices": counts.indices, "indptr": counts.indptr, "format": b"csc", "shape": counts.shape,
              "data": counts.data}
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
