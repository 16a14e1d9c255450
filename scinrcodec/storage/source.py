"""Byte sources: where a reader's bytes come from, behind one small interface.

A reader never loads a whole file: it asks a source for byte ranges. Local files are read with
positioned reads (never memory-mapped: a map dies of SIGBUS when another process truncates or
rewrites the file), bytes in memory are used in place, any seekable binary file object (an fsspec
file, a BytesIO) is read with positioned reads under a lock, and URLs are read by batched range
requests (storage.remote), for which readers announce their ranges with prefetch.
"""
from __future__ import annotations

import io
import os
import stat
import threading
import weakref
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import _native
from ..errors import FileChangedError, FormatError, InvalidInputError


GATHER_GAP = 1 << 16  # ranges this close are read at once: copying the gap costs less than a read
_LOCKS: weakref.WeakSet = weakref.WeakSet()  # every lock fork_safe_lock made, freed in a forked child
_DESCRIPTORS: weakref.WeakSet = weakref.WeakSet()  # every LocalFileSource's descriptor: none in use in a forked child


def fork_safe_lock() -> threading.Lock:
    """A lock that a forked child (a torch DataLoader's workers, a fork Pool's) finds free: the parent's
    thread that held it as the process forked (amid a summary pass over the matrix, or loading its
    gene tables) is not there to release it, and the child's first use had waited forever."""
    lock = threading.Lock()
    _LOCKS.add(lock)
    return lock


def _free_locks() -> None:
    for lock in list(_LOCKS):
        lock._at_fork_reinit()  # what threading and concurrent.futures do with their own locks at a fork


def _forget_reads() -> None:
    """In a forked child no read is under way: one a parent's thread had begun as the process forked
    is not here to end, and a close() in the child had left the file's descriptor open."""
    for descriptor in list(_DESCRIPTORS):
        descriptor.users = 0
        if descriptor.retired:
            descriptor.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_locks)
    os.register_at_fork(after_in_child=_forget_reads)


class ByteSource:
    """A read-only byte range provider of known size."""

    size: int
    name: str
    batched = False  # whether reads gain from announcing their ranges first (prefetch; a remote source's stream)
    in_order = False  # whether many reads should come at once in file order (a file object's read-ahead)

    def read(self, offset: int, length: int) -> memoryview:
        """Exactly `length` bytes at `offset`, or an error: every source checks the range first."""
        raise NotImplementedError

    def prefetch(self, ranges) -> None:
        """Hint that these (offset, length) ranges are read next: a remote source fetches them in
        one batch (storage.remote); local sources have no round trips to save."""

    def ready_in_order(self, ranges) -> Iterator[int]:
        """The position of each (offset, length) range in the list, in order, once its bytes can be read
        without waiting (work on chunk after chunk, as a copy or a check of every chunk does): at once
        here; a remote source fetches them a window at a time first (storage.remote), so many chunks
        cost a few round trips, not one each."""
        yield from range(len(ranges))

    def array(self) -> np.ndarray | None:
        """The whole source as a uint8 array when it is in memory (bytes), else None."""
        return None

    def read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill `buffer` with the bytes at `offset` (sources that can read in place override it)."""
        buffer[:] = self.read(offset, len(buffer))

    def gather(self, offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bytes of many ranges in one buffer, and each range's offset in it. Ranges less than
        GATHER_GAP apart are read together, so the tiles of a chunk cost a few reads, not one each."""
        offsets, lengths = np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)
        if offsets.size == 0:
            return np.zeros(0, np.uint8), offsets
        order = np.argsort(offsets, kind="stable")
        starts, ends = offsets[order], offsets[order] + lengths[order]
        reach = np.maximum.accumulate(ends)
        new_run = np.concatenate([[True], starts[1:] > reach[:-1] + GATHER_GAP])
        run = np.cumsum(new_run) - 1
        run_start = starts[new_run]
        run_end = np.maximum.reduceat(ends, np.flatnonzero(new_run))
        run_at = np.concatenate([[0], np.cumsum(run_end - run_start)])
        buffer = np.empty(int(run_at[-1]), np.uint8)
        self._read_runs(buffer, run_at, run_start)
        placed = np.empty(offsets.size, np.int64)
        placed[order] = run_at[run] + starts - run_start[run]
        return buffer, placed

    def _read_runs(self, buffer: np.ndarray, run_at: np.ndarray, run_start: np.ndarray) -> None:
        """Fill buffer[run_at[r]: run_at[r + 1]] with the bytes at run_start[r], for every run r."""
        view, at = memoryview(buffer), run_at.tolist()
        for r, start in enumerate(run_start.tolist()):
            self.read_into(view[at[r]: at[r + 1]], start)

    def close(self) -> None:
        """Release the source (views of bytes in memory stay valid until collected)."""

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
        """A view of the bytes (no copy)."""
        self._check(offset, length)
        return self._view[offset: offset + length]

    def array(self) -> np.ndarray:
        """The bytes as one uint8 array, so the native decoder reads tiles in place."""
        return self._array


