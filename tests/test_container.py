"""Damaged and hostile .sinr files raise the package's own errors, never wrong numbers."""
from __future__ import annotations

import struct
import msgpack
import numpy as np
import pytest

import scinrcodec as sinr
from conftest import FAST
from scinrcodec.container import PREAMBLE, ContainerWriter, seal_preamble
from scinrcodec.reader import SinrMatrix


@pytest.fixture(scope="module")
def blob(tmp_path_factory, pbmc):
    out = tmp_path_factory.mktemp("c") / "x.sinr"
    sinr.encode(pbmc, out, tile_nnz=64, patch_nnz=512, **FAST)
    return out.read_bytes()


def _read_everything(data: bytes, expected) -> None:
    m = SinrMatrix(data)
    assert (m.to_scipy() != expected).nnz == 0
    m.gene(0), m.cell(0), m[3, 4], m.gene_names, m.cell_names, m.gene_ids, m.feature_types


def test_every_header_byte_and_sampled_section_bytes_are_checked(blob, pbmc):
    header_end = PREAMBLE.size + struct.unpack_from("<I", blob, 12)[0]
    rng = np.random.default_rng(0)
    offsets = list(range(header_end)) + rng.integers(header_end, len(blob), 400).tolist()
    for offset in offsets:
        damaged = bytearray(blob)
        damaged[offset] ^= 1 << int(rng.integers(8))
        with pytest.raises(sinr.SinrError):
            _read_everything(bytes(damaged), pbmc.counts)


def test_truncation_and_trailing_bytes(blob, pbmc):
    rng = np.random.default_rng(1)
    for cut in [0, 1, 7, 8, 19, 20, 21] + rng.integers(21, len(blob), 60).tolist():
        with pytest.raises(sinr.FormatError):
            SinrMatrix(blob[:cut])
    with pytest.raises(sinr.CorruptFileError, match="trailing"):
        SinrMatrix(blob + b"garbage")


def test_bad_magic_and_versions(blob):
    with pytest.raises(sinr.FormatError, match="not a .sinr"):
        SinrMatrix(b"PK" + blob[2:])
    with pytest.raises(sinr.UnsupportedVersionError, match="version 2"):
        SinrMatrix(blob[:8] + struct.pack("<H", 2) + blob[10:])
    length = struct.unpack_from("<I", blob, 12)[0]
    header = blob[PREAMBLE.size: PREAMBLE.size + length]
    newer_minor = seal_preamble(1, 7, header) + blob[PREAMBLE.size:]
    assert SinrMatrix(newer_minor).container.version == (1, 7)


def _forge(header: dict, sections: dict[str, bytes]) -> bytes:
    writer = ContainerWriter(dict(header), dict(sections))
    return writer.to_bytes()


def _parts(blob: bytes):
    length = struct.unpack_from("<I", blob, 12)[0]
    header = msgpack.unpackb(blob[PREAMBLE.size: PREAMBLE.size + length], raw=False)
    start = PREAMBLE.size + length
    sections = {name: blob[start + off: start + off + size] for name, off, size, _ in header.pop("sections")}
    header.pop("data_length")
    return header, sections


@pytest.mark.parametrize("field, value", [
    ("shape", [2**40, 10]), ("shape", [10**9, 10**9]), ("nnz", 10**15), ("n_expressed", -1),
    ("geometry", {"row_starts": [0, 10**12], "widths": [1]}), ("mode", "eval"), ("stages", [{"id": "pickle"}]),
    ("shape", "big"), ("nnz", 1.5),
])
def test_hostile_headers_are_rejected_before_allocation(blob, field, value):
    header, sections = _parts(blob)
    header[field] = value
    with pytest.raises(sinr.SinrError):
        SinrMatrix(_forge(header, sections))


def test_section_table_pointing_outside_the_file(blob):
    length = struct.unpack_from("<I", blob, 12)[0]
    header = msgpack.unpackb(blob[PREAMBLE.size: PREAMBLE.size + length], raw=False)
    header["sections"][0][2] = 2**40
    raw = msgpack.packb(header, use_bin_type=True)
    forged = seal_preamble(1, 0, raw) + raw + blob[PREAMBLE.size + length:]
    with pytest.raises(sinr.CorruptFileError):
        SinrMatrix(forged)


def test_zip_bomb_section_is_refused(blob):
    import zstandard

    header, sections = _parts(blob)
    sections["order.cells"] = zstandard.ZstdCompressor().compress(b"\0" * (50 << 20))
    with pytest.raises(sinr.CorruptFileError, match="expands beyond"):
        SinrMatrix(_forge(header, sections))
