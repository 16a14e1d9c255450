"""Conformance vectors for .sinr formats 2 and 3: writes tests/conformance/<case>/, deterministically.

Run it from the repository root, with the project's virtual environment (torch included, CPU):

    .venv/bin/python tests/conformance/make_vectors.py              # every case, into tests/conformance/
    .venv/bin/python tests/conformance/make_vectors.py --out DIR    # somewhere else (the tests do this)
    .venv/bin/python tests/conformance/make_vectors.py --no-torch   # only the cases that need no SIREN fit
    .venv/bin/python tests/conformance/make_vectors.py --only NAME [NAME ...]

Running it again reproduces the same bytes, given the same versions of scinrcodec, zstandard
(its bundled zstd, level 19), msgpack and, for the SIREN cases, torch on the CPU (the script pins
torch to one thread and device "cpu"; a different CPU or torch build may round a weight
differently, so only the cases marked "needs_torch" in their case.json can depend on the machine).
tests/test_conformance.py checks that a fresh run gives identical bytes.

Every matrix is cut from the real fixtures in tests/data/ (10x mtx folders); where a path needs
more than the cut offers (values above 2**20, tiles of more than 2**16 entries per nonzero, an
empty chunk) the case says exactly what was added or changed, in its case.json "source".

Layout of a case folder (tests/conformance/README.md says the same for decoder writers):

valid cases
    matrix.sinr     the file
    expected.npz    numpy .npz (uncompressed zip of .npy members, fixed timestamps so that it is
                    reproducible): shape int64 (2,), genes, cells, values int64: the DECODED matrix
                    as COO sorted by (gene, cell); for lossy modes what a decoder must produce
    names.json      {"gene_ids", "gene_names", "feature_types", "cell_names"}: lists or null,
                    as a reader must return them (gene_names equal to gene_ids when the file says so)
    case.json       what the case exercises, mode, options, how the tricky paths were verified
invalid cases
    matrix.sinr
    expected_error.json   {"error": "CorruptFileError" | "FormatError" | "UnsupportedVersionError",
                           "message_contains": "..."}: opening, decoding everything (and verify)
                          must raise exactly this error class with this fragment in its message
    case.json
manifest.json       every case, its kind and the sha256 and size of each of its files

Invalid files that contradict themselves are built with the helpers below (parse_file / build_file):
they split a file into footer, chunk headers and sections, and rebuild it with every offset,
length and CRC-32 recomputed, so that each contradiction is the only thing wrong with the file.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import scipy.sparse as sp
import zstandard

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import scinrcodec  # noqa: E402
from scinrcodec.codec.models import N_BINS, N_CONTEXTS, bin_tables  # noqa: E402
from scinrcodec.io.sources import ScipySource  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = ROOT / "tests" / "data"
V1_EXAMPLE_COMMIT = "d762302"  # the last commit holding the version 1 worked example

MAGIC = b"\x89SINR\r\n\x1a"
END_MAGIC = b"SINR-END"
PREAMBLE = struct.Struct("<8sHHI")
TRAILER = struct.Struct("<QII8s")
ZSTD_LEVEL = 19
INDEX_FIELDS = 6  # offset, header_length, header_crc32, block_length, n_cells, nnz
MAX_COUNT = 2**31 - 1


# ============================================================================ file surgery helpers

def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def zstd(data: bytes, *, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=content_size).compress(data)


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def pack_header(value) -> bytes:
    return zstd(msgpack.packb(value, use_bin_type=True))


def unpack_header(data: bytes):
    return msgpack.unpackb(unzstd(data), raw=False, strict_map_key=False)


def pack_array(values, dtype: str) -> bytes:
    return zstd(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())


def unpack_array(payload: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(unzstd(payload), dtype=np.dtype(dtype).newbyteorder("<")).astype(np.dtype(dtype))


def planes(values, dtype: str) -> bytes:
    """The byte planes of an array (spec §3.3, zstd shuffled array): byte j of item i at j * n + i."""
    item = np.dtype(dtype).newbyteorder("<")
    return np.ascontiguousarray(values, dtype=item).reshape(-1).view(np.uint8).reshape(-1, item.itemsize).T.tobytes()


def pack_planes(values, dtype: str) -> bytes:
    """A zstd shuffled array: format 3's count sections."""
    return zstd(planes(values, dtype))


def unpack_planes(payload: bytes, dtype: str) -> np.ndarray:
    item = np.dtype(dtype).newbyteorder("<")
    raw = np.frombuffer(unzstd(payload), dtype=np.uint8).reshape(item.itemsize, -1)
    return np.ascontiguousarray(raw.T).view(item).reshape(-1).astype(np.dtype(dtype))


@dataclass
class Chunk:
    header: dict  # the chunk header map; its "sections" table is rebuilt from `sections`
    sections: list  # [name, payload bytes], in file order
    index: list  # [n_cells, nnz] as the chunks.index row states them
    header_bytes: bytes | None = None  # if set, written instead of pack_header(header)


@dataclass
class Parts:
    """A .sinr file taken apart: preamble fields, chunk blocks, matrix sections, footer."""

    major: int
    minor: int
    reserved: int
    footer: dict  # the footer map; matrices[0]["sections"] is rebuilt from `sections`
    sections: list  # the matrix's [name, payload] in file order ("chunks.index" rebuilt)
    chunks: list[Chunk]
    footer_bytes: bytes | None = None  # if set, written instead of pack_header(footer)
    keep_index: bool = False  # write the chunks.index payload as it is in `sections`
    trailer_reserved: int = 0

    def section(self, name: str) -> bytes:
        return dict(self.sections)[name]

    def set_section(self, name: str, payload: bytes) -> None:
        _set(self.sections, name, payload)

    @property
    def matrix(self) -> dict:
        return self.footer["matrices"][0]


def _set(sections: list, name: str, payload: bytes) -> None:
    for entry in sections:
        if entry[0] == name:
            entry[1] = payload
            return
    raise KeyError(name)


def chunk_section(chunk: Chunk, name: str) -> bytes:
    return dict(chunk.sections)[name]


def set_chunk_section(chunk: Chunk, name: str, payload: bytes) -> None:
    _set(chunk.sections, name, payload)


def drop_section(sections: list, name: str) -> None:
    sections[:] = [entry for entry in sections if entry[0] != name]


def parse_file(blob: bytes) -> Parts:
    """Split a well-formed .sinr file (one matrix) into Parts."""
    magic, major, minor, reserved = PREAMBLE.unpack_from(blob, 0)
    assert magic == MAGIC
    length, _, _, end = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)
    assert end == END_MAGIC
    footer_at = len(blob) - TRAILER.size - length
    footer = unpack_header(blob[footer_at: footer_at + length])
    matrix = footer["matrices"][0]
    sections = [[name, blob[offset: offset + size]] for name, offset, size, _ in matrix["sections"]]
    index = unpack_array(dict(sections)["chunks.index"], "u8").astype(np.int64).reshape(-1, INDEX_FIELDS)
    chunks = []
    for offset, header_length, _, _, n_cells, nnz in index.tolist():
        header = unpack_header(blob[offset: offset + header_length])
        body = offset + header_length
        chunk_sections = [[name, blob[body + at: body + at + size]] for name, at, size, _ in header["sections"]]
        chunks.append(Chunk(header, chunk_sections, [n_cells, nnz]))
    return Parts(major, minor, reserved, footer, sections, chunks)


def build_file(parts: Parts, *, index_hook: Callable | None = None, table_hook: Callable | None = None) -> bytes:
    """Write Parts back out in the encoder's order (preamble, chunk blocks, matrix sections, footer,
    trailer), recomputing every offset, length and CRC. index_hook(rows) may edit the chunks.index
    rows (int64 [n_chunks, 6]) before they are stored; table_hook(table) the matrix section table."""
    preamble = PREAMBLE.pack(MAGIC, parts.major, parts.minor, parts.reserved)
    out = bytearray(preamble)
    rows = []
    for chunk in parts.chunks:
        table, at = [], 0
        for name, payload in chunk.sections:
            table.append([name, at, len(payload), crc32(payload)])
            at += len(payload)
        header = dict(chunk.header)
        header["sections"] = table
        head = chunk.header_bytes if chunk.header_bytes is not None else pack_header(header)
        start = len(out)
        out += head
        for _, payload in chunk.sections:
            out += payload
        rows.append([start, len(head), crc32(head), len(out) - start, *chunk.index])
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, INDEX_FIELDS)
    if index_hook is not None:
        rows = index_hook(rows)
    sections = [list(entry) for entry in parts.sections]
    if not parts.keep_index:
        _set(sections, "chunks.index", pack_array(rows.astype(np.uint64).ravel(), "u8"))
    table = []
    for name, payload in sections:
        table.append([name, len(out), len(payload), crc32(payload)])
        out += payload
    if table_hook is not None:
        table = table_hook(table)
    footer = copy.deepcopy(parts.footer)
    if footer.get("matrices") and isinstance(footer["matrices"][0], dict) and "sections" in footer["matrices"][0]:
        footer["matrices"][0]["sections"] = table
    packed = parts.footer_bytes if parts.footer_bytes is not None else pack_header(footer)
    out += packed
    out += trailer(preamble, packed, parts.trailer_reserved)
    return bytes(out)


def trailer(preamble: bytes, packed_footer: bytes, reserved: int = 0) -> bytes:
    """The 24-byte trailer: footer length, CRC-32 of the preamble followed by the footer, reserved,
    end magic."""
    return TRAILER.pack(len(packed_footer), crc32(preamble + packed_footer), reserved, END_MAGIC)


def edit(blob: bytes, change: Callable[[Parts], object], **build) -> bytes:
    """Parse, let `change` edit the parts in place, rebuild with valid checksums."""
    parts = parse_file(blob)
    change(parts)
    return build_file(parts, **build)


def flip(blob: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(blob)
    out[offset] ^= mask
    return bytes(out)


def section_offset(blob: bytes, name: str, chunk: int | None = None) -> tuple[int, int]:
    """(absolute offset, length) of a matrix section, or of a chunk's section."""
    length = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)[0]
    footer = unpack_header(blob[len(blob) - TRAILER.size - length: len(blob) - TRAILER.size])
    table = {e[0]: e for e in footer["matrices"][0]["sections"]}
    if chunk is None:
        return table[name][1], table[name][2]
    index = unpack_array(blob[table["chunks.index"][1]: table["chunks.index"][1] + table["chunks.index"][2]],
                         "u8").astype(np.int64).reshape(-1, INDEX_FIELDS)
    offset, header_length = int(index[chunk, 0]), int(index[chunk, 1])
    header = unpack_header(blob[offset: offset + header_length])
    entry = {e[0]: e for e in header["sections"]}[name]
    return offset + header_length + entry[1], entry[2]


# ================================================================================== real data

@dataclass
class Cut:
    """A genes x cells count matrix with its names, cut from a fixture."""

    counts: sp.csc_matrix
    gene_ids: list | None
    gene_names: list | None
    feature_types: list | None
    cell_names: list | None
    origin: str

    def source(self) -> ScipySource:
        return ScipySource(self.counts, self.gene_ids, self.gene_names, self.cell_names, self.feature_types)

    def take(self, genes=None, cells=None, note: str = "") -> "Cut":
        genes = np.arange(self.counts.shape[0]) if genes is None else np.asarray(genes)
        cells = np.arange(self.counts.shape[1]) if cells is None else np.asarray(cells)
        pick = lambda names, idx: None if names is None else [names[i] for i in idx]  # noqa: E731
        return Cut(sp.csc_matrix(self.counts[genes][:, cells]), pick(self.gene_ids, genes),
                   pick(self.gene_names, genes), pick(self.feature_types, genes), pick(self.cell_names, cells),
                   f"{self.origin}{note}")


_FIXTURES: dict[str, Cut] = {}


def fixture(name: str) -> Cut:
    if name not in _FIXTURES:
        src = scinrcodec.read_matrix(DATA / name)
        counts = sp.csc_matrix(src.matrix()).astype(np.int64)
        counts.sort_indices()
        _FIXTURES[name] = Cut(counts, src.gene_ids, src.gene_names, src.feature_types,
                              src.cell_names(0, counts.shape[1]), f"tests/data/{name} ({counts.shape[0]} x "
                              f"{counts.shape[1]}, nnz {counts.nnz})")
    return _FIXTURES[name]


def detection(counts: sp.spmatrix) -> np.ndarray:
    return np.diff(sp.csr_matrix(counts).indptr)


def mouse40() -> Cut:
    """The first 40 cells of the Smart-seq2 fixture (reads, up to 3828): keeps expected.npz small."""
    return fixture("mouse_gut_cimseq_smartseq2").take(cells=np.arange(40), note="; cells 0..39")


# ============================================================================== case registry

@dataclass
class ValidCase:
    name: str
    build: Callable[[], dict]
    needs_torch: bool = False


@dataclass
class InvalidCase:
    name: str
    base: str  # a valid case whose file is edited, or None
    change: Callable[[bytes], bytes]
    error: str
    fragment: str
    what: str
    extra: dict = field(default_factory=dict)
    needs_torch: bool = False


VALID: dict[str, ValidCase] = {}
INVALID: dict[str, InvalidCase] = {}
TORCH_BASES = set()


def valid(name: str, needs_torch: bool = False):
    def register(fn):
        VALID[name] = ValidCase(name, fn, needs_torch)
        if needs_torch:
            TORCH_BASES.add(name)
        return fn
    return register


def invalid(name: str, base: str | None, error: str, fragment: str, what: str, **extra):
    def register(fn):
        INVALID[name] = InvalidCase(name, base, fn, error, fragment, what, extra,
                                    needs_torch=base in TORCH_BASES)
        return fn
    return register


SIREN_TRAINING = dict(steps=40, width=8, hidden_layers=2, batch=256, device="cpu")


# ================================================================================ valid cases

@valid("lossless_default")
def _():
    cut = fixture("visium_spaceranger3")
    return dict(cut=cut, options={}, exercises=["lossless mode with every default option",
                                                "all four name lists, gene names distinct from ids"])


@valid("bands_and_tiles")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options=dict(chunk_cells=40, patch_nnz=200, tile_nnz=32),
                exercises=["two chunks", "several bands per chunk", "several tiles per band",
                           "the base file of most invalid cases"])


@valid("max_error_2")
def _():
    cut = mouse40()
    return dict(cut=cut, options=dict(mode="max-error", max_error=2),
                exercises=["max-error mode, E = 2: decoded nonzero = min(1 + u (2E+1), 2**31-1)"])


@valid("max_error_1000")
def _():
    cut = mouse40()
    return dict(cut=cut, options=dict(mode="max-error", max_error=1000),
                exercises=["max-error mode with a large E (1000) against values up to 3828"])


@valid("max_error_limit")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options=dict(mode="max-error", max_error=2**31 - 2),
                exercises=["max-error mode with the largest E allowed (2**31-2): every nonzero decodes to 1"])


def _inr(norm: str, hidden: int):
    def build():
        cut = fixture("pbmc500_3p_lt_x_50genes")
        options = dict(mode="inr-only", normalisation=norm, chunk_cells=40, patch_nnz=300,
                       **{**SIREN_TRAINING, "hidden_layers": hidden})
        return dict(cut=cut, options=options,
                    exercises=[f"inr-only mode: values are the SIREN's predictions ({norm} normalisation)",
                               "a SIREN in every band with nonzeros", "no value tables, no value bits"])
    return build


for _norm, _hidden in (("log", 2), ("minmax", 1), ("none", 1)):
    valid(f"inr_only_{_norm}", needs_torch=True)(_inr(_norm, _hidden))


def _force(norm: str, mode: dict):
    def build():
        cut = fixture("pbmc500_3p_lt_x_50genes")
        options = dict(siren="force", normalisation=norm, chunk_cells=40, patch_nnz=200, tile_nnz=64,
                       **SIREN_TRAINING, **mode)
        return dict(cut=cut, options=options,
                    exercises=[f"a kept SIREN in every band with nonzeros, {norm} normalisation: the SIREN's "
                               "integer output picks each nonzero's coding context",
                               f"mode {mode.get('mode', 'lossless')}"])
    return build


for _norm in ("none", "minmax", "log"):
    valid(f"siren_force_{_norm}", needs_torch=True)(_force(_norm, {}))
valid("siren_force_max_error", needs_torch=True)(_force("log", dict(mode="max-error", max_error=1)))


