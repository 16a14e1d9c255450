"""Decoding a .sinr file to a file users have: the whole AnnData of a file that stores one as an
.h5ad or a .zarr store, the original 10x file as an .h5, and otherwise the opened count matrix in
the format its name chooses (io.writers)."""
from __future__ import annotations

import os
from pathlib import Path

from ..io.atomic import atomic_path
from ..io.formats import OUTPUTS_BY_NAME, load_writer
from ..io.h5ad_output import UNKNOWN, dataset_kwargs, h5ad_image
from ..io.writers import check_hdf5_names, check_output, output_kind, write_matrix as write_count_matrix
from ..io.zarr_store import write_zarr_store, zarr_kwargs
from ..progress import progress_of
from .matrix import open as open_sinr
from .restore import decoding_passes, to_anndata
from .tenx import tenx_var, write_10x


def write_decoded(m, output: str | os.PathLike, *, force: bool = False, compression: str = "auto",
                  dtype=None, whole: bool = True, progress: bool = False) -> str:
    """Write a decoded file to `output` (format by extension): with `whole`, the whole AnnData of a
    file that holds one as .h5ad or .zarr (a 10x file's as read_sinr gives it, its features' genome
    and other fields in var) and the original 10x file as .h5; otherwise the matrix `m` with its
    names. An .h5ad is compressed as its input was, else gzip (io.h5ad_output), a .zarr as zarr's
    default unless `compression` says otherwise (io.zarr_store); dtype is X's (io.dtypes).
    progress=True shows a bar on stderr: each matrix's decoding, then the writing, a pass of it."""
    kind = output_kind(output)
    output_format = OUTPUTS_BY_NAME[kind]
    path = Path(output)
    contents = m.contents
    if whole and contents is not None and contents.object in ("anndata", "10x-h5") and (
            output_format.anndata or (contents.object, kind) == ("10x-h5", "10x-h5")):
        if kind == "zarr":
            zarr_kwargs(compression)  # a bad value fails before any work
        else:
            kwargs = dataset_kwargs(compression, contents.raw.get("h5ad_compression", UNKNOWN))
            check_hdf5_names(m, f"{path}: ")
        load_writer(output_format)
        passes = (decoding_passes(contents) if output_format.anndata else 1) + 1
        with progress_of(progress, path.name, "nonzeros", passes=passes) as bar, \
                atomic_path(path, force=force, is_dir=output_format.is_dir,
                            folder_files=output_format.folder_files or ()) as tmp:
            if output_format.anndata:
                adata = to_anndata(m, dtype=dtype, progress=bar)
                bar.begin("writing", None)  # anndata writes it in one call
                if kind == "zarr":
                    write_zarr_store(tmp, adata, compression)
                else:
                    image = h5ad_image(adata, kwargs)
                    with open(tmp, "wb") as fh:
                        fh.write(image)
            else:
                write_10x(m, contents, tmp, bar)
        return kind
    dataset_kwargs(compression)  # a bad value fails before any work
    with progress_of(progress, path.name, "nonzeros", passes=2) as bar:
        matrix = m.to_count_matrix(OUTPUTS_BY_NAME[kind].values(dtype), progress=bar)  # in the type the output stores
        if kind == "10x-h5" and contents is not None:
            matrix.genomes = _genomes(m, contents)
        return write_count_matrix(output, matrix, force=force, compression=compression, dtype=dtype, progress=bar)


def _genomes(m, contents) -> list[str] | None:
    """Each gene's genome, for a 10x output of the matrix alone: a 10x file's own, or from the var of a
    stored AnnData (as a concat of 10x files keeps it) for its X or raw.X; None where there is none."""
    if contents.object == "10x-h5":
        return tenx_var(m, contents).get("genome")
    entry = contents.matrix_entry(m.name)
    part = {"X": "var", "raw/X": "raw"}.get(entry["element"]) if entry is not None else None
    if part is None or part not in contents.elements:
        return None
    var = contents.read(part)
    var = var.get("var") if part == "raw" else var
    if var is None or "genome" not in getattr(var, "columns", ()) or len(var) != m.shape[0]:
        return None
    return [str(v) for v in var["genome"]]


def decode(path: str | os.PathLike, output: str | os.PathLike | None = None, *, force: bool = False,
           jobs: int | None = None, storage_options: dict | None = None, compression: str = "auto", dtype=None,
           matrix: str | None = None, progress: bool = False):
    """Decode a .sinr file to a genes x cells csr_matrix, or write it to `output` (format by
    extension; an .h5ad compressed as its input was, else gzip, a .zarr store with zarr's default codec, X
    in `dtype` as read_sinr gives).
    `matrix` names one matrix of a file that holds several ('X', 'layers/counts', 'raw/X'): it
    alone is decoded, with its names, whatever the output (default: the whole file where the output
    can hold it, else the file's default matrix). progress=True shows a bar of the work's passes,
    with their throughput, on stderr."""
    if output is not None:
        check_output(output, force=force, inputs=[path])
    with open_sinr(path, matrix=matrix, jobs=jobs, storage_options=storage_options) as m:
        if output is None:
            return m.to_scipy(progress=progress)
        return write_decoded(m, output, force=force, compression=compression, dtype=dtype, whole=matrix is None,
                             progress=progress)
