"""scinrcodec: a compact, exact, randomly accessible codec for single-cell count matrices (.sinr).

The read path (open, SinrMatrix) loads with the package, so that opening a file and reading its
first entry cost no imports; every other public name loads on first use (PEP 562), so a script that
only reads a file never imports the encoder, anndata or h5py.
"""
from __future__ import annotations

import importlib

__version__ = "3.0.0"

from .errors import (ClusterError, CorruptFileError, FileChangedError, FormatError, InvalidInputError,  # noqa: E402
                     OutputError, OutputExistsError, ResultTooLargeError, SinrError, SinrIndexError, SinrKeyError,
                     UnsupportedVersionError)
from .errors import (RangeNotSupportedError, RemoteAccessError, RemoteChangedError,  # noqa: E402
                     RemoteConnectionError, RemoteError, RemoteNotFoundError)

from .wholefile.matrix import SinrMatrix, open  # noqa: E402,A004 - the read path, loaded with the package

# public name -> the module that defines it
_LAZY = {
    "CountMatrix": ".io.matrix", "read_matrix": ".io.readers", "MatrixSource": ".io.sources",
    "write_matrix": ".io.writers", "decode": ".wholefile.output", "EncodeOptions": ".encoder.options", "encode": ".wholefile.hints",
    "append": ".wholefile.hints", "encode_whole": ".wholefile.encode", "CellBatch": ".wholefile.batches",
    "read_lazy": ".wholefile.scverse", "reduce_cells": ".reader.lazy", "read_sinr": ".wholefile.scverse",
    "write_sinr": ".wholefile.scverse", "concat": ".wholefile.combine", "subset": ".wholefile.combine",
}

__all__ = ["read_sinr", "write_sinr", "encode", "encode_whole", "append", "decode", "open", "read_lazy",
           "reduce_cells", "concat", "subset", "CellBatch", "SinrMatrix", "EncodeOptions",
           "CountMatrix", "MatrixSource", "read_matrix", "write_matrix", "SinrError", "InvalidInputError",
           "OutputExistsError", "OutputError", "FormatError", "CorruptFileError", "UnsupportedVersionError",
           "SinrIndexError", "SinrKeyError", "FileChangedError", "ResultTooLargeError", "RemoteError",
           "RemoteNotFoundError", "RemoteAccessError", "RangeNotSupportedError", "RemoteConnectionError",
           "RemoteChangedError", "ClusterError", "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scinrcodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
