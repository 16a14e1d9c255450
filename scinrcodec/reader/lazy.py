"""Out-of-core work on .sinr files: a matrix as a cells x genes dask array of the file's chunks of
cells, each decoded only when computed, and reductions over such arrays.

Blocks are chunks (MatrixReader.cells_block over MatrixReader.chunk_bounds), the unit the file is
coded in, so no read decodes a tile twice and memory holds a few chunks at a time. The lazy
AnnData built on it is whole-file storage's (scinrcodec.wholefile.lazy).
"""
from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..io.dask_cells import CELLS_LAYER, MATRIX_KEY
from ..io.dtypes import stored_dtypes
from ..storage.source import LocalFileSource, fork_safe_lock
from ..storage.urls import is_url
from .matrix import MatrixReader, reopened


class MatrixRef:
    """An open matrix as one node of a dask graph. Pickled (for dask.distributed workers), it
    travels as the file's path or URL (with its storage_options) and the identity of the version
    the graph was built on, or as its bytes when it was opened from bytes, and opens again on the
    other side once per process, when a block first reads it: dask's scheduler, which unpickles
    graphs too, never opens the file (it may not see it). A worker that finds another version
    there (the file was replaced or rewritten since) refuses it instead of mixing two files' cells.
    A file object cannot travel: dask_matrix refuses one while a dask.distributed client runs, and a
    graph holding one fails at submission to another process."""

    def __init__(self, matrix: MatrixReader | None = None, *, travelled: tuple | None = None) -> None:
        self._matrix = matrix
        self._travelled = travelled  # (function, args) that open it here, when it came pickled
        self._lock = fork_safe_lock()

    @property
    def matrix(self) -> MatrixReader:
        """The open matrix (opened here on first use when it came pickled)."""
        if self._matrix is None:
            with self._lock:
                if self._matrix is None:
                    opener, args = self._travelled
                    self._matrix = opener(*args)
        return self._matrix

    @property
    def path(self) -> str | None:
        """The local file this matrix reads, None for bytes, a URL or a file object."""
        if self._matrix is None:
            opener, (location, *_) = self._travelled
            return location if opener is _by_location and not is_url(location) else None
        source = self._matrix.byte_source
        return source.path if isinstance(source, LocalFileSource) else None

    def __reduce__(self):
        if self._matrix is None:  # passing through (the scheduler): as it came
            return _arrived, self._travelled
        location, name, options, identity = self._matrix.travelling_form()
        if isinstance(location, bytes):
            return _arrived, (_by_bytes, (location, name))
        return _arrived, (_by_location, (location, name, options, identity))


_OPENED: dict[tuple, MatrixReader] = {}  # each process opens a version of a file once for all its blocks
_OPENED_LOCK = fork_safe_lock()


def _arrived(opener, args: tuple) -> MatrixRef:
    """A MatrixRef unpickled: opened when a block first reads it."""
    return MatrixRef(travelled=(opener, args))


def _by_location(location: str, name: str, storage_options: dict | None, identity: tuple[int, int]) -> MatrixReader:
    key = (location, name, repr(storage_options), identity)
    with _OPENED_LOCK:
        matrix = _OPENED.get(key)
    if matrix is None:
        matrix = reopened(MatrixReader, location, name, storage_options, identity, None)
        with _OPENED_LOCK:
            if len(_OPENED) >= 16:
                _OPENED.pop(next(iter(_OPENED)))
            matrix = _OPENED.setdefault(key, matrix)
    return matrix


def _by_bytes(data: bytes, name: str) -> MatrixReader:
    return MatrixReader(data, matrix=name)


def _cells(ref: MatrixRef, start: int, stop: int, dtype: str) -> sp.csr_matrix:
    """One block of cells: a task of the dask graph, on one thread (dask runs blocks in parallel).
    A narrow integer type (a layer stored as uint16) is decoded in int32, which reads accept, and cast:
    the counts of a lossless file came from that type (dask_matrix widens it for other files)."""
    wanted = np.dtype(dtype)
    read, _ = stored_dtypes(wanted)
    block = ref.matrix.cells_block(start, stop, read, jobs=1)  # in a float type, checked exact
    return block if read == wanted else block.astype(wanted)


def _block_dtype(m: MatrixReader, dtype) -> np.dtype:
    """The type of a lazy matrix's blocks: `dtype`, but float32 for float16 (which scipy.sparse cannot
    hold), widened for a file coded within --max-error or by --inr-only (whose decoded counts may pass
    that type's range or exactness; a lossless file's came from it)."""
    return stored_dtypes(dtype, m.mode == "lossless")[1]


def _dask_array():
    """dask.array, which the dask extra installs."""
    try:
        import dask.array as da
    except ImportError as exc:
        raise InvalidInputError("lazy reading needs dask: pip install 'scinrcodec[dask]'") from exc
    return da


def _distributed_client():
    """dask.distributed's default client, where one is running (its graphs go to other processes), else None."""
    if "distributed" not in sys.modules:  # none can run without it imported
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client
        return None


