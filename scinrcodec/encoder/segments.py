"""Combining format-3 matrices without coding them again: each input's chunks become a segment of
the output (spec §5.5, §12.8), their blocks copied byte for byte.

A chunk's tiles are coded against its file's gene order and gene terms, which a segment keeps
(mapped to the output's gene indices). Only the chunk header changes: its content checksum covers
original gene and file-wide cell indices (spec §6.6), which move, so each chunk is decoded once
(this also verifies it) and the checksum computed anew, and the copied bytes are checked against
the CRCs of the header the reader checked; cells.names is rewritten when names are made unique.
Chunks are processed by `jobs` threads, a few at a time, so memory holds about one decoded chunk
per job (besides each input's parsed chunk headers) whatever the inputs' sizes.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.checksum import mapped_checksum
from ..codec.stages import MATRIX_KEYS, SEGMENTS
from ..errors import CorruptFileError
from ..limits import MAX_CHUNK_HEADER_BYTES
from ..progress import Progress
from ..reader.assemble import decode_chunk
from ..reader.matrix import MatrixReader
from ..storage.container import ContainerWriter, crc32, crc32_ranges, is_newer_minor, pack_header, unpack_header, \
    write_version
from ..storage.barcodes import BARCODE_KEYS
from ..storage.layout import CELL_NAME_SECTIONS, CHUNK_INDEX_FIELDS, CHUNK_SECTIONS_BY_MAJOR, MATRIX_SECTIONS, \
    chunk_features
from .driver import MATRIX_NAME, chunk_index_section, finish_file, gene_name_sections, names_are_ids, summarise
from .options import EncodeOptions, inputs_error

MAJOR = 3  # segments are a feature of format 3
# zstd level of the combined gene tables: ten 6e6 files' (400 kB) take 0.36 s at the usual 19 and
# 0.03 s at 12, for 17 kB more (0.04% of the file)
GENE_TABLE_LEVEL = 12


@dataclass
class SegmentInput:
    """One input matrix of a combined file: its map from its genes to the output's (-1: dropped),
    the output index of its first cell, and its cells' new names (None: unchanged)."""

    matrix: MatrixReader
    columns: np.ndarray
    first_cell: int
    cell_names: list[str] | None


def can_copy(matrices: list[MatrixReader], columns: list[np.ndarray]) -> str | None:
    """Why these matrices cannot be combined by copying their chunks (None when they can): every
    input must be of format 3 as this reader knows it, of one mode, and keep every gene it stores."""
    first = matrices[0].index
    for m, column in zip(matrices, columns):
        index = m.index
        if m.version[0] != MAJOR or is_newer_minor(m.version):
            return f"{m.source} is of format {m.version[0]}.{m.version[1]}"
        if (index.mode, index.max_error) != (first.mode, first.max_error):
            return f"{m.source} is coded in mode {index.mode!r}, the first file in {first.mode!r}"
        if index.has_cell_names != first.has_cell_names:
            return f"{m.source} {'has' if index.has_cell_names else 'lacks'} cell names, unlike the first file"
        if np.any(column[index.genes()[0]] < 0):  # every segment's stored genes
            return f"the output drops genes that {m.source} stores"
    return None


def _segments(index) -> list[tuple[int, int]]:
    """(chunks, rows) of each segment of a matrix (a matrix without the feature is one)."""
    return list(zip(np.diff(index.segment_chunk_starts).tolist(), np.diff(index.segment_row_starts).tolist()))


def checked_chunk_block(index, chunk: int, block: bytes) -> tuple[dict, bytes]:
    """A chunk's block (header and body, as the chunk index places it) checked against the CRCs of
    its header and of each of its sections: (header, body), or CorruptFileError naming what failed."""
    what = f"{index.what}: chunk {chunk}"
    header_length = int(index.chunk_index[chunk, CHUNK_INDEX_FIELDS.index("header_length")])
    if crc32(block[:header_length]) != int(index.chunk_index[chunk, CHUNK_INDEX_FIELDS.index("header_crc32")]):
        raise CorruptFileError(f"{what}: header checksum mismatch (file is corrupt or changed)")
    header = unpack_header(block[:header_length], MAX_CHUNK_HEADER_BYTES, what=f"{what} header")
    body = block[header_length:]
    table = header["sections"]  # the header the reader checked (same bytes): its ranges lie in the body
    crcs = crc32_ranges(body, np.array([e[1] for e in table]), np.array([e[2] for e in table]))
    bad = [e[0] for e, crc in zip(table, crcs.tolist()) if crc != e[3]]
    if bad:
        raise CorruptFileError(f"{what}: checksum mismatch in section {bad[0]!r} (file is corrupt or changed)")
    return header, body


