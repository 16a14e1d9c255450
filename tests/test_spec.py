"""The worked example of spec/sinr-format.md §13.1-§13.9 (a version 2.0 file), byte for byte, and
the spec's own algorithms.

Every number §13 quotes is checked here against tests/data/spec_example.sinr, through public
interfaces only: `scinrcodec.open`, and struct, zlib, zstandard and msgpack to parse the bytes.
The tile stream is decoded by the reference decoder's transcription of Appendix C (spec/reference_decoder.py,
not the library), so the spec's algorithms are tested as well as the file. If the encoder's output changes, regenerate the
example with tests/make_spec_example.py and update §13 and the constants below together.
"""
from __future__ import annotations

import importlib.util
import math
import struct
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard

import scinrcodec as sinr
from conftest import reference_decoder

HERE = Path(__file__).parent
EXAMPLE = HERE / "data" / "spec_example.sinr"
SPEC = HERE.parent / "spec" / "sinr-format.md"
rd = reference_decoder()

EXPECTED = np.array([[0, 3, 0, 0, 1], [0, 0, 0, 0, 0], [2, 0, 0, 1, 0], [0, 0, 21, 0, 0]])
GENE_IDS = ["ENSG01", "ENSG02", "ENSG03", "ENSG04"]
GENE_NAMES = ["CD3E", "EMPTY", "MS4A1", "LYZ"]
CELL_NAMES = ["AAAC-1", "AAAG-1", "AACT-1", "AAGT-1", "ACGT-1"]

SIZE = 1188
PREAMBLE = "89 53 49 4E 52 0D 0A 1A | 02 00 | 00 00 | 00 00 00 00"
TRAILER = "35 02 00 00 00 00 00 00 | AD 03 70 0C | 00 00 00 00 | 53 49 4E 52 2D 45 4E 44"
FOOTER_AT, FOOTER_LENGTH, FOOTER_RAW, FOOTER_CRC = 599, 565, 801, 0x0C7003AD
MATRIX_SECTIONS = [["names.gene_ids", 458, 36, 0x835B3882], ["names.gene_names", 494, 29, 0xE1247FB8],
                   ["genes.order", 523, 21, 0x9A18086A], ["genes.baseline", 544, 15, 0xC07D6EFE],
                   ["chunks.index", 559, 40, 0x660A4275]]
STAGES = [{"id": "reorder-detection-depth"},
          {"id": "row-bands", "tile_nnz": 256, "patch_nnz": 2048, "chunk_cells": 4096},
          {"id": "golomb-rans-positions"}, {"id": "value-quantiser", "max_error": 0},
          {"id": "context-rans-values"}, {"id": "siren-predictor"}]
INDEX_ROW = [16, 238, 0x0A6ACAED, 442, 5, 5]
BODY = 254
CHECKSUM = 0x62CF47C85A51F674
CHUNK_SECTIONS = [["cells.order", 0, 20, 0x6DDA66DF], ["cells.baseline", 20, 19, 0x6749FA2A],
                  ["cells.names", 39, 34, 0xEAD61391], ["bands.rows", 73, 17, 0x644A7CED],
                  ["bands.widths", 90, 13, 0xA23DC295], ["bands.crc32", 103, 13, 0x4343D8D1],
                  ["tiles.nnz", 116, 13, 0xA23DC295], ["tiles.bytes", 129, 13, 0xA23DC295],
                  ["values.counts", 142, 57, 0x0AE2A3B3], ["tiles.data", 199, 5, 0xCA4C1D9F]]