def dask_matrix(m: MatrixReader, dtype=np.int32):
    """The matrix as a cells x genes dask array with one scipy CSR block per chunk of the file; the
    open matrix is one node of the graph that every block depends on (MatrixRef)."""
    da = _dask_array()
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    if not m.can_travel and _distributed_client() is not None:
        raise InvalidInputError(f"{m.source}: a .sinr matrix read from a file object cannot go to dask.distributed's "
                                "workers; open it by path, URL or from bytes")
    dtype = _block_dtype(m, dtype)
    bounds = m.chunk_bounds()
    if bounds.size < 2:
        bounds = np.zeros(2, np.int64)  # no cells: one empty block
    token = tokenize(m.source, m.name, m.file_size, dtype.str, id(m))
    name, ref = CELLS_LAYER + token, MATRIX_KEY + token
    layer = {(name, i, 0): (_cells, ref, int(bounds[i]), int(bounds[i + 1]), dtype.str) for i in range(bounds.size - 1)}
    layer[ref] = MatrixRef(m)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks=(tuple(np.diff(bounds).tolist()), (m.shape[0],)), dtype=dtype,
                    meta=sp.csr_matrix((0, m.shape[0]), dtype=dtype))


def reduce_cells(x, op: str, axis: int | None):
    """sum, mean, var, min or max of a lazy X along an axis (0 or -2: per gene, 1 or -1: per cell,
    None: of every entry) as a dask array: dask's own reductions fail on scipy blocks (scipy's sum
    takes no keepdims), so each block is reduced by scipy (or numpy, for a dense X) and the parts
    combined. var is the population variance, as numpy's: each block's mean and sum of squared
    deviations, combined by Chan's rule, so that it stays exact where E[x^2] - E[x]^2 would cancel
    (counts of a million or more)."""
    da = _dask_array()

    if op not in ("sum", "mean", "var", "min", "max") or not (axis is None or type(axis) is int and -2 <= axis <= 1
                                                               or isinstance(axis, np.integer) and -2 <= axis <= 1):
        raise InvalidInputError(f"reduce_cells: op must be sum, mean, var, min or max and axis 0, 1, -2, -1 or "
                                f"None, not {op!r}, {axis!r}")
    if not (isinstance(x, da.Array) and x.ndim == 2 and (sp.issparse(x._meta) or isinstance(x._meta, np.ndarray))
            and x.numblocks[1] == 1):
        raise InvalidInputError("reduce_cells takes a lazy X (read_lazy(path).X): a 2-D dask array of scipy.sparse "
                                f"or numpy blocks of cells, each holding every gene, not {type(x).__name__}"
                                + (f" of {type(x._meta).__name__} blocks, {x.numblocks[1]} along the genes"
                                   if isinstance(x, da.Array) else ""))
    along = 0 if axis is None else int(axis) % 2  # every entry: the per-gene parts, combined once more
    n = x.shape[along] * (x.shape[1] if axis is None else 1)

    def per_block(reducer):  # in float64: squares of int32 counts would overflow
        if along == 1:
            return x.map_blocks(lambda b: reducer(b.astype(np.float64), 1).reshape(-1), drop_axis=1,
                                dtype=np.float64, meta=np.zeros(0))
        return x.map_blocks(lambda b: reducer(b.astype(np.float64), 0).reshape(1, -1),
                            chunks=((1,) * x.numblocks[0], (x.shape[1],)), dtype=np.float64, meta=np.zeros((0, 0)))

    def combine(parts, how):
        parts = parts if along == 1 else getattr(parts, how)(axis=0)
        return getattr(parts, how)() if axis is None else parts

    def average(parts):  # of no entries NaN, as numpy's mean and var give
        return parts / n if n else parts * np.nan

    if op in ("min", "max"):
        return combine(per_block(lambda b, a: _array(getattr(b, op)(axis=a))), op)
    if op != "var":
        total = combine(per_block(lambda b, a: _array(b.sum(axis=a))), "sum")
        return total if op == "sum" else average(total)
    if along == 1:  # each block holds its cells' every entry
        squares = per_block(lambda b, a: _deviations(b, a)[1])
        return squares / x.shape[1] if x.shape[1] else squares * np.nan
    genes = x.shape[1]
    parts = x.map_blocks(lambda b: np.concatenate(_deviations(b.astype(np.float64), 0)).reshape(1, -1),
                         chunks=((1,) * x.numblocks[0], (2 * genes,)), dtype=np.float64, meta=np.zeros((0, 0)))
    means, block_squares = parts[:, :genes], parts[:, genes:]  # each block's, from one pass over it
    weights = np.asarray(x.chunks[0], dtype=np.float64)[:, None]  # each block's cells
    mean = (means * weights).sum(axis=0) / max(x.shape[0], 1)
    squares = block_squares.sum(axis=0) + ((means - mean) ** 2 * weights).sum(axis=0)
    if axis is not None:
        return average(squares)
    return average(squares.sum() + (x.shape[0] * ((mean - mean.mean()) ** 2).sum() if x.shape[1] else 0))


def _array(reduced) -> np.ndarray:
    """A block's reduction as a flat numpy array (scipy gives a matrix or a sparse one)."""
    return (reduced.toarray() if sp.issparse(reduced) else np.asarray(reduced)).reshape(-1)


def _deviations(block, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean along `axis` of a float64 block (sparse or dense) and the sum of squared deviations
    from it (0 and 0 where the axis is empty)."""
    n, width = block.shape[axis], block.shape[1 - axis]
    if n == 0:
        return np.zeros(width), np.zeros(width)
    mean = _array(block.sum(axis=axis)) / n
    if not sp.issparse(block):
        deviation = block - (mean if axis == 0 else mean[:, None])
        return mean, (deviation * deviation).sum(axis=axis)
    entries = block.tocsr()
    entries.sum_duplicates()  # each stored entry one entry of the matrix
    entries = entries.tocoo()
    at = entries.col if axis == 0 else entries.row
    deviation = entries.data - mean[at]
    stored = np.bincount(at, minlength=width)
    return mean, np.bincount(at, deviation * deviation, minlength=width) + (n - stored) * mean * mean