def _relabelled_chunk(part: SegmentInput, chunk: int, block: bytes) -> tuple[bytes, bytes, int, int, set[str]]:
    """Chunk `chunk` of an input as the output holds it: (header, body, cells, nonzeros, the required
    features its sections need). Its nonzeros are decoded once, their checksum verified under the
    input's indices and computed under the output's."""
    index = part.matrix.index
    loaded = index.chunk(chunk)
    what = f"{index.what}: chunk {chunk}"
    header, body = checked_chunk_block(index, chunk, block)  # what is copied is what was verified
    rows, cols, values = decode_chunk(index, loaded)  # rows from the segment's first, columns file-wide
    first, n_cells = loaded.first_cell, loaded.n_cells
    cols -= first
    genes, cells = index.segment_genes(loaded.segment), index.cell_original[first: first + n_cells]
    if int(mapped_checksum(rows, cols, values, genes, cells)) != loaded.checksum:
        raise CorruptFileError(f"{what}: decodes to content that fails its checksum (file is corrupt)")
    header["checksum"] = int(mapped_checksum(rows, cols, values, part.columns[genes], cells + part.first_cell))
    if part.cell_names is not None:  # names made unique (cells.names is present: has_cell_names)
        body = _renamed(header, body, part.cell_names[first: first + n_cells])
    return pack_header(header), body, n_cells, loaded.nnz, chunk_features(e[0] for e in header["sections"])


def _renamed(header: dict, body: bytes, names: list[str]) -> bytes:
    """The chunk body with `names` as its cells.names section, in place of cells.names or of the
    barcodes (spec §5.7) its names were; header's section table updated."""
    pieces, table, offset = [], [], 0
    for name, start, length, crc in sorted(header["sections"], key=lambda e: e[1]):
        payload = body[start: start + length]
        if name in CELL_NAME_SECTIONS:
            name, payload = "cells.names", CHUNK_SECTIONS_BY_MAJOR[MAJOR]["cells.names"].pack(names)
            crc = crc32(payload)
        table.append([name, offset, len(payload), crc])
        pieces.append(payload)
        offset += len(payload)
    header["sections"] = table
    for key in BARCODE_KEYS:
        header.pop(key, None)
    return b"".join(pieces)


@dataclass
class CopiedSegments:
    """A matrix made of its inputs' chunks, each input's segments kept as segments of it (their
    gene order mapped through the input's `columns`): what a whole-file writer writes in place of
    a source to encode (write_into). `fields` are its gene_ids, gene_names and feature_types."""

    parts: list[SegmentInput]
    n_genes: int
    fields: dict
    jobs: int | None = None

    @property
    def nnz(self) -> int:
        return sum(p.matrix.index.nnz for p in self.parts)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_genes, sum(p.matrix.shape[1] for p in self.parts)

    # the names it will hold, as a source's (a whole-file plan takes obs and var names from them)
    @property
    def has_cell_names(self) -> bool:
        return self.parts[0].matrix.index.has_cell_names

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """The names of cells start..stop-1 as the matrix will hold them (None: it holds none)."""
        if not self.has_cell_names:
            return None
        return [n for p in self.parts for n in (p.matrix.cell_names if p.cell_names is None else p.cell_names)][start:stop]

    @property
    def gene_ids(self) -> list[str] | None:
        return self.fields["gene_ids"]

    @property
    def gene_names(self) -> list[str] | None:
        return self.fields["gene_names"]

    def write_into(self, writer: ContainerWriter, progress: Progress, *, name: str = MATRIX_NAME) -> dict:
        """Write every chunk, then the matrix's sections; return its footer entry."""
        n_jobs = EncodeOptions(jobs=self.jobs).n_jobs
        index_rows, segment_rows, orders, terms = [], [], [], []
        features = {SEGMENTS}  # and those of the chunks copied (spec §5.6: cells.order_planes)

        def write(done) -> None:
            header, body, n_cells, nnz, needs = done.result()
            features.update(needs)
            offset = writer.block(header)
            writer.block(body)
            index_rows.append([offset, len(header), crc32(header), len(header) + len(body), n_cells, nnz])
            progress.update(nnz)

        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            for part in self.parts:
                index = part.matrix.index
                if not index.n_chunks:  # no cells: no segment, and no rows
                    continue
                order, _, _, gene_terms = index.genes()  # checked (M13, SG3) and kept by the reader
                orders.append(part.columns[order])
                terms.append(gene_terms)
                segment_rows += _segments(index)
                source, blocks = part.matrix.byte_source, index.block_ranges()
                for chunk in source.ready_in_order(blocks):
                    block = bytes(source.read(*blocks[chunk]))
                    pending.append(pool.submit(_relabelled_chunk, part, chunk, block))
                    while len(pending) > n_jobs:
                        write(pending.popleft())
            while pending:
                write(pending.popleft())
        return _matrix_entry(self.parts, writer, name, self.n_genes, self.fields, index_rows, segment_rows,
                             np.concatenate(orders), np.concatenate(terms), features)


