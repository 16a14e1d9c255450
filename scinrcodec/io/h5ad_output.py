"""How decoded AnnData objects are written as .h5ad: compressed as the input was.

An .h5ad input's compression (of its count matrix, else its first compressed dataset) is recorded
in the contents map when it is encoded (`h5ad_compression`, informative, spec §14.2), and decoding
writes the .h5ad with it; a file that recorded none, and every other input, gets gzip, as
AnnData.write_h5ad(compression='gzip') writes. compression='none' writes uncompressed datasets
(faster, larger: about 8x on UMI counts).
"""
from __future__ import annotations

import contextlib

from ..errors import InvalidInputError

COMPRESSIONS = ("auto", "gzip", "lzf", "none")
DEFAULT = {"compression": "gzip"}
_MATRICES = ("X/data", "X", "layers", "raw/X/data", "raw/X")


def input_compression(f) -> dict | None:
    """The compression of an open .h5ad file: h5py's compression and compression_opts of its count
    matrix (or first compressed dataset), or None when it is uncompressed."""
    import h5py

    def of(ds) -> dict | None:
        if not isinstance(ds, h5py.Dataset) or ds.compression is None:
            return None
        return {"compression": ds.compression, **({"compression_opts": ds.compression_opts}
                                                  if isinstance(ds.compression_opts, int) else {})}

    for path in _MATRICES:
        found = of(f.get(path))
        if found is not None:
            return found
    datasets = []
    f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) and obj.compression
                 else None)
    return of(datasets[0]) if datasets else None


UNKNOWN = "unknown"  # no .h5ad input recorded its compression


def dataset_kwargs(compression: str, recorded=UNKNOWN) -> dict:
    """h5py's dataset options for a decoded .h5ad: 'auto' is what the input used (`recorded`, the
    contents map's h5ad_compression: a map, or None for an uncompressed input), gzip when unknown."""
    if compression not in COMPRESSIONS:
        raise InvalidInputError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    if compression == "none":
        return {}
    if compression != "auto":
        return {"compression": compression}
    if recorded is None:  # the input was uncompressed
        return {}
    if isinstance(recorded, dict) and recorded.get("compression") in ("gzip", "lzf"):
        opts = recorded.get("compression_opts")
        return {"compression": recorded["compression"], **({"compression_opts": opts}
                                                           if isinstance(opts, int) and 0 <= opts <= 9 else {})}
    return dict(DEFAULT)


def h5ad_image(adata, kwargs: dict) -> memoryview:
    """AnnData.write_h5ad's bytes, built in memory (the caller writes them with ordinary file I/O,
    see io.writers): datasets compressed as `kwargs` say."""
    import io

    import anndata
    import h5py
    from anndata.io import write_elem

    buffer = io.BytesIO()
    with quiet_anndata(), anndata.settings.override(allow_write_nullable_strings=True):
        with h5py.File(buffer, "w") as f:
            write_elem(f, "/", adata, dataset_kwargs=kwargs)
            if adata.raw is None and "raw" in f:  # anndata's element writer stores None as a 'null' element,
                del f["raw"]  # which anndata 0.10 cannot read; write_h5ad writes no raw then
    return buffer.getbuffer()


@contextlib.contextmanager
def quiet_anndata():
    """anndata's warnings about names it makes unique or turns into strings: expected here."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")
        warnings.filterwarnings("ignore", message=".*Transforming to str index.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="anndata")
        yield
