"""Safe outputs: checked before any work, written to a temporary sibling, flushed to the disk
(fsync), renamed into place.

An existing output is replaced only with force, and that is checked twice: before any work, and
again by the rename itself (renameat2 with RENAME_NOREPLACE, or a hard link, which fail when the
name exists), so an output that another process wrote meanwhile is never replaced silently. A
file that is modified in place (append) is locked while it is (locked_file). An output that is
an input is refused; a folder
is replaced only when it holds nothing but the files the output itself writes, so a mistyped
path never deletes a user's folder; the renamed output gets the permissions the umask gives any
new file or folder (a temporary file's own 0600 would otherwise stay); on any failure or
interruption the temporary file or folder is removed.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import sys
import threading
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator

from ..errors import InvalidInputError, OutputError, OutputExistsError
from ..storage.urls import is_url


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def check_not_input(target: str | os.PathLike, inputs: Iterable, *, is_dir: bool = False) -> None:
    """Refuse an output that is one of the inputs (or, for a folder, holds one; or lies inside an input
    folder, whose files are the input)."""
    target = Path(target)
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)):
            continue
        source = Path(source)
        if _same_file(source, target) or source.resolve() == target.resolve():
            raise InvalidInputError(f"{target}: the output is the input; choose another output path")
        if is_dir and _inside(source, target):
            raise InvalidInputError(f"{target}: the output folder holds the input {source}; choose another output")
        if source.is_dir() and _inside(target, source):  # a 10x folder or a zarr store: the input is its files
            raise InvalidInputError(f"{target}: lies inside the input folder {source}, which is never changed; "
                                    "choose another output path")


def check_writable(target: str | os.PathLike, *, force: bool, inputs: Iterable = (), is_dir: bool = False,
                   folder_files: Collection[str] = ()) -> Path:
    """Fail before any work when the output exists (without force), is an input (or, for a folder,
    holds one), is a device, pipe or socket, is a folder where a file is expected or the reverse, is a folder
    holding other entries than `folder_files` (names of files, and of folders with a trailing '/'), or lies in a
    folder that is missing or not writable. Returns that folder."""
    if not isinstance(target, (str, os.PathLike)):
        raise InvalidInputError(f"the output must be a path, not {type(target).__name__}")
    if is_url(target):
        raise InvalidInputError(f"{target}: outputs are local files (URLs are read, not written): write one here and "
                                "upload it")
    target = Path(target)
    check_not_input(target, inputs, is_dir=is_dir)
    if target.exists() or target.is_symlink():
        if not force:
            raise OutputExistsError(f"{target}: already exists (use --force, or force=True in Python, to overwrite)")
        if target.exists() and not (target.is_file() or target.is_dir()):
            raise OutputError(f"{target}: is not a regular file (a device, pipe or socket); it is not replaced")
        if target.is_dir() and not target.is_symlink():
            if not is_dir:
                raise OutputError(f"{target}: is an existing folder; the output must be a file")
            others = sorted(p.name for p in target.iterdir() if _entry(p) not in folder_files)
            if others:
                raise OutputError(f"{target}: the folder holds {others[0]!r} and {len(others) - 1} other file(s) "
                                  "that are not this output's; it is not replaced")
        elif is_dir:
            raise OutputError(f"{target}: is a symbolic link; this output is a folder, which does not replace one"
                              if target.is_symlink() else f"{target}: is an existing file; this output is a folder")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{target}: {parent} is not a folder" if parent.exists()
                          else f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: folder {parent} is not writable ({why_not_writable(parent)})")
    return parent


def _entry(path: Path) -> str:
    """A folder's entry as folder_files names it: a file's name, a folder's with a trailing '/', ''
    for anything else."""
    return f"{path.name}/" if path.is_dir() and not path.is_symlink() else path.name if path.is_file() else ""


def why_not_writable(path: Path) -> str:
    """Why os.access refuses to let `path` be written: a read-only mount is no matter of the file's
    permissions, and an operator told 'permission denied' would look for it in the wrong place."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def _umask() -> int:
    """The process's umask, read without setting it where the system says it (Linux: /proc/self/status).
    os.umask reads it only by setting another for a moment, in which a file any other thread of the
    process made got that one's mode (0o644 under a umask of 0o077); it remains where nothing else tells."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Set by the CLI's SIGINT, SIGTERM and SIGHUP handler, which also raises KeyboardInterrupt: an interrupt raised
# where Python discards exceptions (h5py's weakref callbacks) must still keep the output from being renamed
# into place.
interrupted = threading.Event()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, force: bool, is_dir: bool = False, inputs: Iterable = (),
                folder_files: Collection[str] = (), mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; rename it over `target` only when the block succeeds,
    with permission bits `mode` (a file rewritten in place keeps its own), else the umask's."""
    target = Path(target)
    parent = check_writable(target, force=force, inputs=inputs, is_dir=is_dir, folder_files=folder_files)
    # named before it exists (64 random bits: no other's), so that an interrupt landing anywhere in its
    # creation still finds it to remove
    tmp = parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        try:
            if is_dir:
                os.mkdir(tmp, 0o700)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            tmp = None  # not made (or, EEXIST, another's): nothing to remove
            raise OutputError(f"{target}: cannot create a file in {parent} ({exc.strerror or exc})") from exc
        try:
            yield tmp
            if interrupted.is_set():
                raise KeyboardInterrupt
            for written in _tree(tmp) if is_dir else ():
                _sync(written, folder=written.is_dir())
            _sync(tmp)
            os.chmod(tmp, mode if mode is not None else (0o777 if is_dir else 0o666) & ~_umask())
            if not force:
                _rename_new(tmp, target, is_dir=is_dir)
            elif is_dir and target.is_dir():
                _replace_folder(tmp, target)
            else:
                os.replace(tmp, target)
            try:
                _sync(parent, folder=True)
            except KeyboardInterrupt:  # the output is in place and whole: a stop now is too late to undo it, and
                pass  # 'interrupted' (exit 130) would send a pipeline to run it again over its own output
        except FileExistsError as exc:
            raise OutputExistsError(f"{target}: appeared while this output was being written (another process wrote "
                                    "it); it is left as it is (use --force, or force=True in Python, to overwrite)") from exc
        except OSError as exc:
            raise OutputError(f"{target}: writing failed ({exc.strerror or exc})") from exc
    except BaseException:
        if tmp is not None and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _tree(folder: Path) -> Iterator[Path]:
    """Every file and folder under `folder`, each folder after what it holds (a zarr store nests them)."""
    for top, folders, files in os.walk(folder, topdown=False):
        yield from (Path(top, name) for name in sorted(files) + sorted(folders))


