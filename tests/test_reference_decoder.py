"""Tests of the independent reference decoder `spec/reference_decoder.py`.

The reference decoder is written from `spec/sinr-format.md` alone; these tests check it against
the conformance vectors of `tests/conformance/` (their data files only), against the worked
example of spec §13 (`tests/data/spec_example.sinr`), and against synthetic mutations of valid
vectors for rules that no vector exercises.  Nothing here imports scinrcodec.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import msgpack
import numpy as np
import pytest
import zstandard

from conftest import REFERENCE_DECODER, reference_decoder
from format3_tiles import damaged, decoded_tiles

ROOT = pathlib.Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "conformance"
SPEC_EXAMPLE = ROOT / "tests" / "data" / "spec_example.sinr"

rd = reference_decoder()

MANIFEST = json.loads((VECTORS / "manifest.json").read_text())["cases"]
VALID = sorted(c for c, info in MANIFEST.items() if info["kind"] == "valid")
INVALID = sorted(c for c, info in MANIFEST.items() if info["kind"] == "invalid")

CATEGORY = {"FormatError": "format", "UnsupportedVersionError": "version",
            "CorruptFileError": "corrupt"}

# The rule of spec §9 that the reference decoder reports for each invalid vector: the first rule
# the file breaks in the decoder's order of checks (§2.4, then §9's order).
EXPECTED_RULE = {
    "band_rows_moved": "T4",
    "band_width_changed": "T4",
    "band_width_tile_count_changed": "K11",
    "body_bytes_missing": "M9",
    "cell_names_count": "K6",
    "cell_name_too_long": "K6",
    "cell_names_bomb": "K6",
    "cell_names_carriage_return": "K6",
    "cell_names_fewer": "K6",
    "cell_names_no_content_size": "K6",
    "cell_names_not_utf8": "K6",
    "cell_names_two_frames": "K6",
    "cells_order_not_permutation": "K10",
    "chunk_checksum": "W1",
    "chunk_header_crc": "K1",
    "chunk_header_n_cells": "K3",
    "chunk_header_n_cells_float": "K3",
    "chunk_header_nnz": "K3",
    "chunk_header_trailing_bytes": "K2",
    "chunk_index_cells_not_adding_up": "M12",
    "chunk_index_cells_wrapping": "M12",
    "chunk_index_outside_body": "M12",
    "chunk_index_overlap": "M12",
    "chunk_n_bands_contradicts": "K8",
    "chunk_n_rows_too_large": "K4",
    "chunk_nnz_shifted": "K11",
    "chunk_rows_beyond_stored_genes": "K4",
    "duplicate_matrix_names": "F2",
    "footer_byte": "C6",
    "footer_crc": "C6",
    "footer_length": "C5",
    "footer_no_content_size": "C7",
    "footer_not_a_map": "C7",
    "footer_not_msgpack": "C7",
    "msgpack_ext_type": "C7",
    "msgpack_timestamp": "C7",
    "msgpack_too_deep": "C7",
    "footer_trailing_bytes": "C7",
    "format_not_sinr": "F1",
    "gene_ids_count": "M14",
    "gene_names_are_ids_not_bool": "M8",
    "gene_names_are_ids_with_names": "M11",
    "gene_names_are_ids_without_ids": "M11",
    "genes_order_not_permutation": "M13",
    "genes_order_out_of_range": "M13",
    "has_cell_names_contradiction": "K6",
    "inr_only_band_without_siren": "K14",
    "inr_only_with_value_counts": "K7",
    "lossless_with_max_error": "M5",
    "lossless_without_value_counts": "K7",
    "matrix_name_not_a_string": "F2",
    "max_error_2_31_minus_1": "M5",
    "max_error_2_62": "M5",
    "max_error_float": "M5",
    "max_error_missing": "M5",
    "max_error_mode_with_max_error_0": "M5",
    "max_error_true": "M5",
    "missing_chunk_section": "K5",
    "missing_required_section": "M10",
    "mode_inr_only_stages_lossless": "M5",
    "n_chunks_contradicts_index": "M12",
    "names_not_utf8": "M14",
    "nnz_not_adding_up": "M12",
    "no_matrices": "F2",
    "not_sinr_empty": "C1",
    "not_sinr_gzip": "C1",
    "not_sinr_text": "C1",
    "preamble_byte_flipped": "C6",
    "preamble_reserved_nonzero": "C4",
    "row_bands_bad_parameter": "M5",
    "second_value_coder": "M5",
    "second_value_stage": "M5",
    "section_crc_chunk": "K10",
    "section_crc_matrix": "M13",
    "section_crc_names": "M14",
    "section_crc_tiles": "K15",
    "section_duplicate": "M9",
    "section_not_zstd": "M13",
    "section_outside_body": "M9",
    "section_table_not_a_list": "M9",
    "section_trailing_bytes_matrix": "M13",
    "section_trailing_bytes_names": "M14",
    "section_trailing_frame_chunk": "K11",
    "section_wrong_size": "M13",
    "sections_overlap": "M9",
    "shape_fewer_genes_than_stored": "M6",
    "shape_more_genes_than_names": "M14",
    "shape_floats": "M2",
    "shape_negative": "M2",
    "shape_strings": "M2",
    "shape_three_entries": "M2",
    "shape_too_large": "M2",
    "siren_band_out_of_range": "K14",
    "siren_band_twice": "K14",
    "siren_layers_do_not_chain": "K14",
    "siren_meta_trailing_bytes": "K14",
    "siren_multiplier_out_of_range": "K14",
    "siren_multiplier_overflow": "K14",
    "siren_normalisation_bad": "K14",
    "siren_normalisation_nan": "K14",
    "siren_shift_out_of_range": "K14",
    "siren_weights_count": "K14",
    "siren_weights_missing": "K14",
    "stage_dropped": "M5",
    "stages_missing": "M5",
    "stages_reordered": "M5",
    "tile_bytes_moved": "T6",
    "tile_bytes_not_adding_up": "K12",
    "tile_data_edited_crc_resealed": "T6",
    "tile_nnz_moved": "T4",
    "tile_nnz_not_adding_up": "K11",
    "tile_nnz_over_tile_size": "K11",
    "trailer_reserved_nonzero": "C4",
    "trailing_bytes": "C3",
    "trailing_bytes_and_trailer": "C6",
    "truncated_half": "C3",
    "truncated_in_magic": "C1",
    "truncated_in_trailer": "C3",
    "truncated_last_byte": "C3",
    "truncated_preamble_only": "C3",
    "unknown_stage": "M5",
    "value_counts_context_moved": "T5",
    "value_counts_not_adding_up": "K13",
    "value_counts_shifted": "T3",
    "version_0": "C2",
    "version_1": "C2",
    "version_4": "C2",
    # format 3
    "v2_stages_of_version_3": "M5",
    "v2_with_gaps_counts": "K5",
    "v3_gaps_counts_missing": "K5",
    "v3_gaps_counts_not_shuffled": "G2",
    "v3_gaps_counts_too_large": "G1",
    "v3_gaps_counts_wrong_class": "G2",
    "v3_gaps_counts_wrong_size": "G1",
    "v3_inr_only_with_value_counts": "G3",
    "v3_cell_barcodes_both": "CB1",
    "v3_cell_barcodes_code": "CB3",
    "v3_cell_barcodes_count": "CB3",
    "v3_cell_barcodes_length": "CB2",
    "v3_cell_barcodes_suffix": "CB2",
    "v3_cell_barcodes_without_feature": "CB1",
    "v3_cell_order_both": "CP1",
    "v3_cell_order_neither": "CP1",
    "v3_cell_order_planes_count": "K10",
    "v3_cell_order_planes_not_permutation": "K10",
    "v3_cell_order_planes_without_feature": "CP1",
    "v3_required_feature_unknown": "R2",
    "v3_segments_chunk_rows_beyond_segment": "SG4",
    "v3_segments_chunks_not_adding_up": "SG2",
    "v3_segments_gene_twice_in_segment": "SG3",
    "v3_segments_index_missing": "SG1",
    "v3_segments_index_without_feature": "SG1",
    "v3_segments_n_segments_out_of_range": "SG1",
    "v3_segments_rows_not_adding_up": "SG2",
    "v3_segments_segment_without_chunks": "SG2",
    "v3_required_features_missing": "R1",
    "v3_required_features_twice": "R1",
    "v3_stages_of_version_2": "R3",
    "v3_tile_areas_do_not_meet": "T8",
    "v3_tile_bytes_without_symbols": "T1",
    "v3_tile_final_state": "T7",
    "v3_tile_padding_bit": "T9",
    "v3_tile_position_beyond": "T5",
    "v3_tile_raw_bits_past_words": "T4",
    "v3_tile_state_truncated": "T2",
    "v3_tile_word_past_raw_bits": "T3",
    "v3_value_counts_48_rows": "G3",
    "v3_value_counts_context_moved": "T6",
    "v3_value_counts_high_planes_dropped": "G3",
    "v3_value_counts_not_adding_up": "G3",
}

# Rules checked when a file is opened (§9 "when" = open); all others are checked on first use of
# the structure, i.e. here while decoding the matrix.
OPEN_RULES = {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "F1", "F2", "R1", "R2", "R3", "SG1", "SG2"} | {
    f"M{i}" for i in range(1, 13)}


def read_vector(case: str, name: str = "matrix.sinr") -> bytes:
    return (VECTORS / case / name).read_bytes()


def assert_matches_expected(m, case: str) -> None:
    z = np.load(VECTORS / case / "expected.npz")
    assert tuple(int(v) for v in z["shape"]) == m.shape
    for key in ("genes", "cells", "values"):
        got = getattr(m, key)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, z[key], err_msg=f"{case}: {key}")
    names = json.loads((VECTORS / case / "names.json").read_text())
    assert names == {"gene_ids": m.gene_ids, "gene_names": m.gene_names,
                     "feature_types": m.feature_types, "cell_names": m.cell_names}


# =================================================================================================
# The conformance vectors
# =================================================================================================

def test_manifest_lists_every_vector_and_files_are_intact():
    folders = {p.name for p in VECTORS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(MANIFEST)
    for case, info in MANIFEST.items():
        for fname, meta in info["files"].items():
            data = read_vector(case, fname)
            assert len(data) == meta["bytes"], (case, fname)
            assert hashlib.sha256(data).hexdigest() == meta["sha256"], (case, fname)
    assert set(EXPECTED_RULE) == set(INVALID)


@pytest.mark.parametrize("case", VALID)
def test_valid_vector(case):
    m = rd.decode(read_vector(case))
    assert_matches_expected(m, case)
    # The content checksum of §6.6, recomputed over the expected COO, equals the decoded one.
    z = np.load(VECTORS / case / "expected.npz")
    total = 0
    for g, j, v in zip(z["genes"].tolist(), z["cells"].tolist(), z["values"].tolist()):
        total = (total + rd.content_hash(g, j, v)) % 2**64
    assert total == m.content_checksum


@pytest.mark.parametrize("case", VALID)
def test_valid_vector_passes_strict_writer_checks(case):
    """The vectors also satisfy the writer MUSTs readers need not check (values.counts is the
    decoded histogram; the file-level section table is empty)."""
    rd.decode(read_vector(case), strict=True)


@pytest.mark.parametrize("case", INVALID)
def test_invalid_vector(case):
    data = read_vector(case)
    expected = json.loads(read_vector(case, "expected_error.json"))
    rule = EXPECTED_RULE[case]
    if rule in OPEN_RULES:
        with pytest.raises(rd.SpecViolation) as exc:
            rd.open_sinr(data)
    else:
        # The error is about content seen only when the matrix is read: opening succeeds, and
        # decoding must fail.
        f = rd.open_sinr(data)
        with pytest.raises(rd.SpecViolation) as exc:
            f.decode()
    assert exc.value.kind == CATEGORY[expected["error"]], str(exc.value)
    assert exc.value.check_id == rule, str(exc.value)


def test_huge_gene_count_under_memory_limit():
    """2^31-1 genes: decode under a 2 GiB address-space limit (nothing allocated per gene)."""
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
sys.path.insert(0, {str(REFERENCE_DECODER.parent)!r})
import reference_decoder as rd
m = rd.decode(open({str(VECTORS / 'huge_gene_count' / 'matrix.sinr')!r}, 'rb').read())
assert m.shape == (2**31 - 1, 80) and m.nnz == 878, (m.shape, m.nnz)
print("ok")
"""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_cli():
    ok = subprocess.run([sys.executable, str(REFERENCE_DECODER),
                         str(VECTORS / "bands_and_tiles" / "matrix.sinr")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "shape: 50 x 80" in ok.stdout and "nnz: 878" in ok.stdout
    assert "content checksum" in ok.stdout and "sha256" in ok.stdout
    bad = subprocess.run([sys.executable, str(REFERENCE_DECODER),
                          str(VECTORS / "chunk_checksum" / "matrix.sinr")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "rule W1" in bad.stdout and "INVALID" in bad.stdout
    v3 = subprocess.run([sys.executable, str(REFERENCE_DECODER),
                         str(VECTORS / "v3_bands_and_tiles" / "matrix.sinr")],
                        capture_output=True, text=True, timeout=120)
    assert v3.returncode == 0 and "valid .sinr 3.0" in v3.stdout and "valid .sinr 2.0" in ok.stdout
    sha = [line for line in ok.stdout.splitlines() if line.startswith("sha256")]
    assert sha and sha == [line for line in v3.stdout.splitlines() if line.startswith("sha256")]  # one matrix
    feature = subprocess.run([sys.executable, str(REFERENCE_DECODER),
                              str(VECTORS / "v3_required_feature_unknown" / "matrix.sinr")],
                             capture_output=True, text=True, timeout=120)
    assert feature.returncode == 1 and "(unsupported version), rule R2" in feature.stdout
    segments = subprocess.run([sys.executable, str(REFERENCE_DECODER),
                               str(VECTORS / "v3_segments" / "matrix.sinr")],
                              capture_output=True, text=True, timeout=120)
    assert segments.returncode == 0 and "valid .sinr 3.1" in segments.stdout


def test_decoder_uses_only_allowed_imports():
    src = REFERENCE_DECODER.read_text()
    for forbidden in ("scinrcodec", "numba", "constriction"):
        assert f"import {forbidden}" not in src and f"from {forbidden}" not in src
    this = pathlib.Path(__file__).read_text()
    assert "import " + "scinrcodec" not in this and "from " + "scinrcodec" not in this


# =================================================================================================
# The worked example of spec §13 and the tables of Appendix A
# =================================================================================================

def test_spec_worked_example():
    data = SPEC_EXAMPLE.read_bytes()
    assert len(data) == 1188                                         # §13
    f = rd.open_sinr(data)
    assert f.F == 599                                                # §13.2
    assert {k: (s.start, s.length, s.crc) for k, s in f.sections.items()} == {  # §13.3
        "names.gene_ids": (458, 36, 2203793538), "names.gene_names": (494, 29, 3777265592),
        "genes.order": (523, 21, 2585266282), "genes.baseline": (544, 15, 3229445886),
        "chunks.index": (559, 40, 1711948405)}
    e = f.chunks[0]                                                  # §13.4
    assert (e.offset, e.header_length, e.header_crc32, e.block_length, e.n_cells, e.nnz) == (
        16, 238, 0x0A6ACAED, 442, 5, 5)
    ch = rd.load_chunk(f, e)                                         # §13.5, §13.6
    assert ch.checksum == 7119988461730395764
    assert ch.cells_order.tolist() == [2, 1, 0, 3, 4]
    assert ch.cells_baseline.tolist() == [49, 22, 18, 11, 11]
    assert (ch.band_rows, ch.band_widths, ch.band_crc32) == ([0, 3], [5], [0xCA4C1D9F])
    assert (ch.tiles_nnz, ch.tiles_bytes, ch.tiles_data.hex()) == ([5], [5], "c088070800")
    used = [k for k in range(48) if ch.tables[k] is not None]
    assert used == [2, 4, 5, 12]
    m = f.decode()                                                   # §13.7
    dense = np.zeros(m.shape, dtype=np.int64)
    dense[m.genes, m.cells] = m.values
    assert dense.tolist() == [[0, 3, 0, 0, 1], [0, 0, 0, 0, 0], [2, 0, 0, 1, 0],
                              [0, 0, 21, 0, 0]]
    assert m.gene_ids == ["ENSG01", "ENSG02", "ENSG03", "ENSG04"]
    assert m.gene_names == ["CD3E", "EMPTY", "MS4A1", "LYZ"]
    assert m.feature_types is None
    assert m.cell_names == ["AAAC-1", "AAAG-1", "AACT-1", "AAGT-1", "ACGT-1"]
    hashes = [rd.content_hash(*t) for t in                           # §13.8
              [(0, 1, 3), (0, 4, 1), (2, 0, 2), (2, 3, 1), (3, 2, 21)]]
    assert hashes == [0x903B68E361E6B040, 0x306846C6ECBC73C0, 0x9678F88D73AE2751,
                      0x32C9A20FCB858F27, 0xD8E8FD80CC7B1BFC]
    assert m.content_checksum == 0x62CF47C85A51F674


def test_spec_small_examples():
    # §C.4's two examples.
    counts = np.zeros(48 * 231, dtype=np.uint64)
    counts[0:3] = [3, 3, 1]
    counts[231:235] = [5, 0, 2, 1]
    t = rd.frequency_tables(counts)
    assert t[0].freqs[:4] == [28088, 28086, 9362, 0]
    assert t[1].freqs[:4] == [40960, 0, 16384, 8192]
    assert all(x is None for x in t[2:])
    # §C.1.4's U(3) example: (start, freq) of values 0, 1, 2.
    seen = {}
    for slot in (0, 21845, 21846, 43690, 43691, 65535):
        dec = rd.RansDecoder(struct.pack("<I", (1 << 23) | slot) + bytes(8))
        seen.setdefault(dec.uniform(3), []).append(slot)
    assert seen == {0: [0, 21845], 1: [21846, 43690], 2: [43691, 65535]}
    # §6.3.1 / Appendix A.4: bins.
    assert rd.bin_start_and_bits(17) == (19, 1)
    assert rd.bin_start_and_bits(230) == (15 * 2**27 - 1, 27)
    # Appendix A check values are asserted when the module loads; spot-check a few here.
    assert rd.SINE[1024] == 4096 and rd.EXPM1[415] == 1 and rd.EDGE_E[47] == 132909691312


# =================================================================================================
# Synthetic mutations: a small re-layout helper (container level only: it copies the stored
# bytes of every section, and rebuilds chunk headers, the chunk index, the footer and trailer)
# =================================================================================================

ZC = zstandard.ZstdCompressor(level=3)
ZD = zstandard.ZstdDecompressor()


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


def zarr(values, dtype) -> bytes:
    return ZC.compress(np.asarray(values, dtype=dtype).tobytes())


def unz(raw: bytes, dtype) -> np.ndarray:
    return np.frombuffer(ZD.decompress(raw), dtype=dtype).copy()


def zplanes(values) -> bytes:
    """§3.3 zstd shuffled array of uint64 (version 3's count sections): byte j of item i at j * n + i."""
    items = np.asarray(values, dtype="<u8").reshape(-1)
    return ZC.compress(b"".join(((items >> np.uint64(8 * j)) & np.uint64(0xFF)).astype(np.uint8).tobytes()
                                for j in range(8)))


def unplanes(raw: bytes) -> np.ndarray:
    """The uint64 items of a zstd shuffled array (§3.3)."""
    planes = np.frombuffer(ZD.decompress(raw), dtype=np.uint8).reshape(8, -1).astype(np.uint64)
    return sum(planes[j] << np.uint64(8 * j) for j in range(8))


class ChunkLayout:
    def __init__(self, header, sections, n_cells, nnz):
        self.header = header          # the header map without "sections"
        self.sections = sections      # name -> stored bytes, in table order
        self.n_cells = n_cells        # the chunk index's values
        self.nnz = nnz
        self.pack = msgpack.packb     # how the header map is serialised

    def tiles(self) -> tuple[list[bytes], list[int]]:
        """The tile streams, and TS (the first tile of each band, then NT)."""
        rows = unz(self.sections["bands.rows"], "<u4").tolist()
        widths = unz(self.sections["bands.widths"], "<u4").tolist()
        ts = [0]
        for w in widths:
            ts.append(ts[-1] + -(-self.n_cells // w))
        sizes = unz(self.sections["tiles.bytes"], "<u4").tolist()
        data, out, pos = self.sections["tiles.data"], [], 0
        for s in sizes:
            out.append(data[pos:pos + s])
            pos += s
        assert len(rows) == len(widths) + 1
        return out, ts

    def set_tiles(self, streams: list[bytes], ts: list[int]) -> None:
        """Store new tile streams, with tiles.bytes and bands.crc32 that agree with them."""
        self.sections["tiles.data"] = b"".join(streams)
        self.sections["tiles.bytes"] = zarr([len(s) for s in streams], "<u4")
        self.sections["bands.crc32"] = zarr(
            [crc(b"".join(streams[ts[b]:ts[b + 1]])) for b in range(len(ts) - 1)], "<u4")


class Layout:
    def __init__(self, data: bytes):
        major, minor, F, Z, fm = rd.open_container(data)
        self.major = major
        self.minor = minor
        self.footer = fm
        self.pack_footer = msgpack.packb
        mm = fm["matrices"][0]
        self.matrix_sections = {name: data[off:off + ln] for name, off, ln, _ in mm["sections"]}
        index = unz(self.matrix_sections["chunks.index"], "<u8").reshape(-1, 6).tolist()
        self.chunks = []
        for off, hl, _, _, n, nnz in index:
            h = msgpack.unpackb(ZD.decompress(data[off:off + hl]), raw=False)
            base = off + hl
            secs = {name: data[base + o:base + o + ln] for name, o, ln, _ in h.pop("sections")}
            self.chunks.append(ChunkLayout(h, secs, n, nnz))

    def build(self, *, gap: bytes = b"", reverse_chunks: bool = False,
              matrix_sections_first: bool = False, crc_override=None,
              footer_hook=None) -> bytes:
        """Lay the file out again.  `crc_override[(chunk, name)]` / `[("matrix", name)]` forces
        a section table's CRC; `footer_hook(file_map)` edits the footer just before packing."""
        crc_override = crc_override or {}
        preamble = b"\x89SINR\r\n\x1a" + struct.pack("<HHI", self.major, self.minor, 0)
        out = bytearray(preamble)
        placed: dict[str, tuple[int, int]] = {}

        def put_matrix_sections(names):
            for name in names:
                raw = self.matrix_sections[name]
                placed[name] = (len(out), len(raw))
                out.extend(raw + gap)

        others = [n for n in self.matrix_sections if n != "chunks.index"]
        if matrix_sections_first:
            put_matrix_sections(others)
        index = [None] * len(self.chunks)
        order = range(len(self.chunks))
        for i in (reversed(order) if reverse_chunks else order):
            ch = self.chunks[i]
            table, body = [], bytearray()
            for name, raw in ch.sections.items():
                table.append([name, len(body), len(raw), crc_override.get((i, name), crc(raw))])
                body += raw
            hb = ZC.compress(ch.pack(dict(ch.header, sections=table)))
            index[i] = [len(out), len(hb), crc(hb), len(hb) + len(body), ch.n_cells, ch.nnz]
            out.extend(hb + body + gap)
        self.matrix_sections["chunks.index"] = zarr(np.array(index, dtype="<u8").reshape(-1),
                                                    "<u8")
        if not matrix_sections_first:
            put_matrix_sections(others)
        put_matrix_sections(["chunks.index"])
        fm = copy.deepcopy(self.footer)
        fm["matrices"][0]["sections"] = [
            [name, placed[name][0], placed[name][1],
             crc_override.get(("matrix", name), crc(self.matrix_sections[name]))]
            for name in self.matrix_sections]
        if footer_hook:
            footer_hook(fm)
        footer = ZC.compress(self.pack_footer(fm))
        out.extend(footer)
        out.extend(struct.pack("<QII", len(footer), crc(preamble + footer), 0) + b"SINR-END")
        return bytes(out)


def rule_of(data: bytes, strict: bool = False) -> str | None:
    """The rule the reference decoder reports, or None if it accepts the file."""
    try:
        rd.decode(data, strict=strict)
    except rd.SpecViolation as e:
        return e.check_id
    return None


def raw_frame(content: bytes, *, single_segment=True, fcs_flag=None, dict_id=None,
              dict_id_size=1, window_log=10) -> bytes:
    """A Zstandard frame written by hand (RFC 8878): one raw block."""
    if fcs_flag is None:
        fcs_flag = 2 if not single_segment or len(content) > 255 else 0
    did_flag = 0 if dict_id is None else {1: 1, 2: 2, 4: 3}[dict_id_size]
    fhd = (fcs_flag << 6) | (int(single_segment) << 5) | did_flag
    out = bytearray(struct.pack("<I", 0xFD2FB528)) + bytes([fhd])
    if not single_segment:
        out.append((window_log - 10) << 3)
    if dict_id is not None:
        out += dict_id.to_bytes(dict_id_size, "little")
    fcs_size = [1 if single_segment else 0, 2, 4, 8][fcs_flag]
    if fcs_size:
        out += (len(content) - (256 if fcs_size == 2 else 0)).to_bytes(fcs_size, "little")
    out += ((len(content) << 3) | 1).to_bytes(3, "little")  # last block, raw
    return bytes(out + content)


BASE = "bands_and_tiles"


@pytest.mark.parametrize("case", ["bands_and_tiles", "chunks_many", "siren_force_log",
                                  "inr_only_minmax", "sparse_wide_gaps", "zeros_3x4"])
def test_relayout_is_transparent(case):
    """Body layout is free (§2.3): chunks in reverse order, matrix sections first, and
    unreferenced bytes between structures decode to the same matrix."""
    L = Layout(read_vector(case))
    assert_matches_expected(rd.decode(L.build()), case)
    data = L.build(gap=b"\xAA" * 7, reverse_chunks=True, matrix_sections_first=True)
    assert_matches_expected(rd.decode(data), case)


def test_unknown_sections_depend_on_minor_version():
    """§11.2: an unknown section is an error in a file of a minor version the reader implements
    (2.0, 2.1) and ignored in a file of a later one (2.2)."""
    L = Layout(read_vector(BASE))
    L.matrix_sections["x.future"] = b"anything"
    assert rule_of(L.build()) == "M10"
    L.minor = 1
    assert rule_of(L.build()) == "M10"
    L.minor = 2
    assert rule_of(L.build()) is None
    L = Layout(read_vector(BASE))
    L.chunks[1].sections["x.future"] = b""
    assert rule_of(L.build()) == "K5"
    L.minor = 7
    assert rule_of(L.build()) is None


@pytest.mark.parametrize("name", ["cells.barcodes", "cells.order_planes"])
def test_a_version_3_chunk_section_in_a_later_version_2_file_is_unknown(name):
    """Version 3.2's sections (§5.6, §5.7) are no sections of version 2: in a 2.0 file one is K5,
    in a 2.2 file one is ignored as any unknown section (§11.2), as the Python reader and the core
    ignore it, not refused under CB1 or CP1, rules of version 3."""
    L = Layout(read_vector(BASE))
    L.chunks[0].sections[name] = b"anything"
    assert rule_of(L.build()) == "K5"
    L.minor = 2
    assert_matches_expected(rd.decode(L.build()), BASE)


def test_footer_key_types():
    L = Layout(read_vector(BASE))
    # The informative keys are ignored whatever their type (§3.5).
    assert rule_of(L.build(footer_hook=lambda fm: fm.update(writer=5))) is None
    assert rule_of(L.build(footer_hook=lambda fm: fm["matrices"][0].update(stats=[1]))) is None
    assert rule_of(L.build(footer_hook=lambda fm: fm["matrices"][0].update(options="fast"))) is None
    assert rule_of(L.build(footer_hook=lambda fm: fm.pop("sections"))) == "§4"
    assert rule_of(L.build(footer_hook=lambda fm: fm["matrices"][0].update(
        n_chunks=True))) == "M7"
    # A non-empty file-level section table is a writer error that readers ignore (§4).
    hook = lambda fm: fm.update(sections=[["x", 16, 0, 0]])  # noqa: E731
    assert rule_of(L.build(footer_hook=hook)) is None
    assert rule_of(L.build(footer_hook=hook), strict=True) == "§4 (strict)"


def test_messagepack_rules():
    """§3.5: duplicate keys, non-string keys and ext types are rejected wherever they are."""
    L = Layout(read_vector(BASE))
    L.chunks[0].pack = lambda h: msgpack.Packer().pack_map_pairs(
        list(h.items()) + [("nnz", h["nnz"])])
    assert rule_of(L.build()) == "K2"
    L = Layout(read_vector(BASE))
    assert rule_of(L.build(footer_hook=lambda fm: fm["matrices"][0].update(
        options={1: 2}))) == "C7"
    assert rule_of(L.build(footer_hook=lambda fm: fm.update(
        x_future=msgpack.ExtType(5, b"abc")))) == "C7"
    assert rule_of(L.build(footer_hook=lambda fm: fm["matrices"][0].update(
        options=msgpack.ExtType(1, b"")))) == "C7"
    # Unknown keys (with any well-formed value) are ignored (§11.2), nested up to depth 64.
    assert rule_of(L.build(footer_hook=lambda fm: fm.update(x_future={"a": [1.5, None]}))) is None
    deep = 1
    for _ in range(63):
        deep = [deep]
    assert rule_of(L.build(footer_hook=lambda fm: fm.update(x_future=deep))) is None  # its 1 at depth 64
    assert rule_of(L.build(footer_hook=lambda fm: fm.update(x_future=[deep]))) == "C7"


def test_zstd_frame_rules():
    """§3.3, on genes.baseline: frame header variants a reader must accept or reject."""
    L = Layout(read_vector(BASE))
    content = ZD.decompress(L.matrix_sections["genes.baseline"])

    def with_baseline(frame: bytes) -> str | None:
        L.matrix_sections["genes.baseline"] = frame
        return rule_of(L.build())

    assert with_baseline(raw_frame(content)) is None
    assert with_baseline(raw_frame(content, single_segment=False, fcs_flag=2)) is None
    assert with_baseline(raw_frame(content, dict_id=0)) is None          # "absent or 0"
    assert with_baseline(raw_frame(content, dict_id=7)) == "M13"         # rule 3
    assert with_baseline(raw_frame(content, single_segment=False, fcs_flag=0)) == "M13"  # rule 2
    assert with_baseline(raw_frame(content, single_segment=False, fcs_flag=2,
                                   window_log=28)) == "M13"              # Window_Size > 2^27
    skippable = struct.pack("<II", 0x184D2A50, 0)
    assert with_baseline(skippable + raw_frame(content)) == "M13"        # rule 1
    assert with_baseline(raw_frame(content) + raw_frame(b"")) == "M13"   # a second frame
    assert with_baseline(raw_frame(content + b"\0\0")) == "M13"          # wrong size
    checked = zstandard.ZstdCompressor(write_checksum=True).compress(content)
    assert with_baseline(checked) is None                                # RFC 8878 checksum
    assert with_baseline(checked[:-1] + bytes([checked[-1] ^ 1])) == "M13"


def test_names_rules():
    L = Layout(read_vector("lossless_default"))
    ids = ZD.decompress(L.matrix_sections["names.gene_ids"]).decode().split("\n")
    original = L.matrix_sections["names.gene_ids"]
    for bad in ("a\rb", "x" * 4097):
        L.matrix_sections["names.gene_ids"] = ZC.compress("\n".join([bad] + ids[1:]).encode())
        assert rule_of(L.build()) == "M14"
    L.matrix_sections["names.gene_ids"] = ZC.compress("\n".join(["x" * 4096] + ids[1:]).encode())
    assert rule_of(L.build()) is None
    L.matrix_sections["names.gene_ids"] = original
    cells = ZD.decompress(L.chunks[0].sections["cells.names"]).decode().split("\n")
    L.chunks[0].sections["cells.names"] = ZC.compress("\n".join(["c\r"] + cells[1:]).encode())
    assert rule_of(L.build()) == "K6"


def test_chunk_header_rules():
    L = Layout(read_vector(BASE))
    L.chunks[0].header["checksum"] = -1
    assert rule_of(L.build()) == "K4"
    L = Layout(read_vector(BASE))
    ch = L.chunks[0]
    # K9: every row its own band, every band one column wide: far more tiles than the bound.
    n_rows = ch.header["n_rows"]
    ch.header["n_bands"] = n_rows
    ch.sections["bands.rows"] = zarr(range(n_rows + 1), "<u4")
    ch.sections["bands.widths"] = zarr([1] * n_rows, "<u4")
    assert rule_of(L.build()) == "K9"


def test_value_counts_rules():
    L = Layout(read_vector(BASE))
    ch = L.chunks[0]
    counts = unz(ch.sections["values.counts"], "<u8")
    i, j = np.flatnonzero(counts)[:2]
    wrapped = counts.copy()  # the uint64 sum is unchanged modulo 2^64, one item is >= 2^40
    wrapped[i] = int(counts[i]) + 2**40
    wrapped[j] = (int(counts[j]) - 2**40) % 2**64
    ch.sections["values.counts"] = zarr(wrapped, "<u8")
    assert rule_of(L.build()) == "K13"


def test_value_counts_not_the_histogram_is_accepted():
    """§C.4: a writer MUST store its chunk's histogram, but readers need not check it.  In the
    worked example every used context has a single bin (frequency 2^16 whatever its count), so
    moving counts between those contexts changes no table: the file decodes to the same matrix
    and a conforming reader accepts it.  Only the optional strict check catches it."""
    L = Layout(SPEC_EXAMPLE.read_bytes())
    counts = unz(L.chunks[0].sections["values.counts"], "<u8")
    assert counts[2 * 231 + 0] == 2 and counts[12 * 231 + 17] == 1
    counts[2 * 231 + 0], counts[12 * 231 + 17] = 1, 2
    L.chunks[0].sections["values.counts"] = zarr(counts, "<u8")
    data = L.build()
    m = rd.decode(data)
    assert m.values.tolist() == [3, 1, 2, 1, 21]
    assert rule_of(data, strict=True) == "§C.4 (strict)"


def test_tile_stream_rules():
    # T1: lossless_default has one tile without nonzeros; give it a byte.
    L = Layout(read_vector("lossless_default"))
    for ch in L.chunks:
        streams, ts = ch.tiles()
        nnz = unz(ch.sections["tiles.nnz"], "<u4").tolist()
        if 0 in nnz:
            streams[nnz.index(0)] = b"\x00"
            ch.set_tiles(streams, ts)
            break
    else:
        pytest.fail("no empty tile")
    assert rule_of(L.build()) == "T1"

    def mutate(fn) -> str | None:
        L = Layout(read_vector(BASE))
        streams, ts = L.chunks[0].tiles()
        streams[0] = fn(streams[0])
        L.chunks[0].set_tiles(streams, ts)
        return rule_of(L.build())

    assert mutate(lambda s: s) is None
    assert mutate(lambda s: b"\0\0\0\0" + s[4:]) == "T2"                 # state < 2^23
    assert mutate(lambda s: b"\xff\xff\xff\xff" + s[4:]) == "T2"         # state >= 2^31
    assert mutate(lambda s: s[:3]) == "T2"                               # < 4 bytes
    assert mutate(lambda s: s + b"\0") == "T6"                           # a byte not consumed
    assert mutate(lambda s: s[:-1]) in {"T3", "T4", "T5", "T6", "W1"}


def test_tiles_data_crcs():
    """§5.4.6: a reader may verify the band CRCs or the tiles.data section CRC; this decoder
    verifies both, so either mismatch is rejected (K15)."""
    L = Layout(read_vector(BASE))
    good = L.chunks[0].sections["tiles.data"]
    assert rule_of(L.build(crc_override={(0, "tiles.data"): crc(good) ^ 1})) == "K15"
    bands = unz(L.chunks[0].sections["bands.crc32"], "<u4")
    bands[0] ^= 1
    L.chunks[0].sections["bands.crc32"] = zarr(bands, "<u4")
    assert rule_of(L.build()) == "K15"


def test_siren_map_rules():
    L = Layout(read_vector("siren_force_none"))
    ch = L.chunks[0]
    meta = msgpack.unpackb(ch.sections["siren.meta"], raw=False)
    assert meta["bands"][0][1]["normalisation"] == ["none", 0.0, 1.0]
    # float 32 MAY be accepted (§3.5); 0.0 and 1.0 are exact in it.
    ch.sections["siren.meta"] = msgpack.packb(meta, use_single_float=True)
    assert_matches_expected(rd.decode(L.build()), "siren_force_none")

    def with_meta(edit) -> str | None:
        m = copy.deepcopy(meta)
        edit(m["bands"][0][1])
        ch.sections["siren.meta"] = msgpack.packb(m)
        return rule_of(L.build())

    assert with_meta(lambda s: s.update(x_future=1)) is None             # unknown key
    assert with_meta(lambda s: s.update(normalisation=["none", 0, 1.0])) == "K14"  # int
    assert with_meta(lambda s: s.update(normalisation=["none", 0.5, 1.0])) == "K14"
    assert with_meta(lambda s: s.update(normalisation=["none", 0.0, 2.0])) == "K14"
    assert with_meta(lambda s: s.pop("bits")) == "K14"
    assert with_meta(lambda s: s["layers"][0].append(0)) == "K14"        # layer entries exact


def test_several_matrices():
    """§4: a reader opens the requested matrix (default the first) and checks every entry's
    name; it need not check the other matrices."""
    L = Layout(read_vector(BASE))

    def hook(fm):
        y = copy.deepcopy(fm["matrices"][0])
        y["name"] = "Y"
        broken = {"name": "Z", "shape": "not a shape"}
        fm["matrices"] += [y, broken]

    data = L.build(footer_hook=hook)
    assert_matches_expected(rd.decode(data), BASE)
    assert_matches_expected(rd.decode(data, "Y"), BASE)
    with pytest.raises(rd.SpecViolation) as exc:
        rd.decode(data, "Z")
    assert exc.value.check_id == "M2"
    with pytest.raises(rd.SpecViolation) as exc:
        rd.decode(data, "W")
    assert exc.value.check_id == "F2"


# =================================================================================================
# Version 3 files made from the vectors by the spec alone (§5.1.1, §5.2, §6, §7.2)
# =================================================================================================

t3 = rd.tiles3
STAGES_3 = {"golomb-rans-positions": "gap-bin-positions", "context-rans-values": "fine-context-values"}


def coded_integer(v: int, mode: str, E: int) -> int:
    """A u that §6.3.3 dequantises to the decoded value v (the smallest, where v is clamped)."""
    return v - 1 if mode == "lossless" else -(-(v - 1) // (2 * E + 1))


def version3_contexts(ch, G, b: int, rows: np.ndarray, cols: np.ndarray) -> list[int]:
    """§6.5, §7.2: the contexts of 1/8 nat of nonzeros at these rows and columns of band b."""
    rb, hb = ch.band_rows[b], ch.band_rows[b + 1] - ch.band_rows[b]
    if b in ch.sirens:
        s = ch.sirens[b]
        return [t3.siren_context(y, s.kind, s.offset, s.scale)
                for y in rd.siren_outputs(s, rows - rb, cols, hb, ch.n)]
    return [t3.baseline_context(int(G[r]), int(ch.cells_baseline[c])) for r, c in zip(rows, cols)]


def version3(data: bytes) -> Layout:
    """A version 2 file coded again as version 3 from the spec alone: the same matrix, names,
    geometry and checksums, its stage ids and `required_features = []` (§5.1.1, §5.2), and every
    tile's nonzeros coded by spec/tiles3.py (§6) under each chunk's new `gaps.counts` and 96-row
    `values.counts` (§6.4), with contexts of 1/8 nat (§6.5, §7.2)."""
    f = rd.open_sinr(data)
    _, G = rd.load_gene_order(f)
    inr_only = f.mode == "inr-only"
    L = Layout(data)
    L.major, L.minor = 3, 0
    mm = L.footer["matrices"][0]
    mm["required_features"] = []
    for stage in mm["stages"]:
        stage["id"] = STAGES_3.get(stage["id"], stage["id"])
    for e, chunk in zip(f.chunks, L.chunks):
        ch = rd.load_chunk(f, e)
        tiles = []
        for d in decoded_tiles(f, ch, G):
            u = [] if inr_only else [coded_integer(v, f.mode, f.max_error) for v in d.values.tolist()]
            contexts = [] if inr_only else version3_contexts(ch, G, d.band, d.rows, d.cols)
            tiles.append(t3.TileInput(d.h * d.w, d.positions, u, contexts))
        gaps, values = t3.chunk_counts(tiles, inr_only)
        gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
        value_tables = None if inr_only else t3.tables_from_counts(values, t3.N_CONTEXTS)
        streams = [t3.encode_tile(t.n_t, t.positions, t.u, t.contexts, gap_tables, value_tables).stream
                   for t in tiles]
        sections = {}
        for name, raw in chunk.sections.items():
            if name in ("values.counts", "siren.meta", "tiles.data") and "gaps.counts" not in sections:
                sections["gaps.counts"] = zplanes(gaps)
                if values is not None:
                    sections["values.counts"] = zplanes(values)
            if name != "values.counts":
                sections[name] = raw
        chunk.sections = sections
        chunk.set_tiles(streams, chunk.tiles()[1])
    return L


# The valid vectors of format 2 (2^31 - 1 genes aside: the format-2 test covers them)
VERSION3_CASES = [c for c in VALID if read_vector(c)[8:10] == b"\x02\x00" and c != "huge_gene_count"]


@pytest.mark.parametrize("case", VERSION3_CASES)
def test_version3_of_every_valid_vector(case):
    """Every valid vector, coded as version 3, decodes to its expected matrix and names, and passes
    the strict writer checks (both count sections are the decoded histograms)."""
    data = version3(read_vector(case)).build()
    assert data[8:12] == struct.pack("<HH", 3, 0)
    m = rd.decode(data, strict=True)
    assert m.version == "3.0"
    assert_matches_expected(m, case)


def version3_rule(L: Layout, **build) -> str | None:
    return rule_of(L.build(**build))


def test_version3_required_features_and_stages():
    """R1, R2 (§5.1.1: before every matrix rule but M1, an "unsupported version" naming the
    feature and the file's version), R3, and version 3's stage ids in a version 2 file (M5)."""
    L = version3(read_vector(BASE))
    assert version3_rule(L) is None

    def matrix(edit) -> str | None:
        return version3_rule(L, footer_hook=lambda fm: edit(fm["matrices"][0]))

    assert matrix(lambda m: m.pop("required_features")) == "R1"
    for bad in ("latent", ["a", "a"], [1], None):
        assert matrix(lambda m: m.update(required_features=bad)) == "R1"
    L.minor = 2
    data = L.build(footer_hook=lambda fm: fm["matrices"][0].update(
        required_features=["latent-predictor", "segments"], shape="not a shape", stages=[]))
    with pytest.raises(rd.SpecViolation) as exc:
        rd.open_sinr(data)
    assert (exc.value.check_id, exc.value.kind) == ("R2", "version")
    assert "'latent-predictor'" in exc.value.message and "format 3.2" in exc.value.message
    L.minor = 0
    assert matrix(lambda m: m["stages"][2].update(id="golomb-rans-positions")) == "R3"
    assert matrix(lambda m: m["stages"][4].update(id="context-rans-values")) == "R3"
    assert matrix(lambda m: m.update(stages=m["stages"][:4] + m["stages"][5:])) == "R3"
    # version 2: the stage ids of version 3 are an error, required_features an unknown key
    L2 = Layout(read_vector(BASE))
    assert rule_of(L2.build(footer_hook=lambda fm: fm["matrices"][0]["stages"][2].update(
        id="gap-bin-positions"))) == "M5"
    assert rule_of(L2.build(footer_hook=lambda fm: fm["matrices"][0].update(
        required_features=["anything"]))) is None


def test_version3_count_sections():
    """K5 (gaps.counts present exactly in version 3), G1, G2 (by density class, before any tile),
    G3 (values.counts: presence by mode, 96 rows, each item < 2^40, sum nnz); both sections are
    zstd shuffled arrays (§3.3) of exactly their size."""
    data = read_vector(BASE)

    def chunk0(edit, base=None) -> str | None:
        L = version3(base or data)
        edit(L.chunks[0].sections)
        return rule_of(L.build())

    gaps = unplanes(version3(data).chunks[0].sections["gaps.counts"]).reshape(32, 231)
    assert chunk0(lambda s: s.pop("gaps.counts")) == "K5"
    L2 = Layout(data)
    L2.chunks[0].sections["gaps.counts"] = zarr(gaps.reshape(-1), "<u8")
    assert rule_of(L2.build()) == "K5"
    assert chunk0(lambda s: s.update({"gaps.counts": zplanes(gaps[:31])})) == "G1"
    # §3.3: byte planes one byte short (G1); the right items as a zstd array instead of byte planes:
    # the right length, but read as planes other items, whose class sums are wrong (G2)
    assert chunk0(lambda s: s.update({"gaps.counts": ZC.compress(ZD.decompress(zplanes(gaps))[:-1])})) == "G1"
    assert chunk0(lambda s: s.update({"gaps.counts": zarr(gaps.reshape(-1), "<u8")})) == "G2"
    i, j = np.argwhere(gaps > 0)[:2]
    wrapped = gaps.copy()  # row sums unchanged modulo 2^64, one item >= 2^40
    wrapped[tuple(i)] = int(gaps[tuple(i)]) + 2**40
    wrapped[tuple(j)] = (int(gaps[tuple(j)]) - 2**40) % 2**64
    assert chunk0(lambda s: s.update({"gaps.counts": zplanes(wrapped)})) == "G1"
    used = np.flatnonzero(gaps.sum(axis=1))
    moved = gaps.copy()  # one count moved to another class: the total holds, a class sum does not
    moved[used[0], np.flatnonzero(moved[used[0]])[0]] -= 1
    moved[(used[0] + 1) % 32, 0] += 1
    assert chunk0(lambda s: s.update({"gaps.counts": zplanes(moved)})) == "G2"
    values = unplanes(version3(data).chunks[0].sections["values.counts"]).reshape(96, 231)
    assert chunk0(lambda s: s.pop("values.counts")) == "G3"
    assert chunk0(lambda s: s.update({"values.counts": zplanes(values[:48])})) == "G3"
    low_planes = ZC.compress(ZD.decompress(zplanes(values))[: 4 * 96 * 231])  # the high planes (all 0) dropped
    assert chunk0(lambda s: s.update({"values.counts": low_planes})) == "G3"
    more = values.copy()
    more[np.argwhere(values > 0)[0][0], 0] += 1
    assert chunk0(lambda s: s.update({"values.counts": zplanes(more)})) == "G3"
    inr = read_vector("inr_only_minmax")
    assert chunk0(lambda s: s.update({"values.counts": zplanes(values)}), inr) == "G3"
    # T6: the busiest context's row moved to an unused context (G3 holds)
    busy, free = int(np.argmax(values.sum(axis=1))), int(np.flatnonzero(values.sum(axis=1) == 0)[-1])
    moved = values.copy()
    moved[free], moved[busy] = values[busy], 0
    assert chunk0(lambda s: s.update({"values.counts": zplanes(moved)})) == "T6"


def test_version3_tile_rules():
    """§9.4's T1-T9 as the reference decoder reports them for damaged tiles of a version 3 file:
    every prefix, flipped bit and inserted byte of each tile of a chunk is rejected by a tile rule
    (or decodes to other nonzeros, which the content checksum W1 catches for the whole chunk), and
    every rule but T1 and T6 (tested above and in test_version3_count_sections) occurs."""
    L = version3(read_vector("lossless_default"))
    streams, ts = L.chunks[0].tiles()
    empty = unz(L.chunks[0].sections["tiles.nnz"], "<u4").tolist().index(0)
    streams[empty] = b"\x00"
    L.chunks[0].set_tiles(streams, ts)
    assert version3_rule(L) == "T1"

    f = rd.open_sinr(version3(read_vector(BASE)).build())
    _, G = rd.load_gene_order(f)
    ch = rd.load_chunk(f, f.chunks[0])
    seen = set()
    for t in range(len(ch.tiles_nnz)):
        b = max(i for i in range(ch.n_bands) if ch.band_first_tile[i] <= t)
        j = t - ch.band_first_tile[b]
        good = ch.tiles_data[ch.tile_offsets[t]:ch.tile_offsets[t + 1]]
        for stream in damaged(good):
            tiles = [ch.tiles_data[ch.tile_offsets[s]:ch.tile_offsets[s + 1]] for s in range(len(ch.tiles_nnz))]
            tiles[t] = stream
            bad = copy.copy(ch)
            bad.tiles_data = b"".join(tiles)
            bad.tile_offsets = [0] + np.cumsum([len(x) for x in tiles]).tolist()
            try:
                rd.decode_tile(f, bad, G, b, j)
                seen.add("ok")
            except rd.SpecViolation as err:
                assert err.check_id in {f"T{i}" for i in range(2, 10)} and err.kind == "corrupt", err
                seen.add(err.check_id)
    assert {"T2", "T3", "T4", "T5", "T7", "T8", "T9"} <= seen, seen


def test_version3_major_versions():
    """C2: majors 2 and 3 are read, 1 and 4 refused as unsupported versions (§2.4 step 3)."""
    L = version3(read_vector(BASE))
    for major, rule in ((4, "C2"), (1, "C2"), (3, None)):
        L.major = major
        assert version3_rule(L) == rule


# =================================================================================================
# Segments (§5.5, version 3.1) made from the vectors by the spec alone
# =================================================================================================

def segmented(data: bytes) -> Layout:
    """A version 2 vector coded as version 3 (version3 above) and cut into one segment per chunk
    (§5.5): segment i holds the first n_rows of chunk i's rows of the file's gene tables, copied, so
    that the same genes are stored in several segments, a chunk without nonzeros has a segment of 0
    rows, and every chunk's rows are read through its segment's first row R_s.  The matrix,
    checksums and contexts are unchanged."""
    L = version3(data)
    L.minor = 1
    order = unz(L.matrix_sections["genes.order"], "<u4")
    baseline = unz(L.matrix_sections["genes.baseline"], "<i2")
    rows = [ch.header["n_rows"] for ch in L.chunks]
    L.matrix_sections["genes.order"] = zarr(np.concatenate([order[:r] for r in rows]), "<u4")
    L.matrix_sections["genes.baseline"] = zarr(np.concatenate([baseline[:r] for r in rows]), "<i2")
    L.matrix_sections["segments.index"] = zarr([[1, r] for r in rows], "<u8")
    L.footer["matrices"][0].update(required_features=["segments"], n_segments=len(rows),
                                   n_stored_genes=sum(rows))
    return L


@pytest.mark.parametrize("case", ["bands_and_tiles", "chunks_many", "siren_force_log", "max_error_2"])
def test_segmented_of_valid_vectors(case):
    """One segment per chunk decodes to the vector's matrix and names, with the strict checks."""
    L = segmented(read_vector(case))
    f = rd.open_sinr(L.build())
    assert f.segmented and [s.first_row for s in f.segments] == np.cumsum(
        [0] + [ch.header["n_rows"] for ch in L.chunks[:-1]]).tolist()
    m = f.decode(strict=True)
    assert m.version == "3.1"
    assert_matches_expected(m, case)


def test_segments_rules():
    """SG1-SG4 on a segmented file made from the spec alone, for what the vectors leave out."""
    L = segmented(read_vector("chunks_many"))
    assert 0 in [ch.header["n_rows"] for ch in L.chunks]  # a segment of 0 rows is valid
    assert version3_rule(L) is None

    def matrix(edit) -> str | None:
        return version3_rule(L, footer_hook=lambda fm: edit(fm["matrices"][0]))

    for bad in (0, True, 1.0, None, len(L.chunks) + 1):  # SG1: n_segments an int 1 .. n_chunks
        assert matrix(lambda m: m.update(n_segments=bad)) == "SG1"
    assert matrix(lambda m: m.pop("n_segments")) == "SG1"
    n_genes = L.footer["matrices"][0]["shape"][0]
    assert matrix(lambda m: m.update(n_stored_genes=len(L.chunks) * n_genes + 1)) == "SG1"
    # without the feature (n_stored_genes then <= n_genes, M6): no n_segments key, no segments.index
    assert matrix(lambda m: m.update(required_features=[])) == "M6"
    assert matrix(lambda m: m.update(required_features=[], n_stored_genes=3)) == "SG1"
    assert matrix(lambda m: m.update(required_features=[], n_stored_genes=3) or m.pop("n_segments")) == "SG1"
    plain = version3(read_vector("chunks_many"))
    assert version3_rule(plain, footer_hook=lambda fm: fm["matrices"][0].update(n_segments=5)) == "SG1"
    # a version 2 file knows no segments: the key is ignored (§11.2), the section an unknown one (M10)
    v2 = Layout(read_vector("chunks_many"))
    assert rule_of(v2.build(footer_hook=lambda fm: fm["matrices"][0].update(n_segments=5))) is None
    v2.matrix_sections["segments.index"] = zarr(np.array([len(v2.chunks), 3]), "<u8")
    assert rule_of(v2.build()) == "M10"
    # SG2: the size of segments.index, S_s <= n_genes
    index = unz(L.matrix_sections["segments.index"], "<u8").reshape(-1, 2)
    L.matrix_sections["segments.index"] = zarr(index[:-1], "<u8")
    assert version3_rule(L) == "SG2"
    big = index.copy()
    big[0, 1] = n_genes + 1  # and the rows still add up to S, modulo 2^64
    big[1, 1] = (int(index[0, 1]) + int(index[1, 1]) - n_genes - 1) % 2**64
    L.matrix_sections["segments.index"] = zarr(big, "<u8")
    assert version3_rule(L) == "SG2"
    L.matrix_sections["segments.index"] = zarr(index, "<u8")
    # SG3: genes.order values < n_genes (M13), none twice within a segment (the same gene in two
    # segments is the rule's point and valid)
    order = unz(L.matrix_sections["genes.order"], "<u4")
    bad = order.copy()
    bad[0] = n_genes
    L.matrix_sections["genes.order"] = zarr(bad, "<u4")
    assert version3_rule(L) == "M13"
    L.matrix_sections["genes.order"] = zarr(order, "<u4")
    assert len(set(order.tolist())) < len(order)
    # SG4 is checked before the band rows: the header's n_rows alone one above its segment's
    L.chunks[1].header["n_rows"] += 1
    assert version3_rule(L) == "SG4"


def test_unknown_sections_of_version_3():
    """§11.2 for a reader of 3.2: an unknown section is an error in a 3.0, 3.1 or 3.2 file and
    ignored in a 3.3 file; segments.index is known."""
    L = version3(read_vector(BASE))
    L.matrix_sections["x.future"] = b"anything"
    for minor, rule in ((0, "M10"), (1, "M10"), (2, "M10"), (3, None)):
        L.minor = minor
        assert version3_rule(L) == rule
