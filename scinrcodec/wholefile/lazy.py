"""The lazy AnnData of a .sinr file: every count matrix a dask array of the file's chunks of cells
(reader.lazy.dask_matrix), decoded only when computed, every other stored part loaded."""
from __future__ import annotations

from ..errors import CorruptFileError
from ..io.dtypes import anndata_dtype, cast_exactly
from ..io.h5ad_output import quiet_anndata
from ..io.sources import one_line
from ..reader.lazy import dask_matrix
from .names import name_frames


def lazy_anndata(m, contents, *, dtype=None):
    """A lazy AnnData: every count matrix a dask array (dask_matrix) at its place, every other
    stored part loaded (obs, var, obsm, varm, obsp, varp, uns, layers that are not counts, raw,
    an X that is not counts), as to_anndata gives them eagerly. A file of one matrix gives its
    names as obs and var and X in the policy's dtype (io.dtypes)."""
    import anndata

    if contents is None or contents.object != "anndata":
        obs, var = name_frames(m, contents)
        with quiet_anndata():
            return anndata.AnnData(X=dask_matrix(m, anndata_dtype(dtype)), obs=obs, var=var)
    wanted = None if dtype is None else anndata_dtype(dtype)
    contents.check_cells()
    contents.prefetch(contents.elements)
    parts = {part: contents.read(part) for part in ("obs", "var", "obsm", "varm", "obsp", "varp", "uns")
             if part in contents.elements}
    stored_layers = contents.read("layers") if "layers" in contents.elements else {}
    matrix_layers = {}
    raw = contents.read("raw") if "raw" in contents.elements else None
    x = contents.read("X") if "X" in contents.elements else None
    for entry in contents.matrices:
        element = entry["element"]
        matrix = m.matrix(entry["matrix"])
        asked = wanted if element == "X" else None
        blocks = dask_matrix(matrix, asked or entry["dtype"])
        # dense: in the type asked for, else its own (float16 too) where a lossless file's counts came from it
        lazy = _in_format(blocks, entry["format"], asked or (entry["dtype"] if matrix.mode == "lossless"
                                                             else blocks.dtype))
        if element == "X":
            x = lazy
        elif element == "raw/X":
            raw = {**(raw or {}), "X": lazy}
        else:
            matrix_layers[element] = lazy
    if x is not None and wanted is not None and not hasattr(x, "dask"):  # an X that is not counts
        x = cast_exactly(x, wanted, f"{m.source}: X")
    try:
        with quiet_anndata():
            adata = anndata.AnnData(X=x, layers=contents.listed_layers(stored_layers, matrix_layers), **parts)
            if raw is not None:
                adata.raw = anndata.AnnData(X=raw.get("X"), obs=_index_frame(adata), var=raw.get("var"),
                                            varm=raw.get("varm"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{m.source}: the stored parts do not make an AnnData ({one_line(exc)})") from exc
    return adata


def sparse_class(fmt: str):
    """The scipy class anndata's reader gives a sparse element of this stored format (CSR or CSC):
    a sparse matrix, or a sparse array where anndata.settings.use_sparse_array_on_read asks for one,
    whichever the AnnData written held, so that every sparse element of a read is of one class."""
    import anndata
    import scipy.sparse as sp

    arrays = getattr(anndata.settings, "use_sparse_array_on_read", False)
    return getattr(sp, f"{fmt[:3]}_{'array' if arrays else 'matrix'}")


def _in_format(x, fmt: str, dtype):
    """A lazy matrix of CSR blocks with blocks of the format it was encoded from (dense, CSC) in the
    class anndata's reader gives (sparse_class), so that computing it gives what the eager read
    gives: a dense matrix in `dtype` (float16 too, which sparse blocks hold as float32)."""
    import numpy as np
    import scipy.sparse as sp

    if fmt == "ndarray":
        dense = np.dtype(dtype)
        return x.map_blocks(lambda block: block.toarray().astype(dense, copy=False), dtype=dense,
                            meta=np.empty((0, 0), dtype=dense))
    kind = sparse_class(fmt)
    return x if kind is sp.csr_matrix else x.map_blocks(kind, dtype=x.dtype, meta=kind((0, 0), dtype=x.dtype))


def _index_frame(adata):
    """An obs frame of the AnnData's cell names only (what Raw keeps)."""
    import pandas as pd

    return pd.DataFrame(index=adata.obs_names)
