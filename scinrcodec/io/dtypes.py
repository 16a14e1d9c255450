"""The dtype policy of AnnData objects read from .sinr files, in one place.

A file that stores a whole AnnData gives every matrix back in the dtype it was encoded from. A
file of one count matrix has no dtype of its own (the values are integers): its AnnData's X is
float32, what scanpy.read_10x_h5 and anndata.read_h5ad of a 10x-derived file give, so code
written for those readers sees the same types. dtype= chooses another (np.int32 is exact for
every count a .sinr file holds and is what scinrcodec 2.0 gave). A float type holds counts
exactly only up to a bound (2**24 for float32): a matrix with a larger count is refused in that
type, never rounded silently.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError

ANNDATA_DTYPE = np.dtype(np.float32)
READ_DTYPE = np.dtype(np.int64)  # what a matrix's reads (indexing, gene, cell, to_scipy, cells_block) return
_EXACT_UP_TO = {np.dtype(np.float32): 2**24}


def anndata_dtype(dtype) -> np.dtype:
    """The dtype asked for (None: the policy's default), checked as count_dtype checks it."""
    return ANNDATA_DTYPE if dtype is None else count_dtype(dtype)


def count_dtype(dtype) -> np.dtype:
    """The dtype asked for counts, checked to be one scipy.sparse holds and that holds every count
    (integers of 32 bits or more) or holds them exactly up to a bound (float32 and wider, which
    check_exact checks): narrower integers would wrap counts, float16 is no sparse type."""
    try:
        out = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"dtype {dtype!r} is not a numpy type") from exc
    if out.kind not in "iuf" or out.itemsize < 4:
        raise InvalidInputError(f"dtype {out} cannot hold every count (use float32, float64, int32 or int64)")
    return out.newbyteorder("=")  # scipy.sparse holds no other byte order ('>i8')


def stored_dtypes(recorded, lossless: bool = True) -> tuple[np.dtype, np.dtype]:
    """(the type to decode a matrix stored from `recorded` in, the type a sparse result holds it in):
    reads take no integer type narrower than 32 bits (it could wrap a count), so narrower ones are
    decoded in int32 and cast; scipy.sparse holds no float16 (float32 holds such counts exactly) and
    only the machine's byte order.
    A matrix not `lossless` is decoded and held in `recorded` widened, whatever its values: a lazy
    read must name its type before it decodes anything, and an eager one gives the same."""
    recorded = np.dtype(recorded).newbyteorder("=")  # an .h5ad may store '>i8', which scipy.sparse cannot hold
    if not lossless:
        return widened(recorded), widened(recorded)
    read = recorded if recorded.itemsize >= 4 else np.dtype(np.int32)
    return read, np.dtype(np.float32) if recorded == np.float16 else recorded


def widened(dtype) -> np.dtype:
    """`dtype` where it holds every count exactly (int32 and wider, float64), else int64 for a narrower
    integer type and float64 for a narrower float: a matrix coded within --max-error or by --inr-only may
    decode to counts its recorded type does not hold (uint8's 255 as 256, float32's 2**25 as 2**25 - 1)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype if dtype.itemsize >= 8 else np.dtype(np.float64)
    return dtype if dtype.itemsize >= 4 else np.dtype(np.int64)


def check_exact(values: np.ndarray, dtype: np.dtype, what: str,
                exact: Callable[[], np.ndarray] | None = None) -> None:
    """Refuse values (already converted to `dtype`) that a float type did not hold exactly (the
    integer types count_dtype admits hold every count). Below the type's bound all are exact; where
    some are not below it, `exact()` (the same counts as integers, in the same order, asked for only
    then) tells whether the conversion changed any: a float32 AnnData's 2**24 or 3e7 came from float32
    and reads back in it, where 2**24 + 1 would round."""
    limit = _EXACT_UP_TO.get(dtype)
    if limit is None or not values.size or values.max() < limit:
        return
    if exact is None or not np.array_equal(values, exact()):
        raise InvalidInputError(f"{what}: holds counts that {dtype} does not hold exactly (from {limit:,} on); read "
                                "it as int32 or float64")


def cast_exactly(x, dtype: np.dtype, what: str):
    """x (dense or scipy sparse) in `dtype`, refused where the cast changes a value: a matrix that
    is not counts (log-normalised, say) is never truncated to integers or rounded by dtype=."""
    cast = x.astype(dtype)
    before, after = (x.data, cast.data) if sp.issparse(x) else (np.asarray(x), np.asarray(cast))
    if not np.array_equal(before, after, equal_nan=before.dtype.kind == after.dtype.kind == "f"):
        raise InvalidInputError(f"{what}: holds values that {np.dtype(dtype)} does not hold exactly (it is not a "
                                "count matrix, which dtype= is for); read it without dtype=")
    return cast