LOCK_NOTICE_SECONDS = 1.0  # how long locked_file waits for another holder before it calls `waiting`


def _sync(path: Path, *, folder: bool = False) -> None:
    """fsync `path`: the output's bytes on the disk before its name is (a crash of the machine after
    the rename, a node lost, had left the new name on an empty or partial file, a file that append
    rewrote among them, while the command had said it succeeded), and, for the `folder` holding it,
    the rename itself. A write error held back until now (NFS, a quota) raises here. A folder that
    cannot be opened or synced (some network file systems) is left to the file system."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# renameat2's errors where the kernel or file system lacks the flag asked for
_NOT_HERE = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM)


def load_renameat2():
    """libc's renameat2 (Linux, glibc 2.28 or newer), or None: a rename that refuses to replace."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


renameat2 = load_renameat2()  # None where the platform lacks it; the fallback is then used


def _rename_new(tmp: Path, target: Path, *, is_dir: bool) -> None:
    """Move `tmp` to `target` unless a file or folder exists there (FileExistsError), deciding at
    the moment of the rename: renameat2(RENAME_NOREPLACE) where the kernel and file system have it,
    else a hard link (a file) or an exclusive mkdir that claims the name (a folder)."""
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in _NOT_HERE:
            raise (FileExistsError if code == errno.EEXIST else OSError)(code, os.strerror(code), str(target))
    if is_dir:
        os.mkdir(target)
        try:
            os.rename(tmp, target)  # onto the empty folder just made
        except OSError:
            os.rmdir(target)
            raise
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: the last check is as late as it can be
        if target.exists() or target.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _replace_folder(tmp: Path, target: Path) -> None:
    """Put the folder `tmp` in place of the folder `target` (force): in one step where the kernel and
    file system can (renameat2 RENAME_EXCHANGE), the old folder then removed from `tmp`'s name (by
    atomic_path's cleanup if that is interrupted), so that an interrupt or a failure never leaves
    `target` half removed; elsewhere the old folder is removed first."""
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE) == 0:
            try:
                shutil.rmtree(tmp)  # the old output; the new one is in place
            except OSError as exc:  # never left behind in silence under a hidden name
                raise OutputError(f"{target}: written, but the folder it replaced could not be removed entirely: "
                                  f"what is left of it is {tmp} ({exc.strerror or exc})") from exc
            return
        code = ctypes.get_errno()
        if code not in (*_NOT_HERE, errno.ENOENT):  # ENOENT: the old folder went meanwhile
            raise OSError(code, os.strerror(code), str(target))
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(tmp, target)


@contextlib.contextmanager
def locked_file(path: str | os.PathLike, waiting: Callable[[], object] | None = None) -> Iterator[int]:
    """Hold an exclusive lock (flock) on the file at `path`, waiting for other holders; yield its
    open descriptor. Whoever replaces the file holds the lock while doing so; a waiter that then
    finds a new file at the path locks that one instead, so it never works from the old file.
    `waiting` is called once (on a timer's thread) if the lock is still held by another after
    LOCK_NOTICE_SECONDS: a command can say why it does nothing meanwhile."""
    path = Path(path)
    notice = None if waiting is None else threading.Timer(LOCK_NOTICE_SECONDS, waiting)
    try:
        while True:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError as exc:
                raise InvalidInputError(f"{path}: no such file") from exc
            except OSError as exc:
                raise InvalidInputError(f"{path}: cannot open ({exc.strerror or exc})") from exc
            try:
                _lock(fd, path, notice)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                held = os.fstat(fd)
                if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                    if notice is not None:
                        notice.cancel()
                    yield fd
                    return
            finally:
                os.close(fd)  # releases the lock
    finally:
        if notice is not None:
            notice.cancel()


def _lock(fd: int, path: Path, notice: threading.Timer | None) -> None:
    """flock(fd) exclusively; the notice's timer started (once) if another holds the lock now."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if notice is not None and not notice.is_alive() and not notice.finished.is_set():
                notice.daemon = True
                notice.start()
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        raise OutputError(f"{path}: cannot lock the file ({exc.strerror or exc})") from exc
