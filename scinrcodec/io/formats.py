"""The formats users have, as one table: how each is recognised, opened, written and named.

One entry per format (one module each: h5ad, zarr_store, tenx_h5, npz, mtx). Reading (io.readers), writing
(io.writers), the CLI's help and every message that lists formats take them from FORMATS, so a
format is added in one place. An input's format is recognised from its content, never its name,
by the first entry whose sniff() claims it; an output's from its name (a suffix, or a folder).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import InvalidInputError
from ..progress import Progress
from .atomic import check_writable
from .dtypes import anndata_dtype
from .h5ad import is_h5ad, read_h5ad, write_h5ad
from .matrix import CountMatrix
from .mtx import MTX_FOLDER_FILES, MTX_VALUES, MtxSource, is_mtx, write_mtx_file, write_mtx_folder
from .npz import NPZ_VALUES, is_npz, read_npz, write_npz
from .sources import MatrixSource
from .tenx_h5 import TENX_VALUES, is_hdf5, read_10x_h5, write_10x_h5
from .zarr_store import ZARR_ENTRIES, is_zarr, read_zarr, write_zarr_matrix


@dataclass(frozen=True)
class Output:
    """One way a format is written: its name (what output_kind returns and `sinr decode` prints),
    how users know it, the name suffixes that choose it (none: any folder), and how it writes a
    matrix to the temporary path (the requested path tells .gz; compression and dtype: those of
    the outputs that hold an AnnData), counting the nonzeros it has written on a Progress where it
    writes them in blocks (`counts`; else its write is one call, a pass shown by its name)."""

    name: str
    label: str
    suffixes: tuple[str, ...]
    # tmp, path, matrix, compression, dtype, progress
    write: Callable[[Path, Path, CountMatrix, str, object, Progress], None]
    values: Callable[[object], np.dtype]  # the type it stores values in, given the dtype asked for (.h5ad's)
    # what `write` imports on first use, loaded before the temporary output exists: an interrupt landing
    # in an import may land in importlib's callbacks, where Python prints it and goes on
    modules: tuple[str, ...] = ()
    counts: bool = False  # whether `write` counts the nonzeros it writes on its Progress
    # a folder output: the entries it writes there (a trailing '/': a folder), the only ones an existing
    # folder it replaces may hold (io.atomic.check_writable); None for a file
    folder_files: frozenset[str] | None = None
    anndata: bool = False  # writes an AnnData: takes compression and dtype, and holds a whole stored AnnData

    @property
    def is_dir(self) -> bool:
        """Whether the output is a folder (of several files)."""
        return self.folder_files is not None


@dataclass(frozen=True)
class Format:
    """One format: its name (what sniff_format returns), how users know it as an input, how its
    content is recognised (from the path and the file's first 16 bytes), how it opens as a source
    of cells, and how it is written."""

    name: str
    label: str
    sniff: Callable[[Path, bytes], bool]
    open: Callable[[Path, str | None, bool], MatrixSource]  # path, layer, pattern_as_ones
    outputs: tuple[Output, ...]
    takes_layer: bool = False


# In order: the first format whose sniff() claims a path is its format (an HDF5 file is an .h5ad
# when it has AnnData's groups, else a 10x file; a folder is an AnnData zarr store when its root says so).
FORMATS = (
    Format("h5ad", ".h5ad", is_h5ad, lambda path, layer, ones: read_h5ad(path, layer),
           (Output("h5ad", ".h5ad", (".h5ad",), lambda tmp, path, m, compression, dtype, progress:
                   write_h5ad(tmp, m, compression=compression, dtype=dtype), anndata_dtype, ("anndata",),
                   anndata=True),),
           takes_layer=True),
    Format("zarr", "AnnData .zarr", is_zarr, lambda path, layer, ones: read_zarr(path, layer),
           (Output("zarr", "AnnData .zarr", (".zarr",), lambda tmp, path, m, compression, dtype, progress:
                   write_zarr_matrix(tmp, m, compression=compression, dtype=dtype), anndata_dtype,
                   ("anndata", "zarr"), folder_files=ZARR_ENTRIES, anndata=True),),
           takes_layer=True),
    Format("10x-h5", "10x .h5", is_hdf5, lambda path, layer, ones: read_10x_h5(path),
           (Output("10x-h5", ".h5", (".h5",), lambda tmp, path, m, compression, dtype, progress:
                   write_10x_h5(tmp, m, progress), lambda dtype: TENX_VALUES, ("h5py",), counts=True),)),
    Format("npz", ".npz", is_npz, lambda path, layer, ones: read_npz(path),
           (Output("npz", ".npz", (".npz",), lambda tmp, path, m, compression, dtype, progress: write_npz(tmp, m),
                   lambda dtype: NPZ_VALUES),)),
    Format("mtx", "10x mtx", is_mtx, lambda path, layer, ones: MtxSource(path, pattern_as_ones=ones),
           (Output("mtx-file", ".mtx(.gz)", (".mtx", ".mtx.gz"), lambda tmp, path, m, compression, dtype, progress:
                   write_mtx_file(tmp, m.counts, gz=path.name.lower().endswith(".gz"), name=path.name,
                                  progress=progress), lambda dtype: MTX_VALUES, ("scipy.io",), counts=True),
            Output("mtx-dir", "a folder", (), lambda tmp, path, m, compression, dtype, progress:
                   write_mtx_folder(tmp, m, progress), lambda dtype: MTX_VALUES, ("scipy.io",), counts=True,
                   folder_files=MTX_FOLDER_FILES))),
)
BY_NAME = {f.name: f for f in FORMATS}
OUTPUTS = tuple(o for f in FORMATS for o in f.outputs)
OUTPUTS_BY_NAME = {o.name: o for o in OUTPUTS}


def check_sinr_output(target: str | os.PathLike, *, force: bool, inputs: Iterable = ()) -> None:
    """What every .sinr writer checks before any work: the output can be written (atomic.check_writable)
    and is not named as another format's file (out.h5ad holding .sinr bytes, which anndata cannot read)."""
    check_writable(target, force=force, inputs=inputs)
    name = os.fspath(target).lower()
    other = next((o for o in OUTPUTS if o.suffixes and name.endswith(o.suffixes)), None)
    if other is not None:
        raise InvalidInputError(f"{os.fspath(target)}: a .sinr file cannot be named as {other.label}; name it .sinr "
                                "(decode writes the other formats)")


def load_writer(output: Output) -> None:
    """Import what `output`'s writer imports on first use, before its temporary file exists
    (Output.modules says why)."""
    for module in output.modules:
        importlib.import_module(module)


def listed(labels: list[str]) -> str:
    """'a, b or c'."""
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


INPUT_LABELS = listed([f.label for f in FORMATS])
LAYERED_LABELS = listed([f.label for f in FORMATS if f.takes_layer])
OUTPUT_LABELS = listed([o.label for o in OUTPUTS if o.suffixes] + [o.label for o in OUTPUTS if not o.suffixes])