def copyable(pieces: list, format_version: int) -> bool:
    """Whether pieces (encoder.combine.Piece: whole input matrices with their gene maps) can be
    combined by copying their chunks into segments: a format-3 output holding cells, of inputs
    that can_copy allows."""
    return format_version == MAJOR and all(p.cells is None for p in pieces) \
        and sum(p.n_cells for p in pieces) > 0 and can_copy([p.matrix for p in pieces], [p.columns for p in pieces]) is None


def write_segments(matrix: CopiedSegments, tmp: Path, *, progress: bool = False) -> dict:
    """Write to `tmp` a file of one matrix, `matrix`. Returns sizes."""
    bar = Progress(progress, matrix.nnz, "combining", "nonzeros")
    try:
        with open(tmp, "wb") as stream:
            writer = ContainerWriter(stream, version=write_version(MAJOR))
            entry = matrix.write_into(writer, bar)
            size = finish_file(writer, [entry])
    finally:
        bar.close()
    return {"bytes": size, "shape": tuple(entry["shape"]), "nnz": entry["nnz"], "chunks": entry["n_chunks"],
            "segments": entry["n_segments"], "copied_chunks": entry["n_chunks"]}


def _names_section(matrix: MatrixReader, field: str, values: list[str]) -> bytes:
    """Section names.<field>'s bytes: the input's own, already compressed, where it stores these
    names (genes kept in its order; compressing 30,000 names costs a tenth of a second)."""
    ref = matrix.index.sections.table.get(f"names.{field}")
    if ref is not None and values == getattr(matrix, field):
        return bytes(matrix.byte_source.read(ref.offset, ref.length))
    return MATRIX_SECTIONS[f"names.{field}"].pack(values)


def _options(parts: list[SegmentInput]) -> dict:
    """The first input's recorded options, with how far from the counts first encoded the values of
    every input may be (EncodeOptions.inputs_error: inputs of one mode may differ in it)."""
    first = parts[0].matrix.index
    error = inputs_error(p.matrix for p in parts)
    options = {k: v for k, v in first.options.items() if k != "inputs_error"}
    return options if error is None or first.mode != "lossless" else {**options, "inputs_error": error}


def _matrix_entry(parts: list[SegmentInput], writer: ContainerWriter, name: str, n_genes: int, fields: dict,
                  index_rows: list, segment_rows: list, order: np.ndarray, terms: np.ndarray,
                  features: set[str]) -> dict:
    """The output matrix's footer entry, its gene tables, chunk index and segment index written."""
    first = parts[0].matrix.index
    table = [writer.section(f"names.{field}", _names_section(parts[0].matrix, field, values))
             for field, values in gene_name_sections(fields["gene_ids"], fields["gene_names"], fields["feature_types"])]
    for section, values in (("genes.order", order), ("genes.baseline", terms)):
        table.append(writer.section(section, MATRIX_SECTIONS[section].pack(values, GENE_TABLE_LEVEL)))
    table.append(chunk_index_section(writer, index_rows))
    table.append(writer.section("segments.index", MATRIX_SECTIONS["segments.index"].pack(
        np.asarray(segment_rows, np.uint64).ravel())))
    nnz = sum(row[CHUNK_INDEX_FIELDS.index("nnz")] for row in index_rows)
    return {
        "name": name, **MATRIX_KEYS[MAJOR], "required_features": sorted(features),
        "shape": [n_genes, sum(p.matrix.shape[1] for p in parts)], "nnz": nnz, "mode": first.mode,
        "stages": first.header["stages"], "n_stored_genes": int(order.size), "n_chunks": len(index_rows),
        "n_segments": len(segment_rows), "gene_names_are_ids": names_are_ids(fields["gene_ids"], fields["gene_names"]),
        "has_cell_names": first.has_cell_names, "options": _options(parts),
        "stats": summarise([p.matrix.index.stats for p in parts]), "sections": table,
    }
