"""Encoding one chunk of consecutive cells into its block: header, sections, tile streams.

reorder cells by depth -> cell terms -> bands and tiles -> sort nonzeros by (tile, position)
-> contexts (baseline, or a band's SIREN where it pays) -> frequency tables -> tile streams.
Everything heavy is a native kernel (scinrcodec._native); a chunk needs memory in proportion to its
own nonzeros. The file's format version (EncodeOptions.format_version) picks the contexts (format
2: 48 of 1/4 nat; format 3: 96 of 1/8 nat) and the tile coder (TILE_CODERS); the rest is shared.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .. import _native
from ..codec.checksum import mapped_checksum
from ..codec.geometry import ChunkGeometry
from ..codec import tile3
from ..codec.models import N_BINS, N_CONTEXTS, decoding_tables, fine_contexts, frequencies, \
    histograms, int32_items
from ..codec.tile import encode_tiles, symbol_bound
from ..errors import InvalidInputError
from ..io.sources import CellBlock
from ..limits import MAX_CHUNK_NNZ
from ..model.baseline import fit_cell_terms
from ..model.quantise import dequantise_values, quantise_values
from ..model.siren import PatchSiren
from ..reader.pages import mapped_array
from ..storage.barcodes import BARCODE_KEYS, barcode_deltas
from ..storage.container import ContainerWriter, crc32, crc32_ranges, pack_header, pack_map
from ..storage.layout import CHUNK_SECTIONS_BY_MAJOR, WRITE_LEVELS, chunk_features
from .options import EncodeOptions
from .siren_fit import SirenPlanner, fit_band_sirens


@dataclass
class FileContext:
    """What every chunk of a file shares: the gene order, gene terms and band boundaries."""

    gene_rank: np.ndarray  # original gene -> row in the file's gene order
    gene_of_row: np.ndarray  # its inverse
    gene_terms: np.ndarray  # per row, 1/16 nat (0 beyond the stored genes)
    band_rows: np.ndarray  # first row of each band
    tile_nnz: int  # nonzeros per tile the widths aim for
    options: EncodeOptions
    siren_planner: "SirenPlanner | None" = None
    reuse_buffers: bool = False  # the local encoder's threads keep their chunk arrays (CHUNK_BUFFERS)


@dataclass
class EncodedChunk:
    """A chunk ready to write: its header, its sections in order, and its statistics."""

    header: bytes
    body: list[bytes]
    n_cells: int
    nnz: int
    stats: dict = field(default_factory=dict)
    features: set[str] = field(default_factory=set)  # the required features its sections need (spec §5.1.1)

    @property
    def length(self) -> int:
        """Bytes of the whole chunk block."""
        return len(self.header) + sum(len(b) for b in self.body)


def _int64(a: np.ndarray) -> np.ndarray:
    """An encoder array as contiguous int64 (what index pointers and geometries hold: no copy)."""
    return np.ascontiguousarray(a, dtype=np.int64)


def cell_totals(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each cell's total count (values int32, as a block holds them): the chunk orders its cells by
    depth."""
    return _native.cell_totals(_int64(indptr), np.ascontiguousarray(values))


class ChunkArrays(NamedTuple):
    """What a chunk's kernels write (_LAYOUT gives each one's type and size): arrange's rows,
    columns, values and positions and its staging area (ARRANGED), then each value's coded index u,
    its bin and its context (CODED), in one block that the staging lies over: arrange is done with
    it before any of them is written."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    staging: np.ndarray
    u: np.ndarray
    bins: np.ndarray
    contexts: np.ndarray


# Each of a chunk's arrays: its dtype and its items a nonzero.
# Every one fits 32 bits: a count (limits.MAX_COUNT) and its u, a position in a tile (MAX_TILE_ENTRIES),
# a bin, a context.
_LAYOUT = {"rows": (np.int32, 1), "cols": (np.int32, 1), "values": (np.int32, 1), "positions": (np.int32, 1),
           "staging": (np.uint32, _native.ARRANGE_STAGED_ITEMS), "u": (np.int32, 1), "bins": (np.int32, 1),
           "contexts": (np.int32, 1)}
ARRANGED = ("rows", "cols", "values", "positions", "staging")  # the arrays arrange writes
CODED = ("u", "bins", "contexts")  # written after arrange, in one block with the staging over it


def _nbytes(name: str, nnz: int) -> int:
    dtype, items = _LAYOUT[name]
    return np.dtype(dtype).itemsize * items * nnz


_OWN = tuple(name for name in ARRANGED if name != "staging")  # the arrays with storage of their own


def _storage(room: int, allocate: Callable[[int, type], np.ndarray]) -> dict[str, np.ndarray]:
    """Bytes for the arrays of a chunk of up to `room` nonzeros: a buffer for each array of _OWN, and
    one block for the CODED arrays that the staging lies over (28 bytes a nonzero in all, not 40)."""
    store = {name: allocate(_nbytes(name, room), np.uint8) for name in _OWN}
    store["coded"] = allocate(max(sum(_nbytes(name, room) for name in CODED), _nbytes("staging", room)), np.uint8)
    return store


def _carved(store: dict[str, np.ndarray], nnz: int) -> ChunkArrays:
    """The arrays of a chunk of nnz nonzeros: views of the front of `store`'s buffers."""
    arrays = {name: store[name][: _nbytes(name, nnz)].view(_LAYOUT[name][0]) for name in _OWN}
    offset = 0
    for name in CODED:
        arrays[name] = store["coded"][offset: offset + _nbytes(name, nnz)].view(_LAYOUT[name][0])
        offset += _nbytes(name, nnz)
    arrays["staging"] = store["coded"][: _nbytes("staging", nnz)].view(_LAYOUT["staging"][0])
    return ChunkArrays(**arrays)


