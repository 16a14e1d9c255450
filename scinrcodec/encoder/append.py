"""Appending cells: the new matrix's cells become new chunks of an existing file.

Existing chunks are copied byte for byte, never re-encoded: they keep their gene order, gene
terms and band boundaries, and the file keeps its format version. Genes the new cells express for
the first time join the end of the stored gene order, in new bands (a chunk never has more rows
than stored genes, so old chunks are unaffected). A file of several segments (spec §5.5, what
concat writes) gains the new cells as a segment of their own, coded against their own genes.
The result is written to a temporary copy and renamed over the file, so the old file is intact
if anything fails. The file is locked meanwhile, so appends by several processes wait for each
other and each one's cells are kept; new cells whose names the file already holds are refused.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..codec.geometry import genes_sorted_in_bands, plan_band_rows
from ..errors import CorruptFileError, FileChangedError, InvalidInputError, OutputError
from ..io.atomic import atomic_path, locked_file, why_not_writable
from ..io.sources import CellBlock, MatrixSource, check_complete_names
from ..model.baseline import quantise_terms
from ..progress import Progress
from ..reader.matrix import MatrixReader
from ..storage.container import ContainerWriter, is_newer_minor
from ..storage.layout import CHUNK_INDEX_FIELDS, MATRIX_SECTIONS
from ..storage.source import ByteSource, FileObjectSource
from ..storage.urls import is_url
from .chunk import FileContext
from .driver import GENE_SORTED_BANDS, CodedChunks, encode_chunks, encode_stream, chunk_index_section, \
    finish_file, gene_statistics, summarise
from .options import EncodeOptions
from .segments import CopiedSegments, SegmentInput, can_copy, checked_chunk_block, write_segments
from .siren_fit import INSTALL_TORCH, needs_torch, torch_available

COPY_BLOCK = 4 << 20  # bytes of existing chunks copied at a time


class _ShiftedSource(MatrixSource):
    """A source whose cells are numbered after the file's existing cells."""

    def __init__(self, source: MatrixSource, offset: int) -> None:
        self.source, self.offset = source, offset
        self.shape, self.nnz, self.description = source.shape, source.nnz, source.description
        self.gene_ids, self.gene_names, self.feature_types = source.gene_ids, source.gene_names, source.feature_types

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        return self.source.cell_names(start - self.offset, stop - self.offset)

    @property
    def has_cell_names(self) -> bool:
        return self.source.has_cell_names

    def blocks(self, cells_per_block: int):
        for block in self.source.blocks(cells_per_block):
            yield CellBlock(block.start + self.offset, block.indptr, block.genes, block.values)


def _same_genes(matrix: MatrixReader, source: MatrixSource) -> None:
    if source.shape[0] != matrix.shape[0]:
        raise InvalidInputError(f"{source.description}: has {source.shape[0]:,} genes, the file {matrix.shape[0]:,}: "
                                "only cells with the same genes can be appended")
    for what, ours, theirs in (("gene ids", matrix.gene_ids, source.gene_ids),
                               ("gene names", matrix.gene_names, source.gene_names),
                               ("feature types", matrix.feature_types, source.feature_types)):
        if ours is not None and theirs is not None and ours != theirs:
            first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            raise InvalidInputError(f"{source.description}: its {what} differ from the file's (gene {first:,}: "
                                    f"{theirs[first]!r} vs {ours[first]!r}): only the same genes can be appended")
        if (ours is None) != (theirs is None) and what != "feature types":
            raise InvalidInputError(f"{source.description}: {what} are missing on one side: cannot check that "
                                    "the genes are the same")
    if source.has_cell_names != matrix.index.has_cell_names:
        raise InvalidInputError(f"{source.description}: cell names are {'present' if source.has_cell_names else 'missing'}"
                                f", unlike the file's cells")


