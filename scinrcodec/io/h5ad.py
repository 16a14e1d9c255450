"""AnnData .h5ad: reading an .h5ad file's X (or a layer, or raw.X) and names, or an AnnData in
memory, and writing a count matrix as an AnnData. CSR X streams as slices, a dense X a few rows at
a time; a CSC X (genes-major) and files written by anndata < 0.8 load whole."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .dask_cells import DaskCellsSource, is_dask_array
from .dtypes import anndata_dtype, check_exact
from .h5ad_output import dataset_kwargs, h5ad_image, quiet_anndata
from .hdf5 import (DENSE_READ_BYTES, HDF5_MAGIC, CompressedH5Source, DenseH5Source, check_declared, checked_dataset,
                   h5_errors, is_string_dataset, open_h5, string_dataset, text_attr)
from .matrix import CountMatrix
from .sources import (MatrixSource, ScipySource, SourceSpec, check_names, check_shape, checked_compressed, decode_names,
                      lacking, one_line, path_spec, var_field)

MERGE_RULES = ("same", "unique", "first", "only")  # anndata.concat's merge and uns_merge strategies


def is_h5ad(path: Path, head: bytes) -> bool:
    """An HDF5 file with AnnData's groups (X or obs); other HDF5 files are 10x files."""
    if not head.startswith(HDF5_MAGIC):
        return False
    with h5_errors(str(path)), open_h5(path) as f:
        keys = set(f.keys())
    return "X" in keys or "obs" in keys


def _is_text(group, name: str) -> bool:
    """Whether group[name] is a 1-D dataset of strings (fixed-length or variable)."""
    obj = group.get(name)
    return is_string_dataset(obj) and obj.ndim == 1


def _h5ad_column(group, name: str, n: int, what: str) -> list[str | None]:
    """A string column of an .h5ad dataframe: a string array, or a categorical; None for a missing
    value (a code of -1, NaN, pd.NA)."""
    import h5py
    import pandas as pd

    obj = group[name]
    where = f"{what} {obj.name}"
    if isinstance(obj, h5py.Group) and text_attr(obj, "encoding-type") == "categorical" and _is_text(obj, "categories"):
        categories = decode_names(checked_dataset(obj, "categories", where, "S")[:], where)
        codes = checked_dataset(obj, "codes", where, "iu")[:].astype(np.int64)
        if codes.size != n or (codes.size and (codes.min() < -1 or codes.max() >= len(categories))):
            raise InvalidInputError(f"{where}: categorical codes do not match {n:,} entries of {len(categories):,} "
                                    "categories")
        return [categories[c] if c >= 0 else None for c in codes]
    if _is_text(group, name):
        return string_dataset(group, name, n, what)
    if isinstance(obj, h5py.Dataset) and obj.ndim != 1:
        raise InvalidInputError(f"{where}: a {obj.ndim}-D dataset, not a column")
    # anything else anndata reads (numbers, bools, nullable strings, a categorical of numbers) as
    # text, as the same AnnData in memory gives it (sources.var_field)
    from anndata.io import read_elem

    check_declared(obj, where)
    try:
        values = [None if pd.isna(v) else str(v) for v in read_elem(obj)]
    except Exception as exc:  # anndata raises many types for elements it cannot read
        raise InvalidInputError(f"{where}: unreadable column ({one_line(exc)})") from exc
    if None in values:  # the others are checked where the field is kept
        return values if len(values) == n else check_names(values, n, where)
    return check_names(values, n, where)


def _h5ad_fields(var, index: str, n: int, what: str) -> tuple[dict, tuple[str, ...]]:
    """The genes' names, ids and feature types of an .h5ad var group, and what the fields left out
    lacked (sources.var_field's rule: a field is all given or none)."""
    names = _h5ad_column(var, index, n, what)
    if None in names:
        raise InvalidInputError(f"{what}: var's index has no value for gene {names.index(None):,}")
    fields, incomplete = {"gene_names": names}, []
    for column in ("gene_ids", "feature_types"):
        values = _h5ad_column(var, column, n, what) if column in var else None
        if values is not None and None in values:
            missing = [i for i, v in enumerate(values) if v is None]
            incomplete.append(lacking(what, column, len(missing), names[missing[0]]))
            values = None
        fields[column] = values
    return fields, tuple(incomplete)