TILE = bytes.fromhex("C0 88 07 08 00")
COUNTS = {462: 2, 925: 1, 1157: 1, 2789: 1}
# §13.7: (x, x >> 16, slot, decoded, start, freq, x', bytes read, new x), one row per symbol
TRACE = [(0x080788C0, 2055, 35008, 1, 32768, 16384, 0x0201C8C0, b"", 0x0201C8C0),
         (0x0201C8C0, 513, 51392, 2, 49152, 8192, 0x004028C0, b"\x00", 0x4028C000),
         (0x4028C000, 16424, 49152, 2, 49152, 8192, 0x08050000, b"", 0x08050000),
         (0x08050000, 2053, 0, 0, 0, 32768, 0x04028000, b"", 0x04028000),
         (0x04028000, 1026, 32768, 1, 32768, 16384, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 2, 0, 65536, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 0, 0, 65536, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 1, 0, 65536, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 0, 0, 65536, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 17, 0, 65536, 0x01008000, b"", 0x01008000),
         (0x01008000, 256, 32768, 1, 32768, 32768, 0x00800000, b"", 0x00800000)]
HASHES = {(0, 1, 3): 0x903B68E361E6B040, (0, 4, 1): 0x306846C6ECBC73C0, (2, 0, 2): 0x9678F88D73AE2751,
          (2, 3, 1): 0x32C9A20FCB858F27, (3, 2, 21): 0xD8E8FD80CC7B1BFC}


@pytest.fixture(scope="module")
def blob() -> bytes:
    return EXAMPLE.read_bytes()


def frame(data: bytes, size: int | None = None) -> bytes:
    """One zstd frame that declares its size and holds nothing else (spec §3.3)."""
    declared = zstandard.frame_content_size(data)
    assert declared >= 0 and (size is None or declared == size)
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    raw = decompressor.decompress(data)
    assert decompressor.eof and not decompressor.unused_data and len(raw) == declared
    return raw


def array(data: bytes, dtype: str, count: int) -> list[int]:
    item = np.dtype(dtype)
    return np.frombuffer(frame(data, count * item.itemsize), dtype=item).tolist()


def block_type(data: bytes) -> str:
    """The type of a zstd frame's first block (RFC 8878 §3.1.1): raw, rle or compressed."""
    descriptor = data[4]
    single_segment, dictionary = (descriptor >> 5) & 1, descriptor & 3
    content_size = [single_segment, 2, 4, 8][descriptor >> 6]
    at = 5 + (not single_segment) + [0, 1, 2, 4][dictionary] + content_size
    header = int.from_bytes(data[at: at + 3], "little")
    assert header & 1, "one block, the last"
    return ["raw", "rle", "compressed", "reserved"][(header >> 1) & 3]


def section(blob: bytes, entry, base: int = 0) -> bytes:
    name, offset, length, crc = entry
    payload = blob[base + offset: base + offset + length]
    assert zlib.crc32(payload) == crc, name
    return payload


def footer(blob: bytes) -> dict:
    return msgpack.unpackb(frame(blob[FOOTER_AT: FOOTER_AT + FOOTER_LENGTH], FOOTER_RAW), raw=False)


def chunk_header(blob: bytes) -> dict:
    offset, header_length = INDEX_ROW[:2]
    return msgpack.unpackb(frame(blob[offset: offset + header_length]), raw=False)


# ----------------------------------------------------------------- Appendix C, transcribed

