"""Out-of-core work on .sinr files: a lazy AnnData whose X is a dask array of chunks of cells,
each decoded only when computed, and a loader that streams shuffled batches of cells for training.

Both work chunk by chunk (SinrMatrix.cells_block over SinrMatrix.chunk_bounds), the unit the
file is coded in, so no read decodes a tile twice and memory holds a few chunks at a time.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import CorruptFileError, InvalidInputError
from .matrix import SinrMatrix, open as open_sinr


class CellBlocks:
    """Decodes the dask block of cells it is asked for. Pickled (for dask.distributed workers), it
    opens its file again by path or URL (with its storage_options) in the other process."""

    def __init__(self, matrix: SinrMatrix, dtype) -> None:
        self.matrix, self.dtype = matrix, np.dtype(dtype)
        bounds = matrix.chunk_bounds()
        self.bounds = bounds if bounds.size > 1 else np.zeros(2, np.int64)  # no cells: one empty block

    def __call__(self, block_id: tuple[int, int]) -> sp.csr_matrix:
        i = block_id[0]
        return self.matrix.cells_block(int(self.bounds[i]), int(self.bounds[i + 1]), self.dtype)

    def __reduce__(self):
        options = getattr(self.matrix._source, "storage_options", None)
        if options is None and not Path(self.matrix.source).is_file():
            raise InvalidInputError(f"{self.matrix.source}: a lazy .sinr matrix can go to another process only when "
                                    "read from a file or a URL")
        return _reopened, (self.matrix.source, self.matrix.name, self.dtype.str, options)


_OPENED: dict[tuple[str, str, str], SinrMatrix] = {}  # each process opens a file once for all its blocks
_OPENED_LOCK = threading.Lock()


def _reopened(path: str, name: str, dtype: str, storage_options: dict | None = None) -> CellBlocks:
    key = (path, name, repr(storage_options))
    with _OPENED_LOCK:
        matrix = _OPENED.get(key)
    if matrix is None:
        matrix = open_sinr(path, matrix=name, storage_options=storage_options)
        with _OPENED_LOCK:
            if len(_OPENED) >= 16:
                _OPENED.pop(next(iter(_OPENED)))
            matrix = _OPENED.setdefault(key, matrix)
    return CellBlocks(matrix, dtype)


def dask_matrix(m: SinrMatrix, dtype=np.int32):
    """The matrix as a cells x genes dask array with one scipy CSR block per chunk of the file."""
    try:
        import dask.array as da
        from dask.base import tokenize
    except ImportError as exc:
        raise InvalidInputError("lazy reading needs dask: pip install 'scinrcodec[dask]'") from exc

    dtype = np.dtype(dtype)
    blocks = CellBlocks(m, dtype)
    sizes = tuple(np.diff(blocks.bounds).tolist())
    name = f"sinr-cells-{tokenize(m.source, m.name, m.file_size, dtype.str, id(m))}"
    return da.map_blocks(blocks, chunks=(sizes, (m.shape[0],)), dtype=dtype, name=name,
                         meta=sp.csr_matrix((0, m.shape[0]), dtype=dtype))


def lazy_anndata(m: SinrMatrix, contents):
    """An AnnData whose X is this matrix as a dask array (and whose layers are the file's other
    count layers, lazily); obs, var, obsm, varm and uns are loaded. obsp, varp, raw and layers
    stored as elements are left out: to_anndata() without lazy returns them."""
    import anndata

    from ..io.anndata_store import name_frames
    from ..io.writers import quiet_anndata

    entry = contents.matrix_entry(m.name) if contents is not None and contents.object == "anndata" else None
    x = dask_matrix(m, entry["dtype"] if entry else np.int32)
    if entry is None:
        obs, var = name_frames(m, contents)
        with quiet_anndata():
            return anndata.AnnData(X=x, obs=obs, var=var)
    is_raw = entry["element"] == "raw/X"
    parts = {part: contents.read(part) for part in ("obs", "obsm", "uns") if part in contents.elements}
    if is_raw:
        raw = contents.read("raw")
        parts.update(var=raw["var"], varm=raw.get("varm"))
    else:
        parts.update({part: contents.read(part) for part in ("var", "varm") if part in contents.elements})
    layers = {} if is_raw else {
        e["element"][len("layers/"):]: dask_matrix(m.matrix(e["matrix"]), e["dtype"]) for e in contents.matrices
        if e["element"].startswith("layers/") and e["matrix"] != m.name}
    try:
        with quiet_anndata():
            return anndata.AnnData(X=x, layers=layers, **parts)
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(f"{m.source}: the stored parts do not fit matrix {m.name!r} ({exc})") from exc


def read_lazy(path: str | os.PathLike, *, matrix: str | None = None, feature_type: str | None = None,
              storage_options: dict | None = None):
    """A lazy AnnData of a .sinr file or URL (see lazy_anndata): `scinrcodec.read_lazy("pbmc.sinr")`."""
    return open_sinr(path, matrix=matrix, storage_options=storage_options).to_anndata(lazy=True,
                                                                                     feature_type=feature_type)


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
