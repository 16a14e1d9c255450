"""Encoding a whole AnnData (in memory, .h5ad or zarr store) or 10x file into one .sinr file: its
plan (wholefile.plan, .tenx), the count matrices coded by the encoder, the element images and the
contents map stored as file-level sections (format 2.1), all written atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..encoder.driver import checked_options, finish_file, write_matrix
from ..encoder.options import EncodeOptions
from ..encoder.segments import CopiedSegments
from ..errors import InvalidInputError
from ..io.atomic import atomic_path
from ..io.dask_cells import is_dask_array, read_files
from ..io.formats import check_sinr_output
from ..io.h5ad import read_whole_h5ad
from ..io.h5ad_output import input_compression
from ..io.hdf5 import h5_errors, open_h5, text_attr
from ..io.readers import check_local_input, sniff_format
from ..io.zarr_store import open_zarr, zarr_errors
from ..progress import Progress
from ..reader.contents import CONTENTS
from ..storage.container import ContainerWriter, pack_map, write_version
from .parts import FileParts, MemoryParts, ZarrParts
from .plan import Plan, plan_anndata
from .tenx import plan_10x


def plan_source(source, *, layer: str | None = None, drop: Iterable[str] = ()) -> Plan:
    """What a whole encoding of `source` writes, its element images built (and checked)."""
    if type(source).__name__ == "AnnData":
        return plan_anndata(MemoryParts(source, "AnnData"), layer=layer, drop=drop)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(f"cannot encode an object of type {type(source).__name__} whole (pass an AnnData, "
                                "or the path of an .h5ad, AnnData .zarr or 10x .h5)")
    check_local_input(source)
    path = Path(source)
    kind = sniff_format(path)
    if kind == "10x-h5":
        if layer is not None or list(drop):
            given = "a layer (--layer) applies" if layer is not None else "drops (--drop) apply"
            raise InvalidInputError(f"{path}: {given} to .h5ad input only, not to a 10x .h5")
        return plan_10x(path)
    if kind == "zarr":
        with zarr_errors(str(path)):
            return plan_anndata(ZarrParts(path, open_zarr(path)), layer=layer, drop=drop)
    if kind != "h5ad":
        raise InvalidInputError(f"{path}: a {kind} input holds one matrix and nothing else; encode it with "
                                "scinrcodec.encode")
    return _plan_h5ad(path, layer=layer, drop=drop)


def _plan_h5ad(path: Path, *, layer: str | None, drop: Iterable[str]) -> Plan:
    with h5_errors(str(path)), open_h5(path) as f:
        if text_attr(f, "encoding-type") == "anndata":
            plan = plan_anndata(FileParts(path, f), layer=layer, drop=drop)
            plan.contents["h5ad_compression"] = input_compression(f)
            return plan
    return plan_anndata(MemoryParts(read_whole_h5ad(path), str(path)), layer=layer, drop=drop)


def encode_whole(source, output: str | os.PathLike, *, layer: str | None = None, drop: Iterable[str] = (),
                 force: bool = False, client=None, **options) -> dict:
    """Encode everything `source` holds into one .sinr file, atomically: an AnnData (or the path of
    an .h5ad file or AnnData zarr store) with all its parts, or a 10x .h5 file with all its fields.
    `layer` names the count matrix a reader opens by default ('X', a layer, or 'raw'); `drop` names
    parts to leave out, which is needed for objects anndata itself cannot write. Returns sizes and
    names."""
    opts = checked_options(options)
    inputs = _inputs(source)
    check_sinr_output(output, force=force, inputs=inputs)
    return write_plan(plan_source(source, layer=layer, drop=drop), output, opts, force=force, inputs=inputs,
                      client=client)


def _inputs(source) -> list:
    """The files an output must not replace: the input's path, or those a lazy AnnData reads (a
    lazy one written onto the .sinr file it is read from)."""
    if isinstance(source, (str, os.PathLike)):
        return [source]
    if type(source).__name__ != "AnnData":
        return []
    elements = [source.X, *source.layers.values()]
    if source.raw is not None:
        elements.append(source.raw.X)
    for mapping in (source.obsm, source.varm, source.obsp, source.varp):
        elements += mapping.values()
    return [path for x in elements if is_dask_array(x) for path in read_files(x)]


def write_plan(plan: Plan, output: str | os.PathLike, opts: EncodeOptions, *, force: bool, inputs: list,
               client=None) -> dict:
    """Write what a plan says (its matrices encoded, or copied where a plan's source is
    CopiedSegments, its element images stored) to `output`."""
    with atomic_path(Path(output), force=force, inputs=inputs) as tmp, open(tmp, "wb") as stream:
        writer = ContainerWriter(stream, version=write_version(opts.format_version, file_sections=True))
        matrices = []
        for item, entry in zip(plan.matrices, plan.contents["matrices"]):
            matrix_source = item.open()
            copied = isinstance(matrix_source, CopiedSegments)  # one pass over its chunks, not two
            progress = Progress(opts.progress, matrix_source.nnz,
                                f"{'copying' if copied else 'encoding'} {item.element}", "nonzeros")
            try:
                matrices.append(matrix_source.write_into(writer, progress, name=entry["matrix"]) if copied else
                                write_matrix(writer, matrix_source, opts, name=entry["matrix"], progress=progress,
                                             client=client))
            finally:
                progress.close()
        sections = [writer.section(CONTENTS, pack_map(plan.contents))]
        sections += [writer.section(name, payload) for name, payload in plan.sections]
        size = finish_file(writer, matrices, sections)
    first = matrices[0]
    return {"bytes": size, "nnz": sum(m["nnz"] for m in matrices), "shape": tuple(first["shape"]),
            "chunks": first["n_chunks"], "matrices": [m["name"] for m in matrices],
            "parts": [e["element"] for e in plan.contents["elements"]], "dropped": plan.contents.get("dropped", [])}

