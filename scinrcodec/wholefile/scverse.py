"""read_sinr and write_sinr: .sinr files read and written as scverse users read and write .h5ad
files (anndata.read_h5ad, AnnData.write_h5ad): an AnnData in, an AnnData out, cells x genes.

Both are thin: write_sinr stores a whole AnnData (encode_whole) or one of its count matrices
(encode), read_sinr and read_lazy give SinrMatrix.to_anndata, eager or lazy. The dtype policy
of X is stated in scinrcodec.io.dtypes.
"""
from __future__ import annotations

import os

from ..errors import InvalidInputError
from .matrix import open as open_sinr


def read_sinr(path, *, backed: bool = False, matrix: str | None = None, feature_type: str | None = None,
              dtype=None, jobs: int | None = None, storage_options: dict | None = None):
    """The AnnData of a .sinr file (a path, a URL with fsspec's storage_options, bytes or a seekable
    file object), cells x genes.

    A file that stores a whole AnnData comes back whole, every part as it was; a file of one count
    matrix gives X with its cell names as obs_names and gene names as var_names (gene ids and
    feature types as var columns). X's dtype: as stored for a whole AnnData (a lossy matrix of a type
    narrower than int32 or float64 as int64 or float64: io.dtypes.widened), float32 for a file of one
    matrix (as scanpy.read_10x_h5 gives); dtype= chooses (np.int32 is exact for every count).
    backed=True gives the lazy AnnData (read_lazy): X a dask array decoded chunk by chunk."""
    if backed not in (True, False, "r"):
        raise InvalidInputError(f"backed must be True, False or 'r' (a .sinr file is read-only), not {backed!r}")
    m = open_sinr(path, matrix=matrix, jobs=jobs, storage_options=storage_options)
    if backed:
        try:
            return m.to_anndata(lazy=True, feature_type=feature_type, dtype=dtype)
        except BaseException:
            m.close()
            raise
    with m:
        return m.to_anndata(feature_type=feature_type, dtype=dtype)


def write_sinr(adata, path: str | os.PathLike, *, layer: str | None = None, matrix_only: bool = False,
               drop=(), force: bool = False, **options) -> dict:
    """Write an AnnData to a .sinr file, atomically. By default everything is kept: count matrices
    (X, integer layers, raw.X) become .sinr matrices, every other part is stored by anndata's own
    I/O, and read_sinr gives it all back. `layer` names the count matrix opened by default ('X',
    a layer name, or 'raw'); with matrix_only=True only that one is stored (X when layer is None),
    with the names. `drop` leaves out parts anndata cannot write ('uns/callback'). An existing
    file is replaced only with force=True. options are scinrcodec.encode's (jobs, chunk_cells, ...).
    Returns sizes and names."""
    if type(adata).__name__ != "AnnData":
        raise InvalidInputError(f"write_sinr takes an AnnData, not a {type(adata).__name__} (scinrcodec.encode "
                                "takes other matrices)")
    if matrix_only:
        from ..encoder.driver import encode  # the encoder loads only for writing
        from .hints import hinting

        if list(drop):
            raise InvalidInputError("drop applies to a whole AnnData (not with matrix_only)")
        with hinting(adata, layer):
            return encode(adata, path, force=force, layer=layer, **{"progress": False, **options})
    from .encode import encode_whole

    return encode_whole(adata, path, layer=layer, drop=drop, force=force, **{"progress": False, **options})


def read_lazy(path, *, matrix: str | None = None, feature_type: str | None = None, dtype=None,
              storage_options: dict | None = None):
    """A lazy AnnData of a .sinr file (see wholefile.lazy): `scinrcodec.read_lazy("pbmc.sinr")`.
    `path` may be a path, a URL (with fsspec's storage_options), bytes or a seekable file object, as
    scinrcodec.open takes."""
    return open_sinr(path, matrix=matrix, storage_options=storage_options).to_anndata(lazy=True,
                                                                                     feature_type=feature_type,
                                                                                     dtype=dtype)
