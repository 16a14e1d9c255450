"""Byte sources: where a reader's bytes come from, behind one small interface.

A reader never loads a whole file: it asks a source for byte ranges. Local files are memory-mapped
(the OS pages in what is touched), bytes in memory are used in place, and any seekable binary
file object (an fsspec file, a BytesIO) is read with positioned reads under a lock.
"""
from __future__ import annotations

import io
import mmap
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import FormatError, InvalidInputError


class ByteSource:
    """A read-only byte range provider of known size."""

    size: int
    name: str

    def read(self, offset: int, length: int) -> memoryview:
        raise NotImplementedError

    def array(self) -> np.ndarray | None:
        """The whole source as a uint8 array when it is addressable in memory (mmap, bytes)."""
        return None

    def close(self) -> None:
        """Release the source (open views stay valid for mmap and bytes until collected)."""

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FormatError(f"{self.name}: read of {length} bytes at {offset} lies outside the file")


class MemorySource(ByteSource):
    """Bytes, a bytearray or a memoryview already in memory."""

    def __init__(self, data, name: str = "<bytes>") -> None:
        self._view = memoryview(data).cast("B")
        self._array = np.frombuffer(self._view, dtype=np.uint8)
        self.size = len(self._view)
        self.name = name

    def read(self, offset: int, length: int) -> memoryview:
        self._check(offset, length)
        return self._view[offset: offset + length]

    def array(self) -> np.ndarray:
        return self._array


class MappedFileSource(MemorySource):
    """A local file, memory-mapped read-only (an empty file cannot be mapped and is read as bytes).
    The map is released when the last array viewing it is collected."""

    def __init__(self, path: Path) -> None:
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except IsADirectoryError as exc:
            raise FormatError(f"{path}: is a folder, not a .sinr file") from exc
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        super().__init__(self._map if self._map is not None else b"", name=str(path))


class FileObjectSource(ByteSource):
    """A seekable binary file object (fsspec, BytesIO, an open file): positioned reads under a lock."""

    def __init__(self, fileobj, name: str | None = None) -> None:
        if not hasattr(fileobj, "read") or not hasattr(fileobj, "seek"):
            raise InvalidInputError("a .sinr source must be a path, bytes or a seekable binary file object")
        self._file = fileobj
        self._lock = threading.Lock()
        self.name = name or str(getattr(fileobj, "path", None) or getattr(fileobj, "name", "<file object>"))
        try:
            self.size = int(fileobj.seek(0, io.SEEK_END))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{self.name}: file object is not seekable ({exc})") from exc

    def read(self, offset: int, length: int) -> memoryview:
        self._check(offset, length)
        with self._lock:
            self._file.seek(offset)
            data = self._file.read(length)
        if not isinstance(data, (bytes, bytearray)) or len(data) != length:
            raise FormatError(f"{self.name}: short read at {offset} (the file changed or is truncated)")
        return memoryview(data)


def open_source(source) -> ByteSource:
    """A ByteSource for a path, bytes-like object, or seekable binary file object."""
    if isinstance(source, ByteSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        return MappedFileSource(Path(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return MemorySource(source)
    return FileObjectSource(source)
