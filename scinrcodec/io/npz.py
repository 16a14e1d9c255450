"""scipy .npz (scipy.sparse.save_npz): read whole, since a compressed zip cannot be sliced, once each
array's declared size has been checked against the archive; written as save_npz writes it."""
from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .matrix import CountMatrix
from .sources import ScipySource, check_shape, checked_compressed, checked_coordinates, one_line, path_spec


_NPZ_ARRAYS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
               "coo": ("data", "row", "col")}


def _npz_array(archive: zipfile.ZipFile, name: str, what: str) -> np.ndarray:
    """One array of an .npz archive, its header checked against the archive's size for it first."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise InvalidInputError(f"{what}: holds no {name!r} array") from None
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh, max_header_size=1 << 16)
        if dtype.hasobject or dtype.itemsize == 0:
            raise InvalidInputError(f"{what}: array {name!r} holds {dtype} items, not numbers")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if size != info.file_size - fh.tell():
            raise InvalidInputError(f"{what}: array {name!r} declares {count:,} items of {dtype} but holds "
                                    f"{info.file_size - fh.tell():,} bytes")
        array = np.empty(count, dtype)
        view = memoryview(array).cast("B")
        done = 0
        while done < size:
            got = fh.readinto(view[done:])
            if not got:
                raise InvalidInputError(f"{what}: array {name!r} ends early")
            done += got
        fh.read(1)  # reach the end of the member, where zipfile checks its CRC
    return array.reshape(shape, order="F" if fortran else "C")


def is_npz(path: Path, head: bytes) -> bool:
    """A zip archive, as save_npz writes."""
    return head.startswith(b"PK")


def read_npz(path: Path) -> ScipySource:
    """A scipy.sparse .npz (CSR, CSC or COO) of genes x cells."""
    what = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            kind = _npz_array(archive, "format", what)
            kind = kind.item().decode("ascii", "replace") if kind.dtype.kind == "S" else str(kind.item())
            if kind not in _NPZ_ARRAYS:
                raise InvalidInputError(f"{path}: holds a scipy '{kind}' matrix; save it as CSR, CSC or COO")
            shape = _npz_array(archive, "shape", what)
            if shape.shape != (2,) or shape.dtype.kind not in "iu":
                raise InvalidInputError(f"{path}: its shape is not two whole numbers")
            shape = check_shape(shape, what)
            data, first, second = (_npz_array(archive, name, what) for name in _NPZ_ARRAYS[kind])
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
