"""The .sinr container (formats 2 and 3): preamble, body of blocks, msgpack footer, trailer.

    preamble (16)  magic (8) | major u16 | minor u16 | reserved u32 = 0
    body           sections and chunk blocks, each CRC-32 checked, referenced by absolute offset
    footer         a msgpack map in one zstd frame
    trailer (24)   footer_length u64 | footer_crc32 u32 | reserved u32 = 0 | end magic (8)

footer_crc32 covers the preamble followed by the footer, so every byte outside the body is checked.

The footer sits at the end so that a writer can stream chunks of any size and append new ones;
a reader reads the preamble and trailer, then the footer, and nothing else until asked.
spec/sinr-format.md §2-§4 defines the same bytes.
"""
from __future__ import annotations

import io
import struct
from typing import Any, BinaryIO, NamedTuple

import msgpack
import numpy as np
import zstandard

from .. import _native
from ..errors import CorruptFileError, FormatError, UnsupportedVersionError, printable
from ..limits import MAX_FOOTER_BYTES, MAX_NAME_BYTES, MAX_SECTION_BYTES, MSGPACK_DEPTH
from .source import ByteSource

MAGIC = b"\x89SINR\r\n\x1a"
END_MAGIC = b"SINR-END"
# Per major version this package reads and writes: the newest minor it implements, and the first
# minor whose files may hold file-level sections (spec §14: format 2 gained them in 2.1, format 3.0
# has them from the start).
READ_MINORS = {2: 1, 3: 2}  # 3.1, 3.2: the features `segments`, `cell-order-planes` (codec.stages.FEATURE_MINORS)
FILE_SECTIONS_SINCE = {2: 1, 3: 0}
SUPPORTED_MAJORS = tuple(READ_MINORS)  # what readers read and writers write (EncodeOptions.format_version)
DEFAULT_MAJOR = 3  # what a writer writes unless told otherwise
PREAMBLE = struct.Struct("<8sHHI")
TRAILER = struct.Struct("<QII8s")
ZSTD_LEVEL = 19
# Gene tables from this size on (pbmc4k's 33,694 Ensembl ids are 539 KB) may be packed with a
# binary-tree search of depth 1 instead of their level (pack_strings' `shallow`): at level 16 such
# repetitive names took 3-5x longer (pbmc4k's ids 112-147 ms, of an encode of 0.34 s at 6e6; visium's
# 370 KB 54-74 ms) for sizes from 2% smaller to 4% larger (pbmc4k's ids 88,632 -> 86,912 bytes, its
# symbols 120,496 -> 125,353, visium's ids 43,524 -> 43,347). Smaller texts keep their level, where it
# pays (frozen_pbmc's 100 KB of ids: 10 ms, 3% smaller than so), and cell barcodes always do: the
# shallow search made visium's replicated spatial barcodes 65-80% larger.
LARGE_TEXT_BYTES = 256 << 10


def crc32(data) -> int:
    """CRC-32 (zlib's) as an unsigned int: the checksum of every section, header, footer and band
    (the native core's, at memory speed: a reader verifies every byte it decodes)."""
    return _native.crc32(data)


def crc32_ranges(buffer, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The CRC-32 of each (offset, length) range of a buffer, as int64: a chunk's bands at once."""
    data = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, dtype=np.uint8)
    return _native.crc32_ranges(data, np.ascontiguousarray(offsets, dtype=np.int64),
                                np.ascontiguousarray(lengths, dtype=np.int64))


# ------------------------------------------------------------------------------------ payloads

def pack_array(array: np.ndarray, dtype: str, level: int = ZSTD_LEVEL) -> bytes:
    """One zstd frame of the little-endian bytes of a 1-D array cast to `dtype`."""
    raw = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return zstandard.ZstdCompressor(level=level).compress(raw)


def pack_shuffled(array: np.ndarray, dtype: str, level: int = ZSTD_LEVEL) -> bytes:
    """One zstd frame of a 1-D array's byte planes (spec §3.3, "zstd shuffled array"): byte 0 of every
    little-endian item, then byte 1 of every item, and so on. Counts are small numbers in wide items,
    so their high planes are runs of zeros that zstd all but drops."""
    item = np.dtype(dtype).newbyteorder("<")
    items = np.ascontiguousarray(array, dtype=item).reshape(-1)
    return zstandard.ZstdCompressor(level=level).compress(items.view(np.uint8).reshape(-1, item.itemsize).T.tobytes())


