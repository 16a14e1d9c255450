"""concat and subset of .sinr files into a new file, as anndata.concat and adata[cells, genes] do.

Files of one count matrix (plain, or encoded from a 10x file) combine into a file of one count
matrix (a whole AnnData when a `label` column is asked for, or to keep a 10x file's other feature
fields, such as genome, as var columns): genes aligned by gene id, or by name where a file has
none (inner: those every file holds; outer: all, zeros where a file lacks one), cells one file
after another. Files that store a whole AnnData combine as AnnData objects: every part that is not a count matrix goes through anndata's own
concat or subsetting (its join, merge and uns_merge rules), and each count matrix is streamed into
the new file (encoder.combine), decoding one block of cells at a time; a count matrix whose inputs
are of format 3 and keep every gene they store is combined without coding anything again, each
input's chunks copied into a segment of the output (encoder.segments, spec §5.5). Cell names must stay
distinct: a name two files share is refused unless index_unique asks for each file's key to be
appended, as anndata's concat does; one a file holds twice is refused either way (the key would not
tell them apart). Outputs are written to a temporary file and renamed into place.
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..encoder.append import extend_into
from ..encoder.combine import (Piece, PiecesSource, aligned_by_ids, gene_fields, gene_keys, joined_genes, repeated_cell,
                               unique_cell_names)
from ..encoder.driver import BYTES_PER_GENE, checked_options, encode
from ..encoder.options import EncodeOptions, inputs_error
from ..encoder.segments import CopiedSegments, SegmentInput, copyable, write_segments
from ..errors import InvalidInputError
from ..io.atomic import atomic_path
from ..io.formats import check_sinr_output
from ..io.dtypes import anndata_dtype, stored_dtypes
from ..io.h5ad import MERGE_RULES, cells_by_genes_source, obs_frame, var_frame
from ..io.matrix import CountMatrix
from ..io.sources import one_line
from ..limits import check_allocation
from ..io.h5ad_output import quiet_anndata
from ..reader.selection import all_distinct
from ..reader.contents import TENX_SECTION
from ..storage.container import DEFAULT_MAJOR
from ..storage.opening import check_storage_options
from ..storage.urls import is_url
from .encode import write_plan
from .matrix import SinrMatrix, open as open_sinr
from .names import name_frames
from .parts import MemoryParts
from .plan import Plan, PlannedMatrix, add_image, plan_anndata
from .tenx import cut_10x_image


def _open_all(inputs: Sequence, storage_options: dict | None = None) -> list[SinrMatrix]:
    """Every input opened (paths, or URLs with fsspec's storage_options), or none."""
    check_storage_options(inputs, storage_options)
    opened = []
    try:
        for path in inputs:
            opened.append(open_sinr(path, storage_options=storage_options if is_url(path) else None))
    except BaseException:
        for m in opened:
            m.close()
        raise
    return opened


def _is_plain(m: SinrMatrix) -> bool:
    return m.contents is None and len(m.matrix_names) == 1


def _one_matrix(m: SinrMatrix) -> bool:
    """A file of one count matrix: plain, or a 10x file's (whose features' other fields, such as
    genome, are kept as var columns)."""
    return len(m.matrix_names) == 1 and (m.contents is None or m.contents.object == "10x-h5")


def _options(matrices: Sequence[SinrMatrix], format_version: int, jobs: int | None, progress: bool) -> dict:
    """The first input's recorded settings for what is encoded again, tile sizes chosen anew for the
    output's size, in format `format_version` whatever the inputs' versions. The inputs' values are
    kept as they decode: where every input was coded within the same --max-error E, in that mode
    again (quantising a decoded value gives back its own index, so nothing moves, and the file keeps
    saying what its values are), else losslessly, recording how far from the counts first encoded
    the values of lossy inputs may be (EncodeOptions.inputs_error)."""
    first = matrices[0]
    dropped = ("mode", "max_error", "tile_nnz", "patch_nnz", "inputs_error")
    known = {k: v for k, v in EncodeOptions.valid_recorded(first.options).items() if k not in dropped}
    bounds = {m.max_error if m.mode == "max-error" else None for m in matrices}
    mode = {"mode": "max-error", "max_error": bounds.pop()} if bounds != {None} and len(bounds) == 1 else \
        {"mode": "lossless", "inputs_error": inputs_error(matrices)}
    return {**known, **mode, "format_version": format_version, "jobs": jobs, "progress": progress}


def concat(inputs: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike], output: str | os.PathLike, *,
           join: str = "inner", label: str | None = None, keys: Sequence[str] | None = None,
           index_unique: str | None = None, merge: str | None = None, uns_merge: str | None = None,
           force: bool = False, jobs: int | None = None, progress: bool = False, format_version: int = DEFAULT_MAJOR,
           recode: bool = False, drop: Sequence[str] = (), storage_options: dict | None = None) -> dict:
    """The cells of several .sinr files in one new file (see the module docstring), of format
    `format_version`. `label` adds an obs column naming each cell's file by its key (`keys`,
    default '0', '1', ...) and makes the output a whole AnnData; merge and uns_merge are
    anndata.concat's, for files that store a whole AnnData (files of one matrix align genes by id
    with a label or without, each gene's id, name and feature type from the first file that holds
    it, where anndata would align them by name and drop var's columns). recode=True codes every
    cell again (one gene order, bands sized for the whole) rather than copying each file's chunks
    into a segment: slower, but gene reads then cost what they cost in a file encoded whole. `drop`
    leaves parts of the combined AnnData out, as encode_whole's does (a column its merge made that
    anndata cannot store). `inputs` may be a mapping of keys to files, as anndata.concat's is, and
    URLs (storage_options for fsspec). Returns sizes and names."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        raise InvalidInputError(f"concat takes a list of .sinr files, not the one file {str(inputs)!r}")
    if isinstance(inputs, Mapping):
        if keys is not None:
            raise InvalidInputError("concat takes keys from a mapping of files, or as keys=, not both")
        keys, inputs = list(inputs), list(inputs.values())
    inputs = list(inputs)
    if len(inputs) < 2:
        raise InvalidInputError("concat needs at least two .sinr files")
    for name, rule in (("merge", merge), ("uns_merge", uns_merge)):
        if not (rule is None or callable(rule) or isinstance(rule, str) and rule in MERGE_RULES):
            raise InvalidInputError(f"{name} must be one of {', '.join(MERGE_RULES)} or None, not {rule!r}")
    if keys is not None:
        keys = [str(k) for k in keys]
        if len(keys) != len(inputs) or len(set(keys)) != len(keys):
            raise InvalidInputError(f"keys must name each of the {len(inputs)} files once, not {keys}")
    elif label is not None or index_unique is not None:
        keys = [str(i) for i in range(len(inputs))]
    check_sinr_output(output, force=force, inputs=inputs)
    matrices = _open_all(inputs, storage_options)
    try:
        if all(_one_matrix(m) for m in matrices):
            layout = _plain_layout(matrices, join, keys, index_unique)
            if label is None and all(_is_plain(m) for m in matrices):
                if drop:
                    raise InvalidInputError("drop (--drop) leaves out parts of a combined AnnData, and these files "
                                            "hold one count matrix each")
                return _concat_plain(matrices, layout, output, index_unique=index_unique, force=force, jobs=jobs,
                                     progress=progress, format_version=format_version, recode=recode)
            combined, counts = _one_matrix_anndata(matrices, layout, label, keys)
            return _write_anndata(combined, counts, output, matrices[0], force=force, inputs=inputs, jobs=jobs,
                                  progress=progress, format_version=format_version, recode=recode, drop=drop)
        skeletons = [_skeleton(m) for m in matrices]
        combined = _anndata_concat([s for s, _ in skeletons], [m.source for m in matrices], join=join, label=label,
                                   keys=keys, index_unique=index_unique, merge=merge, uns_merge=uns_merge)
        counts = _combined_counts(combined, skeletons, matrices)
        return _write_anndata(combined, counts, output, matrices[0], force=force, inputs=inputs, jobs=jobs,
                              progress=progress, format_version=format_version, recode=recode, drop=drop)
    finally:
        for m in matrices:
            m.close()


class _PlainLayout(NamedTuple):
    """Files of one matrix combined: the output's genes (keys), each file's map from them to its own
    genes, the genes' names and the cells' names (None where the files have none)."""

    genes: list[str]
    maps: list[np.ndarray]
    fields: dict
    names: list[str] | None


def _plain_layout(matrices: list[SinrMatrix], join: str, keys, index_unique) -> _PlainLayout:
    """Genes aligned by id (encoder.combine.joined_genes), the same with a label or without one."""
    named = [m.cell_names is not None for m in matrices]
    if any(named) != all(named):
        raise InvalidInputError(f"{matrices[named.index(False)].source}: has no cell names, unlike "
                                f"{matrices[named.index(True)].source}; files to combine must all have them or not")
    if index_unique is not None and not all(named):
        raise InvalidInputError("index_unique needs cell names, which these files do not have")
    genes, maps = joined_genes(matrices, join)
    if not genes:
        raise InvalidInputError("the files have no gene in common (join='outer' keeps every gene)")
    names = unique_cell_names([m.cell_names for m in matrices], keys, index_unique,
                              [m.source for m in matrices]) if all(named) else None
    return _PlainLayout(genes, maps, gene_fields(matrices, maps), names)


def _one_matrix_anndata(matrices: list[SinrMatrix], layout: _PlainLayout, label: str | None, keys):
    """The AnnData (X a placeholder) and its counts of files of one matrix combined as a whole
    AnnData: genes as in a plain concat; var also each other field the files' features have (a 10x
    file's genome), where the files that hold a gene agree on it; `label` a column of the files'
    keys, a categorical as anndata.concat makes it."""
    import anndata
    import pandas as pd

    n_cells = [m.shape[1] for m in matrices]
    names = CountMatrix(sp.csr_matrix((len(layout.genes), sum(n_cells))), layout.fields["gene_ids"],
                        layout.fields["gene_names"], layout.names, layout.fields["feature_types"])
    obs = obs_frame(names)
    if label is not None:
        obs[label] = pd.Categorical.from_codes(np.repeat(np.arange(len(matrices)), n_cells), categories=keys)
    var = var_frame(names)
    by_ids = aligned_by_ids(matrices)
    held = _held_var([name_frames(m, m.contents)[1].set_axis(pd.Index(gene_keys(m, by_ids))) for m in matrices],
                     pd.Index(layout.genes))
    for column in held.columns.difference(var.columns, sort=False):
        var[column] = held[column].to_numpy()
    dtype = anndata_dtype(None)
    with quiet_anndata():
        adata = anndata.AnnData(X=sp.csr_matrix(names.counts.T.shape, dtype=dtype), obs=obs, var=var)
    pieces = [Piece(m, None, genes_map) for m, genes_map in zip(matrices, layout.maps)]
    return adata, {"X": (pieces, dtype.str, "csr_matrix")}


def _held_var(frames: list, genes) -> "pd.DataFrame":
    """Columns of the files' var frames (indexed by what aligns their genes) for the output's genes:
    each column every file has, each gene's value from the files that hold it, kept where they
    agree on every gene (anndata's merge 'same' compares whole columns after reindexing, so an
    outer join, where each file lacks some genes, keeps none)."""
    import pandas as pd

    var = pd.DataFrame(index=genes)
    for column in [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]:
        values = np.empty(len(genes), dtype=object)
        filled = np.zeros(len(genes), dtype=bool)
        agree = True
        for frame in frames:
            position = frame.index.get_indexer(genes)
            held = position >= 0
            theirs = frame[column].to_numpy(dtype=object)[position[held]]
            agree = bool((values[held & filled] == theirs[filled[held]]).all())
            if not agree:
                break
            values[held & ~filled] = theirs[~filled[held]]
            filled |= held
        if agree and filled.all():
            var[column] = pd.Series(values, index=genes).infer_objects()
    return var


def _concat_plain(matrices: list[SinrMatrix], layout: _PlainLayout, output, *, index_unique, force: bool,
                  jobs: int | None, progress: bool, format_version: int, recode: bool) -> dict:
    genes, maps, fields, names = layout
    first = matrices[0]
    pieces = [Piece(m, None, genes_map) for m, genes_map in zip(matrices, maps)]
    if not recode and copyable(pieces, format_version):  # every input's chunks copied into a segment
        copied = _copied(pieces, len(genes), fields, names if index_unique is not None else None, jobs)
        with atomic_path(Path(output), force=force, inputs=[m.source for m in matrices]) as tmp:
            return write_segments(copied, tmp, progress=progress)
    same = (not recode and index_unique is None and first.mode == "lossless" and first.version[0] == format_version
            and not first.index.segmented
            and np.array_equal(maps[0], np.arange(first.shape[0])) and all(fields[f] == getattr(first, f) for f in fields))
    n_first = first.shape[1]
    if same:  # the first file's chunks are copied, the other files' cells encoded after them
        rest = PiecesSource(pieces[1:], fields["gene_ids"], fields["gene_names"], fields["feature_types"],
                            names[n_first:] if names is not None else None, description="concat")
        with atomic_path(Path(output), force=force, inputs=[m.source for m in matrices]) as tmp:
            result = extend_into(first, rest, tmp, jobs=jobs, progress=progress,
                                 statistics=rest.fresh_gene_statistics,
                                 inputs_error=inputs_error(matrices))
        return {**result, "copied_chunks": first.n_chunks}
    source = PiecesSource(pieces, fields["gene_ids"], fields["gene_names"], fields["feature_types"], names,
                          description="concat")
    return {**encode(source, output, force=force, **_options(matrices, format_version, jobs, progress)),
            "copied_chunks": 0}


def _copied(pieces: list[Piece], n_genes: int, fields: dict, names: list[str] | None,
            jobs: int | None) -> CopiedSegments:
    """The matrix of whole pieces (copyable) combined by copying their chunks; `names`: the cells'
    new names where they change (None: each input's own)."""
    starts = np.concatenate([[0], np.cumsum([p.n_cells for p in pieces])]).tolist()
    return CopiedSegments([SegmentInput(p.matrix, p.columns, start, None if names is None else
                                        names[start: start + p.n_cells]) for p, start in zip(pieces, starts)],
                          n_genes, fields, jobs)


def _repeated(index: np.ndarray, names: list[str] | None) -> str:
    """The position a selection takes a second time first, by name where the axis has names: a
    barcode list of thousands is searched for the user."""
    order = np.argsort(index, kind="stable")
    again = order[1:][index[order[1:]] == index[order[:-1]]]  # places of each repeat after the first
    twice = int(index[again.min()])
    return f"{names[twice]!r} (#{twice})" if names else f"#{twice}"


def subset(input: str | os.PathLike, output: str | os.PathLike, *, cells=None, genes=None,  # noqa: A002
           force: bool = False, jobs: int | None = None, progress: bool = False,
           format_version: int = DEFAULT_MAJOR, storage_options: dict | None = None) -> dict:
    """Some cells and genes of a .sinr file (a path, or a URL with fsspec's storage_options) in a
    new file of format `format_version`, in the order given: names (gene names or ids), indices,
    slices or boolean masks, as SinrMatrix indexing takes them; None keeps all. Positions are ints:
    every string is a name, as labels are to pandas and anndata (a cell may be named '#0'), where
    `sinr subset --cells '#0'` spells position 0 as text (reader.selection.spelled_position), its
    arguments being all text; a '#N' no cell is named is refused saying so. A whole AnnData keeps
    every part, subset as anndata subsets it; a 10x file's subset is a 10x file, its feature fields
    and barcodes cut and its attributes kept (tenx.cut_10x_image). Returns sizes and names."""
    check_sinr_output(output, force=force, inputs=[input])
    (m,) = _open_all([input], storage_options)
    with m:
        if genes is None:  # an index, a map and the encoder's tables over every gene
            check_allocation(BYTES_PER_GENE * m.shape[0], f"{m.source}: a subset of all its {m.shape[0]:,} genes")
        cell_index = m.positions(slice(None) if cells is None else cells, "cell")
        gene_index = m.positions(slice(None) if genes is None else genes, "gene")
        for axis, index, names in (("cell", cell_index, m.cell_names), ("gene", gene_index, m.gene_names)):
            if not all_distinct(index):
                raise InvalidInputError(f"a subset names {axis} {_repeated(index, names)} twice; each can be taken once")
        if not gene_index.size:
            raise InvalidInputError("a subset needs at least one gene")
        options = _options([m], format_version, jobs, progress)
        if _is_plain(m):
            return encode(_subset_source(m, cell_index, gene_index), output, force=force, **options)
        image = cut_10x_image(m, m.contents, cell_index, gene_index) if _one_matrix(m) else None
        if image is not None:  # a 10x file's subset is one too, its other fields and attributes cut or kept
            plan = Plan({**m.contents.raw, "elements": []},
                        [PlannedMatrix(m.contents.raw["group"], lambda: _subset_source(m, cell_index, gene_index))])
            add_image(plan, "h5", TENX_SECTION, image)
            return write_plan(plan, output, checked_options(options), force=force, inputs=[input])
        skeleton, matrices = _skeleton(m)
        with quiet_anndata():
            cut = skeleton[cell_index, gene_index].copy()
        counts = {}
        for element, (matrix, dtype, fmt) in matrices.items():
            genes_map = np.arange(matrix.shape[0]) if element == "raw/X" else gene_index
            counts[element] = ([Piece(matrix, cell_index, genes_map)], dtype, fmt)
        return _write_anndata(cut, counts, output, m, force=force, inputs=[input], jobs=jobs, progress=progress,
                              format_version=format_version)


def _subset_source(m: SinrMatrix, cells: np.ndarray, genes: np.ndarray) -> PiecesSource:
    """The cells and genes (indices, in output order) of a file of one matrix, with their names."""
    names = m.cell_names
    return PiecesSource([Piece(m, cells, genes)], *(None if v is None else [v[i] for i in genes.tolist()]
                                                    for v in (m.gene_ids, m.gene_names, m.feature_types)),
                        None if names is None else [names[j] for j in cells.tolist()], description="subset")


# --------------------------------------------------------------------------- whole AnnData files

def _skeleton(m: SinrMatrix):
    """The file's AnnData with every count matrix an empty placeholder of its shape, and those
    matrices: element -> (SinrMatrix, dtype, format). A file of one matrix gives its names (and X
    in the dtype policy's type)."""
    import anndata

    contents = m.contents
    if contents is None or contents.object != "anndata":
        obs, var = name_frames(m, contents)
        dtype = anndata_dtype(None)
        with quiet_anndata():
            adata = anndata.AnnData(X=sp.csr_matrix(m.T.shape, dtype=dtype), obs=obs, var=var)
        return adata, {"X": (m, dtype.str, "csr_matrix")}
    contents.check_cells()
    values = {part: contents.read(part) for part in contents.elements}
    raw = values.pop("raw", None)
    matrices, placeholders = {}, {}
    for entry in contents.matrices:
        matrix = m.matrix(entry["matrix"])
        matrices[entry["element"]] = (matrix, entry["dtype"], entry["format"])
        held = stored_dtypes(entry["dtype"], matrix.mode == "lossless")[1]  # a type scipy.sparse holds
        placeholders[entry["element"]] = sp.csr_matrix(matrix.T.shape, dtype=held)
    if "raw/X" in placeholders:
        raw = {**(raw or {}), "X": placeholders["raw/X"]}
    layers = contents.listed_layers(values.pop("layers", {}), placeholders)
    with quiet_anndata():
        adata = anndata.AnnData(X=placeholders.get("X", values.pop("X", None)), layers=layers, **values)
        if raw is not None:
            adata.raw = anndata.AnnData(X=raw.get("X"), obs=adata.obs.iloc[:, :0], var=raw.get("var"),
                                        varm=raw.get("varm"))
    return adata, matrices


def _anndata_concat(skeletons: list, sources: list[str], *, join: str, label, keys, index_unique, merge,
                    uns_merge):
    """anndata.concat of the files' AnnData skeletons, its arguments checked first and its failures
    one-line errors: it aligns genes by name, so a name given twice is refused naming the file."""
    import anndata

    if join not in ("inner", "outer"):
        raise InvalidInputError(f"join must be 'inner' or 'outer', not {join!r}")
    for skeleton, source in zip(skeletons, sources):
        raw_names = None if skeleton.raw is None else skeleton.raw.var_names
        for where, var_names in (("var", skeleton.var_names), ("raw.var", raw_names)):
            if var_names is not None and not var_names.is_unique:
                raise InvalidInputError(f"{source}: gene {var_names[var_names.duplicated()][0]!r} is named twice in "
                                        f"{where}; files are combined by gene name, so each must be named once "
                                        "(var_names_make_unique() before write_sinr)")
    try:
        with quiet_anndata():
            combined = anndata.concat(skeletons, join=join, label=label, keys=keys, index_unique=index_unique,
                                      merge=merge, uns_merge=uns_merge)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise InvalidInputError(f"anndata.concat cannot combine these files ({one_line(exc)})") from exc
    if not combined.obs_names.is_unique:
        raise repeated_cell([skeleton.obs_names for skeleton in skeletons], index_unique, sources)
    if not combined.n_vars:
        raise InvalidInputError("the files have no gene in common (join='outer' keeps every gene)")
    return combined


def _combined_counts(combined, skeletons, matrices) -> dict:
    """Each count matrix of the combined AnnData: the pieces that fill it, its dtype and format."""
    counts = {}
    elements = (["X"] if combined.X is not None else []) + [f"layers/{k}" for k in combined.layers] + (
        ["raw/X"] if combined.raw is not None else [])
    for element in elements:
        found = [skeleton_matrices.get(element) for _, skeleton_matrices in skeletons]
        if all(f is None for f in found):
            continue
        if any(f is None for f in found):
            skeleton, _ = skeletons[found.index(None)]
            missing, holder = matrices[found.index(None)].source, next(f for f in found if f is not None)[0].source
            if _holds(skeleton, element):
                raise InvalidInputError(f"{element} is a count matrix in {holder} but not in {missing}; files to "
                                        "combine must agree on which parts are counts")
            raise InvalidInputError(f"{element}: a count matrix of {holder} that {missing} lacks (concat does not "
                                    "fill a count matrix with zeros); join='inner' leaves it out")
        pieces = []
        for (skeleton, _), (matrix, _, _) in zip(skeletons, found):
            ours, theirs = (skeleton.raw, combined.raw) if element == "raw/X" else (skeleton, combined)
            position = ours.var_names.get_indexer(theirs.var_names)
            pieces.append(Piece(matrix, None, position.astype(np.int64)))
        dtype = np.result_type(*[np.dtype(f[1]) for f in found]).str
        counts[element] = (pieces, dtype, _concatenated_format([f[2] for f in found]))
    return counts


def _concatenated_format(formats: list[str]) -> str:
    """The format anndata.concat gives matrices of these formats along the cells: dense only when
    every one is, else compressed rows (csc parts too), an array type where any part is one."""
    if all(f == "ndarray" for f in formats):
        return "ndarray"
    return "csr_array" if any(f.endswith("_array") for f in formats) else "csr_matrix"


def _holds(adata, element: str) -> bool:
    """Whether an AnnData holds the element ('X', 'raw/X', 'layers/name'), counts or not."""
    if element == "X":
        return adata.X is not None
    if element == "raw/X":
        return adata.raw is not None
    return element[len("layers/"):] in adata.layers


def _write_anndata(adata, counts: dict, output, first: SinrMatrix, *, force: bool, inputs: list,
                   jobs: int | None, progress: bool, format_version: int, recode: bool = False,
                   drop: Sequence[str] = ()) -> dict:
    """Write an AnnData whose count matrices are streamed from pieces (counts: element -> (pieces,
    dtype, format)) as a whole-AnnData .sinr file; those copyable copied unless `recode`."""
    cell_names = [str(n) for n in adata.obs_names]
    copied = {} if recode else {path: pieces for path, (pieces, _, _) in counts.items()
                                if copyable(pieces, format_version)}

    class Parts(MemoryParts):
        """The AnnData's parts, its count matrices read from the pieces (or copied from them)."""

        def format(self, path: str) -> str | None:
            return counts[path][2] if path in counts else super().format(path)

        def dtype(self, path: str) -> str:
            return counts[path][1] if path in counts else super().dtype(path)

        def source(self, path: str):
            if path not in counts:
                return super().source(path)
            var = self.adata.raw.var if path == "raw/X" else self.adata.var
            names = cells_by_genes_source(sp.csr_matrix((0, var.shape[0])), var, [], path)
            if path in copied:
                pieces = copied[path]
                fields = {f: getattr(names, f) for f in ("gene_ids", "gene_names", "feature_types")}
                renamed = pieces[0].matrix.index.has_cell_names \
                    and cell_names != [n for p in pieces for n in p.matrix.cell_names]
                return _copied(pieces, var.shape[0], fields, cell_names if renamed else None, jobs)
            return PiecesSource(counts[path][0], names.gene_ids, names.gene_names, names.feature_types,
                                cell_names, description=path)

    inputs_coded = [p.matrix for pieces, _, _ in counts.values() for p in pieces] or [first]
    opts = checked_options(_options(inputs_coded, format_version, jobs, progress))
    plan = plan_anndata(Parts(adata, "AnnData"), layer=None, drop=drop)
    return write_plan(plan, output, opts, force=force, inputs=inputs)