def append(path: str | os.PathLike, source, *, jobs: int | None = None, progress: bool = False,
           layer: str | None = None, waiting: Callable[[], object] | None = None) -> dict:
    """Add the cells of `source` (same genes) to the .sinr file at `path` as new chunks, atomically
    (through a symbolic link, to the file it names: the link stays). Returns the new file's size and
    shape. Another append of the file is waited for; `waiting` is called once (from another thread)
    if that has lasted LOCK_NOTICE_SECONDS (io.atomic), so that a caller can say why nothing happens."""
    from ..io.readers import as_source

    if is_url(path):
        raise InvalidInputError(f"{path}: append rewrites a local file (URLs are read, not written)")
    path = Path(os.path.realpath(path))  # the new file replaces the one the link names, not the link
    with locked_file(path, waiting) as locked, MatrixReader(path) as matrix:
        if not os.access(path, os.W_OK):  # the folder would let the new file replace it: the file's own mode says no
            raise OutputError(f"{path}: is not writable ({why_not_writable(path)}); append rewrites the file")
        if is_newer_minor(matrix.version):  # its additions (sections this reader skips) would go, under its label
            major, minor = matrix.version
            raise InvalidInputError(f"cannot append to {path}: it is of format {major}.{minor}, newer than this "
                                    "scinrcodec knows, whose additions it could not keep; sinr concat or sinr subset "
                                    "write its cells to a new file of the format it writes")
        if len(matrix.footer.get("matrices", [])) != 1 or matrix.footer.get("sections"):
            raise InvalidInputError(f"{path}: holds a whole AnnData or 10x file (several matrices or other parts), "
                                    "whose annotations would not match new cells; append works on files of one "
                                    "count matrix (sinr encode --matrix-only), and sinr concat combines whole files")
        new = as_source(source, layer)
        check_complete_names(new)
        _same_genes(matrix, new)
        _new_cell_names(matrix, new)
        if new.shape[1] == 0:  # no cell to add: the file stays as it is (an empty batch of a stream)
            index = matrix.index
            return {"bytes": matrix.file_size, "shape": (index.n_genes, index.n_cells), "nnz": index.nnz,
                    "chunks": index.n_chunks}
        with atomic_path(path, force=True, mode=stat.S_IMODE(os.fstat(locked).st_mode)) as tmp:
            result = _append_segment(matrix, new, tmp, jobs=jobs, progress=progress) if matrix.index.segmented \
                else extend_into(matrix, new, tmp, jobs=jobs, progress=progress)
            if not os.path.samestat(os.stat(path), os.fstat(locked)):  # a writer that takes no lock replaced it
                raise FileChangedError(f"{path}: was replaced by another process while cells were appended; "
                                       "it is left as that process wrote it")
    return result


def extend_into(matrix: MatrixReader, new: MatrixSource, tmp: Path, *, jobs: int | None = None,
                progress: bool = False, statistics: Callable | None = None, inputs_error: int | None = None) -> dict:
    """Write to `tmp` the file of `matrix` (a file of one matrix) with the cells of `new` (the same
    genes, checked by the caller) after its own: its chunks copied byte for byte, the new cells
    encoded as new chunks with its gene order, gene terms and bands. The chunks are copied through
    the source the matrix was read from, so they come from the file its index describes (a file
    changed meanwhile raises FileChangedError), whatever kind of source it is. Only the genes the
    file does not store yet need pass 1's figures: statistics(stored genes, cells per block) gives
    them where `new` knows them without a pass over every cell (concat's pieces); by default pass 1
    reads every new cell. `inputs_error`: what the file records of it (EncodeOptions), where `new`
    holds values decoded from lossy files; else the file's own. Returns size and shape."""
    index = matrix.index
    options = _new_cells_options(matrix, inputs_error, jobs=jobs, progress=progress)
    bar = Progress(progress, new.nnz, "appending", "nonzeros")
    try:
        order, _, _, terms = index.genes()
        if statistics is None:
            bar.begin("pass 1 of 2, counting", new.nnz)
        gene_nnz, deviation = gene_statistics(new, options, bar) if statistics is None else \
            statistics(order, options.chunk_cells)
        fresh = np.setdiff1d(np.flatnonzero(gene_nnz), order)
        fresh = fresh[np.argsort(-gene_nnz[fresh], kind="stable")]
        fresh_bands = plan_band_rows(gene_nnz[fresh], index.stages["row-bands"].patch_nnz) if fresh.size else \
            np.zeros(0, np.int64)
        if GENE_SORTED_BANDS[options.format_version]:
            fresh = genes_sorted_in_bands(fresh, fresh_bands)
        stored = np.concatenate([order, fresh]).astype(np.int64)
        gene_of_row = np.concatenate([stored, np.setdiff1d(np.arange(index.n_genes), stored)])
        rank = np.empty(index.n_genes, dtype=np.int64)
        rank[gene_of_row] = np.arange(index.n_genes)
        gene_terms = np.concatenate([terms, quantise_terms(deviation[fresh] / np.maximum(gene_nnz[fresh], 1))])
        band_rows = _band_rows(matrix, fresh_bands + order.size)
        context = FileContext(rank, gene_of_row, gene_terms, band_rows, index.stages["row-bands"].tile_nnz, options)
        if statistics is None:
            bar.begin("pass 2 of 2, coding", int(gene_nnz.sum()))
        body_end = matrix.body_end
        with open(tmp, "r+b") as stream:
            _copy_prefix(matrix.byte_source, stream, body_end, index)
            writer = ContainerWriter(stream, version=matrix.version, start=body_end)
            coded = encode_chunks(_ShiftedSource(new, index.n_cells), context, options, writer, bar)
            new_nnz = sum(row[CHUNK_INDEX_FIELDS.index("nnz")] for row in coded.index_rows)
            size = finish_file(writer, [_matrix_entry(matrix, writer, stored, gene_terms, coded, new_nnz,
                                                      new.shape[1], inputs_error)])
    finally:
        bar.close()
    return {"bytes": size, "shape": (index.n_genes, index.n_cells + new.shape[1]),
            "nnz": index.nnz + new_nnz, "chunks": index.n_chunks + len(coded.index_rows)}