def pack_strings(values: list[str], level: int = ZSTD_LEVEL, *, shallow: bool = False) -> bytes:
    """Newline-joined UTF-8 in one zstd frame (names holding a newline are refused upstream), at
    `level`, or with `shallow` and from LARGE_TEXT_BYTES on with a shallow search."""
    raw = "\n".join(values).encode("utf-8")
    if not shallow or len(raw) < LARGE_TEXT_BYTES:
        return zstandard.ZstdCompressor(level=level).compress(raw)
    window = min(max(10, (len(raw) - 1).bit_length()), 23)  # the text's size, at most 8 MiB (spec §3.3)
    search = zstandard.ZstdCompressionParameters(strategy=zstandard.STRATEGY_BTOPT, window_log=window,
                                                 chain_log=min(window + 1, 17), hash_log=min(window, 17),
                                                 search_log=1, min_match=3, target_length=64)
    return zstandard.ZstdCompressor(compression_params=search).compress(raw)


def decompress_exact(payload, size: int, *, what: str) -> bytes:
    """Decompress one zstd frame that must expand to exactly `size` bytes, and hold nothing else."""
    if size > MAX_SECTION_BYTES:
        raise CorruptFileError(f"{what} declares an impossible size")
    raw = _decompress_bounded(payload, size, what=what)
    if len(raw) != size:
        raise CorruptFileError(f"{what} holds {len(raw)} bytes, expected {size}")
    return raw


def _decompress_bounded(payload, limit: int, *, what: str) -> bytes:
    """One zstd frame that declares its content size, at most `limit` bytes, and nothing after it.

    The native core's libzstd decodes it, the declared size checked before anything is allocated,
    so that the Python reader and the C++ reader (the R package's) decode every frame alike: zstd
    versions may expand a damaged frame differently, and each reader must read what the other does."""
    return _native.zstd_decompress_bounded(payload, limit, printable(what))


def _array_bytes(payload, item: np.dtype, count: int, *, what: str) -> bytes:
    """The `count * itemsize` bytes of an array's one zstd frame, the size checked before decompressing."""
    if not isinstance(count, int) or count < 0 or count * item.itemsize > MAX_SECTION_BYTES:
        raise CorruptFileError(f"{what} declares an impossible length {count!r}")
    return decompress_exact(payload, count * item.itemsize, what=what)


def unpack_array(payload, dtype: str, count: int, *, what: str) -> np.ndarray:
    """Inverse of pack_array: exactly `count` items, size checked before decompressing."""
    item = np.dtype(dtype).newbyteorder("<")
    raw = _array_bytes(payload, item, count, what=what)
    return np.frombuffer(raw, dtype=item).astype(item.newbyteorder("="))


def unpack_shuffled(payload, dtype: str, count: int, *, what: str) -> np.ndarray:
    """Inverse of pack_shuffled: exactly `count` items from their byte planes, size checked before
    decompressing."""
    item = np.dtype(dtype).newbyteorder("<")
    items = items_from_planes(_array_bytes(payload, item, count, what=what), item)
    return items.astype(item.newbyteorder("="), copy=item.itemsize == 1)  # 1-byte items view the payload


def items_from_planes(planes, item: np.dtype) -> np.ndarray:
    """The 1-D array of `item`s whose byte planes `planes` holds (byte j of item i at j * count + i):
    spec §3.3's shuffled arrays, and HDF5's shuffle filter."""
    raw = np.frombuffer(planes, dtype=np.uint8)
    return raw.view(item) if item.itemsize == 1 else _native.items_from_planes(raw, item.itemsize).view(item)


def names_text(payload, count: int, *, what: str) -> bytes:
    """The text of a names section that holds exactly `count` names, counted by its line breaks
    before anything is decoded (no UTF-8 character holds the byte 0x0A): what a reader that trusts
    the shape checks without building the names."""
    raw = _decompress_bounded(payload, count * (MAX_NAME_BYTES + 1), what=what)
    if count == 0 and raw:
        raise CorruptFileError(f"{what} holds names for no entries")
    held = raw.count(b"\n") + 1 if count else 0
    if held != count:
        raise CorruptFileError(f"{what} holds {held} names, expected {count}")
    return raw


def unpack_strings(payload, count: int, *, what: str) -> list[str]:
    """Inverse of pack_strings: exactly `count` names, each at most MAX_NAME_BYTES of UTF-8."""
    raw = names_text(payload, count, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{what} is not valid UTF-8") from exc
    values = text.split("\n") if count else []
    if "\r" in text:
        raise CorruptFileError(f"{what} holds a carriage return")
    breaks = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0x0A)  # byte lengths, without encoding each
    if values and int(np.diff(breaks, prepend=-1, append=len(raw)).max()) - 1 > MAX_NAME_BYTES:
        raise CorruptFileError(f"{what} holds a name longer than {MAX_NAME_BYTES} bytes")
    return values


def pack_map(value: dict) -> bytes:
    """A map as MessagePack (binary strings kept as bytes), as headers and the footer store it."""
    return msgpack.packb(value, use_bin_type=True)