@valid("dense_complement")
def _():
    base = fixture("mouse_gut_cimseq_smartseq2")
    genes = np.flatnonzero(detection(base.counts) >= 60)
    cut = base.take(genes=genes, cells=np.arange(40),
                    note=f"; the {genes.size} genes detected in >= 60 of the 80 cells; cells 0..39")
    return dict(cut=cut, options=dict(tile_nnz=64),
                exercises=["complement tiles: more than half of a tile's entries are nonzero, so its zero "
                           "positions are coded", "full tiles: every entry nonzero, no positions coded"],
                require=dict(tiles_complement=1, tiles_full=1))


@valid("sparse_wide_gaps")
def _():
    base = mouse40()
    det = detection(base.counts)
    gene = int(np.flatnonzero(det == 1).max())  # the last stored row of the file's gene order
    n_stored = int(np.count_nonzero(det))
    chunk_cells = -(-96_000 // n_stored // 10) * 10  # one-nonzero tile: n_stored x chunk_cells > 95,000 entries
    csr = sp.csr_matrix(base.counts)
    cell, value = int(csr[gene].indices[0]), int(csr[gene].data[0])
    coo = sp.coo_matrix(base.counts)
    keep = ~((coo.row == gene) & (coo.col == cell))
    target = chunk_cells + chunk_cells // 2
    rows = np.concatenate([coo.row[keep], [gene]])
    cols = np.concatenate([coo.col[keep], [target]])
    vals = np.concatenate([coo.data[keep], [value]])
    counts = sp.csc_matrix((vals, (rows, cols)), shape=(base.counts.shape[0], 2 * chunk_cells), dtype=np.int64)
    note = (f"; {2 * chunk_cells - 40} empty cells added (40..{2 * chunk_cells - 1}); cell names dropped; gene "
            f"{gene} ({base.gene_ids[gene]}), detected once, has its one nonzero ({value}) moved from cell {cell} "
            f"to the empty cell {target}")
    cut = Cut(counts, base.gene_ids, base.gene_names, base.feature_types, None, base.origin + note)
    return dict(cut=cut, options=dict(chunk_cells=chunk_cells, patch_nnz=1 << 40, tile_nnz=1 << 20),
                exercises=["quotient escapes: Golomb quotients of 15 and more (symbol 15 = add 15, read on); "
                           "chunk 0's one tile holds 40 real cells then empty ones, so row ends leave long gaps",
                           f"the uniform remainder model above 2**16: chunk 1's one tile has {n_stored} x "
                           f"{chunk_cells} entries and one nonzero, so M > 65536 and its remainder is a uniform "
                           "high part plus raw low bits", "one band and one tile per chunk"],
                require=dict(quotient_escape_symbols=1, tiles_uniform_above_2_16=1, traced_uniform_low_bits_max=1))


@valid("large_values")
def _():
    base = mouse40()
    counts = base.counts.copy()
    counts.data = counts.data * 1009
    cut = Cut(counts, base.gene_ids, base.gene_names, base.feature_types, base.cell_names,
              base.origin + "; every value multiplied by 1009 (real values reach 3828, so the largest is "
                            "3,862,452 > 2**20)")
    return dict(cut=cut, options={},
                exercises=["value offsets of more than 16 raw bits (read as a high part of d-16 bits, then 16 "
                           "bits)"], require=dict(max_offset_bits=17))


@valid("chunks_many")
def _():
    base = fixture("pbmc4k_v2_soupx_half")
    det = detection(base.counts)
    csr = sp.csr_matrix(base.counts)
    rare = [g for g in np.flatnonzero((det >= 1) & (det <= 2)).tolist()]
    late = sorted({int(c) for g in rare for c in csr[g].indices})
    early = [c for c in range(base.counts.shape[1]) if c not in late]
    early = early[: 44 - len(late)]
    order = early + late  # real cells, those expressing the rarest genes last
    real = base.take(cells=order)
    empty = sp.csc_matrix((base.counts.shape[0], 12), dtype=np.int64)
    counts = sp.hstack([real.counts[:, :24], empty, real.counts[:, 24:]]).tocsc()
    cells = real.cell_names[:24] + [f"empty_{j:02d}" for j in range(12)] + real.cell_names[24:]
    note = (f"; 44 of the 80 cells, the {len(late)} cells expressing the genes detected in one or two cells "
            "last; 12 empty cells (empty_NN) inserted at 24..35")
    cut = Cut(counts, base.gene_ids, base.gene_names, base.feature_types, cells, base.origin + note)
    return dict(cut=cut, options=dict(chunk_cells=12),
                exercises=["five chunks of 12 cells, the last of 8", "a chunk with no nonzeros (cells 24..35)",
                           "genes expressed only in later chunks (rows beyond an earlier chunk's n_rows)"],
                require=dict(empty_chunks=1, genes_only_in_later_chunks=1))


@valid("no_names")
def _():
    base = fixture("pbmc4k_v2_soupx_half").take(cells=np.arange(40), note="; cells 0..39")
    cut = Cut(base.counts, None, None, None, None, base.origin + "; all names dropped")
    return dict(cut=cut, options={}, exercises=["no name sections at all: every name list is null"])


@valid("gene_names_equal_ids")
def _():
    cut = fixture("frozen_pbmc_donor_a_v1").take(cells=np.arange(40), note="; cells 0..39")
    assert cut.gene_names == cut.gene_ids
    return dict(cut=cut, options={},
                exercises=["gene names equal to the ids: stored once (gene_names_are_ids), read back as the ids"])


@valid("gene_ids_only")
def _():
    base = fixture("pbmc4k_v2_soupx_half")
    cut = base.take(genes=np.arange(60), note="; genes 0..59; gene names and feature types dropped")
    cut.gene_names = None
    cut.feature_types = None
    return dict(cut=cut, options={}, exercises=["gene ids without gene names or feature types; cell names"])


@valid("empty_0x0")
def _():
    cut = Cut(sp.csc_matrix((0, 0), dtype=np.int64), None, None, None, None, "an empty 0 x 0 matrix")
    return dict(cut=cut, options={}, exercises=["shape 0 x 0: no chunks"])


@valid("zeros_3x4")
def _():
    cut = Cut(sp.csc_matrix((3, 4), dtype=np.int64), None, None, None, None, "a 3 x 4 matrix of zeros")
    return dict(cut=cut, options={}, exercises=["no nonzeros: one chunk with no rows, no bands, no tiles"])


@valid("max_value_1x1")
def _():
    cut = Cut(sp.csc_matrix(np.array([[MAX_COUNT]], dtype=np.int64)), None, None, None, None,
              "a 1 x 1 matrix holding 2**31-1")
    return dict(cut=cut, options={}, exercises=["the largest value, 2**31-1: the last bin, 27 offset bits",
                                                "a full 1 x 1 tile (no positions coded)"],
                require=dict(max_offset_bits=27))


def _stats_nonfinite(blob: bytes) -> bytes:
    def change(parts: Parts) -> None:
        stats = parts.matrix["stats"]
        stats.update({"nonfinite_inf": math.inf, "nonfinite_minus_inf": -math.inf, "nonfinite_nan": math.nan})
    return edit(blob, change)


@valid("stats_nonfinite")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options={}, post=_stats_nonfinite,
                post_note="footer stats gain nonfinite_inf = inf, nonfinite_minus_inf = -inf, nonfinite_nan = "
                          "NaN (msgpack float64); the file is re-sealed",
                exercises=["informative stats holding inf and NaN: not an error; a reader drops them"],
                stats_dropped=["nonfinite_inf", "nonfinite_minus_inf", "nonfinite_nan"])


def _informative_any_type(blob: bytes) -> bytes:
    def change(parts: Parts) -> None:
        parts.footer["writer"] = 5
        parts.matrix["options"] = "fast"
        parts.matrix["stats"] = [1, 2]
    return edit(blob, change)


@valid("informative_keys_any_type")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options={}, post=_informative_any_type,
                post_note="the footer's writer set to the int 5, the matrix's options to the str 'fast' and its "
                          "stats to the list [1, 2]; the file is re-sealed",
                exercises=["the informative keys writer, options and stats are ignored whatever their type (§3.5)"])


def _minor(minor: int) -> Callable[[bytes], bytes]:
    """The file with the preamble's minor version set to `minor`, re-sealed."""
    def change(parts: Parts) -> None:
        parts.minor = minor
    return lambda blob: edit(blob, change)


@valid("minor_version_2_1")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options={}, post=_minor(1),
                post_note="the preamble's minor version set to 1 (format 2.1); the footer CRC re-sealed",
                exercises=["a newer minor version of a known major must be read (the version 1 spec's rule, "
                           "section 10; the format 2 spec must keep it for this case to stand)"],
                spec_dependent=True)


def _unknown_keys(blob: bytes) -> bytes:
    def change(parts: Parts) -> None:
        parts.footer["x_future"] = {"note": "added by make_vectors.py"}
        parts.matrix["x_future"] = [1, 2, 3]
        for chunk in parts.chunks:
            chunk.header["x_future"] = 1.5
    return edit(blob, change)


@valid("unknown_keys_ignored")
def _():
    cut = fixture("pbmc500_3p_lt_x_50genes")
    return dict(cut=cut, options=dict(chunk_cells=40), post=_unknown_keys,
                post_note='an unknown key "x_future" added to the footer, the matrix header and each chunk header; '
                          "the file re-sealed",
                exercises=["map keys a reader does not know are ignored (the version 1 spec's rule, section 10; "
                           "the format 2 spec must keep it for this case to stand)"],
                spec_dependent=True)


HUGE_GENES = 2**31 - 1


def _huge(blob: bytes) -> bytes:
    def change(parts: Parts) -> None:
        parts.matrix["shape"][0] = HUGE_GENES
    return edit(blob, change)


@valid("huge_gene_count")
def _():
    base = fixture("pbmc500_3p_lt_x_50genes")
    cut = Cut(base.counts, None, None, None, base.cell_names, base.origin + "; gene name lists dropped")
    return dict(cut=cut, options={}, post=_huge, shape=(HUGE_GENES, base.counts.shape[1]),
                post_note=f"footer shape[0] set to {HUGE_GENES} (the 50 real genes keep their indices; every "
                          "other gene is all zero); the file is re-sealed",
                exercises=["2**31-1 genes of which 40 are stored: a reader must open and decode it without "
                           "allocating per gene (the test runs it under a 2 GiB address-space limit; dense "
                           "cell reads and a gene-major CSR of 2**31 rows are skipped)"],
                memory_limited=True)


# ============================================================================== invalid cases

def _v1_example(_: bytes) -> bytes:
    """The version 1 worked example, from git history (a clone without that commit reuses the vector
    already here)."""
    run = subprocess.run(["git", "show", f"{V1_EXAMPLE_COMMIT}:tests/data/spec_example.sinr"], cwd=ROOT,
                         capture_output=True)
    if run.returncode == 0:
        return run.stdout
    kept = HERE / "version_1" / "matrix.sinr"
    if kept.exists():
        return kept.read_bytes()
    raise RuntimeError(f"git show {V1_EXAMPLE_COMMIT}:tests/data/spec_example.sinr failed: {run.stderr.decode()}")


@invalid("version_1", None, "UnsupportedVersionError", "format 1.0 is not read by scinrcodec 2",
         "the version 1 worked example (git show d762302:tests/data/spec_example.sinr): refused, naming "
         "version 1 and how to convert it",
         message_contains_all=["format 1.0", "scinrcodec 1.x", "encode the result again"])
def _(blob):
    return _v1_example(blob)


@invalid("version_0", "bands_and_tiles", "UnsupportedVersionError", "format 0.0 is not supported",
         "major version 0 in the preamble")
def _(blob):
    return blob[:8] + struct.pack("<H", 0) + blob[10:]


@invalid("not_sinr_gzip", None, "FormatError", "not a .sinr file",
         "not a .sinr file: a gzip file (tests/data/pbmc500_3p_lt_x_50genes/matrix.mtx.gz)")
def _(blob):
    return (DATA / "pbmc500_3p_lt_x_50genes" / "matrix.mtx.gz").read_bytes()


@invalid("not_sinr_text", None, "FormatError", "not a .sinr file",
         "not a .sinr file: the first 300 bytes of a Matrix Market text file")
def _(blob):
    import gzip
    return gzip.decompress((DATA / "pbmc500_3p_lt_x_50genes" / "matrix.mtx.gz").read_bytes())[:300]


@invalid("not_sinr_empty", None, "FormatError", "not a .sinr file", "an empty file (0 bytes)")
def _(blob):
    return b""


@invalid("truncated_in_magic", "bands_and_tiles", "CorruptFileError", "truncated",
         "truncated inside the magic (5 bytes)")
def _(blob):
    return blob[:5]


@invalid("truncated_preamble_only", "bands_and_tiles", "CorruptFileError", "truncated",
         "truncated after the 16-byte preamble")
def _(blob):
    return blob[:16]


