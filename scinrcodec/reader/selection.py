"""Keys of a matrix read as index arrays, and a gathered submatrix put in the order asked for: the
index arithmetic of MatrixReader's reads (m[genes, cells], positions), apart from the decoding."""
from __future__ import annotations

import re

import numpy as np

from ..errors import SinrIndexError, SinrKeyError
from ..limits import check_allocation

INDEX_TEXT = re.compile(r"-?[0-9]+")  # ASCII digits only: int() and str.isdigit take any script's, and '1_0'


def spelled_position(text: str) -> int | None:
    """N where `text` is '#N', the sinr command's text for position N (its arguments are all text);
    None otherwise. The library takes positions as ints and every string as a name, as pandas'
    and anndata's labels: a cell may be named '#0'."""
    return int(text[1:]) if text.startswith("#") and INDEX_TEXT.fullmatch(text[1:]) else None


def _position_meant(name: str) -> int | None:
    """The position a name no gene or cell has may have meant: N for '#N' (the command line's
    spelling) or for 'N' (`sinr get` takes it so, `sinr subset --cells` as a name); None otherwise."""
    position = spelled_position(name)
    return int(name) if position is None and INDEX_TEXT.fullmatch(name) else position


def no_such_name(axis: str, missing: list[str]) -> SinrKeyError:
    """The error for keys no gene or cell is named: the first few named, and where one is '#N' or
    'N', that position N is the int N ('#N' is the command line's)."""
    shown = ", ".join(map(repr, missing[:3])) + (f" and {len(missing) - 3:,} more" if len(missing) > 3 else "")
    position = next((p for p in map(_position_meant, missing) if p is not None), None)
    hint = "" if position is None else (f" (strings are names here; the {axis} at position {position} is the int "
                                        f"{position}, which the sinr command spells '#{position}')")
    return SinrKeyError(f"no {axis} named {shown}{hint}")


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """np.unique(values) for a 1-D integer array, by a sort: numpy 2.4's np.unique hashes, which
    took 16 ms for 55,000 cell indices and 0.5 s for 930,000 (np.sort: 2 and 47 ms)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def all_distinct(values: np.ndarray) -> bool:
    """Whether no value of a 1-D integer array repeats."""
    return unique_sorted(values).size == values.size


def two_keys(key, order: str) -> tuple:
    """A matrix's key as its two axes' keys, as numpy reads it: one key (or a 1-tuple) indexes the
    first axis, and an Ellipsis stands for every index of the axes the key leaves out. `order`
    names the axes in the message for other keys ("m[genes, cells]")."""
    parts = key if isinstance(key, tuple) else (key,)
    ellipses = [i for i, part in enumerate(parts) if part is Ellipsis]  # `is`: == would compare arrays
    if len(ellipses) > 1:
        raise SinrIndexError(f"an index can only have a single ellipsis ('...'); index with {order}")
    if ellipses:
        at = ellipses[0]
        parts = parts[:at] + (slice(None),) * (3 - len(parts)) + parts[at + 1:]
    if not parts:  # m[()]: everything, as numpy's x[()]
        parts = (slice(None), slice(None))
    if len(parts) == 1:
        parts = (parts[0], slice(None))
    if len(parts) != 2:
        raise SinrIndexError(f"too many indices for a 2-D matrix: index with {order}")
    return parts


def is_scalar(key) -> bool:
    """An integer index (a bool is not one, though Python counts it as an int)."""
    return isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_))


def is_key(key) -> bool:
    """One entry of an axis: an index or a name."""
    return is_scalar(key) or isinstance(key, str)


def is_everything(key, n: int) -> bool:
    """Whether a key is a slice of all n indices in order (m[:, cells]'s genes), known without an
    index array (an invalid slice is not: as_index names its fault)."""
    try:
        return isinstance(key, slice) and key.indices(n) == (0, n, 1)
    except (ValueError, TypeError):
        return False


def as_index(key, n: int, axis: str) -> np.ndarray:
    """ints, slices, 1-D lists of ints or boolean masks -> int64 index array."""
    if is_scalar(key):
        key = [int(key)]
    if isinstance(key, slice):
        try:
            selected = range(*key.indices(n))
        except (ValueError, TypeError) as exc:
            raise SinrIndexError(f"{axis} slice is invalid ({exc})") from exc
        check_allocation(8 * len(selected), f"a slice of {len(selected):,} {axis}s")
        return np.arange(selected.start, selected.stop, selected.step, dtype=np.int64)  # only the selected indices
    array = np.asarray(key)
    if array.ndim == 0:
        raise SinrIndexError(f"{axis} index must be an integer, a name, a slice, a list or a boolean mask, not "
                             f"{type(key).__name__}")
    if array.ndim != 1:
        raise SinrIndexError(f"{axis} index must be one-dimensional, not of shape {array.shape}")
    if array.dtype == bool:
        if array.shape != (n,):
            raise SinrIndexError(f"boolean {axis} mask has length {array.size}, expected {n}")
        return np.flatnonzero(array)
    if array.dtype.kind not in "iu" and array.size:
        raise SinrIndexError(f"{axis} index must be integers, a slice or a boolean mask")
    if array.size and (int(array.min()) < -n or int(array.max()) >= n):  # before int64, which wraps uint64's top half
        bad = int(array[(array < -n) | (array >= n)][0])
        raise SinrIndexError(f"{axis} index {bad} out of range for {n} {axis}s")
    array = array.astype(np.int64)
    return np.where(array < 0, array + n, array)


def place(requested: np.ndarray, found: np.ndarray, n: int) -> np.ndarray:
    """Position in `requested` (distinct keys in [0, n)) of each found key: a direct lookup table
    where it is small next to the work, else a binary search."""
    if n <= 4 * (requested.size + found.size):
        lookup = np.empty(n, dtype=np.int64)
        lookup[requested] = np.arange(requested.size)
        return lookup[found]
    order = np.argsort(requested, kind="stable")
    return order[np.searchsorted(requested[order], found)]


def expand(requested: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output positions of each found key in `requested` (which may repeat keys), and which found."""
    order = np.argsort(requested, kind="stable")
    sorted_keys = requested[order]
    left = np.searchsorted(sorted_keys, found, side="left")
    right = np.searchsorted(sorted_keys, found, side="right")
    counts = right - left
    source = np.repeat(np.arange(found.size), counts)
    starts = np.repeat(left - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
    return order[np.arange(source.size) + starts], source