def _strict_map(pairs) -> dict:
    """A msgpack map whose keys are all strings, each once (spec §3.5)."""
    out = {}
    for key, value in pairs:
        if not isinstance(key, str):
            raise ValueError(f"a map key is a {type(key).__name__}, not a string")
        if key in out:
            raise ValueError(f"map key {printable(key[:64])!r}{'...' if len(key) > 64 else ''} appears twice")
        out[key] = value
    return out


def _no_ext(code: int, data: bytes):
    raise ValueError(f"MessagePack ext type {code} (spec §3.5: none may be used)")


_SCALARS = (type(None), bool, int, float, str, bytes)


def _check_values(root) -> None:
    """No value deeper than MSGPACK_DEPTH and none but MessagePack's own types (spec §3.5): an ext
    type msgpack decodes itself (the timestamp, ext -1) never reaches ext_hook. Iterative, whatever
    the nesting."""
    stack = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MSGPACK_DEPTH:
            raise ValueError(f"a value nested {depth} deep (spec §3.5: at most {MSGPACK_DEPTH})")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif not isinstance(value, _SCALARS):
            raise ValueError(f"a MessagePack ext type ({type(value).__name__}; spec §3.5: none may be used)")


def unpack_map(payload, *, what: str) -> dict:
    """A MessagePack map, strictly (spec §3.5): malformed data, a repeated key, an ext type, a value
    nested too deep or a non-map is a CorruptFileError saying which."""
    try:
        value = msgpack.unpackb(bytes(payload), raw=False, strict_map_key=False, object_pairs_hook=_strict_map,
                                ext_hook=_no_ext)
        _check_values(value)
    except Exception as exc:  # msgpack raises several types on malformed input
        raise CorruptFileError(f"{what} is unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
    if not isinstance(value, dict):
        raise CorruptFileError(f"{what} is not a map")
    return value


def pack_header(value: dict) -> bytes:
    """A footer or chunk header: a msgpack map in one zstd frame."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(pack_map(value))


def unpack_header(payload, limit: int, *, what: str) -> dict:
    """A zstd-compressed MessagePack header, decompressed to at most `limit` bytes (a hostile file cannot
    inflate it further)."""
    return unpack_map(_decompress_bounded(payload, limit, what=what), what=what)


# -------------------------------------------------------------------------------------- writing

def write_version(major: int, *, file_sections: bool = False) -> tuple[int, int]:
    """The (major, minor) a writer puts in the preamble of a file of format `major` (one of
    SUPPORTED_MAJORS) before its matrices: the lowest minor that has file-level sections where the
    file holds them (ContainerWriter.finish raises it to what the matrices' features need)."""
    return major, FILE_SECTIONS_SINCE[major] if file_sections else 0


class ContainerWriter:
    """Writes a .sinr file front to back into a binary stream: blocks first, footer last. `version`
    is the preamble's (major, minor): written here when start is 0, else (an append) the version of
    the file whose first `start` bytes the stream already holds, which the footer's CRC covers."""

    def __init__(self, stream: BinaryIO, *, version: tuple[int, int], start: int = 0) -> None:
        self.stream = stream
        self.offset = start
        self.version = version
        self.preamble = PREAMBLE.pack(MAGIC, *version, 0)
        if start == 0:
            self._write(self.preamble)

    def _write(self, data) -> int:
        at = self.offset
        self.stream.write(data)
        self.offset += len(data)
        return at

    def section(self, name: str, payload) -> list:
        """Write a payload; return its section table entry [name, offset, length, crc32]."""
        return [name, self._write(payload), len(payload), crc32(payload)]

    def block(self, payload) -> int:
        """Write a chunk's block of tiles; return the offset it starts at."""
        return self._write(payload)

    def finish(self, footer: dict[str, Any], *, minor: int = 0) -> int:
        """Write the footer and the trailer; return the file's size. `minor`: the least minor version
        the matrices' required features need (spec §11.2), known only once their chunks are coded (a
        chunk's cell order may need one, spec §5.6): where it is above the preamble's, the preamble
        (byte 0 of the stream's file, which must be seekable then) is written again with it."""
        major, written = self.version
        if minor > written:
            self.version = (major, minor)
            self.preamble = PREAMBLE.pack(MAGIC, major, minor, 0)
            self.stream.seek(-self.offset, io.SEEK_CUR)
            self.stream.write(self.preamble)
            self.stream.seek(self.offset - len(self.preamble), io.SEEK_CUR)
        packed = pack_header(footer)
        self._write(packed)
        self._write(TRAILER.pack(len(packed), crc32(self.preamble + packed), 0, END_MAGIC))
        return self.offset


# -------------------------------------------------------------------------------------- reading

class SectionRef(NamedTuple):
    """Where a section lies in the file and its CRC, as a section table lists it."""

    name: str
    offset: int
    length: int
    crc: int


def parse_section_table(table, *, low: int, high: int, what: str, base: int = 0) -> dict[str, SectionRef]:
    """Validate [name, offset, length, crc32] entries (offsets from `base`): inside [low, high),
    unique, not overlapping. The returned references hold absolute offsets."""
    if not isinstance(table, list):
        raise CorruptFileError(f"{what} has no section table")
    sections: dict[str, SectionRef] = {}
    for entry in table:
        if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str)
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in entry[1:])
                or entry[3] > 0xFFFFFFFF):
            raise CorruptFileError(f"{what}: malformed section table entry")
        ref = SectionRef(entry[0], entry[1] + base, entry[2], entry[3])
        if ref.name in sections:
            raise CorruptFileError(f"{what}: section {ref.name!r} appears twice")
        if ref.offset < low or ref.offset + ref.length > high:
            raise CorruptFileError(f"{what}: section {ref.name!r} lies outside its block")
        sections[ref.name] = ref
    check_disjoint([(r.offset, r.length, r.name) for r in sections.values()], what=what)
    return sections