class TracingDecoder(rd.RansDecoder):
    """The reference decoder's rANS decoder (spec §C.1.2), recording each symbol as a row of
    §13.7's table."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.trace = []

    def decode(self, model) -> int:
        x, pos, slot = self.x, self.pos, self.x & 0xFFFF
        _, start, freq = model(slot)
        value = super().decode(model)
        self.trace.append((x, x >> 16, slot, value, start, freq, freq * (x >> 16) + slot - start,
                           self.stream[pos: self.pos], self.x))
        return value


# ---------------------------------------------------------------------------------- tests

def test_preamble_and_trailer(blob):
    assert len(blob) == SIZE
    assert blob[:16].hex(" ").upper() == PREAMBLE.replace(" |", "")
    assert struct.unpack_from("<8sHHI", blob, 0) == (b"\x89SINR\r\n\x1a", 2, 0, 0)
    assert blob[-24:].hex(" ").upper() == TRAILER.replace(" |", "")
    length, crc, reserved, end = struct.unpack_from("<QII8s", blob, SIZE - 24)
    assert (length, crc, reserved, end) == (FOOTER_LENGTH, FOOTER_CRC, 0, b"SINR-END")
    assert SIZE - 24 - length == FOOTER_AT
    assert zlib.crc32(blob[:16] + blob[FOOTER_AT: SIZE - 24]) == FOOTER_CRC


def test_footer(blob):
    raw = blob[FOOTER_AT: FOOTER_AT + FOOTER_LENGTH]
    assert raw[:7].hex(" ") == "28 b5 2f fd 60 21 02"
    content = footer(blob)
    assert list(content) == ["format", "writer", "matrices", "sections"]
    assert content["format"] == "sinr" and content["sections"] == [] and len(content["matrices"]) == 1
    m = content["matrices"][0]
    assert m["name"] == "X" and m["shape"] == [4, 5] and m["nnz"] == 5 and m["mode"] == "lossless"
    assert m["n_stored_genes"] == 3 and m["n_chunks"] == 1
    assert m["gene_names_are_ids"] is False and m["has_cell_names"] is True
    assert m["stages"] == STAGES
    assert m["sections"] == MATRIX_SECTIONS
    assert m["options"]["siren"] == "never" and m["options"]["patch_nnz"] is None
    assert m["stats"]["position_bits"] == 11.0 and m["stats"]["value_bits"] == 1.0


def test_matrix_sections(blob):
    table = {entry[0]: section(blob, entry) for entry in MATRIX_SECTIONS}
    assert frame(table["names.gene_ids"]).decode() == "\n".join(GENE_IDS)
    assert len(frame(table["names.gene_ids"])) == 27
    assert frame(table["names.gene_names"]).decode() == "\n".join(GENE_NAMES)
    assert len(frame(table["names.gene_names"])) == 20
    assert frame(table["genes.order"]).hex(" ") == "00 00 00 00 02 00 00 00 03 00 00 00"
    assert array(table["genes.order"], "<u4", 3) == [0, 2, 3]
    assert array(table["genes.baseline"], "<i2", 3) == [0, 0, 0]
    assert array(table["chunks.index"], "<u8", 6) == INDEX_ROW
    offset, header_length, header_crc, block_length, _, _ = INDEX_ROW
    assert offset + block_length == MATRIX_SECTIONS[0][1]  # the block ends where the sections begin
    assert zlib.crc32(blob[offset: offset + header_length]) == header_crc


def test_chunk_header(blob):
    raw = blob[16: 16 + 238]
    assert raw[:7].hex(" ") == "28 b5 2f fd 60 09 00"
    packed = frame(raw, 265)
    assert packed[:16].hex(" ") == "86 a7 6e 5f 63 65 6c 6c 73 05 a3 6e 6e 7a 05 a6"
    assert "cf 62 cf 47 c8 5a 51 f6 74" in packed.hex(" ")
    header = chunk_header(blob)
    assert {k: header[k] for k in ("n_cells", "nnz", "n_rows", "n_bands", "checksum")} == \
        {"n_cells": 5, "nnz": 5, "n_rows": 3, "n_bands": 1, "checksum": CHECKSUM}
    assert header["checksum"] == 7119988461730395764
    assert header["sections"] == CHUNK_SECTIONS
    assert INDEX_ROW[0] + INDEX_ROW[1] == BODY
    last = CHUNK_SECTIONS[-1]
    assert last[1] + last[2] == 204 == INDEX_ROW[3] - INDEX_ROW[1]


def test_chunk_sections(blob):
    s = {entry[0]: section(blob, entry, BODY) for entry in CHUNK_SECTIONS}
    assert array(s["cells.order"], "<u4", 5) == [2, 1, 0, 3, 4]
    assert array(s["cells.baseline"], "<i2", 5) == [49, 22, 18, 11, 11]
    assert [round(16 * math.log1p(v)) for v in (21, 3, 2, 1, 1)] == [49, 22, 18, 11, 11]
    assert frame(s["cells.names"]).decode() == "\n".join(CELL_NAMES) and len(frame(s["cells.names"])) == 34
    assert array(s["bands.rows"], "<u4", 2) == [0, 3]
    assert s["bands.widths"].hex(" ") == "28 b5 2f fd 20 04 21 00 00 05 00 00 00"
    assert array(s["bands.widths"], "<u4", 1) == [5]
    assert array(s["bands.crc32"], "<u4", 1) == [0xCA4C1D9F] == [zlib.crc32(TILE)]
    assert array(s["tiles.nnz"], "<u4", 1) == [5]
    assert array(s["tiles.bytes"], "<u4", 1) == [5]
    counts = array(s["values.counts"], "<u8", 48 * 231)
    assert len(frame(s["values.counts"])) == 88704
    assert {i: c for i, c in enumerate(counts) if c} == COUNTS
    assert s["tiles.data"] == TILE
    matrix = {entry[0]: section(blob, entry) for entry in MATRIX_SECTIONS}
    compressed = {name for name, data in {**s, **matrix}.items() if name != "tiles.data"
                  and block_type(data) == "compressed"}
    assert compressed == {"chunks.index", "cells.order", "cells.names", "values.counts"}
    assert block_type(blob[16: 254]) == block_type(blob[FOOTER_AT: SIZE - 24]) == "compressed"
    assert [BODY + entry[1] for entry in CHUNK_SECTIONS] == [254, 274, 293, 327, 344, 357, 370, 383, 396, 453]


def test_tile_decodes_symbol_by_symbol(blob):
    """§13.7: the tile stream, decoded by the spec's algorithms."""
    counts = array(section(blob, CHUNK_SECTIONS[8], BODY), "<u8", 48 * 231)
    rows = [rd.frequencies(counts[k * 231: (k + 1) * 231]) for k in range(48)]
    used = [k for k in range(48) if any(rows[k])]
    assert used == [2, 4, 5, 12]
    assert all(sum(rows[k]) == 2**16 and max(rows[k]) == 2**16 for k in used)
    gene_terms, cell_terms = [0, 0, 0], [49, 22, 18, 11, 11]

    dec = TracingDecoder(TILE)
    assert dec.x == 0x080788C0 == 134711488
    found = rd.decode_positions(dec, 15, 5)  # 5 of 15 entries: the nonzeros are coded (§C.2)
    assert found == [1, 4, 7, 8, 10]
    assert max(1, (10 * 69 + 50 * 5) // (100 * 5)) == 1
    values, contexts = [], []
    for p in found:
        i, q = divmod(p, 5)
        kappa = min(max((gene_terms[i] + cell_terms[q]) >> 2, 0), 47)
        contexts.append(kappa)
        b = dec.decode(rd.FrequencyTable(rows[kappa]))
        start, d = rd.bin_start_and_bits(b)
        offset = dec.raw(d) if d else 0
        values.append(start + offset + 1)
    dec.finish()
    assert contexts == [5, 2, 4, 2, 12]
    assert values == [3, 1, 2, 1, 21]
    assert rd.bin_start_and_bits(17) == (19, 1)
    assert dec.trace == TRACE
    assert dec.x == 2**23 and dec.pos == len(TILE)


def test_encoder_of_the_spec_writes_the_tile():
    """§C.1.3's encoder, applied to the symbols of §13.7, gives the stored stream."""
    symbols = [(row[4], row[5]) for row in TRACE]
    x, out = 2**23, []
    for start, freq in reversed(symbols):
        while x >= 2**15 * freq:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // freq) << 16) + x % freq + start
    assert x.to_bytes(4, "little") + bytes(reversed(out)) == TILE and out == [0]


def test_content_checksum(blob):
    total = 0
    for (g, j, v), h in HASHES.items():
        assert rd.mix(rd.mix(g + (j << 32)) ^ v) == h
        assert EXPECTED[g, j] == v
        total += h
    assert total % 2**64 == CHECKSUM == chunk_header(blob)["checksum"]


def test_public_reader():
    with sinr.open(EXAMPLE) as m:
        assert m.version == (2, 0)
        assert m.shape == (4, 5) and m.nnz == 5 and m.mode == "lossless"
        assert np.array_equal(m.to_scipy().toarray(), EXPECTED)
        assert np.array_equal(m.to_scipy(layout="csc").toarray(), EXPECTED)
        assert m.gene_ids == GENE_IDS and m.gene_names == GENE_NAMES and m.cell_names == CELL_NAMES
        assert m.feature_types is None
        assert m.get("LYZ", "AACT-1") == 21 and m.get("EMPTY", 0) == 0 and m.get("CD3E", "AAAG-1") == 3
        assert m.gene("MS4A1").tolist() == [2, 0, 0, 1, 0]
        assert m.cell("AACT-1").tolist() == [0, 0, 0, 21]
        assert m.verify() == {"chunks": 1, "nnz": 5, "bytes": SIZE, "max_value": 21, "max_gene": 3}


def test_version_1_and_unknown_majors_are_refused(blob):
    v1 = blob[:8] + struct.pack("<HH", 1, 0) + bytes(40)
    with pytest.raises(sinr.UnsupportedVersionError, match=r"format 1\.0 .*scinrcodec<2"):
        sinr.open(v1)
    v4 = blob[:8] + struct.pack("<HH", 4, 1) + blob[12:]
    with pytest.raises(sinr.UnsupportedVersionError, match=r"4\.1"):
        sinr.open(v4)


def test_version_1_message_is_the_one_spec_11_3_quotes(blob, tmp_path):
    """Both readers (Python and the native container reader of the R package) refuse a version 1
    file with exactly the message §11.3 quotes, `<name>` and `<minor>` filled in."""
    from scinrcodec import _native
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("### 11.3 Version 1 files"):text.index("## 12. ")]
    quoted = section.split("```")[1].strip().replace("\n", " ")
    path = tmp_path / "old.sinr"
    path.write_bytes(blob[:8] + struct.pack("<HH", 1, 7) + bytes(40))
    expected = quoted.replace("<name>", str(path)).replace("<minor>", "7")
    for read in (sinr.open, lambda p: _native.ContainerReader(str(p))):
        with pytest.raises(sinr.UnsupportedVersionError) as err:
            read(path)
        assert str(err.value) == expected


