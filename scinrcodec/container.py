"""The .sinr container: preamble, msgpack header with a section table, CRC-checked sections.

Layout (all integers little-endian), see spec/sinr-format.md:

    magic (8) | major u16 | minor u16 | header_length u32 | crc32 u32 | header | data area

The CRC32 covers the preamble's first 16 bytes and the header.

The header's "sections" list holds [name, offset, length, crc32] with offsets relative to the
start of the data area; "data_length" is the data area's size, so truncation and appended bytes
are both caught.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zstandard

from .errors import CorruptFileError, FormatError, UnsupportedVersionError

MAGIC = b"\x89SINR\r\n\x1a"
MAJOR_VERSION = 1
MINOR_VERSION = 0
PREAMBLE = struct.Struct("<8sHHII")
MAX_HEADER_BYTES = 64 << 20
MAX_ARRAY_BYTES = 16 << 30
ZSTD_LEVEL = 19


@dataclass
class ContainerWriter:
    """Collects named sections and header fields, then serialises them in one go."""

    header: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, payload: bytes) -> None:
        if name in self.sections:
            raise ValueError(f"section {name!r} added twice")
        self.sections[name] = bytes(payload)

    def to_bytes(self) -> bytes:
        table, offset = [], 0
        for name, payload in self.sections.items():
            table.append([name, offset, len(payload), zlib.crc32(payload)])
            offset += len(payload)
        header = msgpack.packb({**self.header, "sections": table, "data_length": offset}, use_bin_type=True)
        return b"".join([seal_preamble(MAJOR_VERSION, MINOR_VERSION, header), header, *self.sections.values()])


def seal_preamble(major: int, minor: int, header: bytes) -> bytes:
    """The preamble, its CRC32 covering its own first 16 bytes and the header."""
    head = PREAMBLE.pack(MAGIC, major, minor, len(header), 0)[:16]
    return head + struct.pack("<I", zlib.crc32(head + header))


class Container:
    """A parsed .sinr file held in memory; every section's CRC is checked on open (about 1 ms/MB)."""

    def __init__(self, blob: bytes, *, source: str = "<bytes>") -> None:
        self.source = source
        if len(blob) < PREAMBLE.size:
            if not MAGIC.startswith(blob[: len(MAGIC)]) or not blob:
                raise FormatError(f"{source}: not a .sinr file (too short, bad magic)")
            raise CorruptFileError(f"{source}: truncated .sinr file ({len(blob)} bytes)")
        magic, major, minor, header_length, header_crc = PREAMBLE.unpack_from(blob)
        if magic != MAGIC:
            raise FormatError(f"{source}: not a .sinr file (bad magic)")
        if major != MAJOR_VERSION:
            raise UnsupportedVersionError(
                f"{source}: format version {major}.{minor} is not supported (this reader reads {MAJOR_VERSION}.x)")
        self.version = (major, minor)
        self._header_length = header_length
        if header_length > min(MAX_HEADER_BYTES, len(blob) - PREAMBLE.size):
            raise CorruptFileError(f"{source}: truncated or corrupt header (declares {header_length} bytes)")
        header_bytes = blob[PREAMBLE.size: PREAMBLE.size + header_length]
        if zlib.crc32(bytes(blob[:16]) + header_bytes) != header_crc:
            raise CorruptFileError(f"{source}: header checksum mismatch (file is corrupt)")
        try:
            header = msgpack.unpackb(header_bytes, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several types for malformed input
            raise CorruptFileError(f"{source}: unreadable header ({exc})") from exc
        if not isinstance(header, dict):
            raise CorruptFileError(f"{source}: header is not a map")
        self.header = header
        data_start = PREAMBLE.size + header_length
        data_length = header.get("data_length")
        if not isinstance(data_length, int) or data_length < 0:
            raise CorruptFileError(f"{source}: header lacks a valid data_length")
        if data_start + data_length != len(blob):
            kind = "truncated" if data_start + data_length > len(blob) else "has trailing bytes"
            raise CorruptFileError(
                f"{source}: file {kind} (expected {data_start + data_length} bytes, found {len(blob)})")
        self._blob = memoryview(blob)
        self._table: dict[str, tuple[int, int]] = {}
        table = header.get("sections")
        if not isinstance(table, list):
            raise CorruptFileError(f"{source}: header lacks a section table")
        end = 0
        for entry in table:
            if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str)
                    or not all(isinstance(x, int) and x >= 0 for x in entry[1:])):
                raise CorruptFileError(f"{source}: malformed section table entry")
            name, offset, length, crc = entry
            if offset != end or offset + length > data_length or name in self._table:
                raise CorruptFileError(f"{source}: section {name!r} lies outside the file or overlaps")
            if zlib.crc32(self._blob[data_start + offset: data_start + offset + length]) != crc:
                raise CorruptFileError(f"{source}: checksum mismatch in section {name!r} (file is corrupt)")
            self._table[name] = (data_start + offset, length)
            end = offset + length
        if end != data_length:
            raise CorruptFileError(f"{source}: sections do not cover the data area")

    def has(self, name: str) -> bool:
        return name in self._table

    def section(self, name: str) -> memoryview:
        if name not in self._table:
            raise CorruptFileError(f"{self.source}: missing section {name!r}")
        start, length = self._table[name]
        return self._blob[start: start + length]

    def section_sizes(self) -> dict[str, int]:
        return {name: length for name, (_, length) in self._table.items()}

    @property
    def header_size(self) -> int:
        return PREAMBLE.size + self._header_length


# ----------------------------------------------------------------------- array payload helpers

def pack_array(array: np.ndarray) -> bytes:
    """zstd-compressed little-endian bytes of a 1-D array (dtype is recorded by the caller)."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(array.tobytes())


def unpack_array(payload: bytes | memoryview, dtype: str, count: int, *, what: str) -> np.ndarray:
    """Inverse of pack_array; the expected size is validated before anything is allocated."""
    dtype = np.dtype(dtype).newbyteorder("<")
    if not isinstance(count, int) or count < 0 or count * dtype.itemsize > MAX_ARRAY_BYTES:
        raise CorruptFileError(f"array {what!r} declares an impossible length {count!r}")
    expected = count * dtype.itemsize
    raw = decompress_bounded(payload, expected, what=what)
    if len(raw) != expected:
        raise CorruptFileError(f"array {what!r} has {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def decompress_bounded(payload: bytes | memoryview, limit: int, *, what: str) -> bytes:
    """Decompress a zstd frame, refusing to produce more than `limit` bytes (no zip bombs)."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(payload))) as reader:
            raw = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"{what!r} is corrupt ({exc})") from exc
    if len(raw) > limit:
        raise CorruptFileError(f"{what!r} expands beyond its declared {limit} bytes")
    return raw


def pack_strings(values: list[str]) -> bytes:
    """Newline-joined UTF-8, zstd-compressed; names containing a newline are rejected upstream."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress("\n".join(values).encode("utf-8"))


def unpack_strings(payload: bytes | memoryview, count: int, *, what: str, max_bytes: int) -> list[str]:
    raw = decompress_bounded(payload, max_bytes, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"names {what!r} are corrupt ({exc})") from exc
    values = text.split("\n") if count else []
    if count == 1 and text == "":
        values = [""]
    if len(values) != count:
        raise CorruptFileError(f"names {what!r}: found {len(values)}, expected {count}")
    return values