# Why an input that is not a regular file is refused: a pipe, a FIFO or a device is read once, or never.
NOT_A_FILE = "not a regular file (a pipe or a device); save it to a file first"


def _open_file(path) -> int:
    """A read-only descriptor of `path`, opened without waiting: a FIFO's open would wait for a writer
    (every reading command hung on one), so the descriptor comes with O_NONBLOCK, taken off again once
    fstat says a regular file or a folder (the caller refuses a folder); anything else is refused."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | nonblock)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InvalidInputError(f"{path}: {NOT_A_FILE}")
        if nonblock:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~nonblock)
    except BaseException:
        os.close(fd)
        raise
    return fd


class LocalFileSource(ByteSource):
    """A local file, read with positioned reads (os.pread), which any number of threads may issue at
    once. Another process may rewrite, truncate or replace the file while it is open: replacing it
    (a rename over its path) changes nothing here, the open file is still read; a change of its
    bytes in place is noticed, as a change of its size or modification time after each read, and
    raises FileChangedError, so a read never returns bytes of two different files. (One change it
    cannot see: a rewrite to the same size within the file system's timestamp granularity of the
    write before it; then only the checksums a read verifies catch it.) close() releases the
    descriptor; a read after it (a lazy array computed after its `with` block) opens the path
    again and goes on only if it finds the very same file, unchanged."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._lock = fork_safe_lock()
        try:
            fd = _open_file(path)
        except IsADirectoryError as exc:
            raise FormatError(f"{path}: is a folder, not a .sinr file") from exc
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        descriptor = _Descriptor(self, fd)
        # the file from any folder, for a read after close() and for another process (a pickled matrix):
        # the folder it was opened from, joined now (the process may change folders since), not abspath
        # ('..' after a link is not cut as text)
        self.path = os.fspath(path) if os.path.isabs(path) else os.path.join(os.getcwd(), path)
        try:
            status = os.fstat(fd)
        except OSError as exc:
            descriptor.retire()
            raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if stat.S_ISDIR(status.st_mode):
            descriptor.retire()
            raise FormatError(f"{path}: is a folder, not a .sinr file")
        self._descriptor: _Descriptor | None = descriptor
        self._stamp = _stamp(status)
        self.size = status.st_size
        self._on_close: list[weakref.WeakMethod] = []

    def read(self, offset: int, length: int) -> memoryview:
        """Bytes by pread; a file another process rewrote or truncated meanwhile is a FileChangedError."""
        self._check(offset, length)
        descriptor = self._acquire()
        try:
            try:
                data = os.pread(descriptor.fd, length, offset)
            except OSError as exc:
                raise InvalidInputError(f"{self.name}: cannot read ({exc.strerror or exc})") from exc
            if len(data) < length:  # the file shrank (or one call returned less): read what is left in place
                buffer = bytearray(length)
                buffer[: len(data)] = data
                self._read_into(descriptor, memoryview(buffer)[len(data):], offset + len(data))
                return memoryview(buffer)
            self._unchanged(descriptor, True)
            return memoryview(data)
        finally:
            self._release(descriptor)

    def read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill `buffer` with the bytes at `offset` (no intermediate copy), or fail as read() does."""
        self._check(offset, len(buffer))
        descriptor = self._acquire()
        try:
            self._read_into(descriptor, buffer, offset)
        finally:
            self._release(descriptor)

    def _read_runs(self, buffer: np.ndarray, run_at: np.ndarray, run_start: np.ndarray) -> None:
        """The runs of a gather on one descriptor in one native call, the file checked once after the
        last (a change before it shows there as after any of the reads): a gene of a 1e9-nonzero
        file reads 455 runs, which a Python call and check each made 1.4 ms."""
        lengths = np.diff(run_at)
        outside = np.flatnonzero((run_start < 0) | (run_start + lengths > self.size))
        if outside.size:
            self._check(int(run_start[outside[0]]), int(lengths[outside[0]]))  # raises, naming the first
        descriptor = self._acquire()
        try:
            status = _native.pread_runs(descriptor.fd, buffer, run_at, run_start)
            if status > 0:
                raise InvalidInputError(f"{self.name}: cannot read ({os.strerror(status)})")
            self._unchanged(descriptor, status == 0)
        finally:
            self._release(descriptor)

    def _read_into(self, descriptor: "_Descriptor", buffer: memoryview, offset: int) -> None:
        self._unchanged(descriptor, self._fill(descriptor, buffer, offset))

    def _fill(self, descriptor: "_Descriptor", buffer: memoryview, offset: int) -> bool:
        """Read buffer's bytes at offset; whether they were all there."""
        done = 0
        try:
            while done < len(buffer):
                got = os.preadv(descriptor.fd, [buffer[done:]], offset + done)
                if got <= 0:
                    break
                done += got
        except OSError as exc:
            raise InvalidInputError(f"{self.name}: cannot read ({exc.strerror or exc})") from exc
        return done == len(buffer)

    def duplicate(self, on_close) -> tuple[int, tuple[int, int, int, int]] | None:
        """A duplicate of the open descriptor and the file version it must still be (size, mtime_ns,
        inode, device), for a native reader that then owns it; None once closed. on_close (a bound
        method, held weakly) is called by close(): the owner releases the duplicate then, so that
        close() releases every descriptor of the file."""
        descriptor = self._acquire_open()
        if descriptor is None:
            return None
        try:
            fd = os.dup(descriptor.fd)
            self._on_close.append(weakref.WeakMethod(on_close))
            return fd, self._stamp
        finally:
            self._release(descriptor)

    def _acquire_open(self) -> "_Descriptor | None":
        with self._lock:
            descriptor = self._descriptor
            if descriptor is not None:
                descriptor.users += 1
            return descriptor

    def _unchanged(self, descriptor: "_Descriptor", complete: bool) -> None:
        """Raise FileChangedError when the file is no longer the one opened (or a read fell short)."""
        try:
            same = _stamp(os.fstat(descriptor.fd)) == self._stamp
        except OSError:
            same = False
        if not (same and complete):
            raise FileChangedError(f"{self.name}: the file changed while open (another process rewrote or truncated "
                                   "it); open it again")

    def _acquire(self) -> "_Descriptor":
        """The open descriptor, counted as in use until _release (close() waits for none: it retires
        the descriptor, and the last read using it closes it). After close(), the file is opened
        again if it is the same, unchanged."""
        with self._lock:
            descriptor = self._descriptor
            if descriptor is None:
                try:
                    fd = _open_file(self.path)
                except (OSError, InvalidInputError) as exc:  # the path now names a FIFO, say
                    raise FileChangedError(f"{self.name}: read after close, and the file cannot be opened again "
                                           f"({getattr(exc, 'strerror', None) or exc})") from exc
                descriptor = _Descriptor(self, fd)
                if _stamp(os.fstat(fd)) != self._stamp:
                    descriptor.retire()
                    raise FileChangedError(f"{self.name}: read after close, and the file has changed since it was "
                                           "opened; open it again")
                self._descriptor = descriptor
            descriptor.users += 1
            return descriptor

    def _release(self, descriptor: "_Descriptor") -> None:
        with self._lock:
            descriptor.users -= 1
            if descriptor.retired and descriptor.users == 0:
                descriptor.close()

    def close(self) -> None:
        """Release the descriptor (at once, or when the reads using it end)."""
        with self._lock:
            descriptor, self._descriptor = self._descriptor, None
            hooks, self._on_close = self._on_close, []
            if descriptor is not None:
                descriptor.retired = True
                if descriptor.users == 0:
                    descriptor.close()
        for hook in hooks:
            method = hook()
            if method is not None:
                method()