@invalid("truncated_half", "bands_and_tiles", "CorruptFileError", "truncated", "truncated to half its size")
def _(blob):
    return blob[: len(blob) // 2]


@invalid("truncated_last_byte", "bands_and_tiles", "CorruptFileError", "truncated", "the last byte missing")
def _(blob):
    return blob[:-1]


@invalid("truncated_in_trailer", "bands_and_tiles", "CorruptFileError", "truncated",
         "truncated inside the 24-byte trailer (12 bytes of it left)")
def _(blob):
    return blob[:-12]


@invalid("body_bytes_missing", "bands_and_tiles", "CorruptFileError", "outside",
         "64 bytes cut out of the first chunk block, footer and trailer intact: the footer's offsets run "
         "past the body")
def _(blob):
    return blob[:100] + blob[164:]


@invalid("trailing_bytes", "bands_and_tiles", "CorruptFileError", "no .sinr trailer at its end",
         "16 zero bytes after the trailer")
def _(blob):
    return blob + b"\x00" * 16


@invalid("trailing_bytes_and_trailer", "bands_and_tiles", "CorruptFileError", "footer checksum mismatch",
         "8 junk bytes and a second copy of the trailer after the file")
def _(blob):
    return blob + b"JUNKJUNK" + blob[-TRAILER.size:]


@invalid("footer_crc", "bands_and_tiles", "CorruptFileError", "footer checksum mismatch",
         "the trailer's footer CRC-32 with one bit flipped")
def _(blob):
    return flip(blob, len(blob) - TRAILER.size + 8)


@invalid("footer_byte", "bands_and_tiles", "CorruptFileError", "footer checksum mismatch",
         "one bit flipped inside the footer's zstd frame")
def _(blob):
    length = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)[0]
    return flip(blob, len(blob) - TRAILER.size - length // 2, 0x10)


@invalid("footer_length", "bands_and_tiles", "CorruptFileError", "does not fit the file",
         "the trailer's footer length larger than the file")
def _(blob):
    return blob[: len(blob) - TRAILER.size] + struct.pack("<Q", len(blob)) + blob[len(blob) - 16:]


@invalid("preamble_reserved_nonzero", "bands_and_tiles", "CorruptFileError", "reserved fields",
         "the preamble's reserved u32 is 1 (the footer CRC, which covers the preamble, re-sealed)")
def _(blob):
    def change(parts):
        parts.reserved = 1
    return edit(blob, change)


@invalid("trailer_reserved_nonzero", "bands_and_tiles", "CorruptFileError", "reserved fields",
         "the trailer's reserved u32 is 1")
def _(blob):
    def change(parts):
        parts.trailer_reserved = 1
    return edit(blob, change)


@invalid("preamble_byte_flipped", "bands_and_tiles", "CorruptFileError", "footer checksum mismatch",
         "one bit flipped in the preamble's minor version (2.0 -> 2.1): the footer CRC covers the preamble")
def _(blob):
    return flip(blob, 10)


@invalid("section_crc_matrix", "bands_and_tiles", "CorruptFileError", "checksum mismatch in section 'genes.order'",
         "one bit flipped in the matrix section genes.order")
def _(blob):
    offset, length = section_offset(blob, "genes.order")
    return flip(blob, offset + length // 2)


@invalid("section_crc_names", "bands_and_tiles", "CorruptFileError",
         "checksum mismatch in section 'names.gene_names'", "one bit flipped in names.gene_names")
def _(blob):
    offset, length = section_offset(blob, "names.gene_names")
    return flip(blob, offset + length // 2)


@invalid("section_crc_chunk", "bands_and_tiles", "CorruptFileError", "checksum mismatch in section 'cells.order'",
         "one bit flipped in chunk 1's cells.order")
def _(blob):
    offset, length = section_offset(blob, "cells.order", chunk=1)
    return flip(blob, offset + length // 2)


@invalid("section_crc_tiles", "bands_and_tiles", "CorruptFileError", "checksum mismatch in the tiles of band",
         "one bit flipped in chunk 0's tile data")
def _(blob):
    offset, length = section_offset(blob, "tiles.data", chunk=0)
    return flip(blob, offset + length // 2)


@invalid("chunk_header_crc", "bands_and_tiles", "CorruptFileError", "header checksum mismatch",
         "one bit flipped in chunk 0's header")
def _(blob):
    return flip(blob, PREAMBLE.size + 20)


# ---------------------------------------------------------------- contradictions, checksums valid

def _footer_edit(fn: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    return lambda blob: edit(blob, lambda parts: fn(parts.matrix))


def _set_max_error(value):
    def change(matrix):
        quantiser = next(s for s in matrix["stages"] if s["id"] == "value-quantiser")
        quantiser["max_error"] = value
    return change


@invalid("lossless_with_max_error", "bands_and_tiles", "CorruptFileError", "contradicts max_error 3",
         "mode lossless, but the value-quantiser stage says max_error 3")
def _(blob):
    return _footer_edit(_set_max_error(3))(blob)


@invalid("max_error_mode_with_max_error_0", "max_error_2", "CorruptFileError", "contradicts max_error 0",
         "mode max-error, but the value-quantiser stage says max_error 0")
def _(blob):
    return _footer_edit(_set_max_error(0))(blob)


@invalid("max_error_float", "max_error_2", "CorruptFileError", "invalid parameters", "max_error 1.5")
def _(blob):
    return _footer_edit(_set_max_error(1.5))(blob)


@invalid("max_error_true", "max_error_2", "CorruptFileError", "invalid parameters", "max_error true")
def _(blob):
    return _footer_edit(_set_max_error(True))(blob)


@invalid("max_error_2_62", "max_error_2", "CorruptFileError", "invalid parameters", "max_error 2**62")
def _(blob):
    return _footer_edit(_set_max_error(2**62))(blob)


@invalid("max_error_2_31_minus_1", "max_error_2", "CorruptFileError", "invalid parameters",
         "max_error 2**31-1, one above the largest allowed")
def _(blob):
    return _footer_edit(_set_max_error(2**31 - 1))(blob)


@invalid("max_error_missing", "max_error_2", "CorruptFileError", "has parameters",
         "the value-quantiser stage without its max_error")
def _(blob):
    return _footer_edit(lambda m: next(s for s in m["stages"] if s["id"] == "value-quantiser").pop("max_error"))(blob)


@invalid("mode_inr_only_stages_lossless", "bands_and_tiles", "CorruptFileError", "do not match mode",
         "mode inr-only with the lossless stage list")
def _(blob):
    return _footer_edit(lambda m: m.update(mode="inr-only"))(blob)


def _to_inr_only(matrix: dict) -> None:
    matrix["mode"] = "inr-only"
    matrix["stages"] = [s for s in matrix["stages"] if s["id"] != "context-rans-values"]


@invalid("inr_only_with_value_counts", "bands_and_tiles", "CorruptFileError", "value tables contradict mode",
         "mode inr-only and the inr-only stage list, but the chunks hold value counts (a lossless file's)")
def _(blob):
    return _footer_edit(_to_inr_only)(blob)


@invalid("lossless_without_value_counts", "bands_and_tiles", "CorruptFileError", "value tables contradict mode",
         "a lossless file whose chunk 0 lacks its values.counts section")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.chunks[0].sections, "values.counts"))


def _stage_twice(stage_id: str):
    """A footer edit listing stage `stage_id` a second time, right after the first."""
    def change(matrix):
        stages = matrix["stages"]
        at = next(i for i, s in enumerate(stages) if s["id"] == stage_id)
        stages.insert(at + 1, dict(stages[at]))
    return _footer_edit(change)


@invalid("second_value_stage", "max_error_2", "CorruptFileError", "appears twice",
         "the value-quantiser stage listed twice (same parameters)")
def _(blob):
    return _stage_twice("value-quantiser")(blob)


@invalid("second_value_coder", "bands_and_tiles", "CorruptFileError", "appears twice",
         "the context-rans-values stage listed twice")
def _(blob):
    return _stage_twice("context-rans-values")(blob)


@invalid("stages_missing", "bands_and_tiles", "CorruptFileError", "stage list is missing",
         "no stages key in the matrix header")
def _(blob):
    return _footer_edit(lambda m: m.pop("stages"))(blob)


@invalid("stage_dropped", "bands_and_tiles", "CorruptFileError", "do not match mode",
         "the golomb-rans-positions stage left out")
def _(blob):
    return _footer_edit(lambda m: m.update(stages=[s for s in m["stages"] if s["id"] != "golomb-rans-positions"]))(blob)


@invalid("stages_reordered", "bands_and_tiles", "CorruptFileError", "do not match mode",
         "the first two stages swapped")
def _(blob):
    return _footer_edit(lambda m: m.update(stages=[m["stages"][1], m["stages"][0], *m["stages"][2:]]))(blob)


@invalid("unknown_stage", "bands_and_tiles", "CorruptFileError", "unknown stage",
         "a stage id no reader knows ('delta-positions') added")
def _(blob):
    return _footer_edit(lambda m: m["stages"].insert(3, {"id": "delta-positions"}))(blob)


@invalid("row_bands_bad_parameter", "bands_and_tiles", "CorruptFileError", "invalid parameters",
         "the row-bands stage with tile_nnz 0")
def _(blob):
    return _footer_edit(lambda m: next(s for s in m["stages"] if s["id"] == "row-bands").update(tile_nnz=0))(blob)


@invalid("format_not_sinr", "bands_and_tiles", "CorruptFileError", "does not describe a .sinr file",
         'the footer\'s "format" is "sinz"')
def _(blob):
    return edit(blob, lambda parts: parts.footer.update(format="sinz"))


@invalid("no_matrices", "bands_and_tiles", "CorruptFileError", "lists no matrix", "the footer lists no matrix")
def _(blob):
    def change(parts):
        parts.footer["matrices"] = []
    return edit(blob, change)


@invalid("duplicate_matrix_names", "bands_and_tiles", "CorruptFileError", "share a name",
         "the footer lists the matrix twice under one name")
def _(blob):
    parts = parse_file(blob)
    out = build_file(parts)
    footer = unpack_header(out[len(out) - TRAILER.size - TRAILER.unpack_from(out, len(out) - 24)[0]: -TRAILER.size])
    footer["matrices"].append(copy.deepcopy(footer["matrices"][0]))
    return _replace_footer(out, pack_header(footer))


@invalid("matrix_name_not_a_string", "bands_and_tiles", "CorruptFileError", "name",
         "the matrix's name is a list ([1, 2]), which is no valid name")
def _(blob):
    return _footer_edit(lambda m: m.update(name=[1, 2]))(blob)


def _replace_footer(blob: bytes, packed: bytes) -> bytes:
    length = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)[0]
    body = blob[: len(blob) - TRAILER.size - length]
    return body + packed + trailer(blob[: PREAMBLE.size], packed)


@invalid("footer_not_a_map", "bands_and_tiles", "CorruptFileError", "not a map",
         "the footer is a msgpack list, not a map")
def _(blob):
    return _replace_footer(blob, pack_header(["sinr"]))


@invalid("footer_not_msgpack", "bands_and_tiles", "CorruptFileError", "unreadable",
         "the footer's zstd frame holds bytes that are not msgpack")
def _(blob):
    return _replace_footer(blob, zstd(b"\xc1" * 32))


@invalid("msgpack_ext_type", "bands_and_tiles", "CorruptFileError", "ext type",
         "the footer holds an ext type (5) under an unknown key, which a reader must still refuse (§3.5, rule C7)")
def _(blob):
    return edit(blob, lambda parts: parts.footer.update(x_future=msgpack.ExtType(5, b"abc")))


@invalid("msgpack_timestamp", "bands_and_tiles", "CorruptFileError", "ext type",
         "the footer holds a MessagePack timestamp (ext type -1) under an unknown key (§3.5, rule C7)")
def _(blob):
    return edit(blob, lambda parts: parts.footer.update(x_future=[msgpack.Timestamp(1, 0)]))


def _nested(depth: int):
    """A footer value whose deepest item has `depth` (the footer map is depth 0)."""
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return value


@invalid("msgpack_too_deep", "bands_and_tiles", "CorruptFileError", "nested",
         "the footer holds, under an unknown key, lists nested so that a value has depth 65: one more than §3.5 "
         "allows (rule C7; depth 64 is read, as unknown_keys_ignored's keys are)")
def _(blob):
    return edit(blob, lambda parts: parts.footer.update(x_future=_nested(65)))


@invalid("footer_trailing_bytes", "bands_and_tiles", "CorruptFileError", "not exactly one complete zstd frame",
         "4 bytes after the footer's zstd frame, inside the footer length and its CRC")
def _(blob):
    length = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)[0]
    packed = blob[len(blob) - TRAILER.size - length: len(blob) - TRAILER.size]
    return _replace_footer(blob, packed + b"\x00\x00\x00\x00")


@invalid("footer_no_content_size", "bands_and_tiles", "CorruptFileError", "without its content size",
         "the footer's zstd frame does not declare its content size")
def _(blob):
    length = TRAILER.unpack_from(blob, len(blob) - TRAILER.size)[0]
    raw = unzstd(blob[len(blob) - TRAILER.size - length: len(blob) - TRAILER.size])
    return _replace_footer(blob, zstd(raw, content_size=False))


@invalid("gene_names_are_ids_with_names", "bands_and_tiles", "CorruptFileError", "contradicts the name sections",
         "gene_names_are_ids true while names.gene_names is stored")
def _(blob):
    return _footer_edit(lambda m: m.update(gene_names_are_ids=True))(blob)


@invalid("gene_names_are_ids_without_ids", "no_names", "CorruptFileError", "contradicts the name sections",
         "gene_names_are_ids true in a file with no gene ids")
def _(blob):
    return _footer_edit(lambda m: m.update(gene_names_are_ids=True))(blob)


@invalid("gene_names_are_ids_not_bool", "gene_names_equal_ids", "CorruptFileError", "gene_names_are_ids",
         "gene_names_are_ids is the integer 1")
def _(blob):
    return _footer_edit(lambda m: m.update(gene_names_are_ids=1))(blob)


@invalid("has_cell_names_contradiction", "bands_and_tiles", "CorruptFileError", "cell names contradict",
         "has_cell_names false while the chunks store cell names")
def _(blob):
    return _footer_edit(lambda m: m.update(has_cell_names=False))(blob)


@invalid("shape_strings", "bands_and_tiles", "CorruptFileError", "shape", 'shape ["50", "80"]')
def _(blob):
    return _footer_edit(lambda m: m.update(shape=["50", "80"]))(blob)


@invalid("shape_floats", "bands_and_tiles", "CorruptFileError", "shape", "shape [50.0, 80.0]")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[50.0, 80.0]))(blob)


@invalid("shape_three_entries", "bands_and_tiles", "CorruptFileError", "shape", "shape [50, 80, 1]")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[50, 80, 1]))(blob)


@invalid("shape_too_large", "bands_and_tiles", "CorruptFileError", "shape", "shape [2**31, 80]")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[2**31, 80]))(blob)


@invalid("shape_negative", "bands_and_tiles", "CorruptFileError", "shape", "shape [-50, 80]")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[-50, 80]))(blob)


@invalid("shape_fewer_genes_than_stored", "bands_and_tiles", "CorruptFileError", "n_stored_genes",
         "shape [39, 80] while 40 genes are stored")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[39, 80]))(blob)


@invalid("shape_more_genes_than_names", "bands_and_tiles", "CorruptFileError", "holds 50 names, expected 51",
         "shape [51, 80] while each names.* section holds 50 names: every decode must refuse it (M14), not "
         "read gene 51 as an empty gene")
def _(blob):
    return _footer_edit(lambda m: m.update(shape=[51, 80]))(blob)


@invalid("nnz_not_adding_up", "bands_and_tiles", "CorruptFileError", "does not add up",
         "the matrix header's nnz one more than the chunk index's total")
def _(blob):
    return _footer_edit(lambda m: m.update(nnz=m["nnz"] + 1))(blob)


@invalid("chunk_index_cells_not_adding_up", "bands_and_tiles", "CorruptFileError", "does not add up",
         "chunk 0 says 41 cells in the chunk index and in its header: the chunks add up to 81 of 80 cells")
def _(blob):
    def change(parts):
        parts.chunks[0].index[0] += 1
        parts.chunks[0].header["n_cells"] += 1
    return edit(blob, change)


@invalid("chunk_index_cells_wrapping", "bands_and_tiles", "CorruptFileError", "does not add up",
         "three chunk index rows added after the two chunks' (no bytes, 2^62 cells each; n_chunks 5) and chunk "
         "0's n_cells 2^62 more: the cells add up to 80 + 2^64, which is the matrix's 80 only modulo 2^64 (rule "
         "M12 at open: integers are exact, spec §1.3; a sum in 64-bit words wraps)")
def _(blob):
    def hook(rows):
        rows = np.vstack([rows, np.array([[PREAMBLE.size, 0, 0, 0, 2**62, 0]] * 3, dtype=np.int64)])
        rows[0, 4] += 2**62
        return rows
    return edit(blob, lambda parts: parts.matrix.update(n_chunks=parts.matrix["n_chunks"] + 3), index_hook=hook)


@invalid("chunk_header_nnz", "bands_and_tiles", "CorruptFileError", "header contradicts the chunk index",
         "chunk 0's header says one nonzero more than the chunk index")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[0].header.update(nnz=parts.chunks[0].header["nnz"] + 1))


@invalid("chunk_header_n_cells", "bands_and_tiles", "CorruptFileError", "header contradicts the chunk index",
         "chunk 1's header says one cell fewer than the chunk index")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[1].header.update(n_cells=parts.chunks[1].header["n_cells"] - 1))


@invalid("chunk_nnz_shifted", "bands_and_tiles", "CorruptFileError", "tile nonzeros contradict",
         "one nonzero moved from chunk 1 to chunk 0 in both the chunk index and the headers: totals still add "
         "up, but chunk 0's tile directory does not")
def _(blob):
    def change(parts):
        for chunk, delta in ((parts.chunks[0], 1), (parts.chunks[1], -1)):
            chunk.index[1] += delta
            chunk.header["nnz"] += delta
    return edit(blob, change)


@invalid("chunk_header_n_cells_float", "bands_and_tiles", "CorruptFileError", "chunk 0",
         "chunk 0's header gives n_cells as the float 40.0 (the chunk index says 40): a field of the wrong type")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[0].header.update(n_cells=float(parts.chunks[0].header["n_cells"])))


@invalid("chunk_rows_beyond_stored_genes", "bands_and_tiles", "CorruptFileError", "field 'n_rows'",
         "n_stored_genes one less (genes.order and genes.baseline lose their last entry): the chunks' rows now "
         "reach past the stored genes, and the last stored row is read as an unstored gene without its gene "
         "term (scinrcodec catches it only when decoding values: a tile stream, or else the content checksum; "
         "a reader that checks n_rows <= n_stored_genes when loading a chunk reports it there)")
def _(blob):
    def change(parts):
        parts.matrix["n_stored_genes"] -= 1
        for name, dtype in (("genes.order", "u4"), ("genes.baseline", "i2")):
            parts.set_section(name, pack_array(unpack_array(parts.section(name), dtype)[:-1], dtype))
    return edit(blob, change)


@invalid("chunk_n_rows_too_large", "bands_and_tiles", "CorruptFileError", "n_rows",
         "chunk 0's header says more rows than the matrix has genes")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[0].header.update(n_rows=10**6))


@invalid("chunk_n_bands_contradicts", "bands_and_tiles", "CorruptFileError", "bands.rows",
         "chunk 0's header says one band fewer than its band sections hold")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[0].header.update(n_bands=parts.chunks[0].header["n_bands"] - 1))


@invalid("chunk_checksum", "bands_and_tiles", "CorruptFileError", "fails its checksum",
         "chunk 0's content checksum plus one: caught only by a full decode")
def _(blob):
    return edit(blob, lambda parts: parts.chunks[0].header.update(checksum=(parts.chunks[0].header["checksum"] + 1)
                                                                  % 2**64))


@invalid("chunk_index_outside_body", "bands_and_tiles", "CorruptFileError", "impossible entry",
         "chunk 1's block length runs into the footer")
