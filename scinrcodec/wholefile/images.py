"""AnnData elements as HDF5 images: each part that is not a count matrix is written by anndata's
own element writer into an in-memory HDF5 file, less what the user asked to drop, so that it
comes back exactly as anndata wrote it. An object anndata cannot write is named in the error,
with the --drop that leaves it out."""
from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Callable, Iterable

from ..errors import InvalidInputError
from ..io.sources import one_line


class Drops:
    """The parts a user asked to leave out; each must name something."""

    def __init__(self, names: str | Iterable[str]) -> None:
        names = [names] if isinstance(names, str) else names  # one path, as the CLI's --drop takes it
        self.names = {str(n).strip("/") for n in names}
        self.used: set[str] = set()

    def take(self, path: str) -> bool:
        """Whether `path` is to be dropped (and mark it used)."""
        if path in self.names:
            self.used.add(path)
            return True
        return False

    def check(self, what: str) -> None:
        """Refuse a drop that named nothing: a typo must not silently keep a part."""
        unused = sorted(self.names - self.used)
        if unused:
            raise InvalidInputError(f"{what}: nothing named {unused[0]!r} to drop (names are element paths such as "
                                    "'uns/key', 'obsm/X_umap', 'obs/column' or 'layers/name')")


def key_problem(name, *, column: bool = False) -> str | None:
    """Why anndata's HDF5 writer cannot store `name` as a key that reads back (None where it can):
    '' and '.' name the group itself (the writer takes them, its reader then fails), a '/' makes
    nested groups and a NUL ends the name there (both read back as other keys). A frame's columns
    are found by name, so a '/' in one reads back."""
    if not isinstance(name, str):
        return None if column else "is not a string"
    if name in ("", "."):
        return "names its group itself in HDF5, where anndata's reader cannot find it again"
    if "\0" in name:
        return "holds a NUL character, at which HDF5 ends the name"
    if "/" in name and not column:
        return "has a '/', which HDF5 stores as nested groups that do not read back"
    return None


def refuse_key(path: str, key, problem: str, noun: str = "key") -> InvalidInputError:
    """The error for a key (or column) anndata cannot store, with the --drop that leaves it out where
    there is one (a drop of the empty key would name the group that holds it)."""
    drop = f", or pass --drop {path}/{key} to encode without it" if key else ""
    return InvalidInputError(f"{path}: {noun} {key!r} {problem}; rename it{drop}")


def _check_columns(frame, path: str) -> None:
    bad = next(((c, problem) for c in frame.columns if (problem := key_problem(c, column=True))), None)
    if bad is not None:
        raise refuse_key(path, *bad, noun="column")


def _unstorable(path: str, value, exc: BaseException) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: anndata cannot store this {type(value).__name__} ({one_line(exc)}); pass --drop {path} "
        f"(drop=['{path}']) to encode without it")


def write_element(group, key: str, value, path: str) -> None:
    """One element by anndata's writer; a failure names it and the --drop that leaves it out."""
    import pandas as pd
    from anndata.io import write_elem

    if isinstance(value, pd.DataFrame):
        _check_columns(value, path)
    try:
        write_elem(group, key, value)
    except Exception as exc:  # anndata raises many types for objects it cannot write
        raise _unstorable(path, value, exc) from exc


def _writable(value) -> bool:
    import h5py
    from anndata.io import write_elem

    try:
        with h5py.File(io.BytesIO(), "w") as scratch:
            write_elem(scratch, "x", value)
    except Exception:  # anndata raises many types for objects it cannot write
        return False
    return True


def write_frame(group, key: str, frame, path: str, drops: Drops, names: dict | None = None, *,
                as_stored: bool = False) -> None:
    """A dataframe less its dropped columns, and less the names a matrix holds (frame_names), its
    string columns as write_h5ad stores them unless `as_stored` (a frame read from an .h5ad is kept as
    the file holds it); a failure names the column anndata cannot write."""
    from anndata.io import write_elem

    from ..io.frame_names import strip

    if drops.take(path):
        frame = frame.iloc[:, :0]  # the index stays: it names the cells or genes
    else:
        frame = frame.drop(columns=[c for c in frame.columns if drops.take(f"{path}/{c}")])
    _check_index_name(frame, path)
    _check_columns(frame, path)
    frame = strip(frame, names)
    frame = frame if as_stored else _strings_as_categoricals(frame)
    try:
        write_elem(group, key, frame)
    except Exception as exc:  # anndata raises many types for objects it cannot write
        bad = next((c for c in frame.columns if not _writable(frame[[c]])), None)
        raise _unstorable(path if bad is None else f"{path}/{bad}", frame if bad is None else frame[bad], exc) from exc


def _check_index_name(frame, path: str) -> None:
    """Refuse, as write_h5ad does, an index named as a column of other values: anndata's reader would
    give the frame back and its writer refuse it (the names are stored apart, so the refusal came
    only when the file was decoded)."""
    import pandas as pd

    name = frame.index.name  # anndata's own test: values and dtype equal
    if name is not None and frame.columns.is_unique and name in frame.columns and \
            not pd.Series(frame.index, index=frame.index).equals(frame[name]):
        raise InvalidInputError(f"{path}: its index is named {name!r}, as a column of other values or type is, which "
                                "anndata cannot store; rename the index or the column")


def _strings_as_categoricals(frame):
    """frame with its string columns as write_h5ad stores obs, var and raw.var (anndata's own
    strings_to_categoricals: a column of strings with a repeated or missing value becomes a
    categorical), on a copy, so that the caller's frame is left as it was and such a column comes
    back as .h5ad gives it back."""
    import anndata

    if not frame.columns.is_unique:  # anndata's writer refuses it, naming the column
        return frame
    out = frame.copy()
    anndata.AnnData().strings_to_categoricals(out)
    return out


def write_tree(group, key: str, value, path: str, drops: Drops) -> None:
    """A (nested) mapping key by key, so that a failure names the one object anndata cannot write."""
    if not isinstance(value, Mapping):
        write_element(group, key, value, path)
        return
    write_element(group, key, {}, path)
    for name, item in value.items():
        if drops.take(f"{path}/{name}"):
            continue
        problem = key_problem(name)
        if problem is not None:
            raise refuse_key(path, name, problem)
        write_tree(group[key], name, item, f"{path}/{name}", drops)


def hdf5_image(fill: Callable) -> bytes:
    """The bytes of an HDF5 file built in memory by fill(h5py.File) (a 10x file's parts: no anndata,
    whose import had been most of encoding a small 10x file)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    return buffer.getvalue()


def anndata_image(fill: Callable) -> bytes:
    """hdf5_image of AnnData elements written by anndata's I/O: nullable string columns are written
    as such (anndata >= 0.11 reads them), not refused as anndata does by default."""
    import anndata

    with warnings.catch_warnings(), anndata.settings.override(allow_write_nullable_strings=True):
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        return hdf5_image(fill)

