"""A .sinr file's AnnData: the whole stored AnnData restored part by part, or a file of one matrix
with its names; eager, or lazy (wholefile.lazy). What SinrMatrix.to_anndata and read_sinr give."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ..errors import CorruptFileError, SinrKeyError
from ..io.dtypes import anndata_dtype, cast_exactly, check_exact, stored_dtypes
from ..io.h5ad_output import quiet_anndata
from ..io.sources import one_line
from ..progress import Progress
from ..reader.contents import StoredContents
from .lazy import lazy_anndata, sparse_class
from .names import name_frames


def decoded(matrix, dtype, fmt: str, progress: bool | Progress = False):
    """A whole .sinr matrix, cells x genes, in the type and format it was encoded from (CSR or CSC, in
    the class anndata's reader gives: lazy.sparse_class), or dense: decoded in a
    type that holds every count (reads refuse narrower ones, which would wrap a count), then cast to
    the recorded one, which holds every value of a lossless file. One coded within --max-error E may
    decode up to E past its type's range (uint8's 255 as 256) or exactness (float32's 2**25 as
    2**25 - 1): it comes back in the wide type (io.dtypes.widened) whatever its values, as a lazy read
    gives it, never a wrapped or rounded count. A sparse float16 (which h5py stores and scipy cannot
    hold) comes back as float32, which holds such values exactly. Its decoding is a pass of
    `progress` (as to_scipy's)."""
    recorded, lossless = np.dtype(dtype), matrix.mode == "lossless"
    read, held = stored_dtypes(recorded, lossless)
    x = matrix.to_scipy("csc", dtype=read, progress=progress).T
    if fmt == "ndarray":  # a dense array holds float16 too
        x = x.toarray()
        cast = x.astype(recorded)
        return cast if lossless and np.array_equal(cast, x) else x
    if x.dtype != held:
        cast = x.astype(held)
        x = cast if np.array_equal(cast.data, x.data) else x
    kind = sparse_class(fmt)
    return x if kind is sp.csr_matrix else kind(x)


def restore_anndata(m, contents: StoredContents, progress: bool | Progress = False):
    """The whole AnnData of a file, every part as it was encoded; each matrix's decoding a pass of
    `progress`."""
    contents.check_cells()

    def decode_all() -> dict:
        return {e["element"]: decoded(m.matrix(e["matrix"]), e["dtype"], e["format"], progress)
                for e in contents.matrices}

    contents.prefetch(contents.elements)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-restore") as pool:
        pending = pool.submit(decode_all)  # the native decode releases the GIL: anndata reads the parts meanwhile
        values = {part: contents.read(part) for part in contents.elements}
        matrices = pending.result()
    return assembled(m, contents, values, matrices)


def assembled(m, contents: StoredContents, values: dict, matrices: dict):
    """The AnnData of a file's parts as read (`values`: part -> what StoredContents.read gives) and its
    matrices (element -> cells x genes), or CorruptFileError where they do not make one (spec §14.4):
    what read_sinr returns, and what verify builds with empty matrices of their shapes."""
    import anndata
    import pandas as pd

    values = dict(values)
    raw = values.pop("raw", None)
    layers = contents.listed_layers(values.pop("layers", {}), matrices)
    x = matrices.get("X", values.pop("X", None))
    try:
        with quiet_anndata():
            adata = anndata.AnnData(X=x, layers=layers, **values)
            if raw is not None or "raw/X" in matrices:
                raw = raw or {}
                adata.raw = anndata.AnnData(X=matrices.get("raw/X", raw.get("X")),
                                            obs=pd.DataFrame(index=adata.obs_names), var=raw.get("var"),
                                            varm=raw.get("varm"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{m.source}: the stored parts do not make an AnnData ({one_line(exc)})") from exc
    return adata


def to_anndata(m, *, lazy: bool = False, feature_type: str | None = None, dtype=None,
               progress: bool | Progress = False):
    """What SinrMatrix.to_anndata returns (see there); dtype as io.dtypes says; each matrix decoded
    is a pass of `progress` (decoding_passes says how many)."""
    import anndata

    contents = m.contents
    if lazy:
        adata = lazy_anndata(m, contents, dtype=dtype)
    elif contents is not None and contents.object == "anndata":
        adata = restore_anndata(m, contents, progress)
        if dtype is not None and adata.X is not None:
            x, wanted = adata.X, anndata_dtype(dtype)
            if any(entry["element"] == "X" for entry in contents.matrices):
                adata.X = x.astype(wanted)
                check_exact(adata.X.data if sp.issparse(adata.X) else adata.X, wanted, m.source,
                            lambda: x.data if sp.issparse(x) else x)
            else:
                adata.X = cast_exactly(x, wanted, f"{m.source}: X")
    else:
        wanted = anndata_dtype(dtype)
        obs, var = name_frames(m, contents)
        x = m.to_scipy("csc", dtype=wanted, progress=progress).T  # in a float type, checked exact
        with quiet_anndata():
            adata = anndata.AnnData(X=x, obs=obs, var=var)
    return adata if feature_type is None else one_modality(adata, feature_type, m.source)


def decoding_passes(contents: StoredContents | None) -> int:
    """How many matrices an eager to_anndata decodes: every one a whole AnnData stored, else the one opened."""
    return len(contents.matrices) if contents is not None and contents.object == "anndata" else 1


def one_modality(adata, feature_type: str, what: str):
    """The features of one type ('Gene Expression', 'Antibody Capture', ...) of a multi-modal file."""
    if "feature_types" not in adata.var.columns:
        raise SinrKeyError(f"{what}: holds no feature types to choose {feature_type!r} from")
    keep = (adata.var["feature_types"].astype(str) == feature_type).to_numpy()
    if not keep.any():
        types = sorted(set(adata.var["feature_types"].astype(str)))
        raise SinrKeyError(f"{what}: holds no features of type {feature_type!r} (types: {', '.join(types)})")
    with quiet_anndata():
        return adata[:, keep].copy()