def h5ad_index(frame) -> str | None:
    """The column holding an .h5ad dataframe's index (anndata >= 0.8 layout), or None."""
    import h5py

    if not isinstance(frame, h5py.Group):
        return None
    index = text_attr(frame, "_index")
    return index if index is not None and index in frame else None


def _h5ad_source(f, path: Path, layer: str | None) -> MatrixSource | None:
    """The source of an .h5ad file in the layout of anndata >= 0.8, or None for older layouts."""
    import h5py

    what = f"{path}" if layer is None else f"{path} ({'raw' if layer == 'raw' else f'layer {layer}'})"
    if layer == "raw":
        if not isinstance(f.get("raw"), h5py.Group):
            raise InvalidInputError(f"{path}: has no raw matrix")
        x_path, var = "raw/X", f["raw"].get("var")
    elif layer is not None:
        layers = f.get("layers")
        names = sorted(layers) if isinstance(layers, h5py.Group) else []
        if layer not in names:
            raise InvalidInputError(f"{path}: has no layer {layer!r} (layers: {names})")
        x_path, var = f"layers/{layer}", f.get("var")
    else:
        x_path, var = "X", f.get("var")
    if x_path not in f:
        raise InvalidInputError(f"{path}: has no {x_path} matrix" + (" (use --layer)" if layer is None else ""))
    obs_index, var_index = h5ad_index(f.get("obs")), h5ad_index(var)
    x = f[x_path]
    encoding = text_attr(x, "encoding-type")
    if obs_index is None or var_index is None or encoding not in ("csr_matrix", "csc_matrix", "array"):
        return None
    if encoding == "array":
        dense = checked_dataset(f, x_path, what, "biuf", ndim=2)
        n_cells, n_genes = dense.shape
        if n_genes * dense.dtype.itemsize > DENSE_READ_BYTES:
            raise InvalidInputError(f"{what}: a dense row of {n_genes:,} genes is too large to read; store X as a "
                                    "sparse matrix")
    else:
        shape = x.attrs.get("shape")
        if shape is None or np.shape(shape) != (2,):
            raise InvalidInputError(f"{what}: {x_path} has no (cells, genes) shape attribute")
        n_genes, n_cells = check_shape((shape[1], shape[0]), what)
    names, incomplete = _h5ad_fields(var, var_index, n_genes, what)
    spec = path_spec(path, layer=layer)
    if _is_text(f["obs"], obs_index):  # read a block at a time
        obs_index = f"obs/{obs_index}"
    else:  # encoded otherwise (a categorical index): read whole, as text, as anndata gives it
        obs_index = _h5ad_column(f["obs"], obs_index, n_cells, what)
        if None in obs_index:
            raise InvalidInputError(f"{what}: obs's index has no value for cell {obs_index.index(None):,}")
    if encoding == "array":
        source = DenseH5Source(f, path, x_path, cell_names=obs_index, spec=spec, description=what, **names)
    elif encoding == "csr_matrix":
        source = CompressedH5Source(f, path, x_path, (n_genes, n_cells), cell_names=obs_index, spec=spec,
                                    description=what, **names)
    else:
        arrays = [checked_dataset(x, name, what, kinds)[:] for name, kinds in (("data", "biuf"), ("indices", "iu"),
                                                                             ("indptr", "iu"))]
        counts = checked_compressed(*arrays, shape=(n_cells, n_genes), by_column=True, what=what).T
        cells = obs_index if isinstance(obs_index, list) else string_dataset(f, obs_index, n_cells, what)
        source = ScipySource(counts, cell_names=cells, description=what, spec=spec, paths=(str(path),), **names)
    source.incomplete = incomplete
    return source


def anndata_source(adata, layer: str | None = None, *, what: str = "AnnData", spec: SourceSpec | None = None,
                   paths: tuple[str, ...] = ()) -> MatrixSource:
    """An in-memory AnnData (cells x genes); `layer` picks a layer, or 'raw' for adata.raw."""
    if layer == "raw":
        if adata.raw is None:
            raise InvalidInputError(f"{what}: has no raw matrix")
        x, var = adata.raw.X, adata.raw.var
    elif layer is not None:
        if layer not in adata.layers:
            raise InvalidInputError(f"{what}: has no layer {layer!r} (layers: {sorted(adata.layers)})")
        x, var = adata.layers[layer], adata.var
    else:
        if adata.X is None:
            raise InvalidInputError(f"{what}: has no X matrix (use --layer)")
        x, var = adata.X, adata.var
    return cells_by_genes_source(x, var, adata.obs_names, what, spec=spec, paths=paths)