def _(blob):
    def hook(rows):
        rows[1, 3] += 10**6
        return rows
    return edit(blob, lambda parts: None, index_hook=hook)


@invalid("chunk_index_overlap", "bands_and_tiles", "CorruptFileError", "overlaps",
         "chunk 1's index entry points at chunk 0's block (offset, lengths, CRC of chunk 0; cells and nonzeros "
         "of chunk 1)")
def _(blob):
    def hook(rows):
        rows[1, :4] = rows[0, :4]
        return rows
    return edit(blob, lambda parts: None, index_hook=hook)


@invalid("n_chunks_contradicts_index", "bands_and_tiles", "CorruptFileError", "chunks.index",
         "n_chunks 3 while chunks.index holds 2 rows")
def _(blob):
    return _footer_edit(lambda m: m.update(n_chunks=3))(blob)


def _tiles(parts: Parts, chunk: int, name: str) -> np.ndarray:
    return unpack_array(chunk_section(parts.chunks[chunk], name), "u4").astype(np.int64)


def _set_tiles(parts: Parts, chunk: int, name: str, values: np.ndarray) -> None:
    set_chunk_section(parts.chunks[chunk], name, pack_array(values, "u4"))


@invalid("tile_nnz_not_adding_up", "bands_and_tiles", "CorruptFileError", "tile nonzeros contradict",
         "chunk 0's tiles.nnz with one nonzero too many in tile 0")
def _(blob):
    def change(parts):
        k = _tiles(parts, 0, "tiles.nnz")
        k[0] += 1
        _set_tiles(parts, 0, "tiles.nnz", k)
    return edit(blob, change)


@invalid("tile_nnz_moved", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "one nonzero moved between two tiles of the same band in chunk 0's tiles.nnz (the total still adds up, "
         "band CRCs untouched)")