def fresh_chunk_arrays(nnz: int, allocate: Callable[[int, type], np.ndarray] = np.empty) -> ChunkArrays:
    """A chunk's arrays, newly allocated (by numpy for a Dask worker's chunk)."""
    return _carved(_storage(nnz, allocate), nnz)


# Kept storage grows to this many times the chunk that outgrew it: a file's chunks (of equal cells)
# differ by a few percent in nonzeros, and each growth faulted the whole storage in again (6-8 times
# in an encode of 6e7 nonzeros, 70 MB each). Room beyond a chunk's own is never touched: it costs
# address space, not memory.
_HEADROOM = 1.25


class ChunkBuffers(threading.local):
    """A chunk's arrays, one set per thread, kept from one chunk to the next by the local encoder:
    fresh ones every chunk fault their pages in again, each zeroed by the kernel (a tenth of an
    encode's CPU time for arrange's alone). They are plain mappings (reader.pages), without
    numpy's request for huge pages, which makes each first touch wait where the kernel compacts
    memory to find them (the first chunk's quantise_values, 17.6 MB, 40 ms instead of 9 on two
    threads at once; 0.3 ms once its pages are in). Views of them are valid until the thread's next
    chunk, and go with the thread."""

    store: dict[str, np.ndarray] | None = None
    room = 0  # the nonzeros `store` holds

    def take(self, nnz: int) -> ChunkArrays:
        """Views of each array's items for nnz nonzeros, the storage grown when too small."""
        if self.store is None or self.room < nnz:
            self.store = None  # the old one goes before the new one is touched
            self.room = int(nnz * _HEADROOM)
            self.store = _storage(self.room, mapped_array)
        return _carved(self.store, nnz)


CHUNK_BUFFERS = ChunkBuffers()  # the local encoder's (FileContext.reuse_buffers); Dask workers allocate


def chunk_arrays(nnz: int, context: FileContext) -> ChunkArrays:
    """The arrays a chunk of nnz nonzeros is encoded in: the thread's kept ones where the context
    allows, else fresh ones."""
    return CHUNK_BUFFERS.take(nnz) if context.reuse_buffers else fresh_chunk_arrays(nnz)


def row_counts(genes: np.ndarray, gene_rank: np.ndarray) -> np.ndarray:
    """Each row's nonzeros, rows 0 .. the highest holding one (numpy.bincount(gene_rank[genes]) in
    one pass; genes int32, as a block holds them): what the chunk's geometry is planned from and
    arrange places by."""
    return _native.row_counts(np.ascontiguousarray(genes), _int64(gene_rank))