def test_spec_examples_of_models():
    """The informative examples of §C.1.4 and §C.4."""
    assert rd.frequencies([3, 3, 1] + [0] * 228)[:3] == [28088, 28086, 9362]
    assert rd.frequencies([5, 0, 2, 1] + [0] * 227)[:4] == [40960, 0, 16384, 8192]
    assert rd.frequencies([0] * 231) == [0] * 231
    base, extra = 2**16 // 3, 2**16 - (2**16 // 3) * 3
    assert (base, extra) == (21845, 1)
    assert [(0, base + 1), (base + 1, base), (extra * (base + 1) + base, base)] == \
        [(0, 21846), (21846, 21845), (43691, 21845)]
    assert zlib.crc32(b"123456789") == 0xCBF43926
    # bins (§6.3.1, Appendix A.4): start and d, and the writer's mapping back
    for u in list(range(200)) + [2**30 - 1, 15 * 2**27 - 1, 2**31 - 2]:
        e = u + 1
        x = e.bit_length() - 1
        b, d = (e - 1, 0) if x < 3 else (7 + 8 * (x - 3) + ((e >> (x - 3)) - 8), x - 3)
        start, dd = rd.bin_start_and_bits(b)
        assert dd == d and start <= u < start + 2**d and b < 231
    bin_start = rd.bin_start_and_bits
    assert bin_start(230) == (15 * 2**27 - 1, 27) and bin_start(15) == (15, 1) and bin_start(223) == (2**30 - 1, 27)