def _(blob):
    def change(parts):
        rows, widths, n_cells = _geometry(parts, 0)
        k = _tiles(parts, 0, "tiles.nnz")
        per_band = -(-n_cells // widths)
        starts = np.concatenate([[0], np.cumsum(per_band)])
        for band in range(widths.size):
            h = int(rows[band + 1] - rows[band])
            sizes = [h * min(int(widths[band]), n_cells - t * int(widths[band])) for t in range(per_band[band])]
            tiles = list(range(starts[band], starts[band + 1]))
            gain = next((t for t, size in zip(tiles, sizes) if k[t] < size), None)
            lose = next((t for t in tiles if t != gain and k[t] > 0), None)
            if gain is not None and lose is not None:
                k[gain] += 1
                k[lose] -= 1
                _set_tiles(parts, 0, "tiles.nnz", k)
                return
        raise AssertionError("no band has two tiles to move a nonzero between")
    return edit(blob, change)


@invalid("tile_nnz_over_tile_size", "bands_and_tiles", "CorruptFileError", "tile nonzeros contradict",
         "chunk 0's tile 0 claims more nonzeros than its entries (the rest taken from other tiles)")
def _(blob):
    def change(parts):
        k = _tiles(parts, 0, "tiles.nnz")
        rows = unpack_array(chunk_section(parts.chunks[0], "bands.rows"), "u4").astype(np.int64)
        widths = unpack_array(chunk_section(parts.chunks[0], "bands.widths"), "u4").astype(np.int64)
        need = int((rows[1] - rows[0]) * widths[0]) + 1 - int(k[0])
        for t in range(1, k.size):
            take = min(need, int(k[t]))
            k[t] -= take
            k[0] += take
            need -= take
        assert need == 0
        _set_tiles(parts, 0, "tiles.nnz", k)
    return edit(blob, change)


@invalid("tile_bytes_not_adding_up", "bands_and_tiles", "CorruptFileError", "do not add up to the tile data",
         "chunk 0's tiles.bytes with one byte too many for tile 0")
def _(blob):
    def change(parts):
        b = _tiles(parts, 0, "tiles.bytes")
        b[0] += 1
        _set_tiles(parts, 0, "tiles.bytes", b)
    return edit(blob, change)


@invalid("tile_bytes_moved", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "one byte moved from tile 1 to tile 0 in chunk 0's tiles.bytes (same band: the band CRC still holds)")
def _(blob):
    def change(parts):
        b = _tiles(parts, 0, "tiles.bytes")
        b[0] += 1
        b[1] -= 1
        _set_tiles(parts, 0, "tiles.bytes", b)
    return edit(blob, change)


def _reseal_band_crcs(parts: Parts, chunk: int) -> None:
    """Recompute chunk's bands.crc32 from its tile bytes and geometry."""
    c = parts.chunks[chunk]
    data = chunk_section(c, "tiles.data")
    lengths = _tiles(parts, chunk, "tiles.bytes")
    widths = unpack_array(chunk_section(c, "bands.widths"), "u4").astype(np.int64)
    n_cells = c.index[0]
    per_band = -(-n_cells // widths)
    tile_starts = np.concatenate([[0], np.cumsum(per_band)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    crcs = [crc32(data[offsets[a]: offsets[b]]) for a, b in zip(tile_starts[:-1], tile_starts[1:])]
    _set_tiles(parts, chunk, "bands.crc32", np.asarray(crcs, np.int64))


@invalid("tile_data_edited_crc_resealed", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "one bit flipped in the middle of chunk 0's last tile, the band CRC re-sealed: caught by the rANS "
         "stream's end state or the content checksum")
def _(blob):
    def change(parts):
        c = parts.chunks[0]
        data = bytearray(chunk_section(c, "tiles.data"))
        lengths = _tiles(parts, 0, "tiles.bytes")
        at = int(lengths[:-1].sum() + lengths[-1] // 2)
        data[at] ^= 0x04
        set_chunk_section(c, "tiles.data", bytes(data))
        _reseal_band_crcs(parts, 0)
    return edit(blob, change)


COUNT_ROWS = {("values.counts", 2): N_CONTEXTS, ("values.counts", 3): 96, ("gaps.counts", 3): 32}


def _counts(parts: Parts, chunk: int, major: int = 2, name: str = "values.counts") -> np.ndarray:
    """A chunk's count section `name` of a format-`major` file as rows x N_BINS int64 (format 3
    stores it as byte planes, §3.3)."""
    data = chunk_section(parts.chunks[chunk], name)
    items = unpack_planes(data, "u8") if major == 3 else unpack_array(data, "u8")
    return items.astype(np.int64).reshape(COUNT_ROWS[name, major], N_BINS)


def _set_counts(parts: Parts, chunk: int, counts: np.ndarray, major: int = 2, name: str = "values.counts") -> None:
    items = counts.astype(np.uint64).ravel()
    set_chunk_section(parts.chunks[chunk], name, pack_planes(items, "u8") if major == 3 else pack_array(items, "u8"))


def _one_value_count_too_many(major: int) -> Callable[[Parts], None]:
    """The edit adding 1 to the first nonzero count of chunk 0's values.counts (a format-`major` file)."""
    def change(parts):
        counts = _counts(parts, 0, major)
        counts[tuple(np.argwhere(counts > 0)[0])] += 1
        _set_counts(parts, 0, counts, major)
    return change


def _busiest_context_moved(major: int) -> Callable[[Parts], None]:
    """The edit moving the row of chunk 0's busiest value context to its last unused context: the
    totals add up, but a value then needs a context with no frequency table."""
    def change(parts):
        counts = _counts(parts, 0, major)
        busy = int(np.argmax(counts.sum(axis=1)))
        free = int(np.flatnonzero(counts.sum(axis=1) == 0)[-1])
        counts[free], counts[busy] = counts[busy].copy(), 0
        _set_counts(parts, 0, counts, major)
    return change


@invalid("value_counts_not_adding_up", "bands_and_tiles", "CorruptFileError", "value counts do not add up",
         "chunk 0's values.counts with one count too many")
def _(blob):
    return edit(blob, _one_value_count_too_many(2))


@invalid("value_counts_shifted", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "chunk 0's values.counts: the largest count of its busiest context halved and the rest moved to bin 40 "
         "of that context (the total still adds up; the frequency tables change)")
def _(blob):
    def change(parts):
        counts = _counts(parts, 0)
        ctx = int(np.argmax(counts.sum(axis=1)))
        b = int(np.argmax(counts[ctx]))
        moved = counts[ctx, b] // 2
        counts[ctx, b] -= moved
        counts[ctx, 40] += moved
        _set_counts(parts, 0, counts)
    return edit(blob, change)


@invalid("value_counts_context_moved", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "chunk 0's values.counts: the busiest context's row moved to an unused context (totals add up; a "
         "value then needs a context with no frequency table)")
def _(blob):
    return edit(blob, _busiest_context_moved(2))


def _geometry(parts: Parts, chunk: int):
    c = parts.chunks[chunk]
    rows = unpack_array(chunk_section(c, "bands.rows"), "u4").astype(np.int64)
    widths = unpack_array(chunk_section(c, "bands.widths"), "u4").astype(np.int64)
    return rows, widths, int(c.index[0])


@invalid("band_rows_moved", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "chunk 0's first band boundary moved down one row: the tile count is unchanged, the tiles' heights "
         "are not (caught by the tile streams or the content checksum on a full decode)")
def _(blob):
    def change(parts):
        rows, widths, n_cells = _geometry(parts, 0)
        assert rows.size > 2 and rows[2] - rows[1] > 1
        rows[1] += 1
        set_chunk_section(parts.chunks[0], "bands.rows", pack_array(rows, "u4"))
    return edit(blob, change)


def _widths_keeping_tiles(parts: Parts, chunk: int) -> tuple[int, int]:
    """A band of chunk and a new tile width giving it the same number of tiles, whose tiles can still
    hold their stated nonzeros."""
    rows, widths, n_cells = _geometry(parts, chunk)
    k = _tiles(parts, chunk, "tiles.nnz")
    tile_starts = np.concatenate([[0], np.cumsum(-(-n_cells // widths))])
    for band, w in enumerate(widths.tolist()):
        n_tiles = -(-n_cells // w)
        if n_tiles < 2:
            continue
        h = int(rows[band + 1] - rows[band])
        for other in range(1, n_cells + 1):
            if other == w or -(-n_cells // other) != n_tiles:
                continue
            sizes = [h * min(other, n_cells - t * other) for t in range(n_tiles)]
            if all(int(k[tile_starts[band] + t]) <= sizes[t] for t in range(n_tiles)):
                return band, other
    raise AssertionError("no band width can change keeping the tile count")


@invalid("band_width_changed", "bands_and_tiles", "CorruptFileError", "file is corrupt",
         "a tile width of chunk 0 changed to another giving the band the same number of tiles (caught by the "
         "tile streams or the content checksum on a full decode)")
def _(blob):
    def change(parts):
        band, other = _widths_keeping_tiles(parts, 0)
        rows, widths, _ = _geometry(parts, 0)
        widths[band] = other
        set_chunk_section(parts.chunks[0], "bands.widths", pack_array(widths, "u4"))
    return edit(blob, change)


@invalid("band_width_tile_count_changed", "bands_and_tiles", "CorruptFileError", "tiles.nnz",
         "chunk 0's first band given one tile (width = the chunk's cells): the tile count no longer matches the "
         "tile directory's length")
def _(blob):
    def change(parts):
        rows, widths, n_cells = _geometry(parts, 0)
        assert widths[0] < n_cells
        widths[0] = n_cells
        set_chunk_section(parts.chunks[0], "bands.widths", pack_array(widths, "u4"))
    return edit(blob, change)


@invalid("cells_order_not_permutation", "bands_and_tiles", "CorruptFileError", "not a permutation",
         "chunk 0's cells.order repeats a cell")
def _(blob):
    def change(parts):
        order = _tiles(parts, 0, "cells.order")
        order[1] = order[0]
        _set_tiles(parts, 0, "cells.order", order)
    return edit(blob, change)


@invalid("genes_order_not_permutation", "bands_and_tiles", "CorruptFileError", "not part of a permutation",
         "genes.order repeats a gene")
def _(blob):
    def change(parts):
        order = unpack_array(parts.section("genes.order"), "u4").astype(np.int64)
        order[1] = order[0]
        parts.set_section("genes.order", pack_array(order, "u4"))
    return edit(blob, change)


@invalid("genes_order_out_of_range", "bands_and_tiles", "CorruptFileError", "not part of a permutation",
         "genes.order names gene 50 of 50")
def _(blob):
    def change(parts):
        order = unpack_array(parts.section("genes.order"), "u4").astype(np.int64)
        order[0] = 50
        parts.set_section("genes.order", pack_array(order, "u4"))
    return edit(blob, change)


@invalid("gene_ids_count", "bands_and_tiles", "CorruptFileError", "names, expected",
         "names.gene_ids holds one name fewer than the matrix has genes")
def _(blob):
    def change(parts):
        names = unzstd(parts.section("names.gene_ids")).decode().split("\n")
        parts.set_section("names.gene_ids", zstd("\n".join(names[:-1]).encode()))
    return edit(blob, change)


@invalid("cell_names_count", "bands_and_tiles", "CorruptFileError", "names, expected",
         "chunk 0's cells.names holds one name more than its cells")
def _(blob):
    def change(parts):
        names = unzstd(chunk_section(parts.chunks[0], "cells.names")).decode().split("\n")
        set_chunk_section(parts.chunks[0], "cells.names", zstd("\n".join(names + ["EXTRA-1"]).encode()))
    return edit(blob, change)


@invalid("names_not_utf8", "bands_and_tiles", "CorruptFileError", "not valid UTF-8",
         "names.gene_names holds a byte that is not UTF-8")
def _(blob):
    def change(parts):
        raw = bytearray(unzstd(parts.section("names.gene_names")))
        raw[0] = 0xFF
        parts.set_section("names.gene_names", zstd(bytes(raw)))
    return edit(blob, change)


def _cell_names_edit(transform: Callable[[list[str]], bytes]) -> Callable[[bytes], bytes]:
    """Replace chunk 0's cells.names by transform(its names), every CRC resealed."""
    def change(parts):
        names = unzstd(chunk_section(parts.chunks[0], "cells.names")).decode().split("\n")
        set_chunk_section(parts.chunks[0], "cells.names", transform(names))
    return lambda blob: edit(blob, change)


@invalid("cell_names_not_utf8", "bands_and_tiles", "CorruptFileError", "not valid UTF-8",
         "chunk 0's cells.names holds a byte that is not UTF-8 (in its first name)")
def _(blob):
    return _cell_names_edit(lambda names: zstd(b"\xff" + "\n".join(names).encode()))(blob)


@invalid("cell_names_fewer", "bands_and_tiles", "CorruptFileError", "names, expected",
         "chunk 0's cells.names holds one name fewer than its cells")
def _(blob):
    return _cell_names_edit(lambda names: zstd("\n".join(names[:-1]).encode()))(blob)


@invalid("cell_names_carriage_return", "bands_and_tiles", "CorruptFileError", "carriage return",
         "chunk 0's cells.names ends its first name with a carriage return (CR LF line ends)")
def _(blob):
    return _cell_names_edit(lambda names: zstd("\r\n".join(names).encode()))(blob)


@invalid("cell_name_too_long", "bands_and_tiles", "CorruptFileError", "longer than 4096 bytes",
         "chunk 0's first cell name is 4,097 bytes long")
def _(blob):
    return _cell_names_edit(lambda names: zstd("\n".join(["A" * 4097] + names[1:]).encode()))(blob)


@invalid("cell_names_no_content_size", "bands_and_tiles", "CorruptFileError", "without its content size",
         "chunk 0's cells.names is a zstd frame that does not declare its content size")
def _(blob):
    return _cell_names_edit(lambda names: zstd("\n".join(names).encode(), content_size=False))(blob)


@invalid("cell_names_two_frames", "bands_and_tiles", "CorruptFileError", "not exactly one complete zstd frame",
         "chunk 0's cells.names is two zstd frames, its names cut in two")
def _(blob):
    def frames(names):
        text = "\n".join(names).encode()
        return zstd(text[:10]) + zstd(text[10:])
    return _cell_names_edit(frames)(blob)


@invalid("cell_names_bomb", "bands_and_tiles", "CorruptFileError", "more than the",
         "chunk 0's cells.names is a small zstd frame of 64 MiB of 'A's (a decompression bomb)")
def _(blob):
    return _cell_names_edit(lambda names: zstd(b"A" * (64 << 20)))(blob)


@invalid("section_trailing_bytes_matrix", "bands_and_tiles", "CorruptFileError",
         "not exactly one complete zstd frame", "2 zero bytes after genes.order's zstd frame (length and CRC "
                                                "include them)")
def _(blob):
    return edit(blob, lambda parts: parts.set_section("genes.order", parts.section("genes.order") + b"\x00\x00"))


@invalid("section_trailing_frame_chunk", "bands_and_tiles", "CorruptFileError",
         "not exactly one complete zstd frame", "a second zstd frame after chunk 0's tiles.nnz frame")
def _(blob):
    def change(parts):
        payload = chunk_section(parts.chunks[0], "tiles.nnz")
        set_chunk_section(parts.chunks[0], "tiles.nnz", payload + zstd(b"\x00" * 4))
    return edit(blob, change)


@invalid("section_trailing_bytes_names", "bands_and_tiles", "CorruptFileError",
         "not exactly one complete zstd frame", "1 byte after names.gene_ids' zstd frame")
def _(blob):
    return edit(blob, lambda parts: parts.set_section("names.gene_ids", parts.section("names.gene_ids") + b"\n"))


@invalid("chunk_header_trailing_bytes", "bands_and_tiles", "CorruptFileError",
         "not exactly one complete zstd frame", "3 bytes after chunk 0's header frame (header length and CRC "
                                                "include them)")
def _(blob):
    def change(parts):
        header = dict(parts.chunks[0].header)
        table, at = [], 0
        for name, payload in parts.chunks[0].sections:
            table.append([name, at, len(payload), crc32(payload)])
            at += len(payload)
        header["sections"] = table
        parts.chunks[0].header_bytes = pack_header(header) + b"\x00\x01\x02"
    return edit(blob, change)


@invalid("section_not_zstd", "bands_and_tiles", "CorruptFileError", "not a zstd frame",
         "genes.baseline replaced by raw little-endian bytes (no zstd frame)")
def _(blob):
    def change(parts):
        raw = unzstd(parts.section("genes.baseline"))
        parts.set_section("genes.baseline", raw)
    return edit(blob, change)


@invalid("section_wrong_size", "bands_and_tiles", "CorruptFileError", "expected",
         "genes.baseline holds one i16 fewer than n_stored_genes")
def _(blob):
    def change(parts):
        raw = unzstd(parts.section("genes.baseline"))
        parts.set_section("genes.baseline", zstd(raw[:-2]))
    return edit(blob, change)


@invalid("missing_required_section", "bands_and_tiles", "CorruptFileError", "missing section",
         "the matrix lacks genes.baseline")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.sections, "genes.baseline"))


@invalid("missing_chunk_section", "bands_and_tiles", "CorruptFileError", "missing section",
         "chunk 1 lacks tiles.bytes")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.chunks[1].sections, "tiles.bytes"))


@invalid("sections_overlap", "bands_and_tiles", "CorruptFileError", "overlaps",
         "genes.baseline's table entry points into genes.order's bytes (its CRC matches those bytes)")
def _(blob):
    def hook(table):
        order = next(e for e in table if e[0] == "genes.order")
        base = next(e for e in table if e[0] == "genes.baseline")
        base[1:] = order[1:]
        return table
    return edit(blob, lambda parts: None, table_hook=hook)


@invalid("section_outside_body", "bands_and_tiles", "CorruptFileError", "outside",
         "genes.order's table entry runs into the footer")
def _(blob):
    def hook(table):
        entry = next(e for e in table if e[0] == "genes.order")
        entry[2] += 10**5
        return table
    return edit(blob, lambda parts: None, table_hook=hook)


@invalid("section_duplicate", "bands_and_tiles", "CorruptFileError", "appears twice",
         "the matrix section table lists genes.order twice")
def _(blob):
    def hook(table):
        return table + [list(next(e for e in table if e[0] == "genes.order"))]
    return edit(blob, lambda parts: None, table_hook=hook)


@invalid("section_table_not_a_list", "bands_and_tiles", "CorruptFileError",
         "section table", "the matrix's sections is a map, not a list")
def _(blob):
    def hook(table):
        return {e[0]: e[1:] for e in table}
    return edit(blob, lambda parts: None, table_hook=hook)


# ----------------------------------------------------------------------------------- SIRENs

def _siren_meta(parts: Parts, chunk: int) -> dict:
    return msgpack.unpackb(chunk_section(parts.chunks[chunk], "siren.meta"), raw=False)


def _set_siren_meta(parts: Parts, chunk: int, meta: dict) -> None:
    set_chunk_section(parts.chunks[chunk], "siren.meta", msgpack.packb(meta, use_bin_type=True))


def _siren_edit(fn):
    def change(parts):
        meta = _siren_meta(parts, 0)
        weights = unpack_array(chunk_section(parts.chunks[0], "siren.weights"), "i2").astype(np.int64)
        weights = fn(meta, weights)
        _set_siren_meta(parts, 0, meta)
        if weights is not None:
            set_chunk_section(parts.chunks[0], "siren.weights", pack_array(weights, "i2"))
    return change


@invalid("siren_multiplier_overflow", "siren_force_log", "CorruptFileError", "can overflow 64-bit integers",
         "chunk 0, first SIREN: declared 16-bit, hidden layer 1's weight multiplier set to 2**40-1 (the largest "
         "allowed) and its first neuron's weights to 32767: sum |W| x 2**12 x multiplier exceeds 2**62 (the "
         "multiplier alone does not: the fitted 6-bit weights are too small)")
def _(blob):
    def fn(meta, weights):
        patch = meta["bands"][0][1]
        patch["bits"] = 16
        first = sum(n_out * n_in + n_out for n_out, n_in, *_ in patch["layers"][:1])
        n_out, n_in = patch["layers"][1][:2]
        patch["layers"][1][2] = 2**40 - 1
        weights[first: first + n_in] = 32767
        return weights
    return edit(blob, _siren_edit(fn))


@invalid("siren_multiplier_out_of_range", "siren_force_log", "CorruptFileError", "scaling is out of range",
         "chunk 0, first SIREN: layer 0's weight multiplier 2**40")
def _(blob):
    def fn(meta, weights):
        meta["bands"][0][1]["layers"][0][2] = 2**40
    return edit(blob, _siren_edit(fn))


@invalid("siren_shift_out_of_range", "siren_force_log", "CorruptFileError", "scaling is out of range",
         "chunk 0, first SIREN: the last layer's shift 63")
def _(blob):
    def fn(meta, weights):
        meta["bands"][0][1]["layers"][-1][4] = 63
    return edit(blob, _siren_edit(fn))


@invalid("siren_layers_do_not_chain", "siren_force_log", "CorruptFileError", "do not chain",
         "chunk 0, first SIREN: layer 1 says 7 inputs after a layer of 8 outputs")
def _(blob):
    def fn(meta, weights):
        meta["bands"][0][1]["layers"][1][1] -= 1
    return edit(blob, _siren_edit(fn))


@invalid("siren_band_out_of_range", "siren_force_log", "CorruptFileError", "SIREN metadata is malformed",
         "chunk 0: a SIREN for a band the chunk does not have")
def _(blob):
    def change(parts):
        meta = _siren_meta(parts, 0)
        n_bands = parts.chunks[0].header["n_bands"]
        meta["bands"][-1][0] = n_bands
        _set_siren_meta(parts, 0, meta)
    return edit(blob, change)


@invalid("siren_band_twice", "siren_force_log", "CorruptFileError", "a band has two SIRENs",
         "chunk 0: the second SIREN is for the first one's band")
def _(blob):
    def change(parts):
        meta = _siren_meta(parts, 0)
        meta["bands"][1][0] = meta["bands"][0][0]
        _set_siren_meta(parts, 0, meta)
    return edit(blob, change)


@invalid("siren_meta_trailing_bytes", "siren_force_log", "CorruptFileError", "unreadable",
         "chunk 0's siren.meta: one byte after its msgpack map")
def _(blob):
    def change(parts):
        set_chunk_section(parts.chunks[0], "siren.meta", chunk_section(parts.chunks[0], "siren.meta") + b"\xc0")
    return edit(blob, change)


@invalid("siren_weights_missing", "siren_force_log", "CorruptFileError", "must come together",
         "chunk 0 has siren.meta but no siren.weights")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.chunks[0].sections, "siren.weights"))


@invalid("siren_weights_count", "siren_force_log", "CorruptFileError", "expected",
         "chunk 0's siren.weights holds one parameter fewer than its metadata declares")
def _(blob):
    def change(parts):
        weights = unpack_array(chunk_section(parts.chunks[0], "siren.weights"), "i2")
        set_chunk_section(parts.chunks[0], "siren.weights", pack_array(weights[:-1], "i2"))
    return edit(blob, change)


@invalid("siren_normalisation_bad", "siren_force_log", "CorruptFileError", "normalisation",
         "chunk 0, first SIREN: log normalisation with scale -1.0")
def _(blob):
    def fn(meta, weights):
        meta["bands"][0][1]["normalisation"][2] = -1.0
    return edit(blob, _siren_edit(fn))


@invalid("siren_normalisation_nan", "siren_force_log", "CorruptFileError", "normalisation",
         "chunk 0, first SIREN: normalisation scale NaN")
def _(blob):
    def fn(meta, weights):
        meta["bands"][0][1]["normalisation"][2] = math.nan
    return edit(blob, _siren_edit(fn))


@invalid("inr_only_band_without_siren", "inr_only_log", "CorruptFileError", "has no SIREN",
         "an inr-only chunk 0 whose first band's SIREN (metadata and weights) is removed")
def _(blob):
    def change(parts):
        from scinrcodec.model.siren import PatchSiren
        meta = _siren_meta(parts, 0)
        weights = unpack_array(chunk_section(parts.chunks[0], "siren.weights"), "i2")
        assert len(meta["bands"]) >= 2
        first = PatchSiren.parameter_count(meta["bands"][0][1])
        meta["bands"] = meta["bands"][1:]
        _set_siren_meta(parts, 0, meta)
        set_chunk_section(parts.chunks[0], "siren.weights", pack_array(weights[first:], "i2"))
    return edit(blob, change)


# ============================================================================== format 3.0
#
# Format-3.0 cases (spec/sinr-format.md version 3.0): the writer's files with format_version=3, named
# v3_*. Until scinrcodec's reader opens major 3, their expected.npz and names.json come from the spec's
# independent reference decoder (spec/reference_decoder.py), which make_valid checks against the input
# matrix as for every case; their census (census3) is computed from the file with the spec's rules.

def _reference_decoder():
    """spec/reference_decoder.py as a module (it is not part of the package)."""
    if "reference_decoder" not in sys.modules:
        import importlib.util

        spec = importlib.util.spec_from_file_location("reference_decoder", ROOT / "spec" / "reference_decoder.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["reference_decoder"] = module
        spec.loader.exec_module(module)
    return sys.modules["reference_decoder"]


def major_of(blob: bytes) -> int:
    return PREAMBLE.unpack_from(blob, 0)[1]


def _version3(base: str, exercises: list[str], require: dict | None = None, **extra):
    """A format-3 case made like the format-2 case `base`, its options plus format_version=3."""
    def build():
        spec = VALID[base].build()
        spec["options"] = {**spec["options"], "format_version": 3}
        spec["exercises"] = exercises
        spec.pop("require", None)
        if require:
            spec["require"] = require
        spec.update(extra)
        return spec
    return build


for _name, _base, _exercises, _require in (
    ("v3_lossless_default", "lossless_default",
     ["format 3.0 with every default option: gap bins by density class, 12-bit tables, contexts of 1/8 nat",
      "rows of every band in increasing gene index (the writer's SHOULD of spec §5.4.5)",
      "an empty tile: no symbol, an empty stream"], dict(gap_classes=8, tiles_empty=1)),
    ("v3_bands_and_tiles", "bands_and_tiles",
     ["format 3.0: two chunks, several bands per chunk, several tiles per band",
      "the base file of most format-3 invalid cases"], dict(gap_classes=4)),
    ("v3_dense_complement", "dense_complement",
     ["format 3.0 complement tiles: more than half of a tile's entries are nonzero, so its zero positions are "
      "coded as gaps", "full tiles: every entry nonzero, values only (no gap symbol)"],
     dict(tiles_complement=1, tiles_full=1)),
    ("v3_sparse_wide_gaps", "sparse_wide_gaps",
     ["format 3.0 density class 31 (mean gap of 46,340 and more): a one-nonzero tile of more than 95,000 "
      "entries", "wide gaps: gap offsets of more than 12 raw bits"], dict(max_gap_class=31, max_gap_offset_bits=13)),
    ("v3_chunks_many", "chunks_many",
     ["format 3.0: five chunks, one with no nonzeros (its gaps.counts all zero, no tile)",
      "genes expressed only in later chunks"], dict(empty_chunks=1)),
    ("v3_max_error_2", "max_error_2", ["format 3.0, max-error mode, E = 2"], None),
    ("v3_large_values", "large_values", ["format 3.0 value offsets of more than 16 raw bits",
                                         "contexts above 47 (predicted values above e^6)"],
     dict(max_offset_bits=17, max_context=48)),
    ("v3_max_value_1x1", "max_value_1x1",
     ["format 3.0 with the largest value, 2**31-1: the last bin, a 27-bit raw field",
      "a full 1 x 1 tile (no gap coded)"], dict(max_offset_bits=27)),
    ("v3_zeros_3x4", "zeros_3x4", ["format 3.0 without nonzeros: one chunk with no rows, no bands, no tiles"], None),
    ("v3_empty_0x0", "empty_0x0", ["format 3.0, shape 0 x 0: no chunks"], None),
):
    valid(_name)(_version3(_base, _exercises, _require))

for _norm in ("log", "minmax"):
    valid(f"v3_inr_only_{_norm}", needs_torch=True)(_version3(
        f"inr_only_{_norm}", [f"format 3.0 inr-only mode ({_norm} normalisation): gaps.counts only, no value "
                              "tables; values are the SIREN's predictions"], None))
for _norm in ("none", "minmax", "log"):
    valid(f"v3_siren_force_{_norm}", needs_torch=True)(_version3(
        f"siren_force_{_norm}", [f"format 3.0: a SIREN in every band with nonzeros, {_norm} normalisation: its "
                                 "output picks each nonzero's context on the 1/8-nat grid (EDGE3 or 2^-9, spec "
                                 "§7.2)"], None))


def _minor_3_3(blob: bytes) -> bytes:
    def change(parts: Parts) -> None:
        parts.minor = 3
        parts.sections.insert(0, ["x.future", b"a matrix section of format 3.3"])
        parts.chunks[1].sections.insert(2, ["x.future", b""])
    return edit(blob, change)


@valid("v3_minor_version_3_3")
def _():
    return _version3("bands_and_tiles", ["a later minor version of a known major (3.3, newer than the 3.2 readers "
                                         "implement) whose matrix lists no required feature: read as 3.0, its "
                                         "unknown matrix and chunk sections ignored (spec §11.2)"], None,
                     post=_minor_3_3, post_note="the preamble's minor version set to 3 (format 3.3); an unknown "
                                                "matrix section x.future (30 bytes) put first and an empty unknown "
                                                "section x.future put third in chunk 1; the file re-sealed")()


def census3(blob: bytes) -> dict:
    """How a format-3 file codes its nonzeros, computed with the spec's rules from the file (read with
    spec/reference_decoder.py): empty, complement and full tiles, density classes and the largest gap
    offset, value offset bits and contexts (from the count sections), SIREN bands, whether every
    band's rows are in gene order and, for a segmented matrix (spec §5.5), its segments."""
    rd = _reference_decoder()
    t3 = rd.tiles3
    f = rd.open_sinr(blob)
    out = dict(n_chunks=len(f.chunks), empty_chunks=0, bands=0, tiles=0, tiles_empty=0, tiles_complement=0,
               tiles_full=0, gap_classes=0, max_gap_class=-1, max_gap_offset_bits=0, max_offset_bits=0,
               max_context=-1, bands_with_nonzeros=0, bands_with_siren=0, siren_normalisations=[],
               rows_in_gene_order=True)
    if not f.chunks:
        return out
    order, G = rd.load_gene_order(f)
    if f.segmented:
        out.update(_segment_census(f, order))
    classes, norms = set(), set()
    for e in f.chunks:
        ch = rd.load_chunk(f, e)
        first_row = e.segment.first_row  # §5.5: the chunk's row r is the matrix row first_row + r
        out["empty_chunks"] += e.nnz == 0
        out["bands"] += ch.n_bands
        out["tiles"] += len(ch.tiles_nnz)
        out["bands_with_siren"] += len(ch.sirens)
        norms.update(s.kind for s in ch.sirens.values())
        for b in range(ch.n_bands):
            rows = order[first_row + ch.band_rows[b]:first_row + ch.band_rows[b + 1]]
            out["rows_in_gene_order"] &= bool(np.all(np.diff(rows) > 0))
            band_k = ch.tiles_nnz[ch.band_first_tile[b]:ch.band_first_tile[b + 1]]
            out["bands_with_nonzeros"] += sum(band_k) > 0
            for j, k in enumerate(band_k):
                h, w = ch.band_rows[b + 1] - ch.band_rows[b], min(ch.band_widths[b], ch.n - j * ch.band_widths[b])
                n_t = h * w
                m = k if 2 * k <= n_t else n_t - k
                out["tiles_empty"] += k == 0
                out["tiles_full"] += k == n_t
                out["tiles_complement"] += n_t > k > n_t - k
                if m:
                    classes.add(t3.density_class(n_t, m))
        gaps = ch.gap_counts.reshape(t3.N_GAP_CLASSES, t3.N_BINS)
        assert {int(c) for c in np.flatnonzero(gaps.sum(axis=1))} <= classes
        used = np.flatnonzero(gaps.sum(axis=0))
        if used.size:
            out["max_gap_offset_bits"] = max(out["max_gap_offset_bits"], t3.bin_start_and_bits(int(used[-1]))[1])
        if ch.counts is not None:
            values = ch.counts.reshape(t3.N_CONTEXTS, t3.N_BINS)
            used = np.flatnonzero(values.sum(axis=0))
            if used.size:
                out["max_offset_bits"] = max(out["max_offset_bits"], t3.bin_start_and_bits(int(used[-1]))[1])
            contexts = np.flatnonzero(values.sum(axis=1))
            if contexts.size:
                out["max_context"] = max(out["max_context"], int(contexts[-1]))
    out["gap_classes"] = len(classes)
    out["max_gap_class"] = max(classes, default=-1)
    out["siren_normalisations"] = sorted(norms)
    return out


def _segment_census(f, order: np.ndarray) -> dict:
    """A segmented matrix's segments (spec §5.5): their chunks and rows, and how their gene tables differ:
    genes stored in one segment only, and genes stored in several at different rows of their segments."""
    rows_of: dict[int, list[int]] = {}
    for seg in f.segments:
        for r, g in enumerate(order[seg.first_row:seg.first_row + seg.n_rows].tolist()):
            rows_of.setdefault(g, []).append(r)
    chunks, rows = [s.n_chunks for s in f.segments], [s.n_rows for s in f.segments]
    return dict(n_segments=len(f.segments), segment_chunks=chunks, segment_rows=rows, max_segment_chunks=max(chunks),
                segment_rows_spread=max(rows) - min(rows),
                genes_in_one_segment=sum(len(r) == 1 for r in rows_of.values()),
                genes_at_different_rows=sum(len(r) > 1 and len(set(r)) > 1 for r in rows_of.values()))


def decoded_reference(blob: bytes):
    """The decoded matrix as sorted COO by the spec's reference decoder, and what make_valid reads of
    the matrix (mode, max_error, shape, names)."""
    rd = _reference_decoder()
    f = rd.open_sinr(blob)
    m = f.decode(strict=True)
    view = dict(mode=f.mode, max_error=f.max_error, shape=m.shape, gene_ids=m.gene_ids, gene_names=m.gene_names,
                feature_types=m.feature_types, cell_names=m.cell_names)
    return (m.genes, m.cells, m.values), type("Decoded", (), view)


def _v3_matrix_edit(fn: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    return lambda blob: edit(blob, lambda parts: fn(parts.matrix))


@invalid("version_4", "bands_and_tiles", "UnsupportedVersionError", "format 4.0 is not supported",
         "a future major version (4.0) in the preamble")
def _(blob):
    return blob[:8] + struct.pack("<H", 4) + blob[10:]


@invalid("v3_required_feature_unknown", "v3_bands_and_tiles", "UnsupportedVersionError", "latent-predictor",
         "format 3.2, the matrix requires the feature 'latent-predictor' (no reader implements it) and its shape "
         "is a string: refused for the feature, naming it and the version, before any other matrix rule (spec "
         "§5.1.1, rule R2)", message_contains_all=["latent-predictor", "3.2"])
def _(blob):
    def change(parts):
        parts.minor = 2
        parts.matrix.update(required_features=["latent-predictor"], shape="not a shape")
    return edit(blob, change)


@invalid("v3_required_features_missing", "v3_bands_and_tiles", "CorruptFileError", "required_features",
         "a format-3 matrix without required_features (rule R1)")
def _(blob):
    return _v3_matrix_edit(lambda m: m.pop("required_features"))(blob)


@invalid("v3_required_features_twice", "v3_bands_and_tiles", "CorruptFileError", "required_features",
         "required_features lists one string twice (rule R1)")
def _(blob):
    return _v3_matrix_edit(lambda m: m.update(required_features=["x-feature", "x-feature"]))(blob)


@invalid("v3_stages_of_version_2", "v3_bands_and_tiles", "CorruptFileError", "golomb-rans-positions",
         "a format-3 file whose stage list is format 2's (golomb-rans-positions, context-rans-values; rule R3)")
def _(blob):
    ids = {"gap-bin-positions": "golomb-rans-positions", "fine-context-values": "context-rans-values"}
    return _v3_matrix_edit(lambda m: [s.update(id=ids.get(s["id"], s["id"])) for s in m["stages"]])(blob)


@invalid("v2_stages_of_version_3", "bands_and_tiles", "CorruptFileError", "gap-bin-positions",
         "a format-2 file whose stage list is format 3's (gap-bin-positions, fine-context-values; rule M5)")
def _(blob):
    ids = {"golomb-rans-positions": "gap-bin-positions", "context-rans-values": "fine-context-values"}
    return _footer_edit(lambda m: [s.update(id=ids.get(s["id"], s["id"])) for s in m["stages"]])(blob)


@invalid("v2_with_gaps_counts", "bands_and_tiles", "CorruptFileError", "unknown section",
         "a format-2.0 chunk holding gaps.counts (a format-3 section; rule K5)")
def _(blob):
    def change(parts):
        parts.chunks[0].sections.insert(8, ["gaps.counts", pack_array(np.zeros(32 * N_BINS), "u8")])
    return edit(blob, change)


@invalid("v3_gaps_counts_missing", "v3_bands_and_tiles", "CorruptFileError", "missing section",
         "chunk 1 of a format-3 file lacks gaps.counts (rule K5)")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.chunks[1].sections, "gaps.counts"))


@invalid("v3_gaps_counts_wrong_size", "v3_bands_and_tiles", "CorruptFileError", "expected",
         "chunk 0's gaps.counts holds 31 rows of 231 counts, not 32 (rule G1)")
def _(blob):
    return edit(blob, lambda parts: _set_counts(parts, 0, _counts(parts, 0, 3, "gaps.counts")[:31], 3, "gaps.counts"))


@invalid("v3_gaps_counts_too_large", "v3_bands_and_tiles", "CorruptFileError", "gap count",
         "chunk 0's gaps.counts: 2**40 added to one count of a class and taken from another of the same class "
         "(modulo 2**64): the row sums hold, an item is >= 2**40 (rule G1)")
def _(blob):
    def change(parts):
        counts = _counts(parts, 0, 3, "gaps.counts").astype(np.uint64)
        c = int(np.flatnonzero(counts.sum(axis=1))[0])
        a, b = np.flatnonzero(counts[c])[:2]
        counts[c, a] += np.uint64(2**40)
        counts[c, b] = np.uint64((int(counts[c, b]) - 2**40) % 2**64)
        _set_counts(parts, 0, counts, 3, "gaps.counts")
    return edit(blob, change)


@invalid("v3_gaps_counts_wrong_class", "v3_bands_and_tiles", "CorruptFileError", "gap counts",
         "chunk 0's gaps.counts: one count of its first used class moved to the next class (the total still adds "
         "up; a class's sum does not match its tiles' coded positions, rule G2)")
def _(blob):
    def change(parts):
        counts = _counts(parts, 0, 3, "gaps.counts")
        c = int(np.flatnonzero(counts.sum(axis=1))[0])
        counts[c, np.flatnonzero(counts[c])[0]] -= 1
        counts[c + 1, 0] += 1
        _set_counts(parts, 0, counts, 3, "gaps.counts")
    return edit(blob, change)


@invalid("v3_value_counts_48_rows", "v3_bands_and_tiles", "CorruptFileError", "expected",
         "chunk 0's values.counts holds format 2's 48 rows of 231 counts, not 96 (rule G3)")
def _(blob):
    return edit(blob, lambda parts: _set_counts(parts, 0, _counts(parts, 0, 3)[:48], 3))


@invalid("v3_value_counts_high_planes_dropped", "v3_bands_and_tiles", "CorruptFileError", "expected",
         "chunk 0's values.counts without its four high byte planes (all zero): the zstd content is the 4 low "
         "planes, 4 · 96 · 231 bytes, not 8 · 96 · 231 (§3.3, rule G3)")
def _(blob):
    return edit(blob, lambda parts: set_chunk_section(
        parts.chunks[0], "values.counts", zstd(planes(_counts(parts, 0, 3), "u8")[: 4 * 96 * N_BINS])))


@invalid("v3_gaps_counts_not_shuffled", "v3_bands_and_tiles", "CorruptFileError", "gap counts do not add up",
         "chunk 0's gaps.counts holds its counts back to back (a zstd array, format 2's encoding), not as byte "
         "planes: the content has the right length, but read as planes (§3.3) the items of density class 0 sum to "
         "68,864 where its tiles code no position (rule G2)")
def _(blob):
    return edit(blob, lambda parts: set_chunk_section(
        parts.chunks[0], "gaps.counts", pack_array(_counts(parts, 0, 3, "gaps.counts").astype(np.uint64).ravel(), "u8")))


@invalid("v3_value_counts_not_adding_up", "v3_bands_and_tiles", "CorruptFileError", "value counts do not add up",
         "chunk 0's values.counts with one count too many (rule G3)")
def _(blob):
    return edit(blob, _one_value_count_too_many(3))


@invalid("v3_inr_only_with_value_counts", "v3_inr_only_log", "CorruptFileError", "value tables contradict mode",
         "an inr-only format-3 chunk 0 holding a values.counts section (rule G3)")
def _(blob):
    def change(parts):
        zeros = np.zeros((96, N_BINS), np.uint64)
        zeros[0, 0] = parts.chunks[0].index[1]
        at = [name for name, _ in parts.chunks[0].sections].index("gaps.counts") + 1
        parts.chunks[0].sections.insert(at, ["values.counts", pack_planes(zeros.ravel(), "u8")])
    return edit(blob, change)


@invalid("v3_value_counts_context_moved", "v3_bands_and_tiles", "CorruptFileError", "file is corrupt",
         "chunk 0's values.counts: the busiest context's row moved to an unused context (totals add up; a value "
         "then needs a context with no table, rule T6)")
def _(blob):
    return edit(blob, _busiest_context_moved(3))


def _damaged(s: bytes) -> list[bytes]:
    """Every prefix, every flipped bit and two inserted bytes at every place of a stream, in this order."""
    out = [s[:i] for i in range(len(s))]
    out += [s[:i] + bytes([s[i] ^ (1 << b)]) + s[i + 1:] for i in range(len(s)) for b in range(8)]
    return out + [s[:i] + bytes([v]) + s[i:] for i in range(len(s) + 1) for v in (0, 0x5A)]


def _tile_streams(parts: Parts, chunk: int) -> list[bytes]:
    data = chunk_section(parts.chunks[chunk], "tiles.data")
    offsets = np.concatenate([[0], np.cumsum(_tiles(parts, chunk, "tiles.bytes"))])
    return [data[offsets[t]: offsets[t + 1]] for t in range(offsets.size - 1)]


def _set_tile_streams(parts: Parts, chunk: int, streams: list[bytes]) -> None:
    set_chunk_section(parts.chunks[chunk], "tiles.data", b"".join(streams))
    _set_tiles(parts, chunk, "tiles.bytes", np.asarray([len(s) for s in streams], np.int64))
    _reseal_band_crcs(parts, chunk)


def _breaking(rule: str) -> Callable[[bytes], bytes]:
    """The base file with the first damaged tile stream of chunk 0 (tiles in order, damages in the order of
    _damaged) that the spec's reference decoder rejects by `rule`, its tile directory and band CRC re-sealed."""
    def change(blob: bytes) -> bytes:
        rd = _reference_decoder()
        f = rd.open_sinr(blob)
        _, G = rd.load_gene_order(f)
        ch = rd.load_chunk(f, f.chunks[0])
        parts = parse_file(blob)
        streams = _tile_streams(parts, 0)
        for t, good in enumerate(streams):
            b = max(i for i in range(ch.n_bands) if ch.band_first_tile[i] <= t)
            for stream in _damaged(good):
                tiles = streams[:t] + [stream] + streams[t + 1:]
                bad = copy.copy(ch)
                bad.tiles_data = b"".join(tiles)
                bad.tile_offsets = [0] + np.cumsum([len(x) for x in tiles]).tolist()
                try:
                    rd.decode_tile(f, bad, G, b, t - ch.band_first_tile[b])
                except rd.SpecViolation as err:
                    if err.check_id == rule:
                        _set_tile_streams(parts, 0, tiles)
                        out = build_file(parts)
                        try:
                            rd.decode(out)
                        except rd.SpecViolation as whole:
                            assert whole.check_id == rule, (rule, whole)
                        return out
        raise AssertionError(f"no damaged tile of chunk 0 breaks rule {rule} first")
    return change


for _rule, _name, _what in (
    ("T2", "v3_tile_state_truncated", "its stream cut to fewer than 4 bytes, or an initial state below 2**16"),
    ("T3", "v3_tile_word_past_raw_bits", "a renormalisation word that would reach past the stream or into the raw "
                                         "bytes already taken"),
    ("T4", "v3_tile_raw_bits_past_words", "a raw field that would reach past the stream or into the word bytes "
                                          "already taken"),
    ("T5", "v3_tile_position_beyond", "a decoded position beyond the tile's entries"),
    ("T7", "v3_tile_final_state", "a final state other than 2**16"),
    ("T8", "v3_tile_areas_do_not_meet", "words and raw bits that do not meet exactly"),
    ("T9", "v3_tile_padding_bit", "a padding bit of the last raw byte read that is not 0"),
):
    invalid(_name, "v3_bands_and_tiles", "CorruptFileError", "file is corrupt",
            f"one tile stream of chunk 0 damaged (a prefix, a flipped bit or an inserted byte: the first, in a fixed "
            f"order, that the spec's reference decoder rejects by rule {_rule}) so that it has {_what}; tile "
            "lengths and the band CRC re-sealed")(_breaking(_rule))


@invalid("v3_tile_bytes_without_symbols", "v3_lossless_default", "CorruptFileError", "file is corrupt",
         "the first tile of chunk 0 without nonzeros given one byte (a tile without symbols has an empty stream, "
         "rule T1); tile lengths and the band CRC re-sealed")
def _(blob):
    def change(parts):
        streams = _tile_streams(parts, 0)
        streams[_tiles(parts, 0, "tiles.nnz").tolist().index(0)] = b"\x00"
        _set_tile_streams(parts, 0, streams)
    return edit(blob, change)


# ============================================================================== format 3.1: segments
#
# A segmented matrix (spec §5.5, the feature "segments" of format 3.1) as scinrcodec.concat writes it: one segment per
# input, the inputs' chunk blocks copied (spec §12.8). The invalid cases each break one of the rules SG1-SG4.

# The pieces of tests/data/pbmc500_3p_lt_x_50genes that v3_segments concatenates: (cells, genes in the piece's own
# order, chunk_cells). The second piece holds genes 10..49 in reverse order, so genes 40..49 are new to the output (in
# that order) and the genes it shares with the first piece come in the opposite order; the third holds 15 genes.
SEGMENT_PIECES = ((range(0, 34), range(0, 40), 12), (range(34, 60), range(49, 9, -1), 10),
                  (range(60, 80), range(15), 20))
SEGMENT_OPTIONS = dict(format_version=3, tile_nnz=32, patch_nnz=200)


def concat_bytes(pieces: list[tuple[Cut, dict]], join: str) -> bytes:
    """scinrcodec.concat of the pieces, each encoded with its options (format 3: one segment each)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (cut, options) in enumerate(pieces):
            paths.append(Path(tmp) / f"piece{i}.sinr")
            scinrcodec.encode(cut.source(), paths[-1], force=True, jobs=1, **options)
        out = Path(tmp) / "matrix.sinr"
        scinrcodec.concat(paths, out, join=join, force=True, jobs=1)
        return out.read_bytes()


@valid("v3_segments")
def _():
    base = fixture("pbmc500_3p_lt_x_50genes")
    pieces = [(base.take(genes=list(genes), cells=list(cells)), {**SEGMENT_OPTIONS, "chunk_cells": chunk_cells})
              for cells, genes, chunk_cells in SEGMENT_PIECES]
    genes = list(dict.fromkeys(g for _, piece_genes, _ in SEGMENT_PIECES for g in piece_genes))  # the outer join
    dense = base.counts[genes].toarray()
    for cells, piece_genes, _ in SEGMENT_PIECES:  # zeros where a piece lacks a gene
        dense[np.ix_([i for i, g in enumerate(genes) if g not in piece_genes], list(cells))] = 0
    described = "; ".join(f"cells {c.start}..{c.stop - 1} x genes {g.start}..{g.stop - g.step} (chunk_cells {k})"
                          for c, g, k in SEGMENT_PIECES)
    cut = base.take(genes=genes, note=f"; scinrcodec.concat(join='outer') of three pieces, each encoded in format 3 "
                                      f"with tile_nnz 32, patch_nnz 200: {described}; genes in the outer join's order "
                                      "(the first piece's, then genes 49..40), zeros where a piece lacks a gene")
    cut.counts = sp.csc_matrix(dense)
    return dict(cut=cut, options={**SEGMENT_OPTIONS, "chunk_cells": [k for _, _, k in SEGMENT_PIECES],
                                  "concat": "join='outer'"},
                blob=concat_bytes(pieces, "outer"), rows_in_gene_order=False,
                exercises=["format 3.1, a segmented matrix (spec §5.5): three segments, each with its own rows of "
                           "genes.order and genes.baseline, its chunks' rows offset by the segment's first row",
                           "genes stored in one segment only, genes stored in several at different rows, segments "
                           "of different row counts, several chunks in a segment, cell names",
                           "n_stored_genes above the rows of any one segment; a gene's nonzeros read from every "
                           "segment that stores it",
                           "bands whose rows are not in increasing gene index (the second piece's genes reversed): "
                           "a reader must not require spec §5.4.5's order"],
                require=dict(n_segments=3, max_segment_chunks=3, segment_rows_spread=1, genes_in_one_segment=1,
                             genes_at_different_rows=1))


def _segments_index(parts: Parts) -> np.ndarray:
    """segments.index as rows (n_chunks_s, n_rows_s)."""
    return unpack_array(parts.section("segments.index"), "u8").astype(np.int64).reshape(-1, 2)


def _segments_edit(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[bytes], bytes]:
    """The file with segments.index replaced by fn(its rows), n_segments following it."""
    def change(parts: Parts) -> None:
        rows = fn(_segments_index(parts))
        parts.set_section("segments.index", pack_array(rows.astype(np.uint64).ravel(), "u8"))
        parts.matrix["n_segments"] = len(rows)
    return lambda blob: edit(blob, change)


@invalid("v3_segments_n_segments_out_of_range", "v3_segments", "CorruptFileError", "n_segments",
         "n_segments set to n_chunks + 1 (rule SG1: 1 .. n_chunks)")
def _(blob):
    return edit(blob, lambda parts: parts.matrix.update(n_segments=parts.matrix["n_chunks"] + 1))


@invalid("v3_segments_index_missing", "v3_segments", "CorruptFileError", "segments.index",
         "required_features lists 'segments' but the matrix has no segments.index section (rule SG1)")
def _(blob):
    return edit(blob, lambda parts: drop_section(parts.sections, "segments.index"))


@invalid("v3_segments_index_without_feature", "v3_bands_and_tiles", "CorruptFileError", "segments.index",
         "format 3.1, a matrix that does not list 'segments' holding a segments.index section (one segment of all "
         "its chunks and rows, placed after chunks.index): rule SG1")
def _(blob):
    def change(parts):
        parts.minor = 1
        segment = [parts.matrix["n_chunks"], parts.matrix["n_stored_genes"]]
        parts.sections.append(["segments.index", pack_array(segment, "u8")])
    return edit(blob, change)


@invalid("v3_segments_chunks_not_adding_up", "v3_segments", "CorruptFileError", "segments' chunks",
         "segments.index: the segment with the most chunks given one chunk less, so the segments' chunks add up to "
         "n_chunks - 1 (rule SG2)")
def _(blob):
    def fewer(rows):
        rows[int(np.argmax(rows[:, 0])), 0] -= 1
        return rows
    return _segments_edit(fewer)(blob)


@invalid("v3_segments_rows_not_adding_up", "v3_segments", "CorruptFileError", "segments' rows",
         "segments.index: the segment with the fewest rows given one row more, so the segments' rows add up to "
         "n_stored_genes + 1 (rule SG2)")
def _(blob):
    def more(rows):
        rows[int(np.argmin(rows[:, 1])), 1] += 1
        return rows
    return _segments_edit(more)(blob)


@invalid("v3_segments_segment_without_chunks", "v3_segments", "CorruptFileError", "at least one chunk",
         "segments.index: a segment of 0 chunks and 0 rows inserted after the first (n_segments one more, still "
         "<= n_chunks; the sums hold): every segment needs a chunk (rule SG2)")
def _(blob):
    return _segments_edit(lambda rows: np.insert(rows, 1, [0, 0], axis=0))(blob)


@invalid("v3_segments_gene_twice_in_segment", "v3_segments", "CorruptFileError", "within a segment",
         "genes.order: the second row of the first segment given the gene of its first row (rule SG3: no gene twice "
         "within one segment's rows)")
def _(blob):
    def change(parts):
        order = unpack_array(parts.section("genes.order"), "u4").copy()
        order[1] = order[0]
        parts.set_section("genes.order", pack_array(order, "u4"))
    return edit(blob, change)


@invalid("v3_segments_chunk_rows_beyond_segment", "v3_segments", "CorruptFileError", "more than its segment",
         "the first chunk of the segment with the fewest rows (S_s) given n_rows = S_s + 1, its last band one row "
         "taller (bands.rows agrees): more rows than its segment, fewer than n_stored_genes (rule SG4)")
def _(blob):
    def change(parts):
        rows = _segments_index(parts)
        s = int(np.argmin(rows[:, 1]))
        chunk = parts.chunks[int(rows[:s, 0].sum())]
        n_rows = int(rows[s, 1]) + 1
        assert n_rows <= parts.matrix["n_stored_genes"] and chunk.header["n_bands"] > 0
        chunk.header["n_rows"] = n_rows
        bands = unpack_array(chunk_section(chunk, "bands.rows"), "u4").copy()
        bands[-1] = n_rows
        set_chunk_section(chunk, "bands.rows", pack_array(bands, "u4"))
    return edit(blob, change)


# ===================================================================== format 3.2: cell order planes
#
# A matrix listing the feature "cell-order-planes" (spec §5.6, format 3.2): a chunk may store its cell order as the
# byte planes of the array (section cells.order_planes) in place of cells.order. The invalid cases each break rule CP1
# or K10 with the planes.

def _order_planes(blob: bytes) -> bytes:
    """The file with chunk 0's cells.order stored as cells.order_planes (chunk 1 keeps cells.order), the feature
    listed, format 3.2."""
    def change(parts: Parts) -> None:
        parts.minor = 2
        parts.matrix["required_features"] = ["cell-order-planes"]
        chunk = parts.chunks[0]
        order = unpack_array(chunk_section(chunk, "cells.order"), "u4")
        chunk.sections = [["cells.order_planes", pack_planes(order, "u4")] if name == "cells.order" else [name, payload]
                          for name, payload in chunk.sections]
    return edit(blob, change)


@valid("v3_cell_order_planes")
def _():
    return _version3("bands_and_tiles", ["format 3.2, the feature cell-order-planes (spec §5.6): chunk 0 stores its "
                                         "cell order as byte planes (cells.order_planes, a zstd shuffled array of "
                                         "uint32), chunk 1 as cells.order: chunks of one matrix may differ"], None,
                     post=_order_planes, post_note="the preamble's minor version set to 2 (format 3.2), "
                                                   "required_features ['cell-order-planes'], chunk 0's cells.order "
                                                   "replaced by cells.order_planes holding the same permutation "
                                                   "(zstd level 19); the file re-sealed")()


def _chunk0_edit(fn: Callable[[Chunk], object]) -> Callable[[bytes], bytes]:
    """The file with `fn` applied to chunk 0, the chunk whose sections the format 3.2 vectors store anew."""
    return lambda blob: edit(blob, lambda parts: fn(parts.chunks[0]))


@invalid("v3_cell_order_both", "v3_cell_order_planes", "CorruptFileError", "holds both",
         "chunk 0 holds cells.order (its permutation as a zstd array) after cells.order_planes (rule CP1)")
def _(blob):
    def change(chunk):
        order = unpack_planes(chunk_section(chunk, "cells.order_planes"), "u4")
        chunk.sections.insert(1, ["cells.order", pack_array(order, "u4")])
    return _chunk0_edit(change)(blob)


@invalid("v3_cell_order_neither", "v3_cell_order_planes", "CorruptFileError", "holds neither",
         "chunk 0's cells.order_planes dropped: it holds no cell order (rule CP1)")
def _(blob):
    return _chunk0_edit(lambda chunk: drop_section(chunk.sections, "cells.order_planes"))(blob)


@invalid("v3_cell_order_planes_without_feature", "v3_cell_order_planes", "CorruptFileError", "cell-order-planes",
         "format 3.2, required_features [] while chunk 0 holds cells.order_planes (rule CP1)")
def _(blob):
    return _v3_matrix_edit(lambda m: m.update(required_features=[]))(blob)


@invalid("v3_cell_order_planes_not_permutation", "v3_cell_order_planes", "CorruptFileError", "not a permutation",
         "chunk 0's cells.order_planes repeats a cell: its second item set to its first (rule K10)")
def _(blob):
    def change(chunk):
        order = unpack_planes(chunk_section(chunk, "cells.order_planes"), "u4").copy()
        order[1] = order[0]
        set_chunk_section(chunk, "cells.order_planes", pack_planes(order, "u4"))
    return _chunk0_edit(change)(blob)


@invalid("v3_cell_order_planes_count", "v3_cell_order_planes", "CorruptFileError", "cells.order_planes",
         "chunk 0's cells.order_planes holds the byte planes of n + 1 items (its permutation and n): the frame's "
         "size is not 4n (rules K10, §3.3)")
def _(blob):
    def change(chunk):
        order = unpack_planes(chunk_section(chunk, "cells.order_planes"), "u4")
        set_chunk_section(chunk, "cells.order_planes", pack_planes(np.append(order, order.size), "u4"))
    return _chunk0_edit(change)(blob)


# ===================================================================== format 3.2: cell barcodes
#
# A matrix listing the feature "cell-barcodes" (spec §5.7, format 3.2): a chunk may store its cell names as 2-bit
# barcodes (section cells.barcodes, with the header keys barcode_length and barcode_suffix) in place of cells.names.
# The invalid cases each break rule CB1, CB2 or CB3.

def _barcode_items(names: list[str], length: int, suffix: str) -> np.ndarray:
    """cells.barcodes' items for `names` (each `length` bases and `suffix`): each code less the one before,
    mod 2^64, the first base the most significant digit."""
    items, last = [], 0
    for name in names:
        assert name.endswith(suffix) and len(name) == length + len(suffix)
        code = 0
        for base in name[:length]:
            code = 4 * code + "ACGT".index(base)
        items.append((code - last) % 2**64)
        last = code
    return np.array(items, dtype=np.uint64)


def _barcodes(blob: bytes) -> bytes:
    """The file with chunk 0's cells.names stored as cells.barcodes (chunk 1 keeps cells.names), the feature
    listed, format 3.2."""
    def change(parts: Parts) -> None:
        parts.minor = 2
        parts.matrix["required_features"] = ["cell-barcodes"]
        chunk = parts.chunks[0]
        names = unzstd(chunk_section(chunk, "cells.names")).decode().split("\n")
        chunk.header.update(barcode_length=16, barcode_suffix="-1")
        chunk.sections = [["cells.barcodes", pack_planes(_barcode_items(names, 16, "-1"), "u8")]
                          if name == "cells.names" else [name, payload] for name, payload in chunk.sections]
    return edit(blob, change)


@valid("v3_cell_barcodes")
def _():
    return _version3("bands_and_tiles", ["format 3.2, the feature cell-barcodes (spec §5.7): chunk 0 stores its "
                                         "cell names as 2-bit barcodes (cells.barcodes, a zstd shuffled array of "
                                         "uint64 differences, barcode_length 16 and barcode_suffix '-1' in its "
                                         "header), chunk 1 as cells.names: chunks of one matrix may differ"], None,
                     post=_barcodes, post_note="the preamble's minor version set to 2 (format 3.2), "
                                               "required_features ['cell-barcodes'], chunk 0's cells.names "
                                               "replaced by cells.barcodes coding the same names (zstd level 19); "
                                               "the file re-sealed")()


@invalid("v3_cell_barcodes_both", "v3_cell_barcodes", "CorruptFileError", "holds both",
         "chunk 0 holds cells.names (its names as text) besides cells.barcodes (rule CB1)")
def _(blob):
    def change(chunk):
        names = "\n".join(_barcode_names(chunk)).encode()
        chunk.sections.insert(2, ["cells.names", zstd(names)])
    return _chunk0_edit(change)(blob)


def _barcode_names(chunk: Chunk) -> list[str]:
    """Chunk 0's names, from its barcodes (16 bases and '-1')."""
    codes = np.cumsum(unpack_planes(chunk_section(chunk, "cells.barcodes"), "u8"), dtype=np.uint64)
    return ["".join("ACGT"[(int(code) >> (2 * (15 - j))) & 3] for j in range(16)) + "-1" for code in codes]


@invalid("v3_cell_barcodes_without_feature", "v3_cell_barcodes", "CorruptFileError", "cell-barcodes",
         "format 3.2, required_features [] while chunk 0 holds cells.barcodes (rule CB1)")
def _(blob):
    return _v3_matrix_edit(lambda m: m.update(required_features=[]))(blob)


@invalid("v3_cell_barcodes_length", "v3_cell_barcodes", "CorruptFileError", "barcode_length",
         "chunk 0's barcode_length is 33, beyond the 32 bases a uint64 holds (rule CB2)")
def _(blob):
    return _chunk0_edit(lambda chunk: chunk.header.update(barcode_length=33))(blob)


@invalid("v3_cell_barcodes_suffix", "v3_cell_barcodes", "CorruptFileError", "barcode_suffix",
         "chunk 0's barcode_suffix is '-1\\n', a line feed no name may hold (rule CB2)")
def _(blob):
    return _chunk0_edit(lambda chunk: chunk.header.update(barcode_suffix="-1\n"))(blob)


@invalid("v3_cell_barcodes_code", "v3_cell_barcodes", "CorruptFileError", "cells.barcodes",
         "chunk 0's barcode_length is 15 while its codes are of 16 bases: the sums reach 4^15 and beyond (rule CB3)")
def _(blob):
    return _chunk0_edit(lambda chunk: chunk.header.update(barcode_length=15))(blob)


@invalid("v3_cell_barcodes_count", "v3_cell_barcodes", "CorruptFileError", "cells.barcodes",
         "chunk 0's cells.barcodes holds the byte planes of n + 1 items: the frame's size is not 8n (rule CB3)")
def _(blob):
    def change(chunk):
        items = unpack_planes(chunk_section(chunk, "cells.barcodes"), "u8")
        set_chunk_section(chunk, "cells.barcodes", pack_planes(np.append(items, np.uint64(1)), "u8"))
    return _chunk0_edit(change)(blob)


# ==================================================================================== census

def _golomb(n: int, m: int) -> int:
    return max(1, ((n - m) * 69 + 50 * m) // (100 * m))


def trace_positions(buf: np.ndarray, start: int, length: int, n: int, m: int) -> dict:
    """Read a tile's m coded positions with scinrcodec's own rANS primitives, one symbol at a time,
    counting quotient escapes and the raw low bits of the split uniform model."""
    from scinrcodec.codec.rans import decode_quotient, decode_uniform, start_decoding, uniform_model

    end = start + length
    x, pos = start_decoding(buf, start, end)
    assert pos >= 0
    M = _golomb(n, m)
    has_quotients = (n - m) // M > 0
    base, extra, inv_wide, inv_narrow, low_bits = uniform_model(M)
    positions, previous, escapes = [], -1, 0
    for _ in range(m):
        q = r = 0
        if has_quotients:
            q, x, pos = decode_quotient(x, buf, pos, end)
            escapes += q // 15
        if M > 1:
            r, x, pos = decode_uniform(x, buf, pos, end, base, extra, inv_wide, inv_narrow, low_bits)
        assert pos >= 0
        previous += q * M + r + 1
        positions.append(previous)
    return {"positions": positions, "M": M, "escapes": escapes, "low_bits": int(low_bits) if M > 1 else 0}


def census(blob: bytes, genes: np.ndarray, cells: np.ndarray) -> dict:
    """How a file codes its nonzeros, computed from the file's own geometry and permutations (read
    with the scinrcodec reader) and the decoded coordinates, with the spec's rules: complement and
    full tiles, Golomb parameters, quotient escapes, the split uniform model, value offset bits,
    empty chunks, SIREN bands. Cross-checks each chunk's tile directory against the coordinates."""
    m = scinrcodec.open(blob)
    index = m.index
    out = dict(n_chunks=index.n_chunks, empty_chunks=0, bands=0, tiles=0, tiles_empty=0, tiles_complement=0,
               tiles_full=0, max_golomb_M=0, tiles_uniform_above_2_16=0, quotient_escape_symbols=0,
               tiles_with_escape=0, max_quotient=0, max_offset_bits=0, values_over_16_offset_bits=0,
               bands_with_nonzeros=0, bands_with_siren=0, siren_normalisations=[], genes_only_in_later_chunks=0,
               traced_quotient_escape_symbols=0, traced_uniform_low_bits_max=0)
    buf = np.frombuffer(blob, dtype=np.uint8)
    if index.n_chunks == 0:
        return out
    chunks = [index.chunk(c) for c in range(index.n_chunks)]
    rows = index.gene_rows(genes.astype(np.int64)) if genes.size else genes.astype(np.int64)
    first_chunk_of_gene = {}
    norms = set()
    for chunk in chunks:
        lo, hi = chunk.first_cell, chunk.first_cell + chunk.n_cells
        sel = (cells >= lo) & (cells < hi)
        r = rows[sel]
        col = index.cell_position[cells[sel]] - lo
        for g in np.unique(genes[sel]).tolist():
            first_chunk_of_gene.setdefault(g, chunk.index)
        if chunk.nnz == 0:
            out["empty_chunks"] += 1
        geo = chunk.geometry
        out["bands"] += geo.n_bands
        out["tiles"] += geo.n_tiles
        band = np.searchsorted(geo.row_starts, r, side="right") - 1
        block = col // geo.widths[band] if r.size else col
        tile = geo.tile_starts[band] + block if r.size else col
        first = block * geo.widths[band] if r.size else col
        width = np.minimum(geo.widths[band], chunk.n_cells - first) if r.size else col
        pos = (r - geo.row_starts[band]) * width + col - first if r.size else col
        k_all = np.bincount(tile, minlength=geo.n_tiles)
        assert np.array_equal(k_all, chunk.tile_k), "tile directory disagrees with the decoded coordinates"
        band_nnz = np.bincount(band, minlength=geo.n_bands) if r.size else np.zeros(geo.n_bands, np.int64)
        out["bands_with_nonzeros"] += int(np.count_nonzero(band_nnz))
        out["bands_with_siren"] += int(np.count_nonzero(chunk.band_siren >= 0))
        if chunk.sections.has("siren.meta"):
            norms.update(entry[1]["normalisation"][0] for entry in chunk.sections.get("siren.meta")["bands"])
        order = np.lexsort((pos, tile))
        tile, pos = tile[order], pos[order]
        bounds = np.searchsorted(tile, np.arange(geo.n_tiles + 1))
        for t in range(geo.n_tiles):
            k = int(chunk.tile_k[t])
            n = int(chunk.tile_h[t] * chunk.tile_w[t])
            p = pos[bounds[t]: bounds[t + 1]]
            if k == 0:
                out["tiles_empty"] += 1
                continue
            if 2 * k > n:
                out["tiles_full" if k == n else "tiles_complement"] += 1
                mask = np.ones(n, bool)
                mask[p] = False
                coded = np.flatnonzero(mask)
            else:
                coded = p
            mm = coded.size
            if mm == 0:
                continue
            M = _golomb(n, mm)
            out["max_golomb_M"] = max(out["max_golomb_M"], M)
            if M > 65536:
                out["tiles_uniform_above_2_16"] += 1
            if (n - mm) // M > 0:
                gaps = np.diff(np.concatenate([[-1], coded])) - 1
                q = gaps // M
                escapes = int((q // 15).sum())
                out["quotient_escape_symbols"] += escapes
                out["tiles_with_escape"] += int(escapes > 0)
                out["max_quotient"] = max(out["max_quotient"], int(q.max()))
            traced = trace_positions(buf, int(chunk.tile_offset[t]), int(chunk.tile_length[t]), n, mm)
            assert traced["positions"] == coded.tolist(), "the tile decoder reads other positions"
            assert traced["M"] == M
            out["traced_quotient_escape_symbols"] += traced["escapes"]
            out["traced_uniform_low_bits_max"] = max(out["traced_uniform_low_bits_max"], traced["low_bits"])
        if chunk.sections.has("values.counts"):
            counts = chunk.sections.get("values.counts").reshape(N_CONTEXTS, N_BINS)
            used = counts.sum(axis=0) > 0
            if used.any():
                out["max_offset_bits"] = max(out["max_offset_bits"], int(bin_tables()[1][used].max()))
                out["values_over_16_offset_bits"] += int(counts.sum(axis=0)[bin_tables()[1] > 16].sum())
    out["siren_normalisations"] = sorted(norms)
    out["genes_only_in_later_chunks"] = sum(1 for c in first_chunk_of_gene.values()
                                            if c > min(first_chunk_of_gene.values()))
    return out


# ================================================================================= writing

def save_npz(path: Path, **arrays) -> None:
    """np.savez's layout (an uncompressed zip of .npy members), with fixed timestamps so that the
    bytes are reproducible. np.load reads it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            with zf.open(info, "w", force_zip64=True) as fh:
                fh.write(buffer.getvalue())


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n")


def sorted_coo(genes, cells, values, n_cells: int):
    genes, cells, values = (np.asarray(x, np.int64) for x in (genes, cells, values))
    order = np.lexsort((cells, genes))
    return genes[order], cells[order], values[order]


def decoded_coo(blob: bytes):
    """The decoded matrix via the cell-major path (no per-gene allocation), as sorted COO."""
    m = scinrcodec.open(blob)
    csc = m.to_scipy(layout="csc")
    coo = csc.tocoo()
    return sorted_coo(coo.row, coo.col, coo.data, m.shape[1]), m


def encode_bytes(source: ScipySource, options: dict) -> bytes:
    """The file, of format 2 unless the options say format_version=3 (a case's format does not follow
    the writer's default)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matrix.sinr"
        scinrcodec.encode(source, path, force=True, jobs=1, **{"format_version": 2, **options})
        return path.read_bytes()


def expected_values(cut: Cut, mode: str, max_error: int):
    coo = sp.coo_matrix(cut.counts)
    genes, cells, values = sorted_coo(coo.row, coo.col, coo.data, cut.counts.shape[1])
    if mode == "max-error":
        step = 2 * max_error + 1
        values = np.minimum(1 + ((values - 1 + max_error) // step) * step, MAX_COUNT)
    return genes, cells, values


VERIFIED_2 = ("computed from the file: tile geometry, gene and cell orders and tile directory read with scinrcodec, "
              "positions from the decoded coordinates, Golomb M, quotients and escapes, the split uniform model "
              "(M > 2**16), complement/full tiles and value offset bits (from values.counts) recomputed with the "
              "spec's rules; the tile directory is checked against the coordinates; then every tile's position "
              "symbols are read again with scinrcodec's rANS primitives (start_decoding, decode_quotient, "
              "decode_uniform), which must give the same positions: traced_* count the escapes and the uniform "
              "model's raw low bits seen there")
VERIFIED_3 = ("computed from the file with the spec's independent reference decoder (spec/reference_decoder.py, "
              "which decoded expected.npz with its strict writer checks: both count sections are the histograms of "
              "the decoded tiles): tile geometry and sizes, empty/complement/full tiles and density classes from "
              "the tile directory, gap and value offset bits and the largest context from gaps.counts and "
              "values.counts, SIREN bands, and whether every band's rows are in gene order")

VERIFIED_SEGMENTS = ("; and its segments (spec §5.5, read by the reference decoder under rules SG1-SG4): their chunks "
                     "and rows, genes stored in one segment only and genes stored in several at different rows of "
                     "their segments")


def make_valid(case: ValidCase, out: Path) -> bytes:
    spec = case.build()
    cut: Cut = spec["cut"]
    options = spec["options"]
    blob = spec["blob"] if "blob" in spec else encode_bytes(cut.source(), options)
    assert build_file(parse_file(blob)) == blob, "parse_file/build_file do not round-trip the writer's bytes"
    if "post" in spec:
        blob = spec["post"](blob)
    version3 = major_of(blob) == 3
    (genes, cells, values), m = decoded_reference(blob) if version3 else decoded_coo(blob)
    mode, max_error = m.mode, m.max_error
    shape = spec.get("shape", cut.counts.shape)
    assert m.shape == tuple(shape)
    if mode != "inr-only":  # the decoded matrix must be the source (or its quantised form): checked here
        eg, ec, ev = expected_values(cut, mode, max_error)
        assert np.array_equal(eg, genes) and np.array_equal(ec, cells) and np.array_equal(ev, values), case.name
        if mode == "max-error":
            coo = sp.coo_matrix(cut.counts)
            orig = sorted_coo(coo.row, coo.col, coo.data, cut.counts.shape[1])[2]
            assert np.all(np.abs(values - orig) <= max_error)
    else:  # positions are exact; values are the SIREN's predictions (the chunk checksums tie them to the encoder's)
        eg, ec, _ = expected_values(cut, "lossless", 0)
        assert np.array_equal(eg, genes) and np.array_equal(ec, cells)
        assert values.min(initial=1) >= 1
    names = {"gene_ids": m.gene_ids, "gene_names": m.gene_names, "feature_types": m.feature_types,
             "cell_names": m.cell_names}
    want = {"gene_ids": cut.gene_ids, "gene_names": cut.gene_names or None, "feature_types": cut.feature_types,
            "cell_names": cut.cell_names}
    if cut.gene_names is not None and cut.gene_names == cut.gene_ids:
        want["gene_names"] = cut.gene_ids
    assert names == want, case.name
    info = census3(blob) if version3 else census(blob, genes, cells)
    if version3:
        assert info["rows_in_gene_order"] == spec.get("rows_in_gene_order", True), case.name
    for key, least in spec.get("require", {}).items():
        assert info[key] >= least, f"{case.name}: {key} = {info[key]} < {least}"
    if mode == "inr-only" or options.get("siren") == "force":  # a SIREN in every band with nonzeros
        assert info["bands_with_siren"] == info["bands_with_nonzeros"] > 0, case.name
        assert info["siren_normalisations"] == [options["normalisation"]], case.name
    folder = out / case.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.sinr").write_bytes(blob)
    save_npz(folder / "expected.npz", shape=np.asarray(shape, np.int64), genes=genes, cells=cells, values=values)
    write_json(folder / "names.json", names)
    record = {
        "case": case.name, "kind": "valid", "mode": mode, "max_error": max_error,
        "options": {k: v for k, v in options.items() if k != "device"},
        "source": cut.origin + (f"; then {spec['post_note']}" if "post_note" in spec else ""),
        "exercises": spec["exercises"], "needs_torch": case.needs_torch,
        "shape": list(shape), "nnz": int(values.size), "file_bytes": len(blob),
        "verified": {"how": (VERIFIED_3 + (VERIFIED_SEGMENTS if "n_segments" in info else "")) if version3
                     else VERIFIED_2, **info},
        "decoded_equals_source": mode == "lossless",
    }
    if mode == "max-error":
        record["decoded_rule"] = "nonzero v -> min(1 + ((v - 1 + E) // (2E + 1)) * (2E + 1), 2**31-1)"
    if mode == "inr-only":
        record["decoded_rule"] = ("each nonzero is its band SIREN's prediction; the values in expected.npz come "
                                  f"from {'the spec reference decoder' if version3 else 'scinrcodec'}'s decoder and "
                                  "match the encoder's (chunk content checksums)")
    if version3:
        record["format_version"] = "{}.{}".format(*PREAMBLE.unpack_from(blob, 0)[1:3])
    for key in ("stats_dropped", "memory_limited", "require", "spec_dependent"):
        if key in spec:
            record[key] = spec[key]
    write_json(folder / "case.json", record)
    return blob


def outcome(source) -> Exception | None:
    """What scinrcodec does with a file (a path, bytes or a file object): None, or the exception
    opening and fully reading it raises."""
    try:
        m = scinrcodec.open(source)
        m.to_scipy(layout="csc")
        m.to_scipy()
        _ = m.gene_ids, m.gene_names, m.feature_types, m.cell_names
        m.verify()
    except Exception as exc:  # noqa: BLE001 - recorded, the tests judge it
        return exc
    return None


def make_invalid(case: InvalidCase, out: Path, bases: dict[str, bytes]) -> tuple[bytes, str]:
    blob = case.change(bases.get(case.base) if case.base else b"")
    folder = out / case.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.sinr").write_bytes(blob)
    expected = {"error": case.error, "message_contains": case.fragment}
    expected.update(case.extra)
    write_json(folder / "expected_error.json", expected)
    write_json(folder / "case.json", {"case": case.name, "kind": "invalid", "base": case.base,
                                      "what": case.what, "needs_torch": case.needs_torch,
                                      "file_bytes": len(blob)})
    exc = outcome(blob)
    got = "no error" if exc is None else f"{type(exc).__name__}: {exc}"
    ok = exc is not None and type(exc).__name__ == case.error and case.fragment in str(exc)
    return blob, ("" if ok else got)


def file_digest(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--no-torch", action="store_true", help="skip the cases that fit a SIREN")
    parser.add_argument("--only", nargs="*", help="only these cases (and the valid cases they derive from)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
    wanted_invalid = [c for c in INVALID.values() if (not args.only or c.name in args.only)
                      and not (args.no_torch and c.needs_torch)]
    wanted_valid = [c for c in VALID.values() if (not args.only or c.name in args.only
                                                  or any(i.base == c.name for i in wanted_invalid))
                    and not (args.no_torch and c.needs_torch)]
    bases: dict[str, bytes] = {}
    for case in wanted_valid:
        bases[case.name] = make_valid(case, out)
        print(f"valid   {case.name:44s} {len(bases[case.name]):7d} bytes")
    mismatches = {}
    for case in wanted_invalid:
        blob, problem = make_invalid(case, out, bases)
        print(f"invalid {case.name:44s} {len(blob):7d} bytes{'   READER: ' + problem if problem else ''}")
        if problem:
            mismatches[case.name] = problem
    if not args.only and not args.no_torch:
        known = {c.name for c in wanted_valid} | {c.name for c in wanted_invalid}
        for folder in sorted(out.iterdir()):
            if folder.is_dir() and (folder / "case.json").exists() and folder.name not in known:
                shutil.rmtree(folder)
    manifest = {"format": "sinr 2.0, 2.1, 3.0, 3.1 and 3.2 conformance vectors",
                "generator": "tests/conformance/make_vectors.py",
                "cases": {}}
    for folder in sorted(out.iterdir()):
        if folder.is_dir() and (folder / "case.json").exists():
            kind = json.loads((folder / "case.json").read_text())["kind"]
            manifest["cases"][folder.name] = {"kind": kind, "files": {f.name: file_digest(f)
                                                                      for f in sorted(folder.iterdir())}}
    write_json(out / "manifest.json", manifest)
    if mismatches:
        print(f"\n{len(mismatches)} invalid case(s) where scinrcodec's reader does not raise the expected error:")
        for name, problem in mismatches.items():
            print(f"  {name}: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