def arrange(indptr: np.ndarray, genes: np.ndarray, values: np.ndarray, cell_order: np.ndarray, gene_rank: np.ndarray,
            row_nnz: np.ndarray, row_starts: np.ndarray, widths: np.ndarray, tile_starts: np.ndarray, n_cells: int,
            out: ChunkArrays | None = None):
    """The chunk's nonzeros (genes and values int32, as a block holds them) sorted by (tile,
    position), walking the cells in their new order: they go band by band (each band's run then
    holds its tiles one after another; row_nnz, from row_counts, says where each run starts), then
    each tile's by row, stably. Returns rows (int32), columns (int32), values and row-major positions
    inside their tiles in that order (in `out`'s arrays when given), and the nonzeros of each tile."""
    nnz = int(np.asarray(values).size)
    arrays = out if out is not None else fresh_chunk_arrays(nnz)  # the staging's bytes hold the CODED arrays' too
    rows, cols, out_values, positions, staging = (getattr(arrays, name) for name in ARRANGED)
    tile_k = _native.arrange(_int64(indptr), np.ascontiguousarray(genes), np.ascontiguousarray(values),
                             _int64(cell_order), _int64(gene_rank),
                             _int64(row_nnz), _int64(row_starts), _int64(widths), _int64(tile_starts), int(n_cells),
                             rows, cols, out_values, positions, staging)
    return rows, cols, out_values, positions, tile_k


class ArrangedBlock(NamedTuple):
    """A block of cells laid out as a chunk: its cell order (new column c holds cell_order[c]), its
    geometry, and its nonzeros by (tile, position) as arrange returns them."""

    cell_order: np.ndarray
    geometry: ChunkGeometry
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    tile_k: np.ndarray


def depth_order(block: CellBlock) -> np.ndarray:
    """The encoder's cell order: cells by decreasing total count (stable)."""
    return np.argsort(-cell_totals(block.indptr, block.values), kind="stable")


def arrange_block(block: CellBlock, context: FileContext, arrays: ChunkArrays | None = None,
                  cell_order: np.ndarray | None = None) -> ArrangedBlock:
    """A chunk's layout (spec §5.4): its cells in `cell_order` (the encoder's depth_order unless
    given: the format lets a writer choose), the file's bands cut into tiles by the block's row
    counts, every nonzero at its tile and position (into `arrays`, by default the ones chunk_arrays
    gives)."""
    cell_order = depth_order(block) if cell_order is None else cell_order
    row_nnz = row_counts(block.genes, context.gene_rank)
    geometry = ChunkGeometry.plan(context.band_rows, row_nnz, block.n_cells, context.tile_nnz)
    arranged = arrange(block.indptr, block.genes, block.values, cell_order, context.gene_rank, row_nnz,
                       geometry.row_starts, geometry.widths, geometry.tile_starts, block.n_cells,
                       arrays if arrays is not None else chunk_arrays(block.nnz, context))
    return ArrangedBlock(cell_order, geometry, *arranged)


def baseline_contexts(rows: np.ndarray, cols: np.ndarray, gene_terms: np.ndarray,
                      cell_terms: np.ndarray, *, major: int = 2, out: np.ndarray | None = None) -> np.ndarray:
    """Each nonzero's coding context from its gene and cell terms, as format `major` defines it
    (format 2: spec §C.5; format 3: §6.5), into `out` (int32) when given."""
    out = np.empty(rows.size, np.int32) if out is None else out
    _native.baseline_contexts(rows, cols, _int64(gene_terms), _int64(cell_terms), fine_contexts(major), out)
    return out