def _new_cells_options(matrix: MatrixReader, inputs_error: int | None = None, **rest) -> EncodeOptions:
    """The options a file's new cells are coded with: its mode, error bound, chunk and tile sizes as
    the file codes them (normative), the rest (SIREN settings) from the options map it recorded
    where they make valid options: that map is informative, and a reader ignores it whatever it
    holds (spec §3.5), so a file without it, or whose map says another mode, still takes cells
    coded as its own are (they had been coded by the map: a file of --max-error 2 whose map said
    nothing of it was left failing its checksum, one without a map refused with a TypeError).
    Refused where the options fit SIRENs and torch is not installed."""
    index = matrix.index
    bands = index.stages["row-bands"]
    coded = {"mode": index.mode, "max_error": index.max_error, "chunk_cells": bands.chunk_cells,
             "tile_nnz": bands.tile_nnz, "patch_nnz": bands.patch_nnz,
             **({} if inputs_error is None else {"inputs_error": inputs_error})}
    rest = {"format_version": matrix.version[0], **rest}
    try:
        options = EncodeOptions.from_recorded({**index.options, **coded}, **rest)
    except (InvalidInputError, TypeError, ValueError):  # the map holds what no option takes
        options = EncodeOptions.from_recorded(coded, **rest)
    if needs_torch(options) and not torch_available():
        how = "--inr-only" if options.mode == "inr-only" else f"--siren {options.siren}"
        raise InvalidInputError(f"{matrix.source}: its cells are coded with SIRENs ({how}), as new cells must be, "
                                f"which needs torch: {INSTALL_TORCH}")
    return options


def _append_segment(matrix: MatrixReader, new: MatrixSource, tmp: Path, *, jobs: int | None,
                    progress: bool) -> dict:
    """A file of several segments (spec §5.5) gains its new cells as one more segment: they are
    encoded as a file of their own (beside `tmp`, without a name once open, with the file's recorded
    options), whose chunks are then copied after the file's (encoder.segments)."""
    index = matrix.index
    options = _new_cells_options(matrix, jobs=jobs, progress=progress)
    same = np.arange(matrix.shape[0])
    refused = can_copy([matrix], [same])
    if refused is not None:
        raise InvalidInputError(f"cannot append to {matrix.source}: {refused}")
    # private (0o600) and without a name (O_TMPFILE, else unlinked at once), beside `tmp`: a kill (SIGKILL,
    # the OOM killer) leaves nothing beside the temporary file
    with tempfile.TemporaryFile(dir=tmp.parent) as stream:
        encode_stream(new, stream, options)
        with MatrixReader(FileObjectSource(stream, f"the new cells ({new.description})")) as cells:
            fields = {f: getattr(matrix, f) for f in ("gene_ids", "gene_names", "feature_types")}
            parts = [SegmentInput(matrix, same, 0, None), SegmentInput(cells, same, matrix.shape[1], None)]
            result = write_segments(CopiedSegments(parts, matrix.shape[0], fields, jobs), tmp, progress=progress)
    return {k: result[k] for k in ("bytes", "shape", "nnz", "chunks")}


