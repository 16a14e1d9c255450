"""Out-of-core work on .sinr files: a lazy AnnData whose X is a dask array of chunks of cells,
each decoded only when computed, and a loader that streams shuffled batches of cells for training.

Both work chunk by chunk (SinrMatrix.cells_block over SinrMatrix.chunk_bounds), the unit the
file is coded in, so no read decodes a tile twice and memory holds a few chunks at a time.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import CorruptFileError, InvalidInputError
from ..storage.source import LocalFileSource, MemorySource
from .dtypes import anndata_dtype, check_exact
from .matrix import SinrMatrix, open as open_sinr


class MatrixRef:
    """An open matrix as one node of a dask graph. Pickled (for dask.distributed workers), it
    travels as the file's path or URL (with its storage_options), or as its bytes when it was opened
    from bytes, and opens again on the other side once per process; a file object cannot travel,
    which fails at submission."""

    def __init__(self, matrix: SinrMatrix) -> None:
        self.matrix = matrix

    def __reduce__(self):
        source = self.matrix.byte_source
        options = getattr(source, "storage_options", None)
        if options is not None:
            return _by_location, (self.matrix.source, self.matrix.name, options)
        if isinstance(source, LocalFileSource):  # absolute: a worker may run in another folder
            return _by_location, (os.path.abspath(self.matrix.source), self.matrix.name, None)
        if isinstance(source, MemorySource):
            return _by_bytes, (bytes(source.read(0, source.size)), self.matrix.name)
        raise InvalidInputError(f"{self.matrix.source}: a lazy .sinr matrix read from a file object cannot go to "
                                "another process; open it by path, URL or from bytes")


_OPENED: dict[tuple[str, str, str], MatrixRef] = {}  # each process opens a file once for all its blocks
_OPENED_LOCK = threading.Lock()


def _by_location(location: str, name: str, storage_options: dict | None = None) -> MatrixRef:
    key = (location, name, repr(storage_options))
    with _OPENED_LOCK:
        ref = _OPENED.get(key)
    if ref is None:
        ref = MatrixRef(open_sinr(location, matrix=name, storage_options=storage_options))
        with _OPENED_LOCK:
            if len(_OPENED) >= 16:
                _OPENED.pop(next(iter(_OPENED)))
            ref = _OPENED.setdefault(key, ref)
    return ref


def _by_bytes(data: bytes, name: str) -> MatrixRef:
    return MatrixRef(open_sinr(data, matrix=name))


def _cells(ref: MatrixRef, start: int, stop: int, dtype: str) -> sp.csr_matrix:
    """One block of cells: a task of the dask graph."""
    wanted = np.dtype(dtype)
    block = ref.matrix.cells_block(start, stop, wanted)
    check_exact(block.data, wanted, ref.matrix.source)
    return block


def dask_matrix(m: SinrMatrix, dtype=np.int32):
    """The matrix as a cells x genes dask array with one scipy CSR block per chunk of the file; the
    open matrix is one node of the graph that every block depends on (MatrixRef)."""
    try:
        import dask.array as da
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph
    except ImportError as exc:
        raise InvalidInputError("lazy reading needs dask: pip install 'scinrcodec[dask]'") from exc

    dtype = np.dtype(dtype)
    bounds = m.chunk_bounds()
    if bounds.size < 2:
        bounds = np.zeros(2, np.int64)  # no cells: one empty block
    token = tokenize(m.source, m.name, m.file_size, dtype.str, id(m))
    name, ref = f"sinr-cells-{token}", f"sinr-matrix-{token}"
    layer = {(name, i, 0): (_cells, ref, int(bounds[i]), int(bounds[i + 1]), dtype.str) for i in range(bounds.size - 1)}
    layer[ref] = MatrixRef(m)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks=(tuple(np.diff(bounds).tolist()), (m.shape[0],)), dtype=dtype,
                    meta=sp.csr_matrix((0, m.shape[0]), dtype=dtype))


def reduce_cells(x, op: str, axis: int):
    """sum, mean, var, min or max of a lazy X along an axis (0: per gene, 1: per cell) as a dask
    array: dask's own reductions fail on scipy blocks (scipy's sum takes no keepdims), so each block
    is reduced by scipy and the parts combined. var is the population variance, as numpy's."""
    import dask.array as da

    if op not in ("sum", "mean", "var", "min", "max") or axis not in (0, 1):
        raise InvalidInputError(f"reduce_cells: op must be sum, mean, var, min or max and axis 0 or 1, not {op!r}, "
                                f"{axis!r}")
    n = x.shape[axis]

    def per_block(reducer):  # in float64: squares of int32 counts would overflow
        if axis == 1:
            return x.map_blocks(lambda b: np.asarray(reducer(b.astype(np.float64), 1)).reshape(-1), drop_axis=1,
                                dtype=np.float64, meta=np.zeros(0))
        return x.map_blocks(lambda b: np.asarray(reducer(b.astype(np.float64), 0)).reshape(1, -1),
                            chunks=((1,) * x.numblocks[0], (x.shape[1],)), dtype=np.float64, meta=np.zeros((0, 0)))

    def combine(parts, how):
        return parts if axis == 1 else getattr(parts, how)(axis=0)

    if op in ("min", "max"):
        return combine(per_block(lambda b, a: getattr(b, op)(axis=a).toarray()), op)
    total = combine(per_block(lambda b, a: b.sum(axis=a)), "sum")
    if op == "sum":
        return total
    mean = total / max(n, 1)
    if op == "mean":
        return mean
    squares = combine(per_block(lambda b, a: b.multiply(b).sum(axis=a)), "sum")
    return da.maximum(squares / max(n, 1) - mean * mean, 0)