def check_disjoint(ranges: list[tuple[int, int, str]], *, what: str) -> None:
    """Refuse byte ranges (offset, length, name) that overlap: no two sections or blocks may share bytes."""
    ordered = sorted((o, n, name) for o, n, name in ranges if n)
    for (a, n, name), (b, _, other) in zip(ordered, ordered[1:]):
        if a + n > b:
            raise CorruptFileError(f"{what}: {name!r} overlaps {other!r}")


class Footer(NamedTuple):
    """The parsed footer: the format version, its map, where it starts, and its CRC-32."""

    version: tuple[int, int]
    content: dict[str, Any]
    offset: int  # where the footer starts: the body is [PREAMBLE.size, offset)
    crc: int  # covers the footer, which holds every section's CRC: it tells versions of a file apart


def is_newer_minor(version: tuple[int, int]) -> bool:
    """Whether a file's minor version is newer than this reader implements for its major (it then
    ignores sections it does not know, spec §11.2)."""
    return version[1] > READ_MINORS[version[0]]


def has_file_sections(version: tuple[int, int]) -> bool:
    """Whether a file of this version may hold file-level sections (a 2.0 reader ignores them)."""
    return version[1] >= FILE_SECTIONS_SINCE[version[0]]


def read_footer(source: ByteSource) -> Footer:
    """Preamble, trailer and footer of a .sinr file, checked; nothing else is read."""
    name = source.name
    if source.size < PREAMBLE.size:
        head = bytes(source.read(0, source.size))
        if not head or not MAGIC.startswith(head[: len(MAGIC)]):
            raise FormatError(f"{name}: not a .sinr file (too short, bad magic)")
        raise CorruptFileError(f"{name}: truncated .sinr file ({source.size} bytes)")
    preamble = bytes(source.read(0, PREAMBLE.size))
    magic, major, minor, reserved = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise FormatError(f"{name}: not a .sinr file (bad magic)")
    if major == 1:
        raise UnsupportedVersionError(
            f"{name}: .sinr format 1.{minor} is not read by scinrcodec 2 or later; decode it with scinrcodec 1.x "
            "(pip install 'scinrcodec<2', then sinr decode FILE out.h5ad) and encode the result again")
    if major not in READ_MINORS:
        raise UnsupportedVersionError(f"{name}: .sinr format {major}.{minor} is not supported (this reader reads "
                                      f"{' and '.join(f'{m}.x' for m in READ_MINORS)})")
    if source.size < PREAMBLE.size + TRAILER.size:
        raise CorruptFileError(f"{name}: truncated .sinr file ({source.size} bytes)")
    length, footer_crc, trailer_reserved, end_magic = TRAILER.unpack(bytes(source.read(source.size - TRAILER.size,
                                                                                       TRAILER.size)))
    if end_magic != END_MAGIC:
        raise CorruptFileError(f"{name}: no .sinr trailer at its end (the file is truncated or has bytes appended)")
    if reserved or trailer_reserved:
        raise CorruptFileError(f"{name}: reserved fields of the preamble or trailer are not zero")
    offset = source.size - TRAILER.size - length
    if length > MAX_FOOTER_BYTES or offset < PREAMBLE.size:
        raise CorruptFileError(f"{name}: footer length {length} does not fit the file")
    packed = source.read(offset, length)
    if crc32(preamble + bytes(packed)) != footer_crc:
        raise CorruptFileError(f"{name}: footer checksum mismatch (file is corrupt)")
    return Footer((major, minor), unpack_header(packed, MAX_FOOTER_BYTES, what=f"{name}: footer"), offset,
                  footer_crc)