def _new_cell_names(matrix: MatrixReader, source: MatrixSource) -> None:
    """Refuse new cells named like cells of the file: the same sample appended twice would give
    non-unique cell names (AnnData's obs_names) without a word."""
    if not source.has_cell_names or not matrix.n_chunks:
        return
    ours = set(matrix.cell_names or ())
    clash = [name for name in source.cell_names(0, source.shape[1]) or () if name in ours]
    if clash:
        raise InvalidInputError(f"{source.description}: {len(clash):,} of its cell names are already in the file "
                                f"(first {clash[0]!r}): appended cells must have new names (was this sample "
                                "appended before? sinr concat --index-unique makes names distinct)")


def _copy_prefix(source: ByteSource, stream, length: int, index) -> None:
    """The first `length` bytes of `source` into `stream`, a block at a time; each chunk block of
    the matrix `index` describes checked against its CRCs (header, sections) as it passes, so that a
    damaged file is refused, not extended into a larger damaged one."""
    chunks = sorted((offset, size, c) for c, (offset, size) in enumerate(index.block_ranges()))
    done = 0
    for offset, size, c in [*chunks, (length, 0, None)]:
        while done < offset:  # what lies before the next chunk (the preamble), copied as it is
            view = source.read(done, min(offset - done, COPY_BLOCK))
            stream.write(view)
            done += len(view)
        if c is not None:
            if offset < done:
                raise CorruptFileError(f"{index.what}: chunk {c} overlaps the chunk before it (file is corrupt)")
            block = source.read(offset, size)
            checked_chunk_block(index, c, block)
            stream.write(block)
            done = offset + size


def _band_rows(matrix: MatrixReader, fresh_bands: np.ndarray) -> np.ndarray:
    """The file's band boundaries (those of its deepest chunk), then `fresh_bands`, those of the
    newly stored genes (which follow the file's stored genes)."""
    deepest = matrix.index.deepest_chunk()
    old = deepest.geometry.row_starts[:-1] if deepest is not None and deepest.n_rows else np.zeros(1, np.int64)
    return np.unique(np.concatenate([old, fresh_bands])).astype(np.int64)


def _matrix_entry(matrix: MatrixReader, writer: ContainerWriter, stored: np.ndarray, gene_terms: np.ndarray,
                  coded: CodedChunks, nnz: int, n_cells: int, inputs_error: int | None) -> dict:
    index = matrix.index
    header = dict(index.header)
    if coded.features:  # the new chunks' (a cell order as byte planes, spec §5.6) besides the file's
        header["required_features"] = sorted(coded.features | set(index.required_features))
    if inputs_error is not None:  # new cells decoded from lossy files (EncodeOptions.inputs_error)
        header["options"] = {**index.options, "inputs_error": inputs_error}
    sections = [[ref.name, ref.offset, ref.length, ref.crc] for ref in index.sections.table.values()
                if ref.name not in ("genes.order", "genes.baseline", "chunks.index")]
    sections.append(writer.section("genes.order", MATRIX_SECTIONS["genes.order"].pack(stored)))
    sections.append(writer.section("genes.baseline", MATRIX_SECTIONS["genes.baseline"].pack(gene_terms)))
    old_rows = index.chunk_index.tolist()
    sections.append(chunk_index_section(writer, old_rows + coded.index_rows))
    header.update({"shape": [index.n_genes, index.n_cells + n_cells], "nnz": index.nnz + nnz,
                   "n_stored_genes": int(stored.size), "n_chunks": len(old_rows) + len(coded.index_rows),
                   "stats": summarise(coded.stats, index.stats), "sections": sections})
    return header