def lazy_anndata(m: SinrMatrix, contents, *, dtype=None):
    """A lazy AnnData: every count matrix a dask array (dask_matrix) at its place, every other
    stored part loaded (obs, var, obsm, varm, obsp, varp, uns, layers that are not counts, raw,
    an X that is not counts), as to_anndata gives them eagerly. A file of one matrix gives its
    names as obs and var and X in the policy's dtype (reader.dtypes)."""
    import anndata

    from ..io.anndata_store import name_frames
    from ..io.h5ad_output import quiet_anndata

    if contents is None or contents.object != "anndata":
        obs, var = name_frames(m, contents)
        with quiet_anndata():
            return anndata.AnnData(X=dask_matrix(m, anndata_dtype(dtype)), obs=obs, var=var)
    wanted = None if dtype is None else anndata_dtype(dtype)
    parts = {part: contents.read(part) for part in ("obs", "var", "obsm", "varm", "obsp", "varp", "uns")
             if part in contents.elements}
    layers = contents.read("layers") if "layers" in contents.elements else {}
    raw = contents.read("raw") if "raw" in contents.elements else None
    x = contents.read("X") if "X" in contents.elements else None
    for entry in contents.matrices:
        element = entry["element"]
        lazy = dask_matrix(m.matrix(entry["matrix"]), wanted if element == "X" and wanted else entry["dtype"])
        if element == "X":
            x = lazy
        elif element == "raw/X":
            raw = {**(raw or {}), "X": lazy}
        else:
            layers[element[len("layers/"):]] = lazy
    if x is not None and wanted is not None and not hasattr(x, "dask"):
        x = x.astype(wanted)
    try:
        with quiet_anndata():
            adata = anndata.AnnData(X=x, layers={k: layers[k] for k in contents.layers if k in layers}, **parts)
            if raw is not None:
                adata.raw = anndata.AnnData(X=raw.get("X"), obs=pd_index_frame(adata), var=raw.get("var"),
                                            varm=raw.get("varm"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{m.source}: the stored parts do not make an AnnData ({exc})") from exc
    return adata


def pd_index_frame(adata):
    """An obs frame of the AnnData's cell names only (what Raw keeps)."""
    import pandas as pd

    return pd.DataFrame(index=adata.obs_names)


def read_lazy(path, *, matrix: str | None = None, feature_type: str | None = None, dtype=None,
              storage_options: dict | None = None):
    """A lazy AnnData of a .sinr file (see lazy_anndata): `scinrcodec.read_lazy("pbmc.sinr")`.
    `path` may be a path, a URL (with fsspec's storage_options), bytes or a seekable file object, as
    scinrcodec.open takes."""
    return open_sinr(path, matrix=matrix, storage_options=storage_options).to_anndata(lazy=True,
                                                                                     feature_type=feature_type,
                                                                                     dtype=dtype)


# ------------------------------------------------------------------------------------- batches

class CellBatch(NamedTuple):
    """A batch of cells: their counts (cells x genes CSR), their obs rows, their cell indices."""

    X: sp.csr_matrix
    obs: object  # a pandas DataFrame, or None
    cells: np.ndarray


def iter_cells(m: SinrMatrix, batch_size: int = 256, *, shuffle: bool = True, seed: int | None = None,
               buffer: int = 4, dtype=np.float32, obs: bool = True, drop_last: bool = False,
               jobs: int | None = None) -> Iterator[CellBatch]:
    """One epoch of batches (see SinrMatrix.iter_cells)."""
    for name, value in (("batch_size", batch_size), ("buffer", buffer)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, not {value!r}")
    bounds = m.chunk_bounds()
    n_chunks = bounds.size - 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_chunks) if shuffle else np.arange(n_chunks)
    groups = [order[i: i + buffer] for i in range(0, n_chunks, buffer)]
    frame = _obs_frame(m) if obs else None
    return _batches(m, groups, bounds, int(batch_size), rng if shuffle else None, np.dtype(dtype), frame, drop_last,
                    jobs)


def _obs_frame(m: SinrMatrix):
    from ..io.anndata_store import names_obs

    contents = m.contents
    if contents is not None and contents.object == "anndata" and "obs" in contents.elements:
        return contents.read("obs")
    return names_obs(m)


def _batches(m: SinrMatrix, groups: list[np.ndarray], bounds: np.ndarray, batch_size: int, rng, dtype,
             frame, drop_last: bool, jobs: int | None) -> Iterator[CellBatch]:
    """Decode a buffer of chunks into one matrix (the next buffer decoding meanwhile), shuffle its
    cells with those left over from the last buffer, and cut them into batches."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-batches")

    def start(k: int):
        return pool.submit(m.chunks_block, groups[k].tolist(), dtype, jobs=jobs) if k < len(groups) else None

    try:
        pending = start(0)
        carry_x, carry_cells = sp.csr_matrix((0, m.shape[0]), dtype=dtype), np.zeros(0, np.int64)
        for k in range(len(groups)):
            block = pending.result()
            pending = start(k + 1)
            cells = np.concatenate([carry_cells] + [np.arange(bounds[c], bounds[c + 1]) for c in groups[k].tolist()])
            order = rng.permutation(cells.size) if rng is not None else np.arange(cells.size)

            def take(rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
                """Rows of [carry; block] without stacking the two: carried rows first."""
                carried = rows[rows < carry_cells.size]
                if not carried.size:
                    return block[rows - carry_cells.size], cells[rows]
                fresh = rows[rows >= carry_cells.size]
                x = sp.vstack([carry_x[carried], block[fresh - carry_cells.size]], format="csr")
                return x, np.concatenate([cells[carried], cells[fresh]])

            full = cells.size - cells.size % batch_size
            for s in range(0, full, batch_size):
                x, batch_cells = take(order[s: s + batch_size])
                yield CellBatch(x, None if frame is None else frame.iloc[batch_cells], batch_cells)
            carry_x, carry_cells = take(order[full:])
        if carry_cells.size and not drop_last:
            yield CellBatch(carry_x, None if frame is None else frame.iloc[carry_cells], carry_cells)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