def test_appendix_tables():
    """Appendix A: the tables from exact definitions, with this platform's libm."""
    edge = [round(math.expm1(k / 4) * 2**20) for k in range(48)]
    text = SPEC.read_text()
    for k, e in enumerate(edge):
        assert f"| {k} | {e:,} |" in text
    sine = [round(math.sin(2 * math.pi * k / 4096) * 4096) for k in range(4096)]
    assert sine[:4] == [0, 6, 13, 19] and sine[256] == 1567 and sine[512] == 2896 and sine[1024] == 4096
    assert sine[2048] == 0 and sine[3072] == -4096 and sine[4095] == -6
    assert sum(abs(s) for s in sine) == 10680676
    assert zlib.crc32(np.array(sine, "<i2").tobytes()) == 0x1AC8F72D
    expm1 = [min(round(math.expm1((k + 0.5) / 1024)), 2**31 - 1) for k in range(22005)]
    assert max(k for k in range(22005) if expm1[k] == 0) == 414 and expm1[415] == 1
    assert [expm1[k] for k in (1024, 2048, 4096, 10240, 20000, 22002)] == \
        [2, 6, 54, 22036, 303756903, 2145881812]
    assert min(k for k in range(22005) if expm1[k] == 2**31 - 1) == 22003
    assert zlib.crc32(np.array(expm1, "<u4").tobytes()) == 0x514976D3


