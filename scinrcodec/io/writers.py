"""Writing the formats users have (the table io.formats.FORMATS): AnnData .h5ad and .zarr, 10x HDF5,
Matrix Market (file or 10x folder), .npz; the format is chosen by the output's name.

Every writer is atomic: it writes a temporary sibling and renames it into place. HDF5 outputs are
built in memory and written with ordinary file I/O: libhdf5 can crash when a write fails (a full
disk, a file size limit), where Python raises OSError and the temporary file is removed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import InvalidInputError
from ..progress import Progress, progress_of
from .atomic import atomic_path, check_not_input, check_writable
from .formats import OUTPUT_LABELS, OUTPUTS, OUTPUTS_BY_NAME, load_writer
from .matrix import CountMatrix


def output_kind(path: str | os.PathLike) -> str:
    """The name of the output `path` chooses: the one whose suffix ends its name (x.zarr: a zarr
    store), else a folder of 10x mtx files for a name without a dot, one written with a trailing
    slash ('sample.v2/') or an existing folder."""
    text = os.fspath(path)
    path = Path(text)
    name = path.name.lower()
    for output in OUTPUTS:
        if output.suffixes and name.endswith(output.suffixes):
            return output.name
    if "." not in path.name or path.is_dir() or text.endswith(("/", os.sep)):
        return next(o.name for o in OUTPUTS if not o.suffixes)
    raise InvalidInputError(f"{path}: unknown output format (use {OUTPUT_LABELS})")


def check_output(path: str | os.PathLike, *, force: bool, inputs: Iterable = ()) -> str:
    """Fail before any work when `path` cannot take a decoded matrix (see atomic.check_writable);
    return its format."""
    check_not_input(path, inputs)
    kind = output_kind(path)
    output = OUTPUTS_BY_NAME[kind]
    check_writable(path, force=force, inputs=inputs, is_dir=output.is_dir, folder_files=output.folder_files or ())
    return kind


HDF5_OUTPUTS = ("h5ad", "10x-h5")  # outputs whose strings cannot hold a NUL character


def check_hdf5_names(m, what: str) -> None:
    """Raise InvalidInputError where a name of `m` (a CountMatrix or a .sinr matrix) holds a NUL
    character, which HDF5's strings cannot hold (a file written before such names were refused)."""
    for field in ("gene_names", "gene_ids", "feature_types", "cell_names"):
        values = getattr(m, field)
        if values is not None and "\0" in "".join(values):
            name = next(v for v in values if "\0" in v)
            raise InvalidInputError(f"{what}{field.replace('_', ' ')}: the name {name[:40]!r} contains a NUL "
                                    "character, which .h5ad and .h5 files cannot hold (write .mtx or .npz)")


def write_matrix(path: str | os.PathLike, m: CountMatrix, *, force: bool = False, compression: str = "auto",
                 dtype=None, progress: bool | Progress = False) -> str:
    """Write `m` in the format named by `path`'s extension (a folder gets the 10x mtx triple);
    compression and dtype apply to the outputs that hold an AnnData (.h5ad: io.h5ad.write_h5ad; .zarr:
    io.zarr_store); the writing shows a bar (a pass
    of `progress` where it is a caller's bar), counted in nonzeros where the format's writer counts
    them (Output.counts)."""
    output = OUTPUTS_BY_NAME[output_kind(path)]
    path = Path(path)
    if not output.anndata and (compression != "auto" or dtype is not None):
        raise InvalidInputError(f"{path}: compression and dtype (--compression, --dtype) apply to .h5ad and .zarr "
                                f"outputs, not {output.name}")
    if output.name in HDF5_OUTPUTS:
        check_hdf5_names(m, f"{path}: ")
    load_writer(output)
    with progress_of(progress, path.name, "nonzeros") as bar:
        bar.begin("writing", m.counts.nnz if output.counts else None)
        with atomic_path(path, force=force, is_dir=output.is_dir, folder_files=output.folder_files or ()) as tmp:
            output.write(tmp, path, m, compression, dtype, bar)
    return output.name