class _Descriptor:
    """One open descriptor of a LocalFileSource and the reads using it: closing waits for them, so a
    close() racing a read never closes (or lets the system reuse) a descriptor a read still uses."""

    def __init__(self, owner: LocalFileSource, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.retired = False
        self._closer = weakref.finalize(owner, os.close, fd)  # close() or collection closes it, once
        _DESCRIPTORS.add(self)

    def retire(self) -> None:
        """Close a descriptor no read has used."""
        self.retired = True
        self.close()

    def close(self) -> None:
        self._closer()


def _stamp(status: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies one version of a file: its size and modification time, inode and device."""
    return status.st_size, status.st_mtime_ns, status.st_ino, status.st_dev


class FileObjectSource(ByteSource):
    """A seekable binary file object (fsspec, BytesIO, an open file): positioned reads under a lock,
    in the process that opened it only, except an io.BytesIO, which a fork copies. A forked child (a
    torch DataLoader's workers) shares an open file's position with its parent, so their seeks and
    reads interleave: a child's cells had come back wrong, or the file 'corrupt', as another process
    moved the position between the two."""

    in_order = True

    def __init__(self, fileobj, name: str | None = None) -> None:
        if not hasattr(fileobj, "read") or not hasattr(fileobj, "seek"):
            raise InvalidInputError("a .sinr source must be a path, bytes or a seekable binary file object")
        if isinstance(fileobj, io.TextIOBase):
            raise InvalidInputError(f"{getattr(fileobj, 'name', 'file object')}: opened in text mode; open it in "
                                    "binary mode ('rb')")
        self._file = fileobj
        self._lock = fork_safe_lock()
        self._pid = None if isinstance(fileobj, io.BytesIO) else os.getpid()  # a process's own memory: any may read
        self.name = name or str(getattr(fileobj, "path", None) or getattr(fileobj, "name", "<file object>"))
        try:
            self.size = int(fileobj.seek(0, io.SEEK_END))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{self.name}: file object is not seekable ({exc})") from exc

    def read(self, offset: int, length: int) -> memoryview:
        """Bytes by seek and read under a lock (a file object has one position); a short read is a FormatError."""
        self._check(offset, length)
        if self._pid is not None and os.getpid() != self._pid:
            raise InvalidInputError(f"{self.name}: a .sinr matrix read from a file object cannot be read in a "
                                    "forked process (it shares the file's position with its parent); open it by "
                                    "path, URL or from bytes")
        with self._lock:
            try:
                self._file.seek(offset)
                data = self._file.read(length)
            except (ValueError, OSError) as exc:  # ValueError: io's for a closed file object
                raise InvalidInputError(f"{self.name}: cannot be read ({exc}); keep the file object open while "
                                        "the matrix is read") from exc
        if not isinstance(data, (bytes, bytearray)) or len(data) != length:
            raise FormatError(f"{self.name}: short read at {offset} (the file changed or is truncated)")
        return memoryview(data)