def value_bins_of(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each value index's bin (spec §6.3.1), for the chunk's histograms, into `out` (int32) when
    given."""
    u = int32_items(u)
    out = np.empty(u.size, np.int32) if out is None else out
    _native.value_bins(u, out)
    return out


class CodedTiles(NamedTuple):
    """A chunk's tile streams and what goes with them: the count sections that come before the
    SIREN sections (name, values), and the information content of positions and values in bits."""

    data: bytes
    lengths: np.ndarray
    counts: list[tuple[str, np.ndarray]]
    position_bits: float
    value_bits: float


def code_tiles_v2(tile_n: np.ndarray, tile_k: np.ndarray, positions: np.ndarray, u: np.ndarray,
                  contexts: np.ndarray, hist: np.ndarray, code_values: bool) -> CodedTiles:
    """Format 2's tiles (spec Appendix C): Golomb gaps and context-coded values through 16-bit rANS; the
    bits are the encoder's own count of each symbol's information content."""
    cum = decoding_tables(frequencies(hist))[0] if code_values else np.zeros((N_CONTEXTS, N_BINS + 1), np.int64)
    bound = symbol_bound(tile_k, tile_n, code_values)
    out = np.empty(int((2 * bound + 4).sum()) + 1, dtype=np.uint8)
    lengths, position_bits, value_bits = encode_tiles(tile_k, tile_n, positions, u, contexts, cum, code_values,
                                                      int(bound.max(initial=1)), out)
    counts = [("values.counts", hist.ravel())] if code_values else []
    return CodedTiles(out[: int(lengths.sum())].tobytes(), lengths, counts, position_bits, value_bits)


def code_tiles_v3(tile_n: np.ndarray, tile_k: np.ndarray, positions: np.ndarray, u: np.ndarray,
                  contexts: np.ndarray, hist: np.ndarray, code_values: bool) -> CodedTiles:
    """Format 3's tiles (spec §6): gap bins by density class and fine-context values through
    12-bit rANS, under the tables of the chunk's `gaps.counts` and `values.counts`; the bits are
    codec.tile3.information_bits of each section."""
    gaps = tile3.gap_counts(tile_n, tile_k, positions)
    values = hist if code_values else None
    data, lengths = tile3.encode_tiles(tile_n, tile_k, positions, u, contexts, gaps, values)
    counts = [("gaps.counts", gaps.ravel())] + ([("values.counts", hist.ravel())] if code_values else [])
    value_bits = tile3.information_bits(hist) if code_values else 0.0
    return CodedTiles(data, lengths, counts, tile3.information_bits(gaps), value_bits)


# The tile coder of each format version (major).
TILE_CODERS = {2: code_tiles_v2, 3: code_tiles_v3}

# A format-3 chunk stores its cell order as byte planes (cells.order_planes, format 3.2, spec §5.6) where, both
# forms compared at the planes' own zstd level, the planes save at least 4 KiB and either take at most half the
# bytes of the plain array or save at least 2% of the chunk's sections but its names (as the barcodes below);
# else as cells.order (zstd level 19, the bytes 3.0 and 3.1 readers read). Raw Cell Ranger matrices (737,280
# barcodes, most empty, chunks of 32,768 cells: benchmarks/raw.py) give planes of 0.16-0.18x the array at level 9
# (and 0.36-0.40x of it at 19), 22 kB less a chunk than the array at 19; filtered ones (the 6e6 scale files, chunks
# of 2,048-6,144 cells) 0.77-0.80x, 0.7-2 kB a chunk of about 1.3 MB, so that they keep cells.order and stay 3.0
# files; and no chunk of 1,024 cells or fewer (4 bytes a cell before compression) makes a file one that 3.0 and
# 3.1 readers refuse. Where cells hold few nonzeros the order is a large part of a chunk: 639,380 cells of 9.4
# nonzeros (the 50 genes of pbmc500, replicated to 6e6, in chunks of 16,384 cells) gave planes of 0.78x, 8.5 kB
# (5%) a chunk, the file 4.5% smaller. Comparing at level 9 spares the level-19 array where planes win: a raw
# matrix's 45 orders took 0.19 s of CPU at 19, both forms 0.04 s at 9.
PLANES_AT_MOST = 0.5
PLANES_SAVE_SHARE = 0.02
PLANES_SAVE_AT_LEAST = 4096


def cell_order_section(cell_order: np.ndarray, major: int, other_bytes: int) -> tuple[str, bytes]:
    """The section holding a chunk's cell order, and its bytes: the byte planes where they save a
    material share (above), in a format that has them. `other_bytes`: the chunk's other sections but
    its names."""
    specs = CHUNK_SECTIONS_BY_MAJOR[major]
    if "cells.order_planes" in specs:
        planes = specs["cells.order_planes"].pack(cell_order)
        plain = len(specs["cells.order"].pack(cell_order, WRITE_LEVELS[specs["cells.order_planes"].encoding]))
        saved = plain - len(planes)
        if saved >= PLANES_SAVE_AT_LEAST and (len(planes) <= PLANES_AT_MOST * plain
                                              or saved >= PLANES_SAVE_SHARE * (other_bytes + len(planes))):
            return "cells.order_planes", planes
    return "cells.order", specs["cells.order"].pack(cell_order)


# A format-3 chunk stores its cell names as 2-bit barcodes (cells.barcodes, format 3.2, spec §5.7) where every
# name is bases of ACGT and one suffix and, both forms compared at the barcodes' zstd level (9), that saves at least
# 2% of the chunk's sections' bytes and 4 KiB; else as cells.names (zstd level 16, which 3.0 and 3.1 readers read).
# Raw Cell Ranger matrices (737,280 barcodes, chunks of 32,768: benchmarks/raw.py) save 72 kB a chunk at level 9,
# 31-50% of it (11.5-14.0 kB, 5.7-9.5%, against the names at 16: 1.87 bytes a barcode against 2.27-2.28); filtered ones (the
# 6e6 scale files, chunks of 2,048-6,144 cells) 0.2-1.0% where their names fit at all, and the conformance
# vectors' chunks of 8-80 barcodes under 200 bytes, so that they keep cells.names and stay 3.0 files. Where
# barcodes win, the level-16 names are never made: a raw file's encode takes 1.0-1.5 s less CPU (of 3.7-4.4).
BARCODES_SAVE_SHARE = 0.02
BARCODES_SAVE_AT_LEAST = 4096


def cell_names_sections(names: list[str], major: int, other_bytes: int) -> tuple[tuple[str, bytes], dict]:
    """The section holding a chunk's cell names, and the chunk header keys it needs: the barcodes where
    they save a material share of the chunk (above), in a format that has them. `other_bytes`: the
    chunk block's other sections."""
    specs = CHUNK_SECTIONS_BY_MAJOR[major]
    coded = barcode_deltas(names) if "cells.barcodes" in specs else None
    if coded is not None:
        length, suffix, deltas = coded
        barcodes = specs["cells.barcodes"].pack(deltas)
        text = len(specs["cells.names"].pack(names, WRITE_LEVELS[specs["cells.barcodes"].encoding]))
        saved = text - len(barcodes)
        if saved >= BARCODES_SAVE_SHARE * (other_bytes + len(barcodes)) and saved >= BARCODES_SAVE_AT_LEAST:
            return ("cells.barcodes", barcodes), dict(zip(BARCODE_KEYS, (length, suffix)))
    return ("cells.names", specs["cells.names"].pack(names)), {}


# A chunk's cells are coded by decreasing depth (depth_order), which groups cells of like density into tiles, and
# its section cells.order holds that permutation: about log2(n!) bits for n cells with counts, the most the cells'
# own order could save. Where that bound is at least a tenth of the chunk and 4 KiB (cells of a few nonzeros
# each), the chunk is coded again in its cells' own order and the smaller kept. The 50 genes of pbmc500
# replicated to 6e6 (9.4 nonzeros a cell, the bound 19% of a chunk) come out 18.8% smaller in their own order;
# in theirs, visium thinned to 21 nonzeros a spot (the bound 8%) would be 13.6% larger and a raw Cell Ranger
# matrix (4%: about 4,200 barcodes with a molecule among 32,768 a chunk) 56.4% larger: neither is coded twice,
# nor are UMI matrices (bounds under 1%) or the conformance vectors' chunks (under 4 KiB).
ORDER_TRIAL_SHARE = 0.1
ORDER_TRIAL_AT_LEAST = 4096


def order_bound(block: CellBlock) -> float:
    """Bytes that the permutation of a block's cells with counts carries, log2(n!) / 8."""
    n = int(np.count_nonzero(np.diff(block.indptr)))
    return math.lgamma(n + 1) / math.log(2) / 8


class CodedChunk(NamedTuple):
    """A chunk coded in one cell order, but for its names: its sections (cells.order or its planes
    first) and the header fields they make."""

    sections: list[tuple[str, bytes]]
    header: dict
    stats: dict

    @property
    def length(self) -> int:
        return sum(len(payload) for _, payload in self.sections)


def encode_chunk(block: CellBlock, context: FileContext, cell_names: list[str] | None) -> EncodedChunk:
    """Encode one block of cells as a chunk (spec §5.4): order its cells (by depth, or as they come
    where that codes smaller: ORDER_TRIAL_SHARE), cut its bands into tiles, fit cell terms (and SIRENs
    where they pay), code every tile. Pure: the same block and context give the same bytes in any
    process, which is what makes parallel and Dask encodes identical."""
    major = context.options.format_version
    n_cells, nnz = block.n_cells, block.nnz
    if nnz >= MAX_CHUNK_NNZ:
        raise InvalidInputError(f"a chunk of {n_cells:,} cells holds {nnz:,} nonzeros, more than a chunk may "
                                f"({MAX_CHUNK_NNZ:,}): use a smaller chunk_cells")
    arrays = chunk_arrays(nnz, context)
    coded = code_chunk(block, context, arrays, depth_order(block))
    if order_bound(block) >= max(ORDER_TRIAL_AT_LEAST, ORDER_TRIAL_SHARE * coded.length):
        own = code_chunk(block, context, arrays, np.arange(n_cells, dtype=np.int64))
        coded = own if own.length < coded.length else coded
    sections = list(coded.sections)
    names_keys = {}
    if cell_names is not None:
        names, names_keys = cell_names_sections(cell_names, major, coded.length)
        sections.insert(2, names)
    table, offset = [], 0
    for name, payload in sections:
        table.append([name, offset, len(payload), crc32(payload)])
        offset += len(payload)
    header = pack_header({"n_cells": n_cells, "nnz": nnz, **coded.header, **names_keys, "sections": table})
    return EncodedChunk(header, [payload for _, payload in sections], n_cells, nnz, coded.stats,
                        chunk_features(name for name, _ in sections))


def code_chunk(block: CellBlock, context: FileContext, arrays: ChunkArrays, cell_order: np.ndarray) -> CodedChunk:
    """A block's sections but its names, its cells in `cell_order`, worked out in `arrays` (every
    section packed before it returns: the arrays may be used again)."""
    options = context.options
    major = options.format_version
    n_cells, nnz = block.n_cells, block.nnz
    cell_order, geometry, rows, cols, values, positions, tile_k = arrange_block(block, context, arrays, cell_order)
    cell_terms = fit_cell_terms(cols, rows, values, context.gene_terms, n_cells)
    u = quantise_values(values, options.max_error, out=arrays.u)
    bins = value_bins_of(u, out=arrays.bins)
    contexts = baseline_contexts(rows, cols, context.gene_terms, cell_terms, major=major, out=arrays.contexts)
    code_values = options.mode != "inr-only"
    hist = histograms(contexts, bins, major=major)

    band_bounds = np.concatenate([[0], np.cumsum(tile_k)])[geometry.tile_starts]
    sirens: dict[int, PatchSiren] = {}
    stats = {"bands": geometry.n_bands, "tiles": geometry.n_tiles}
    predictions = None
    if nnz and context.siren_planner is not None:
        sirens, contexts, predictions, siren_stats = fit_band_sirens(context.siren_planner, geometry, band_bounds,
                                                                     rows, cols, values, bins, contexts, hist,
                                                                     context.gene_terms, cell_terms, options)
        stats.update(siren_stats)
        if sirens:  # else the contexts are the baseline's: so are their histograms
            hist = histograms(contexts, bins, major=major)

    _, _, heights, _, widths = geometry.tiles()
    tile_n = (heights * widths).astype(np.int64)
    coded = TILE_CODERS[major](tile_n, tile_k, positions, u, contexts, hist, code_values)
    data, lengths = coded.data, coded.lengths
    tile_offsets = np.concatenate([[0], np.cumsum(lengths)])
    band_starts = tile_offsets[geometry.tile_starts]
    band_crcs = crc32_ranges(data, band_starts[:-1], np.diff(band_starts))
    if options.mode == "inr-only":
        decoded = values[:0] if predictions is None else predictions  # None: a chunk without nonzeros
    else:
        decoded = dequantise_values(u, options.max_error) if options.max_error else values
    checksum = int(mapped_checksum(rows, cols, decoded, context.gene_of_row, block.start + cell_order))
    stats.update({"position_bits": round(coded.position_bits, 1), "value_bits": round(coded.value_bits, 1)})

    def section(name: str, values) -> tuple[str, bytes]:
        return name, CHUNK_SECTIONS_BY_MAJOR[major][name].pack(values)

    sections: list[tuple[str, bytes]] = [
        section("cells.baseline", cell_terms),
        section("bands.rows", geometry.row_starts),
        section("bands.widths", geometry.widths),
        section("bands.crc32", band_crcs),
        section("tiles.nnz", tile_k),
        section("tiles.bytes", lengths),
        *(section(name, counts) for name, counts in coded.counts),
    ]
    if sirens:
        used = sorted(sirens)
        sections.append(("siren.meta", pack_map({"bands": [[b, sirens[b].to_meta()] for b in used]})))
        weights = np.concatenate([sirens[b].flat_parameters() for b in used])
        sections.append(section("siren.weights", weights))
    sections.append(("tiles.data", data))
    sections.insert(0, cell_order_section(cell_order, major, sum(len(payload) for _, payload in sections)))
    return CodedChunk(sections, {"n_rows": geometry.n_rows, "n_bands": geometry.n_bands, "checksum": checksum},
                      stats)


def write_chunk(writer: ContainerWriter, chunk: EncodedChunk) -> list[int]:
    """Write a chunk block; return its chunks.index row."""
    offset = writer.block(chunk.header)
    for payload in chunk.body:
        writer.block(payload)
    return [offset, len(chunk.header), crc32(chunk.header), chunk.length, chunk.n_cells, chunk.nnz]
