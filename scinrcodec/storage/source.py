"""Byte sources: where a reader's bytes come from, behind one small interface.

A reader never loads a whole file: it asks a source for byte ranges. Local files are memory-mapped
(the OS pages in what is touched), bytes in memory are used in place, any seekable binary file
object (a BytesIO, an open file) is read with positioned reads under a lock, and URLs are read by
batched range requests (storage.remote), for which readers announce their ranges with prefetch.
"""
from __future__ import annotations

import io
import mmap
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import FormatError, InvalidInputError


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(source) -> bool:
    """Whether `source` is a URL string for fsspec (file:// excepted: that is a local path)."""
    return isinstance(source, str) and bool(_URL.match(source)) and not source.startswith("file://")


class ByteSource:
    """A read-only byte range provider of known size."""

    size: int
    name: str
    batched = False  # whether reads gain from announcing their ranges to prefetch first

    def read(self, offset: int, length: int) -> memoryview:
        raise NotImplementedError

    def prefetch(self, ranges) -> None:
        """Hint that these (offset, length) ranges are read next: a remote source fetches them in
        one batch (storage.remote); local sources have no round trips to save."""

    def gather(self, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bytes of many ranges in one uint8 buffer, and each range's offset in it."""
        buffer = np.empty(int(lengths.sum()), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        for t in np.flatnonzero(lengths).tolist():
            buffer[starts[t]: starts[t] + lengths[t]] = np.frombuffer(self.read(int(offsets[t]), int(lengths[t])),
                                                                      dtype=np.uint8)
        return buffer, starts

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


def open_source(source, storage_options: dict | None = None) -> ByteSource:
    """A ByteSource for a path, a URL (s3://, gs://, http(s)://, any fsspec URL; storage_options
    go to fsspec), a bytes-like object, or a seekable binary file object."""
    if isinstance(source, ByteSource):
        return source
    if isinstance(source, str) and source.startswith("file://"):
        source = source[len("file://"):]
    elif isinstance(source, str) and is_url(source):
        from .remote import RemoteSource

        return RemoteSource(source, storage_options)
    if storage_options:
        raise InvalidInputError("storage_options apply to URLs only")
    if isinstance(source, (str, os.PathLike)):
        return MappedFileSource(Path(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return MemorySource(source)
    return FileObjectSource(source)
