"""Safe outputs: checked before any work, written to a temporary sibling, renamed into place.

An existing output is replaced only with force; an output that is the input is refused; the
renamed file gets the permissions the umask gives any new file (a temporary file's own 0600
would otherwise stay); on any failure or interruption the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InvalidInputError, OutputError, OutputExistsError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(target: str | os.PathLike, *, force: bool, inputs: Iterable = (), is_dir: bool = False) -> Path:
    """Fail before any work when the output exists (without force), is an input, is a folder where
    a file is expected, or lies in a folder that is missing or not writable."""
    target = Path(target)
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and (_same_file(Path(source), target)
                                                        or Path(source).resolve() == target.resolve()):
            raise InvalidInputError(f"{target}: the output is the input; choose another output path")
    if target.exists() or target.is_symlink():
        if not force:
            raise OutputExistsError(f"{target}: already exists (use --force to overwrite)")
        if target.is_dir() and not is_dir:
            raise InvalidInputError(f"{target}: is an existing folder; the output must be a file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{target}: folder {parent} is not writable")
    return parent


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, force: bool, is_dir: bool = False,
                inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; rename it over `target` only when the block succeeds."""
    target = Path(target)
    parent = check_writable(target, force=force, inputs=inputs, is_dir=is_dir)
    try:
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise InvalidInputError(f"{target}: cannot create a file in {parent} ({exc.strerror or exc})") from exc
    try:
        try:
            yield tmp
            os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
            if is_dir and target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(f"{target}: writing failed ({exc.strerror or exc})") from exc
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