def cells_by_genes_source(x, var, obs_names, what: str, *, spec: SourceSpec | None = None,
                          paths: tuple[str, ...] = ()) -> MatrixSource:
    """A cells x genes matrix (in memory, or a dask array: a lazy AnnData's) with AnnData's var and
    obs names, as a genes x cells source."""
    (gene_ids, lacks_ids), (feature_types, lacks_types) = (var_field(var, c, what) for c in ("gene_ids", "feature_types"))
    if is_dask_array(x):
        source = DaskCellsSource(x, gene_ids, [str(v) for v in var.index], [str(v) for v in obs_names], feature_types,
                                 description=what)
    else:
        source = ScipySource(x.T, gene_ids, [str(v) for v in var.index], [str(v) for v in obs_names], feature_types,
                             description=what, spec=spec, paths=paths)
    source.incomplete = tuple(note for note in (lacks_ids, lacks_types) if note)
    return source


def read_whole_h5ad(path: Path):
    """An .h5ad file written by anndata < 0.8 (no element encodings to read part by part) as anndata
    reads it, whole, once what its datasets declare fits the memory free."""
    import anndata

    with h5_errors(str(path)), open_h5(path) as f:
        check_declared(f, f"{path}: its contents")
    try:
        return anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types for unreadable files
        raise InvalidInputError(f"{path}: unreadable .h5ad file ({one_line(exc)})") from exc


def read_h5ad(path: Path, layer: str | None = None) -> MatrixSource:
    """An .h5ad file's X, a layer, or raw.X ('raw'), read as the module docstring says."""
    with h5_errors(str(path)), open_h5(path) as f:
        source = _h5ad_source(f, path, layer)
    if source is not None:
        return source
    adata = read_whole_h5ad(path)
    return anndata_source(adata, layer, what=str(path), spec=path_spec(path, layer=layer),
                          paths=(str(path),))


# ------------------------------------------------------------------------------------ writing

def obs_frame(m: CountMatrix):
    """AnnData's obs of a matrix: its cell names, as scanpy expects them."""
    import pandas as pd

    return pd.DataFrame(index=pd.Index(m.filled_cell_names(), dtype=str))


def var_frame(m: CountMatrix):
    """AnnData's var of a matrix: gene names as the index, gene ids and feature types as columns."""
    import pandas as pd

    var = pd.DataFrame(index=pd.Index(m.filled_gene_names(), dtype=str))
    var["gene_ids"] = pd.Series(m.filled_gene_ids(), index=var.index, dtype=object)  # text, though there be no gene
    var["feature_types"] = pd.Series(m.filled_feature_types(), index=var.index, dtype=object)
    return var


def to_anndata(m: CountMatrix, dtype=None):
    """Cells x genes AnnData with names, as scanpy expects; X in the dtype policy's type
    (io.dtypes), checked to hold the counts exactly."""
    import anndata

    wanted = anndata_dtype(dtype)
    x = sp.csr_matrix(m.counts.T.astype(wanted, copy=False))  # CSC counts of that type: neither copied
    check_exact(x.data, wanted, "the matrix", lambda: sp.csr_matrix(m.counts.T).data)
    with quiet_anndata():
        adata = anndata.AnnData(X=x, obs=obs_frame(m), var=var_frame(m))
    return adata


def write_h5ad(path: Path, m: CountMatrix, *, compression: str = "auto", dtype=None) -> None:
    """Write as anndata.write_h5ad does (string columns as categoricals), gzip-compressed unless
    compression says otherwise (io.h5ad_output)."""
    kwargs = dataset_kwargs(compression)
    adata = to_anndata(m, dtype)
    with quiet_anndata():
        adata.strings_to_categoricals()
    image = h5ad_image(adata, kwargs)
    with open(path, "wb") as fh:
        fh.write(image)