def test_spec_quotes_the_example():
    """§13 states the numbers this file checks."""
    text = SPEC.read_text()
    for quoted in (f"**{SIZE:,} bytes**", PREAMBLE, TRAILER, "C0 88 07 08 00", "0x62CF47C85A51F674",
                   "7119988461730395764", "0x0C7003AD", f"`footer_length = 0x235 = {FOOTER_LENGTH}`",
                   "`[16, 238, 0x0A6ACAED, 442, 5, 5]`", "`[2, 1, 0, 3, 4]`", "`[49, 22, 18, 11, 11]`"):
        assert quoted in text, quoted
    for name, offset, length, crc in MATRIX_SECTIONS:
        assert f"| `{name}` | {offset} + {length} | `0x{crc:08X}` |" in text
    for name, offset, length, crc in CHUNK_SECTIONS:
        assert f"| `{name}` | {offset} | {BODY + offset} | {length} | `0x{crc:08X}` |" in text
    for x, high, slot, _, start, freq, mid, read, new in TRACE:
        row = f"| `0x{x:08X}` | {high} | {slot} |"
        tail = f"| {start} | {freq} | `0x{mid:08X}` | {read.hex().upper() or '—'} | `0x{new:08X}` |"
        assert row in text and tail.replace("| 00 |", "| `00` |") in text, (row, tail)
    for (g, j, v), h in HASHES.items():
        assert f"| ({g}, {j}, {v}) " in text and f"`0x{h:016X}`" in text


def test_example_is_what_the_encoder_writes_today(tmp_path, blob):
    """Regenerating the example gives the same body and footer content (the footer's `writer`
    string may name another version)."""
    spec = importlib.util.spec_from_file_location("make_spec_example", HERE / "make_spec_example.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    out = tmp_path / "again.sinr"
    maker.write(out)
    again = out.read_bytes()
    assert again[:FOOTER_AT] == blob[:FOOTER_AT], "re-run tests/make_spec_example.py and update spec §13"
    ours, theirs = footer(blob), msgpack.unpackb(frame(again[FOOTER_AT: len(again) - 24]), raw=False)
    ours.pop("writer"), theirs.pop("writer")
    assert ours == theirs
