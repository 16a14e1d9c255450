#!/usr/bin/env python3
"""Independent reference decoder for the `.sinr` file format, versions 3.2, 3.1, 3.0, 2.1 and 2.0.

Written only from `spec/sinr-format.md` (cited below as "§n"), for clarity rather than speed: a
reader of the specification should be able to follow it section by section. It validates every
rule of §9 that a whole-matrix read depends on, for both major versions, and decodes the whole
matrix into COO arrays, segmented matrices (§5.5) and cell orders stored as byte planes (§5.6)
included. The tiles of a version 3 file are decoded by `spec/tiles3.py` (§6, §7.2), those of a
version 2 file here (Appendix C). File-level sections (§14) are not read: a reader of matrices may
skip them.

Dependencies (beyond the Python standard library and `spec/tiles3.py`):

* ``numpy``      -- arrays (§3.2) and the integer SIREN evaluation (§7.1);
* ``zstandard``  -- the format stores Zstandard frames (RFC 8878, §3.3); this decoder parses each
                    frame's header and block structure itself and uses the library only to
                    decompress the frame's blocks;
* ``msgpack``    -- the footer, chunk headers and ``siren.meta`` are MessagePack (§3.5); the
                    extra rules of §3.5 (no duplicate keys, string keys, no ext types, ...) are
                    enforced here on top of the library.

Usage:  python spec/reference_decoder.py FILE [--matrix NAME]

Errors are raised as :class:`SpecViolation` with the spec's rule identifier (``"K9"``,
``"C6"``, ...) where §9 (or §C.8, for the tiles of a version 2 file) numbers the rule, else the
section number (``"§3.3"``).  Its ``kind``
is one of ``"format"`` (not a .sinr file), ``"version"`` (unsupported version) and
``"corrupt"`` (everything else), the three kinds §2.4 asks a reader to tell apart.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiles3  # noqa: E402  (spec/tiles3.py: the tile coding of version 3)
from tiles3 import bin_start_and_bits  # noqa: E402  (§6.3.1, shared by both versions)

__all__ = ["SpecViolation", "SinrFile", "DecodedMatrix", "open_sinr", "decode", "main"]


# =================================================================================================
# Errors
# =================================================================================================

class SpecViolation(Exception):
    """A file breaks a rule of the specification.

    ``check_id``: the rule (``"C1"`` .. ``"W1"`` of §9 or §C.8, or a section such as ``"§3.3"``);
    ``kind``: ``"format"`` (not a .sinr file), ``"version"`` (a major version this decoder does
    not read) or ``"corrupt"`` (§2.4's three kinds of failure).
    """

    def __init__(self, check_id: str, message: str, kind: str = "corrupt"):
        super().__init__(f"[{check_id}] {message}")
        self.check_id = check_id
        self.message = message
        self.kind = kind


def fail(check_id: str, message: str, kind: str = "corrupt"):
    raise SpecViolation(check_id, message, kind)


def require(condition: bool, check_id: str, message: str) -> None:
    if not condition:
        fail(check_id, message)


# =================================================================================================
# §1.3 Notation
# =================================================================================================

def is_int(v: Any) -> bool:
    """§3.5: "int" is a MessagePack integer; booleans and floats are not ints."""
    return type(v) is int


def is_str(v: Any) -> bool:
    return type(v) is str


def is_float(v: Any) -> bool:
    """§3.5: "float" is MessagePack float 64 (float 32 MAY be accepted; msgpack gives both as
    Python float, and float 32 converts to binary64 exactly)."""
    return type(v) is float


def is_bool(v: Any) -> bool:
    return type(v) is bool


def int_in(v: Any, lo: int, hi: int) -> bool:
    """An int within lo .. hi (both ends included, §1.3)."""
    return is_int(v) and lo <= v <= hi


def bitlen(v: int) -> int:
    return v.bit_length()


def clamp(x, lo, hi):
    return min(max(x, lo), hi)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# =================================================================================================
# §3.1 CRC-32 (ISO-HDLC, as zlib.crc32) -- check value from §3.1
# =================================================================================================

def crc32(*parts: bytes) -> int:
    c = 0
    for p in parts:
        c = zlib.crc32(p, c)
    return c & 0xFFFFFFFF


assert crc32(b"123456789") == 0xCBF43926 and crc32(b"") == 0


# =================================================================================================
# Appendix A: the tables SINE, EDGE, EXPM1, EDGE3 (§7.1.2, §C.6, §7.3, §7.2), checked against it
# =================================================================================================

# A.1, copied from the specification: E_k = roundeven(expm1(k / 4) * 2^20).
EDGE_E = [
    0, 297822, 680234, 1171259, 1801749, 2611314, 3650816, 4985562, 6699411, 8900036,
    11725695, 15353912, 20012636, 25994555, 33675492, 43538010, 56201734, 72462277, 93341227,
    120150331, 154573901, 198774640, 255529512, 328404210, 421977175, 542127240, 696402977,
    894496945, 1148854635, 1475456373, 1894821307, 2433296540, 3124712426, 4012507997,
    5152460075, 6616187518, 8495650756, 10908929325, 14007640344, 17986464052, 23095374821,
    29655346101, 38078515956, 48894080140, 62781539447, 80613390171, 103509939727,
    132909691312,
]
EDGE = [e / 2**20 for e in EDGE_E]  # exact in binary64 (§C.6)

# A.2: SINE[k] = roundeven(sin(2 pi k / 4096) * 4096); Python's round() ties to even.
SINE = np.array([round(math.sin(2 * math.pi * k / 4096) * 4096) for k in range(4096)],
                dtype=np.int64)

# A.3: EXPM1[k] = min(roundeven(expm1((k + 1/2) / 1024)), 2^31 - 1), k = 0 .. 22004.
EXPM1 = [min(round(math.expm1((k + 0.5) / 1024)), 2**31 - 1) for k in range(22005)]


def _check_tables() -> None:
    """Appendix A's check values (§7.4: they confirm an implementation's tables)."""
    for k in range(48):
        if round(math.expm1(k / 4) * 2**20) != EDGE_E[k]:
            raise RuntimeError(f"EDGE[{k}] disagrees with expm1 on this platform")
    e3 = tiles3.EDGE3_E  # A.5: copied into spec/tiles3.py; E3_2k = E_k
    if (e3 != [round(math.expm1(k / 8) * 2**20) for k in range(96)] or e3[::2] != EDGE_E
            or sum(e3) != 1_281_624_476_274):
        raise RuntimeError("EDGE3 table does not match Appendix A.5 on this platform")
    s = SINE
    ok = (list(s[0:4]) == [0, 6, 13, 19] and s[256] == 1567 and s[512] == 2896
          and s[1024] == 4096 and s[2048] == 0 and s[3072] == -4096 and s[4095] == -6
          and int(np.abs(s).sum()) == 10_680_676
          and crc32(s.astype("<i2").tobytes()) == 0x1AC8F72D)
    if not ok:
        raise RuntimeError("SINE table does not match Appendix A.2 on this platform")
    e = EXPM1
    ok = (all(v == 0 for v in e[:415]) and e[415] == 1 and e[1024] == 2 and e[2048] == 6
          and e[4096] == 54 and e[10240] == 22_036 and e[20000] == 303_756_903
          and e[22002] == 2_145_881_812 and e[22003] == e[22004] == 2**31 - 1
          and crc32(np.array(e, dtype="<u4").tobytes()) == 0x514976D3)
    if not ok:
        raise RuntimeError("EXPM1 table does not match Appendix A.3 on this platform")


_check_tables()


# =================================================================================================
# §3.3 Zstandard frames (RFC 8878)
# =================================================================================================

ZSTD_MAGIC = 0xFD2FB528
MAX_WINDOW = 2**27  # §3.3: a reader MAY refuse a larger Window_Size; this one does
_DCTX = zstandard.ZstdDecompressor()


@dataclass
class FrameHeader:
    content_size: int | None
    window_size: int
    dict_id: int
    has_checksum: bool
    end: int  # offset just past the frame (header, blocks and checksum)


def parse_zstd_frame(buf: bytes, check: str, what: str) -> FrameHeader:
    """Walk one Zstandard frame at the start of `buf` (RFC 8878 §3.1.1): its header, every
    block header, and the optional checksum, to find where the frame ends."""
    if len(buf) < 4:
        fail(check, f"{what}: not a zstd frame (only {len(buf)} bytes)")
    magic = int.from_bytes(buf[0:4], "little")
    if 0x184D2A50 <= magic <= 0x184D2A5F:
        fail(check, f"{what}: a skippable frame, not a Zstandard frame (§3.3 rule 1)")
    if magic != ZSTD_MAGIC:
        fail(check, f"{what}: not a zstd frame (§3.3 rule 1)")
    if len(buf) < 5:
        fail(check, f"{what}: zstd frame truncated in its header")
    fhd = buf[4]
    fcs_flag, single_segment = fhd >> 6, (fhd >> 5) & 1
    reserved, has_checksum, did_flag = (fhd >> 3) & 1, (fhd >> 2) & 1, fhd & 3
    if reserved:
        fail(check, f"{what}: zstd frame header's reserved bit is set")
    pos = 5
    window_descriptor = None
    if not single_segment:
        if pos >= len(buf):
            fail(check, f"{what}: zstd frame truncated in its header")
        window_descriptor = buf[pos]
        pos += 1
    did_size = [0, 1, 2, 4][did_flag]
    fcs_size = [1 if single_segment else 0, 2, 4, 8][fcs_flag]
    if pos + did_size + fcs_size > len(buf):
        fail(check, f"{what}: zstd frame truncated in its header")
    dict_id = int.from_bytes(buf[pos:pos + did_size], "little")
    pos += did_size
    if fcs_size == 0:
        content_size = None
    else:
        content_size = int.from_bytes(buf[pos:pos + fcs_size], "little")
        if fcs_size == 2:
            content_size += 256
    pos += fcs_size
    if single_segment:
        window_size = content_size
    else:
        exponent, mantissa = window_descriptor >> 3, window_descriptor & 7
        base = 1 << (10 + exponent)
        window_size = base + (base // 8) * mantissa
    # The blocks (RFC 8878 §3.1.1.2): 3-byte header, then Block_Size bytes (1 for RLE).
    while True:
        if pos + 3 > len(buf):
            fail(check, f"{what}: zstd frame truncated (not exactly one complete zstd frame)")
        bh = int.from_bytes(buf[pos:pos + 3], "little")
        pos += 3
        last, block_type, block_size = bh & 1, (bh >> 1) & 3, bh >> 3
        if block_type == 3:
            fail(check, f"{what}: zstd block of the reserved type")
        pos += 1 if block_type == 1 else block_size
        if pos > len(buf):
            fail(check, f"{what}: zstd frame truncated (not exactly one complete zstd frame)")
        if last:
            break
    if has_checksum:
        pos += 4
        if pos > len(buf):
            fail(check, f"{what}: zstd frame truncated in its checksum")
    return FrameHeader(content_size, window_size, dict_id, bool(has_checksum), pos)


def zstd_decompress(buf: bytes, check: str, what: str, *, exact: int | None = None,
                    bound: int | None = None) -> bytes:
    """§3.3: `buf` (a section's whole byte range) MUST be exactly one Zstandard frame, declaring
    its content size (rule 2), without a dictionary (rule 3), whose declared size equals `exact`
    or is at most `bound` -- checked BEFORE decompressing -- and which decompresses to exactly
    that size (rule 4)."""
    fh = parse_zstd_frame(buf, check, what)
    if fh.end != len(buf):
        fail(check, f"{what}: {len(buf) - fh.end} bytes after the zstd frame "
                    "(not exactly one complete zstd frame, §3.3 rule 1)")
    if fh.content_size is None:
        fail(check, f"{what}: zstd frame without its content size (§3.3 rule 2)")
    if fh.dict_id != 0:
        fail(check, f"{what}: zstd frame needs dictionary {fh.dict_id} (§3.3 rule 3)")
    if exact is not None and fh.content_size != exact:
        fail(check, f"{what}: zstd frame declares {fh.content_size} bytes, expected {exact} "
                    "(§3.3 rule 4)")
    if bound is not None and fh.content_size > bound:
        fail(check, f"{what}: zstd frame declares {fh.content_size} bytes, more than the "
                    f"bound {bound} (§3.3 rule 4)")
    if fh.window_size > MAX_WINDOW:
        fail(check, f"{what}: zstd Window_Size {fh.window_size} exceeds 2^27 (§3.3)")
    try:
        out = _DCTX.decompress(buf, max_output_size=fh.content_size)
    except zstandard.ZstdError as e:
        fail(check, f"{what}: zstd frame does not decompress: {e}")
    if len(out) != fh.content_size:
        fail(check, f"{what}: zstd frame decompressed to {len(out)} bytes, declared "
                    f"{fh.content_size} (§3.3 rule 4)")
    return out


def zstd_array(buf: bytes, count: int, dtype: str, check: str, what: str) -> np.ndarray:
    """§3.2 + §3.3 "zstd array": `count` little-endian items, exact size count * item size."""
    itemsize = np.dtype(dtype).itemsize
    if count * itemsize > 2**40:
        fail(check, f"{what}: array of {count * itemsize} bytes exceeds 2^40 (§3.3)")
    raw = zstd_decompress(buf, check, what, exact=count * itemsize)
    return np.frombuffer(raw, dtype=dtype)


def zstd_shuffled_array(buf: bytes, count: int, dtype: str, check: str, what: str) -> np.ndarray:
    """§3.3 "zstd shuffled array": the `count` items' byte planes, P[j * count + i] = byte j of
    item i, exact size count * item size (the bound of a zstd array)."""
    itemsize = np.dtype(dtype).itemsize
    if count * itemsize > 2**40:
        fail(check, f"{what}: array of {count * itemsize} bytes exceeds 2^40 (§3.3)")
    planes = np.frombuffer(zstd_decompress(buf, check, what, exact=count * itemsize),
                           dtype=np.uint8).reshape(itemsize, count)
    items = np.zeros(count, dtype=np.uint64)
    for j in range(itemsize):  # item i = sum of P[j * count + i] * 2^(8j)
        items |= planes[j].astype(np.uint64) << np.uint64(8 * j)
    return items.astype(dtype)  # a signed type: the low 8 * itemsize bits, two's complement


def zstd_names(buf: bytes, count: int, check: str, what: str) -> list[str]:
    """§3.3 "zstd names": UTF-8 text, names joined by 0A; exactly `count` names."""
    fh = parse_zstd_frame(buf, check, what)
    # A cheap earlier check (§9 allows any rule earlier): `count` names need count - 1
    # separators, so a smaller declared size can never split into `count` names.
    if fh.content_size is not None and fh.content_size < count - 1:
        fail(check, f"{what}: {fh.content_size} bytes cannot hold {count} names, expected "
                    f"{count}")
    raw = zstd_decompress(buf, check, what, bound=count * 4097)
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        fail(check, f"{what}: names are not valid UTF-8 (§3.3)")
    if count == 0:
        require(text == "", check, f"{what}: {len(raw)} bytes of names, expected 0 names")
        return []
    names = text.split("\n")
    require(len(names) == count, check, f"{what}: {len(names)} names, expected {count}")
    for nm in names:
        require(len(nm.encode("utf-8")) <= 4096, check,
                f"{what}: a name longer than 4096 bytes (§3.3)")
        require("\r" not in nm, check, f"{what}: a name holds a carriage return (§3.3)")
    return names


# =================================================================================================
# §3.5 MessagePack
# =================================================================================================

def _pairs_to_map(pairs):
    """object_pairs_hook: map keys are strings, none twice (§3.5)."""
    result = {}
    for k, v in pairs:
        if not is_str(k):
            raise _MsgpackRuleError(f"a map key is not a string: {k!r}")
        if k in result:
            raise _MsgpackRuleError(f"map key {k!r} appears twice")
        result[k] = v
    return result


class _MsgpackRuleError(Exception):
    pass


def _no_ext(code, data):
    raise _MsgpackRuleError(f"MessagePack ext type {code} (ext types MUST NOT be used)")


MAX_DEPTH = 64  # §3.5: the deepest value a payload may hold (its object has depth 0)


def _check_value_types(root) -> None:
    """Reject ext values that msgpack decodes itself (the timestamp, ext -1) and values deeper
    than MAX_DEPTH.  Iterative, so that deep nesting cannot exhaust Python's recursion limit."""
    stack = [(root, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _MsgpackRuleError(f"a value nested {depth} deep (at most {MAX_DEPTH})")
        if isinstance(v, dict):
            stack.extend((item, depth + 1) for item in v.values())
        elif isinstance(v, list):
            stack.extend((item, depth + 1) for item in v)
        elif not (v is None or type(v) in (bool, int, float, str, bytes)):
            raise _MsgpackRuleError(f"MessagePack value of type {type(v).__name__}")


def unpack_map(payload: bytes, check: str, what: str) -> dict:
    """§3.5: exactly one object and nothing after it; here it must be a map."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True,
                              object_pairs_hook=_pairs_to_map, ext_hook=_no_ext)
        _check_value_types(obj)
    except _MsgpackRuleError as e:
        fail(check, f"{what}: MessagePack breaks §3.5: {e}")
    except Exception as e:  # msgpack's own errors: malformed data, trailing bytes, bad UTF-8
        fail(check, f"{what}: unreadable MessagePack ({type(e).__name__}: {e})")
    if not isinstance(obj, dict):
        fail(check, f"{what}: MessagePack value is not a map")
    return obj


# =================================================================================================
# §3.6 Section tables
# =================================================================================================

@dataclass
class Section:
    name: str
    start: int  # absolute
    length: int
    crc: int

    @property
    def end(self) -> int:
        return self.start + self.length


def parse_section_table(table: Any, base: int, low: int, high: int, check: str,
                        what: str) -> dict[str, Section]:
    """§3.6 rules 1-4."""
    if not isinstance(table, list):
        fail(check, f"{what}: the section table is not a list")
    sections: dict[str, Section] = {}
    for entry in table:
        ok = (isinstance(entry, list) and len(entry) == 4 and is_str(entry[0])
              and int_in(entry[1], 0, math.inf) and int_in(entry[2], 0, math.inf)
              and int_in(entry[3], 0, 2**32 - 1))
        require(ok, check, f"{what}: malformed section table entry {entry!r} (§3.6 rule 1)")
        name, offset, length, crc = entry
        require(name not in sections, check,
                f"{what}: section {name!r} appears twice (§3.6 rule 2)")
        s = Section(name, base + offset, length, crc)
        require(low <= s.start and s.end <= high, check,
                f"{what}: section {name!r} [{s.start}, {s.end}) lies outside [{low}, {high}) "
                "(§3.6 rule 3)")
        sections[name] = s
    check_disjoint([(s.start, s.end, f"section {s.name!r}") for s in sections.values()],
                   check, what)
    return sections


def check_disjoint(ranges: list[tuple[int, int, str]], check: str, what: str) -> None:
    """No two ranges of non-zero length overlap (§3.6 rule 4, M12)."""
    nonempty = sorted(r for r in ranges if r[1] > r[0])
    for (s0, e0, n0), (s1, e1, n1) in zip(nonempty, nonempty[1:]):
        require(s1 >= e0, check, f"{what}: {n0} [{s0}, {e0}) overlaps {n1} [{s1}, {e1})")


def section_bytes(data: bytes, s: Section, check: str, what: str) -> bytes:
    """§3.6: verify a section's crc32 before using any byte of it."""
    raw = data[s.start:s.end]
    require(crc32(raw) == s.crc, check, f"{what}: checksum mismatch in section {s.name!r}")
    return raw


# =================================================================================================
# §2 File structure: §2.4 opening (rules C1-C7)
# =================================================================================================

MAGIC = b"\x89SINR\r\n\x1a"
END_MAGIC = b"SINR-END"
# The highest minor version of each major version this decoder implements (§11.2): 2.1 (its
# file-level sections are skipped, as a reader of matrices may) and 3.2 (the features `segments`
# of 3.1 and `cell-order-planes` of 3.2).
READER_MINOR = {2: 1, 3: 2}


def open_container(data: bytes) -> tuple[int, int, int, int, dict]:
    """§2.4 steps 1-9.  Returns (major, minor, F, Z, footer map)."""
    Z = len(data)
    # Step 1 (C1)
    if Z < 16:
        if Z == 0 or data[:min(Z, 8)] != MAGIC[:min(Z, 8)]:
            fail("C1", "not a .sinr file", kind="format")
        fail("C1", f"truncated .sinr file ({Z} bytes, less than the 16-byte preamble)")
    # Step 2 (C1)
    if data[0:8] != MAGIC:
        fail("C1", "not a .sinr file (no .sinr magic)", kind="format")
    # Step 3 (C2)
    major, minor = struct.unpack_from("<HH", data, 8)
    if major == 1:
        fail("C2", f".sinr format 1.{minor} is not read by this version 2 and 3 reader; decode "
                   "it with a format 1 reader (scinrcodec 1.x) and encode the result again",
             kind="version")
    if major not in READER_MINOR:
        fail("C2", f".sinr format {major}.{minor} is not supported", kind="version")
    # Step 4 (C3)
    require(Z >= 40, "C3", f"truncated .sinr file ({Z} bytes: no room for a trailer)")
    # Step 5 (C3)
    footer_length, footer_crc, trailer_reserved = struct.unpack_from("<QII", data, Z - 24)
    require(data[Z - 8:] == END_MAGIC, "C3",
            "truncated or damaged: no .sinr trailer at its end (end_magic is not SINR-END)")
    # Step 6 (C4)
    preamble_reserved = struct.unpack_from("<I", data, 12)[0]
    require(preamble_reserved == 0 and trailer_reserved == 0, "C4",
            "the reserved fields of the preamble or trailer are not 0")
    # Step 7 (C5)
    F = Z - 24 - footer_length
    require(footer_length <= 2**28 and F >= 16, "C5",
            f"footer length {footer_length} does not fit the file ({Z} bytes) or exceeds 2^28")
    # Step 8 (C6)
    footer = data[F:Z - 24]
    require(crc32(data[0:16], footer) == footer_crc, "C6", "footer checksum mismatch")
    # Step 9 (C7): one zstd frame of at most 2^28 bytes, holding one MessagePack map.
    payload = zstd_decompress(footer, "C7", "footer", bound=2**28)
    file_map = unpack_map(payload, "C7", "footer")
    return major, minor, F, Z, file_map


# =================================================================================================
# §5.2 Stages and modes
# =================================================================================================

STAGE_PARAMS: dict[str, dict[str, tuple[int, int]]] = {
    "reorder-detection-depth": {},
    "row-bands": {"tile_nnz": (1, 2**20), "patch_nnz": (1, 2**40),
                  "chunk_cells": (1, 2**31 - 1)},
    "gap-bin-positions": {},
    "golomb-rans-positions": {},
    "value-quantiser": {"max_error": (0, 2**31 - 2)},
    "fine-context-values": {},
    "context-rans-values": {},
    "siren-predictor": {},
}


_SIX_2 = ["reorder-detection-depth", "row-bands", "golomb-rans-positions", "value-quantiser",
          "context-rans-values", "siren-predictor"]
_MODES = ("lossless", "max-error", "inr-only")
# §5.2: the exact stage list of each mode, by major version, and the rule that checks it.
MODE_STAGES = {3: {mode: tiles3.stage_ids(mode) for mode in _MODES},
               2: {"lossless": _SIX_2, "max-error": _SIX_2,
                   "inr-only": [s for s in _SIX_2 if s != "context-rans-values"]}}
STAGES_RULE = {3: "R3", 2: "M5"}


def parse_stages(stages: Any, mode: str, major: int) -> int:
    """Rule M5 (version 2) or R3 (version 3).  Returns E, the value-quantiser's max_error."""
    rule = STAGES_RULE[major]
    require(isinstance(stages, list), rule, "the stage list is missing or not a list")
    seen: list[str] = []
    max_error = None
    for st in stages:
        require(isinstance(st, dict), rule, f"a stage is not a map: {st!r}")
        sid = st.get("id")
        require(is_str(sid), rule, f"a stage without a str id: {st!r}")
        require(sid in STAGE_PARAMS, rule, f"unknown stage {sid!r}")
        require(sid not in seen, rule, f"stage {sid!r} appears twice")
        seen.append(sid)
        params = STAGE_PARAMS[sid]
        require(set(st) == {"id"} | set(params), rule,
                f"stage {sid!r} has parameters {sorted(set(st) - {'id'})}, expected exactly "
                f"{sorted(params)} (stage maps are exact)")
        for p, (lo, hi) in params.items():
            require(int_in(st[p], lo, hi), rule,
                    f"stage {sid!r}: invalid parameters ({p} = {st[p]!r}, not an int "
                    f"{lo} .. {hi})")
        if sid == "value-quantiser":
            max_error = st["max_error"]
    require(seen == MODE_STAGES[major][mode], rule,
            f"the stages {seen} do not match mode {mode!r} in a version {major} file")
    require((mode == "max-error") == (max_error >= 1), rule,
            f"mode {mode!r} contradicts max_error {max_error}")
    return max_error


# =================================================================================================
# §4 The footer, §5.1 the matrix map, §5.3 matrix sections  (rules F1, F2, M1-M12)
# =================================================================================================

MATRIX_SECTIONS = {"names.gene_ids", "names.gene_names", "names.feature_types",
                   "genes.order", "genes.baseline", "chunks.index", "segments.index"}
# §5.4.3 by major version: gaps.counts exists, and is required, in version 3 only, and so does
# cells.order_planes (§5.6), which a chunk may hold in place of cells.order (rule CP1).
_CHUNK_SECTIONS_2 = {"cells.order", "cells.baseline", "cells.names", "bands.rows",
                     "bands.widths", "bands.crc32", "tiles.nnz", "tiles.bytes", "values.counts",
                     "siren.meta", "siren.weights", "tiles.data"}
_CHUNK_REQUIRED_2 = ["cells.baseline", "bands.rows", "bands.widths",
                     "bands.crc32", "tiles.nnz", "tiles.bytes", "tiles.data"]
CHUNK_SECTIONS = {2: _CHUNK_SECTIONS_2, 3: _CHUNK_SECTIONS_2 | {"gaps.counts", "cells.order_planes",
                                                                 "cells.barcodes"}}
CHUNK_REQUIRED = {2: _CHUNK_REQUIRED_2, 3: _CHUNK_REQUIRED_2 + ["gaps.counts"]}
# §6.4, §C.4: the rows of values.counts (contexts) by major version.
N_CONTEXTS = {2: 48, 3: tiles3.N_CONTEXTS}
SEGMENTS = "segments"  # the feature of version 3.1 (§5.5)
CELL_ORDER_PLANES = "cell-order-planes"  # a feature of version 3.2 (§5.6)
CELL_BARCODES = "cell-barcodes"  # the other feature of version 3.2 (§5.7)
# §5.1.1: 3.0 defines none, 3.1 `segments`, 3.2 `cell-order-planes` and `cell-barcodes`
FEATURES_IMPLEMENTED = {SEGMENTS, CELL_ORDER_PLANES, CELL_BARCODES}


@dataclass
class Segment:
    """§5.5: segment `index` holds the chunks first_chunk .. first_chunk + n_chunks - 1 (K_s) and
    the rows first_row .. first_row + n_rows - 1 (R_s, S_s) of genes.order and genes.baseline.
    A matrix without the feature is one segment of every chunk and row."""
    index: int
    first_chunk: int
    n_chunks: int
    first_row: int
    n_rows: int


@dataclass
class ChunkEntry:
    """One row of `chunks.index` (§5.4.1), plus first_i."""
    index: int
    offset: int
    header_length: int
    header_crc32: int
    block_length: int
    n_cells: int
    nnz: int
    first_cell: int
    segment: Segment | None = None  # set once segments.index is read (SG2)


@dataclass
class SinrFile:
    """An opened file: the open-time rules (C1-C7, F1, F2, M1-M12, R1-R3, SG1, SG2) hold."""
    data: bytes
    major: int
    minor: int
    F: int
    name: str
    n_genes: int
    n_cells: int
    nnz: int
    mode: str
    max_error: int
    S: int
    n_chunks: int
    gene_names_are_ids: bool
    has_cell_names: bool
    sections: dict[str, Section]
    chunks: list[ChunkEntry]
    segments: list[Segment]  # §5.5; one segment when the matrix does not list `segments`
    segmented: bool  # the matrix lists the feature `segments`
    file_sections: Any = None  # the file-level section table (§4), ignored unless strict
    cell_order_planes: bool = False  # the matrix lists the feature `cell-order-planes` (§5.6)
    cell_barcodes: bool = False  # the matrix lists the feature `cell-barcodes` (§5.7)

    def decode(self, strict: bool = False) -> "DecodedMatrix":
        return decode_matrix(self, strict)


def open_sinr(data: bytes, matrix_name: str | None = None) -> SinrFile:
    data = bytes(data)
    major, minor, F, Z, fm = open_container(data)

    # §4 the file map.  F1: format.  `writer` is informative: ignored whatever its type (§3.5).
    require(fm.get("format") == "sinr", "F1",
            f"the footer does not describe a .sinr file (format = {fm.get('format')!r})")
    # The file-level `sections` is required, but format 2.0 defines no file-level section and
    # readers MUST ignore it: only its presence is checked (see the notes on §4).
    require("sections" in fm, "§4", "footer: the required key 'sections' is missing")
    # F2
    matrices = fm.get("matrices")
    require(isinstance(matrices, list), "F2", "footer: matrices is missing or not a list")
    require(len(matrices) >= 1, "F2", "the footer lists no matrix")
    names = []
    for m in matrices:
        require(isinstance(m, dict) and is_str(m.get("name")), "F2",
                "a matrix entry is not a map with a str name")
        require(m["name"] not in names, "F2", f"two matrices share a name: {m['name']!r}")
        names.append(m["name"])
    if matrix_name is None:
        mm = matrices[0]
    else:
        require(matrix_name in names, "F2", f"no matrix named {matrix_name!r}")
        mm = matrices[names.index(matrix_name)]

    # §5.1 the matrix map, rules M1-M11 and, in a version 3 file, R1-R3.
    name = mm["name"]  # M1 (checked with F2)
    features: list = []  # a version 2 file lists none (§5.1.1)
    if major == 3:  # §5.1.1: R1 and R2 before every other rule of the matrix map but M1
        features = mm.get("required_features")
        require(isinstance(features, list) and all(is_str(x) for x in features)
                and len(set(features)) == len(features), "R1",
                f"required_features {features!r} is not a list of distinct str")
        for feature in features:
            if feature not in FEATURES_IMPLEMENTED:
                fail("R2", f"matrix {name!r} requires feature {feature!r}, which this reader of "
                           f"format 3.{READER_MINOR[3]} does not implement (the file is format "
                           f"{major}.{minor})", kind="version")
    segmented = SEGMENTS in features
    shape = mm.get("shape")
    require(isinstance(shape, list) and len(shape) == 2
            and all(int_in(v, 0, 2**31 - 1) for v in shape), "M2",
            f"shape {shape!r} is not a list of two ints 0 .. 2^31-1")
    n_genes, n_cells = shape
    nnz = mm.get("nnz")
    require(int_in(nnz, 0, n_genes * n_cells), "M3",
            f"nnz {nnz!r} is not an int 0 .. n_genes * n_cells")
    mode = mm.get("mode")
    require(is_str(mode) and mode in MODE_STAGES[major], "M4", f"unknown mode {mode!r}")
    max_error = parse_stages(mm.get("stages"), mode, major)  # M5 or R3
    S = mm.get("n_stored_genes")
    if not segmented:
        require(int_in(S, 0, n_genes), "M6", f"n_stored_genes {S!r} is not an int 0 .. n_genes")
    n_chunks = mm.get("n_chunks")
    require(int_in(n_chunks, 0, n_cells) and ((n_chunks > 0) == (n_cells > 0)), "M7",
            f"n_chunks {n_chunks!r} is not an int 0 .. n_cells, > 0 exactly when n_cells > 0")
    # SG1: n_segments exactly with the feature; with it, S counts the rows of every segment.
    n_segments = mm.get("n_segments")
    if segmented:
        require(int_in(n_segments, 1, n_chunks), "SG1",
                f"n_segments {n_segments!r} is not an int 1 .. n_chunks ({n_chunks})")
        require(int_in(S, 0, min(n_segments * n_genes, 2**31 - 1)), "SG1",
                f"n_stored_genes {S!r} is not an int 0 .. min(n_segments * n_genes, 2**31 - 1)")
    elif major == 3:  # a version 2 reader ignores keys it does not know (§11.2)
        require("n_segments" not in mm, "SG1",
                "n_segments is present but required_features does not list 'segments'")
    gnai, hcn = mm.get("gene_names_are_ids"), mm.get("has_cell_names")
    require(is_bool(gnai) and is_bool(hcn), "M8",
            "gene_names_are_ids and has_cell_names must be bools")
    # `options` and `stats` are informative: ignored whatever their type (§3.5); this decoder
    # uses neither.

    sections = parse_section_table(mm.get("sections"), 0, 16, F, "M9", "matrix")  # M9
    for s in sections:  # M10 (unknown names: §11.2; segments.index is version 3's)
        known = s in MATRIX_SECTIONS and (major == 3 or s != "segments.index")
        require(known or minor > READER_MINOR[major], "M10",
                f"unknown matrix section {s!r} in a file of format {major}.{minor}")
    for s in ("genes.order", "genes.baseline", "chunks.index"):
        require(s in sections, "M10", f"missing section {s!r}")
    if segmented:  # SG1: segments.index exactly with the feature
        require("segments.index" in sections, "SG1", "missing section 'segments.index'")
    elif major == 3:
        require("segments.index" not in sections, "SG1", "section 'segments.index' is present "
                                                         "but required_features does not list "
                                                         "'segments'")
    if gnai:  # M11
        require("names.gene_names" not in sections and "names.gene_ids" in sections, "M11",
                "gene_names_are_ids contradicts the name sections")

    # M12: the chunk index.
    ci = sections["chunks.index"]
    raw = section_bytes(data, ci, "M12", "matrix")
    index = zstd_array(raw, 6 * n_chunks, "<u8", "M12", "chunks.index")
    chunks: list[ChunkEntry] = []
    first = 0
    for i in range(n_chunks):
        f = [int(v) for v in index[6 * i:6 * i + 6]]
        e = ChunkEntry(i, *f, first_cell=first)
        require(all(v < 2**63 for v in f) and e.header_length <= min(e.block_length, 2**26)
                and e.offset >= 16 and e.offset + e.block_length <= F and e.n_cells >= 1,
                "M12", f"chunks.index: impossible entry for chunk {i}: {f}")
        chunks.append(e)
        first += e.n_cells
    require(first == n_cells, "M12",
            f"chunks.index: the chunks' cells ({first}) do not add up to n_cells ({n_cells})")
    require(sum(e.nnz for e in chunks) == nnz, "M12",
            "chunks.index: the chunks' nonzeros do not add up to nnz")
    check_disjoint([(s.start, s.end, f"section {s.name!r}") for s in sections.values()]
                   + [(e.offset, e.offset + e.block_length, f"chunk {e.index}")
                      for e in chunks], "M12", "chunk blocks and matrix sections")

    segments = read_segments(data, sections, n_segments, n_chunks, S, n_genes) if segmented \
        else [Segment(0, 0, n_chunks, 0, S)]
    for seg in segments:
        for e in chunks[seg.first_chunk:seg.first_chunk + seg.n_chunks]:
            e.segment = seg
    return SinrFile(data, major, minor, F, name, n_genes, n_cells, nnz, mode, max_error, S,
                    n_chunks, gnai, hcn, sections, chunks, segments, segmented, fm["sections"],
                    cell_order_planes=CELL_ORDER_PLANES in features, cell_barcodes=CELL_BARCODES in features)


def read_segments(data: bytes, sections: dict[str, Section], n_segments: int, n_chunks: int,
                  S: int, n_genes: int) -> list[Segment]:
    """SG2: segments.index (2 uint64 per segment: n_chunks_s >= 1, S_s <= n_genes), whose
    chunks add up to n_chunks and rows to n_stored_genes (§5.5)."""
    raw = section_bytes(data, sections["segments.index"], "SG2", "matrix")
    items = [int(v) for v in zstd_array(raw, 2 * n_segments, "<u8", "SG2", "segments.index")]
    segments, K, R = [], 0, 0
    for s in range(n_segments):
        n_chunks_s, n_rows_s = items[2 * s], items[2 * s + 1]
        require(n_chunks_s >= 1 and n_rows_s <= n_genes, "SG2",
                f"segments.index: segment {s} has {n_chunks_s} chunks and {n_rows_s} rows "
                f"(needs >= 1 chunk and at most n_genes = {n_genes} rows)")
        segments.append(Segment(s, K, n_chunks_s, R, n_rows_s))
        K += n_chunks_s
        R += n_rows_s
    require(K == n_chunks, "SG2",
            f"segments.index: the segments' chunks ({K}) do not add up to n_chunks ({n_chunks})")
    require(R == S, "SG2", f"segments.index: the segments' rows ({R}) do not add up to "
                           f"n_stored_genes ({S})")
    return segments


# =================================================================================================
# §5.3 matrix sections at first use (M13, M14)
# =================================================================================================

def load_gene_order(f: SinrFile) -> tuple[np.ndarray, np.ndarray]:
    """M13 (SG3 with segments): genes.order (S uint32, < n_genes, distinct within each segment)
    and genes.baseline (S int16).  §5.3.2, §5.5: row r < S is gene genes.order[r].  Rows >= S
    are never needed here, since every chunk's n_rows <= S_s (K4, SG4): nothing is allocated per
    gene."""
    s = f.sections["genes.order"]
    order = zstd_array(section_bytes(f.data, s, "M13", "matrix"), f.S, "<u4", "M13",
                       "genes.order").astype(np.int64)
    require(bool(np.all(order < f.n_genes)), "M13",
            "genes.order: a gene index >= n_genes (not part of a permutation)")
    for seg in f.segments:
        rows = order[seg.first_row:seg.first_row + seg.n_rows]
        require(len(np.unique(rows)) == len(rows), "SG3" if f.segmented else "M13",
                f"genes.order: a gene appears twice in the rows of segment {seg.index}"
                if f.segmented else "genes.order: a gene appears twice (not part of a permutation)")
    s = f.sections["genes.baseline"]
    baseline = zstd_array(section_bytes(f.data, s, "M13", "matrix"), f.S, "<i2", "M13",
                          "genes.baseline").astype(np.int64)
    return order, baseline


def load_gene_names(f: SinrFile) -> dict[str, list[str] | None]:
    """M14 and §8.5."""
    out: dict[str, list[str] | None] = {}
    for key in ("gene_ids", "gene_names", "feature_types"):
        s = f.sections.get(f"names.{key}")
        if s is None:
            out[key] = None
        else:
            out[key] = zstd_names(section_bytes(f.data, s, "M14", "matrix"), f.n_genes, "M14",
                                  s.name)
    if f.gene_names_are_ids:
        out["gene_names"] = out["gene_ids"]
    return out


# =================================================================================================
# §C.1 The rANS coder of version 2 and its symbol models
# =================================================================================================

RANS_L = 2**23
PROB_BITS = 16
PROB_SCALE = 2**16


class RansDecoder:
    """§C.1.2.  A symbol model is a function slot -> (symbol, start, freq)."""

    def __init__(self, stream: bytes):
        # Step 1. Start.
        require(len(stream) >= 4, "T2", f"tile stream truncated ({len(stream)} bytes)")
        self.stream = stream
        self.x = int.from_bytes(stream[0:4], "little")
        self.pos = 4
        require(RANS_L <= self.x < 2**31, "T2", f"initial rANS state {self.x:#x} out of range")

    def decode(self, model: Callable[[int], tuple[int, int, int]]) -> int:
        # Step 2. Decode one symbol.
        slot = self.x & (PROB_SCALE - 1)
        symbol, start, freq = model(slot)
        self.x = freq * (self.x >> PROB_BITS) + slot - start
        while self.x < RANS_L:  # renormalise
            require(self.pos < len(self.stream), "T3", "tile stream truncated (renormalisation "
                                                       "reads past its end)")
            self.x = (self.x << 8) | self.stream[self.pos]
            self.pos += 1
        return symbol

    def finish(self) -> None:
        # Step 3. End.
        require(self.x == RANS_L and self.pos == len(self.stream), "T6",
                f"tile stream does not end cleanly (state {self.x:#x}, {self.pos} of "
                f"{len(self.stream)} bytes read)")

    # --- §C.1.4 models -----------------------------------------------------------------------

    def raw(self, b: int) -> int:
        """RAW(b), 1 <= b <= 16."""
        def model(slot):
            v = slot >> (16 - b)
            return v, v << (16 - b), 1 << (16 - b)
        return self.decode(model)

    def uniform(self, n: int) -> int:
        """U(N), N >= 2 (values >= N possible only above 2^16, in a corrupt stream)."""
        if n <= PROB_SCALE:
            base = PROB_SCALE // n
            extra = PROB_SCALE - base * n
            bnd = extra * (base + 1)

            def model(slot):
                if slot < bnd:
                    v = slot // (base + 1)
                    return v, v * (base + 1), base + 1
                v = extra + (slot - bnd) // base
                return v, bnd + (v - extra) * base, base
            return self.decode(model)
        lb = bitlen(n - 1) - 16
        hi = self.uniform(((n - 1) >> lb) + 1)
        lo = self.raw(lb)
        return (hi << lb) | lo

    @staticmethod
    def _quotient_model(slot):
        q = sum(1 for k in range(15) if slot >= PROB_SCALE - 2**(15 - k))
        if q == 15:
            return 15, PROB_SCALE - 2, 2
        return q, PROB_SCALE - 2**(16 - q), 2**(15 - q)

    def quotient(self) -> int:
        """Q*: escapes (15) then one symbol below 15; the value is their sum."""
        total = 0
        while True:
            q = self.decode(self._quotient_model)
            total += q
            if q < 15:
                return total


class FrequencyTable:
    """§C.1.4 frequency-table model over the 231 bins of one context (§C.4)."""

    def __init__(self, freqs: list[int]):
        self.freqs = freqs
        self.starts = [0] * len(freqs)
        acc = 0
        for s, fq in enumerate(freqs):
            self.starts[s] = acc
            acc += fq
        assert acc == PROB_SCALE

    def __call__(self, slot):
        # The last symbol whose start is <= slot; symbols of frequency 0 share their start with
        # the next symbol and so are never chosen.
        s = bisect.bisect_right(self.starts, slot) - 1
        return s, self.starts[s], self.freqs[s]


def frequencies(c: list[int]) -> list[int]:
    """§C.4: one context's bin counts -> frequencies summing to 2^16 (all zero if no count)."""
    K = sum(1 for v in c if v > 0)
    if K == 0:
        return [0] * len(c)
    T = sum(c)
    f = [1 + (v * (PROB_SCALE - K)) // T if v > 0 else 0 for v in c]
    m = c.index(max(c))  # the most frequent bin, lowest on ties
    f[m] += PROB_SCALE - sum(f)
    return f


def frequency_tables(counts: np.ndarray) -> list[FrequencyTable | None]:
    """§C.4: one row of 231 counts per context -> frequencies (None for an unused context)."""
    tables: list[FrequencyTable | None] = []
    for kappa in range(48):
        f = frequencies([int(v) for v in counts[kappa * 231:(kappa + 1) * 231]])
        tables.append(FrequencyTable(f) if any(f) else None)
    return tables


# =================================================================================================
# §6.3 Values: dequantisation (bins and offsets, §6.3.1: tiles3.bin_start_and_bits)
# =================================================================================================

def dequantise(u: int, mode: str, E: int) -> int:
    """§6.3.3."""
    if mode == "lossless":
        return u + 1
    return min(1 + u * (2 * E + 1), 2**31 - 1)


# =================================================================================================
# §7 SIREN predictor
# =================================================================================================

@dataclass
class Layer:
    n_out: int
    n_in: int
    w_mult: int
    b_mult: int
    shift: int
    W: np.ndarray  # int64 (n_out, n_in)
    B: np.ndarray  # int64 (n_out,)


@dataclass
class Siren:
    bits: int
    kind: str
    offset: float
    scale: float
    layers: list[Layer]


def parse_siren_map(meta: Any, where: str) -> tuple[int, tuple[str, float, float], list]:
    """§7.1.1: the SIREN map (unknown keys ignored, layer entries exact)."""
    require(isinstance(meta, dict), "K14", f"{where}: SIREN metadata is malformed (not a map)")
    bits = meta.get("bits")
    require(int_in(bits, 2, 16), "K14", f"{where}: SIREN bits {bits!r} not an int 2 .. 16")
    norm = meta.get("normalisation")
    ok = (isinstance(norm, list) and len(norm) == 3 and is_str(norm[0])
          and norm[0] in ("none", "minmax", "log") and is_float(norm[1]) and is_float(norm[2])
          and math.isfinite(norm[1]) and math.isfinite(norm[2]) and norm[2] > 0
          and (norm[0] == "minmax" or norm[1] == 0.0) and (norm[0] != "none" or norm[2] == 1.0))
    require(ok, "K14", f"{where}: invalid SIREN normalisation {norm!r}")
    layers = meta.get("layers")
    require(isinstance(layers, list) and 2 <= len(layers) <= 16, "K14",
            f"{where}: SIREN layers must be a list of 2 .. 16 entries")
    for li, layer in enumerate(layers):
        require(isinstance(layer, list) and len(layer) == 5 and all(is_int(v) for v in layer),
                "K14", f"{where}: SIREN layer {li} is not a list of five ints")
        n_out, n_in, w_mult, b_mult, shift = layer
        want_in = 2 if li == 0 else layers[li - 1][0]
        require(n_in == want_in, "K14", f"{where}: SIREN layers do not chain (layer {li} has "
                                        f"{n_in} inputs, expected {want_in})")
        require(1 <= n_out <= 512, "K14", f"{where}: SIREN layer {li} width {n_out}")
        require(0 <= shift <= 62 and abs(w_mult) < 2**40 and abs(b_mult) < 2**40, "K14",
                f"{where}: SIREN layer {li} scaling is out of range")
    require(layers[-1][0] == 1, "K14", f"{where}: the SIREN's last layer has n_out != 1")
    return bits, (norm[0], norm[1], norm[2]), layers


def siren_param_count(layers) -> int:
    return sum(n_out * n_in + n_out for n_out, n_in, *_ in layers)


def build_siren(bits, norm, layers, params: np.ndarray, where: str) -> Siren:
    """§7.1.1: parameters layer by layer, W row-major then B; each |p| < 2^(bits-1)."""
    require(bool(np.all(np.abs(params.astype(np.int64)) < 2**(bits - 1))), "K14",
            f"{where}: a SIREN parameter exceeds its {bits} bits")
    out, pos = [], 0
    for n_out, n_in, w_mult, b_mult, shift in layers:
        W = params[pos:pos + n_out * n_in].astype(np.int64).reshape(n_out, n_in)
        pos += n_out * n_in
        B = params[pos:pos + n_out].astype(np.int64)
        pos += n_out
        out.append(Layer(n_out, n_in, w_mult, b_mult, shift, W, B))
    return Siren(bits, norm[0], norm[1], norm[2], out)


def check_static_bound(s: Siren, h: int, n: int, where: str) -> None:
    """§7.1.3 with exact (Python) integers."""
    beta = max(h - 1, n - 1, 0)
    for li, L in enumerate(s.layers):
        for o in range(L.n_out):
            w_sum = sum(abs(int(w)) for w in L.W[o])
            bound = w_sum * beta * abs(L.w_mult) + abs(int(L.B[o])) * abs(L.b_mult)
            require(bound < 2**62, "K14", f"{where}: SIREN layer {li} can overflow 64-bit "
                                          "integers (static bound of §7.1.3)")
        beta = 4096


def siren_outputs(s: Siren, rows_in_band: np.ndarray, cols: np.ndarray, h: int,
                  n: int) -> list[int]:
    """§7.1.2 for many nonzeros at once.  int64 is exact here: the static bound (§7.1.3) has
    been checked, so no product or sum reaches 2^62.  numpy's >> on int64 is arithmetic and
    & 4095 on two's complement is mod 4096."""
    x = np.stack([2 * rows_in_band - (h - 1), 2 * cols - (n - 1)], axis=1).astype(np.int64)
    for li, L in enumerate(s.layers):
        z = x @ L.W.T                                   # (k, n_out), exact int64
        a = (z * np.int64(L.w_mult) + L.B * np.int64(L.b_mult)) >> np.int64(L.shift)
        if li < len(s.layers) - 1:
            x = SINE[a & 4095]
        else:
            return [int(v) for v in a[:, 0]]
    raise AssertionError("unreachable")


def siren_context(y: int, s: Siren) -> int:
    """§C.6, version 2 (binary64 arithmetic, one rounding per operation, as Python floats are).
    Version 3's contexts on the 1/8-nat grid (§7.2) are tiles3.siren_context."""
    if s.kind == "log":
        t = float(y) * (s.scale * 2.0**-10)
        if t == math.inf:
            return 47
        if t == -math.inf:
            return 0
        return clamp(math.floor(t), 0, 47)
    mean = ((float(y) * 2.0**-12) * s.scale) + s.offset
    kappa = 0
    for k in range(48):
        if EDGE[k] <= mean:
            kappa = k
    return kappa


def siren_prediction(y: int, s: Siren) -> int:
    """§7.3 (mode inr-only)."""
    if s.kind == "log":
        t = float(y) * (s.scale * 2.0**-2)
        if t == math.inf:
            k = 22004
        elif t == -math.inf:
            k = 0
        else:
            k = clamp(math.floor(t), 0, 22004)
        return max(1, EXPM1[k])
    mean = ((float(y) * 2.0**-12) * s.scale) + s.offset
    if mean == math.inf:
        return 2**31 - 1
    if mean == -math.inf:
        return 1
    return clamp(round(mean), 1, 2**31 - 1)  # round(): nearest, ties to even


# =================================================================================================
# §6.6 Content checksum
# =================================================================================================

M64 = 2**64 - 1


def mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def content_hash(g: int, j: int, v: int) -> int:
    return mix(mix(g + j * 2**32) ^ v)


# =================================================================================================
# §5.4 Chunks (rules K1-K14)
# =================================================================================================

@dataclass
class Chunk:
    entry: ChunkEntry
    n: int
    nnz: int
    n_rows: int
    n_bands: int
    checksum: int
    cells_order: np.ndarray
    cells_baseline: np.ndarray
    cell_names: list[str] | None
    band_rows: list[int]
    band_widths: list[int]
    band_crc32: list[int]
    band_first_tile: list[int]  # TS_b, b = 0 .. NB
    tiles_nnz: list[int]
    tiles_bytes: list[int]
    tile_offsets: list[int]  # start of each tile's stream inside tiles.data
    tables: list | None  # value tables by context (§6.4 or §C.4); None in inr-only
    sirens: dict[int, Siren]
    tiles_data_section: Section
    tiles_data: bytes = field(repr=False)
    counts: np.ndarray | None = None  # values.counts (for the optional strict check)
    gap_tables: list | None = None  # version 3: gap tables by density class (§6.4)
    gap_counts: np.ndarray | None = None  # version 3: gaps.counts (for the strict check)


def load_chunk(f: SinrFile, e: ChunkEntry) -> Chunk:
    data, n, nnz, where = f.data, e.n_cells, e.nnz, f"chunk {e.index}"
    # K1: the header's CRC.
    header = data[e.offset:e.offset + e.header_length]
    require(crc32(header) == e.header_crc32, "K1", f"{where}: header checksum mismatch")
    # K2: one zstd frame of at most 2^26 bytes holding one MessagePack map.
    h = unpack_map(zstd_decompress(header, "K2", f"{where} header", bound=2**26), "K2",
                   f"{where} header")
    # K3
    require(is_int(h.get("n_cells")) and is_int(h.get("nnz")), "K3",
            f"{where}: header n_cells / nnz missing or not ints")
    require(h["n_cells"] == n and h["nnz"] == nnz, "K3",
            f"{where}: header contradicts the chunk index (n_cells {h['n_cells']} vs {n}, "
            f"nnz {h['nnz']} vs {nnz})")
    # K4
    n_rows, n_bands, checksum = h.get("n_rows"), h.get("n_bands"), h.get("checksum")
    require(int_in(n_rows, 0, f.S), "K4",
            f"{where}: field 'n_rows' {n_rows!r} is not an int 0 .. n_stored_genes ({f.S})")
    require(int_in(checksum, 0, 2**64 - 1), "K4", f"{where}: checksum is not an int 0 .. 2^64-1")
    require((nnz == 0) == (n_rows == 0), "K4", f"{where}: n_rows = 0 must hold exactly when "
                                               "nnz = 0")
    require(int_in(n_bands, 0, n_rows), "K4", f"{where}: n_bands {n_bands!r} not 0 .. n_rows")
    require((n_rows > 0) == (n_bands > 0), "K4", f"{where}: n_bands = 0 exactly when n_rows = 0")
    # SG4: a chunk's rows are its segment's (§5.5; without segments S_s = S and K4 covers it).
    seg = e.segment
    require(n_rows <= seg.n_rows, "SG4", f"{where}: n_rows {n_rows} exceeds the {seg.n_rows} "
                                         f"rows of its segment {seg.index}")
    # K5: the chunk's section table, base B, range [B, offset + block_length).
    B = e.offset + e.header_length
    secs = parse_section_table(h.get("sections"), B, B, e.offset + e.block_length, "K5", where)
    for s in secs:
        require(s in CHUNK_SECTIONS[f.major] or f.minor > READER_MINOR[f.major], "K5",
                f"{where}: unknown chunk section {s!r} in a file of format {f.major}.{f.minor}")
    # §11.2: in a file of a later minor, unknown sections are ignored (cells.barcodes in a 2.2 file too)
    secs = {s: ref for s, ref in secs.items() if s in CHUNK_SECTIONS[f.major]}
    for s in CHUNK_REQUIRED[f.major]:
        require(s in secs, "K5", f"{where}: missing section {s!r}")
    # K5: cells.order, in a matrix without the feature `cell-order-planes` (every version 2 matrix);
    # CP1 (§5.6): the cell order in exactly one section, its byte planes only with the feature.
    planes = "cells.order_planes" in secs
    require(planes or f.cell_order_planes or "cells.order" in secs, "K5",
            f"{where}: missing section 'cells.order'")
    require(planes != ("cells.order" in secs), "CP1",
            f"{where}: holds {'both' if planes else 'neither'} of the sections 'cells.order' and "
            "'cells.order_planes'")
    require(not planes or f.cell_order_planes, "CP1",
            f"{where}: section 'cells.order_planes' but required_features does not list "
            "'cell-order-planes'")
    # K6, and K7 (version 2) or G3's presence rule (version 3).
    barcodes = "cells.barcodes" in secs
    require(("cells.names" in secs or barcodes) == f.has_cell_names, "K6",
            f"{where}: cell names contradict has_cell_names = {f.has_cell_names}")
    # CB1 (§5.7): the names in one section, as barcodes only with the feature.
    require(not (barcodes and "cells.names" in secs), "CB1",
            f"{where}: holds both of the sections 'cells.names' and 'cells.barcodes'")
    require(not barcodes or f.cell_barcodes, "CB1",
            f"{where}: section 'cells.barcodes' but required_features does not list 'cell-barcodes'")
    if barcodes:  # CB2: L and S in the chunk header
        L, S = h.get("barcode_length"), h.get("barcode_suffix")
        require(int_in(L, 1, 32), "CB2", f"{where}: barcode_length {L!r} is not an int 1 .. 32")
        require(is_str(S) and "\n" not in S and "\r" not in S
                and L + len(S.encode("utf-8")) <= 4096, "CB2",
                f"{where}: barcode_suffix {S!r} is not a str without CR or LF, at most "
                f"{4096 - L} bytes")
    require(("values.counts" in secs) == (f.mode != "inr-only"), "G3" if f.major == 3 else "K7",
            f"{where}: value tables contradict mode {f.mode!r}")

    def read(name: str, check: str) -> bytes:
        return section_bytes(data, secs[name], check, where)

    # K8: bands.rows (NB + 1 items) and bands.widths (NB items).
    NB = n_bands
    rows = [int(v) for v in zstd_array(read("bands.rows", "K8"), NB + 1, "<u4", "K8",
                                       f"{where} bands.rows")]
    widths = [int(v) for v in zstd_array(read("bands.widths", "K8"), NB, "<u4", "K8",
                                         f"{where} bands.widths")]
    require(rows[0] == 0 and rows[NB] == n_rows
            and all(rows[b] < rows[b + 1] for b in range(NB)), "K8",
            f"{where}: bands.rows {rows} is not 0 < ... < n_rows ({n_rows})")
    for b in range(NB):
        hb = rows[b + 1] - rows[b]
        require(1 <= widths[b] <= n and hb * widths[b] <= 2**24 - 1, "K8",
                f"{where}: band {b} width {widths[b]} (height {hb}, {n} cells) out of range")
    # §5.4.5 tile numbering; K9: the tile-count bound.
    TS = [0]
    for b in range(NB):
        TS.append(TS[-1] + ceil_div(n, widths[b]))
    NT = TS[NB]
    bound = nnz + sum(1 + ceil_div(n, max(1, (2**24 - 1) // (rows[b + 1] - rows[b])))
                      for b in range(NB))
    require(NT <= bound, "K9", f"{where}: {NT} tiles exceed the bound {bound}")
    # K10: the cell order (cells.order, or its byte planes cells.order_planes: §5.6), a
    # permutation; cells.baseline, n items.
    if planes:
        order = zstd_shuffled_array(read("cells.order_planes", "K10"), n, "<u4", "K10",
                                    f"{where} cells.order_planes").astype(np.int64)
    else:
        order = zstd_array(read("cells.order", "K10"), n, "<u4", "K10",
                           f"{where} cells.order").astype(np.int64)
    require(bool(np.array_equal(np.sort(order), np.arange(n))), "K10",
            f"{where}: the cell order is not a permutation of 0 .. {n - 1}")
    cbase = zstd_array(read("cells.baseline", "K10"), n, "<i2", "K10",
                       f"{where} cells.baseline").astype(np.int64)
    cell_names = None
    if f.has_cell_names and barcodes:  # CB3 (§5.7): n codes, each below 4^L once summed
        items = zstd_shuffled_array(read("cells.barcodes", "CB3"), n, "<u8", "CB3",
                                    f"{where} cells.barcodes")
        cell_names, code = [], 0
        for delta in items:
            code = (code + int(delta)) % 2**64
            require(code < 4**L, "CB3", f"{where}: cells.barcodes codes {code}, not below 4^{L}")
            cell_names.append("".join("ACGT"[(code >> (2 * (L - 1 - j))) & 3] for j in range(L)) + S)
    elif f.has_cell_names:  # K6
        cell_names = zstd_names(read("cells.names", "K6"), n, "K6", f"{where} cells.names")
    # K11: tiles.nnz.
    tnnz = [int(v) for v in zstd_array(read("tiles.nnz", "K11"), NT, "<u4", "K11",
                                       f"{where} tiles.nnz")]
    require(sum(tnnz) == nnz, "K11", f"{where}: tile nonzeros contradict the chunk's nnz")
    for b in range(NB):
        hb = rows[b + 1] - rows[b]
        for j in range(TS[b + 1] - TS[b]):
            w = min(widths[b], n - j * widths[b])
            require(tnnz[TS[b] + j] <= hb * w, "K11",
                    f"{where}: tile nonzeros contradict tile {TS[b] + j}'s size")
    # K12: tiles.bytes adds up to the tile data; bands.crc32 holds NB items.
    tbytes = [int(v) for v in zstd_array(read("tiles.bytes", "K12"), NT, "<u4", "K12",
                                         f"{where} tiles.bytes")]
    require(sum(tbytes) == secs["tiles.data"].length, "K12",
            f"{where}: tiles.bytes do not add up to the tile data")
    bcrc = [int(v) for v in zstd_array(read("bands.crc32", "K12"), NB, "<u4", "K12",
                                       f"{where} bands.crc32")]
    # Version 3: G1 and G2, gaps.counts against every tile's (n_t, k), before any tile.
    gap_counts = gap_tables = None
    if f.major == 3:
        gap_counts = zstd_shuffled_array(read("gaps.counts", "G1"), tiles3.N_GAP_CLASSES * 231,
                                         "<u8", "G1", f"{where} gaps.counts")
        sizes = [((rows[b + 1] - rows[b]) * min(widths[b], n - j * widths[b]), tnnz[TS[b] + j])
                 for b in range(NB) for j in range(TS[b + 1] - TS[b])]
        try:
            tiles3.check_gap_counts(gap_counts, sizes)
        except tiles3.RuleViolation as err:
            fail(err.rule, f"{where}: {err.message}")
        gap_tables = tiles3.tables_from_counts(gap_counts, tiles3.N_GAP_CLASSES)
    # K13 (version 2) or G3 (version 3): values.counts.
    tables = None
    if "values.counts" in secs and f.major == 3:
        counts = zstd_shuffled_array(read("values.counts", "G3"), tiles3.N_CONTEXTS * 231, "<u8",
                                     "G3", f"{where} values.counts")
        try:
            tiles3.check_value_counts(counts, nnz)
        except tiles3.RuleViolation as err:
            fail(err.rule, f"{where}: {err.message}")
        tables = tiles3.tables_from_counts(counts, tiles3.N_CONTEXTS)
    elif "values.counts" in secs:
        counts = zstd_array(read("values.counts", "K13"), 48 * 231, "<u8", "K13",
                            f"{where} values.counts")
        require(bool(np.all(counts < 2**40)), "K13", f"{where}: a value count >= 2^40")
        require(int(counts.sum()) == nnz, "K13", f"{where}: value counts do not add up to nnz")
        tables = frequency_tables(counts)
    # K14: siren.meta and siren.weights.
    sirens: dict[int, Siren] = {}
    require(("siren.meta" in secs) == ("siren.weights" in secs), "K14",
            f"{where}: siren.meta and siren.weights must come together")
    if "siren.meta" in secs:
        meta = unpack_map(read("siren.meta", "K14"), "K14", f"{where} siren.meta")
        entries = meta.get("bands")
        require(isinstance(entries, list) and len(entries) >= 1, "K14",
                f"{where}: SIREN metadata is malformed (bands is not a non-empty list)")
        parsed = []
        for ent in entries:
            require(isinstance(ent, list) and len(ent) == 2 and int_in(ent[0], 0, NB - 1),
                    "K14", f"{where}: SIREN metadata is malformed (entry for band "
                           f"{ent[0] if isinstance(ent, list) and ent else ent!r})")
            require(ent[0] not in [p[0] for p in parsed], "K14",
                    f"{where}: a band has two SIRENs (band {ent[0]})")
            parsed.append((ent[0], *parse_siren_map(ent[1], f"{where} band {ent[0]}")))
        P = sum(siren_param_count(layers) for _, _, _, layers in parsed)
        weights = zstd_array(read("siren.weights", "K14"), P, "<i2", "K14",
                             f"{where} siren.weights")
        pos = 0
        for b, bits, norm, layers in parsed:
            k = siren_param_count(layers)
            s = build_siren(bits, norm, layers, weights[pos:pos + k], f"{where} band {b}")
            pos += k
            check_static_bound(s, rows[b + 1] - rows[b], n, f"{where} band {b}")
            sirens[b] = s
    if f.mode == "inr-only":
        for b in range(NB):
            if sum(tnnz[TS[b]:TS[b + 1]]) > 0:
                require(b in sirens, "K14", f"{where}: band {b} holds nonzeros but has no "
                                            "SIREN (mode inr-only)")
    # tiles.data: raw (§3.4).  §5.4.6 lets a reader verify either each band's CRC before
    # decoding the band, or the section's CRC: this decoder verifies the band CRCs before
    # decoding (decode_matrix) and, once the whole chunk is decoded, the section CRC as well.
    tiles_data = data[secs["tiles.data"].start:secs["tiles.data"].end]
    offsets = [0]
    for nb in tbytes:
        offsets.append(offsets[-1] + nb)
    return Chunk(e, n, nnz, n_rows, NB, checksum, order, cbase, cell_names, rows, widths, bcrc,
                 TS, tnnz, tbytes, offsets, tables, sirens, secs["tiles.data"], tiles_data,
                 counts if "values.counts" in secs else None, gap_tables, gap_counts)


# =================================================================================================
# §6.7 decoding a tile (version 3: spec/tiles3.py; version 2: §C.2, §C.3, §C.7 here)
# =================================================================================================

def decode_positions(dec: RansDecoder, n_t: int, m: int) -> list[int]:
    """§C.2: the m coded positions, Golomb-coded gaps, quotient and remainder alternating."""
    M = max(1, ((n_t - m) * 69 + 50 * m) // (100 * m))
    code_quotient = (n_t - m) // M > 0
    positions, p = [], -1
    for _ in range(m):
        q = dec.quotient() if code_quotient else 0
        r = dec.uniform(M) if M > 1 else 0
        require(r < M, "T4", f"decoded remainder {r} >= M = {M}")
        p = p + q * M + r + 1
        require(p < n_t, "T4", f"decoded position {p} >= the tile's {n_t} entries")
        positions.append(p)
    return positions


def tile_v2(stream: bytes, n_t: int, k: int, contexts_of, tables, inr_only: bool,
            histogram: np.ndarray | None):
    """§C.7: (nonzero positions, their coded integers u, or None in inr-only) of a version 2
    tile; `contexts_of(positions)` gives the nonzeros' contexts (§C.5, §C.6)."""
    m = k if 2 * k <= n_t else n_t - k
    if m == 0 and (k == 0 or inr_only):
        require(len(stream) == 0, "T1", "a tile without symbols has a non-empty stream")
        return list(range(k)), None if inr_only else []
    dec = RansDecoder(stream)
    coded = decode_positions(dec, n_t, m) if m > 0 else []
    if 2 * k <= n_t:
        nz = coded
    else:  # complement rule: the coded set is the zeros
        zero = set(coded)
        nz = [p for p in range(n_t) if p not in zero]
    us = None
    if not inr_only:
        us = []
        for kappa in contexts_of(nz):  # §C.3, in position order
            table = tables[kappa]
            require(table is not None, "T5", f"a value needs context {kappa}, whose frequency "
                                             "row is unused")
            bn = dec.decode(table)
            if histogram is not None:
                histogram[kappa, bn] += 1
            start, d = bin_start_and_bits(bn)
            if d == 0:
                offset = 0
            elif d <= 16:
                offset = dec.raw(d)
            else:
                offset = dec.raw(d - 16) << 16
                offset |= dec.raw(16)
            us.append(start + offset)
    dec.finish()  # T6
    return nz, us


def tile_v3(stream: bytes, n_t: int, k: int, contexts_of, gap_tables, tables, inr_only: bool,
            histograms: dict[str, np.ndarray] | None):
    """§6.7 by spec/tiles3.py: (nonzero positions, their coded integers u, or None in inr-only)
    of a version 3 tile; `contexts_of(positions)` gives the nonzeros' contexts (§6.5, §7.2)."""
    tile = tiles3.TileDecoder(stream, n_t, k, gap_tables, not inr_only)
    us = None if inr_only else tile.values(contexts_of(tile.positions), tables)
    tile.finish()  # T7-T9
    if histograms is not None:
        for step in tile.trace:
            histograms["gaps" if step.kind == "gap" else "values"][step.row, step.bin] += 1
    return tile.positions, us


def decode_tile(f: SinrFile, ch: Chunk, G: np.ndarray, b: int, j: int,
                histograms: dict[str, np.ndarray] | None = None):
    """§6.7 (§C.7 in a version 2 file) for tile j of band b.  Returns (rows, columns, values) of
    its nonzeros: rows of the matrix (§5.5: the chunk's row r is row R_s + r of genes.order and
    genes.baseline, R_s its segment's first row, 0 without segments), columns in the chunk's cell
    order.  If `histograms` is given, the (context, value bin) of every decoded value is counted
    in its "values" array and, in a version 3 file, the (density class, gap bin) of every gap in
    its "gaps" array."""
    t = ch.band_first_tile[b] + j
    R = ch.entry.segment.first_row
    rb, hb, wb = ch.band_rows[b], ch.band_rows[b + 1] - ch.band_rows[b], ch.band_widths[b]
    c0 = j * wb
    w = min(wb, ch.n - c0)
    n_t = hb * w
    k = ch.tiles_nnz[t]
    stream = ch.tiles_data[ch.tile_offsets[t]:ch.tile_offsets[t + 1]]
    inr_only = f.mode == "inr-only"

    def contexts_of(positions: list[int]) -> list[int]:
        """The contexts of the nonzeros at these positions: a SIREN's (§7.2, §C.6), else the
        baseline's (§6.5, §C.5)."""
        rows_in_band = [p // w for p in positions]
        cols = [c0 + p % w for p in positions]
        if b in ch.sirens:
            s = ch.sirens[b]
            ys = siren_outputs(s, np.array(rows_in_band, dtype=np.int64),
                               np.array(cols, dtype=np.int64), hb, ch.n)
            if f.major == 3:
                return [tiles3.siren_context(y, s.kind, s.offset, s.scale) for y in ys]
            return [siren_context(y, s) for y in ys]
        pairs = [(int(G[R + rb + i]), int(ch.cells_baseline[c]))
                 for i, c in zip(rows_in_band, cols)]
        if f.major == 3:
            return [tiles3.baseline_context(g, c) for g, c in pairs]
        return [clamp((g + c) >> 2, 0, 47) for g, c in pairs]

    try:
        if f.major == 3:
            nz, us = tile_v3(stream, n_t, k, contexts_of, ch.gap_tables, ch.tables, inr_only,
                             histograms)
        else:
            nz, us = tile_v2(stream, n_t, k, contexts_of, ch.tables, inr_only,
                             None if histograms is None else histograms["values"])
    except tiles3.RuleViolation as err:
        fail(err.rule, f"tile {t}: {err.message}")
    except SpecViolation as err:
        fail(err.check_id, f"tile {t}: {err.message}")
    rows_in_band = np.array([p // w for p in nz], dtype=np.int64)
    cols = np.array([c0 + p % w for p in nz], dtype=np.int64)
    if inr_only:  # §7.3
        s = ch.sirens.get(b)  # present when k > 0: K14
        values = [siren_prediction(y, s) for y in siren_outputs(s, rows_in_band, cols, hb, ch.n)] \
            if k > 0 else []
    else:  # §6.3.3
        values = [dequantise(u, f.mode, f.max_error) for u in us]
    return rows_in_band + R + rb, cols, np.array(values, dtype=np.int64)


# =================================================================================================
# §8.4 The whole matrix
# =================================================================================================

@dataclass
class DecodedMatrix:
    version: str         # the file's format version, "major.minor"
    name: str
    shape: tuple[int, int]
    mode: str
    genes: np.ndarray    # int64, original gene index, sorted by (gene, cell)
    cells: np.ndarray    # int64, original cell index
    values: np.ndarray   # int64
    gene_ids: list[str] | None
    gene_names: list[str] | None
    feature_types: list[str] | None
    cell_names: list[str] | None
    content_checksum: int  # Σ of every chunk's §6.6 checksum, mod 2^64

    @property
    def nnz(self) -> int:
        return len(self.values)


def decode_matrix(f: SinrFile, strict: bool = False) -> DecodedMatrix:
    """§8.4.  With `strict`, also check writer MUSTs that the specification does not ask
    readers to check (so a conforming reader accepts files that break them):
    * §6.4 (§C.4 in a version 2 file): values.counts holds the histogram of the chunk's
      (context, value bin) pairs and, in a version 3 file, gaps.counts the histogram of its
      (density class, gap bin) pairs (§9.5's note lets a reader check them);
    * §4: the file-level section table of a version 2.0 file is an empty list."""
    if strict and (f.major, f.minor) == (2, 0):
        require(f.file_sections == [], "§4 (strict)",
                "the file-level section table is not an empty list")
    counts_section = "§6.4" if f.major == 3 else "§C.4"
    gene_order, G = load_gene_order(f)          # M13
    names = load_gene_names(f)                  # M14
    all_g, all_c, all_v = [], [], []
    cell_names: list[str] | None = [] if f.has_cell_names else None
    total = 0
    for e in f.chunks:
        ch = load_chunk(f, e)                   # K1-K14, G1-G3
        if cell_names is not None:
            cell_names.extend(ch.cell_names)    # §8.5, by chunk-local cell index
        checksum, count = 0, 0
        histograms = None
        if strict:
            histograms = {"values": np.zeros((N_CONTEXTS[f.major], 231), dtype=np.int64),
                          "gaps": np.zeros((tiles3.N_GAP_CLASSES, 231), dtype=np.int64)}
        for b in range(ch.n_bands):
            lo = ch.tile_offsets[ch.band_first_tile[b]]
            hi = ch.tile_offsets[ch.band_first_tile[b + 1]]
            require(crc32(ch.tiles_data[lo:hi]) == ch.band_crc32[b], "K15",
                    f"chunk {e.index}: checksum mismatch in the tiles of band {b}")
            for j in range(ch.band_first_tile[b + 1] - ch.band_first_tile[b]):
                rows, cols, vals = decode_tile(f, ch, G, b, j, histograms)
                genes = gene_order[rows]                    # §5.3.2, §5.5: row r < S
                cells = e.first_cell + ch.cells_order[cols]  # §5.4.4
                for g, c, v in zip(genes.tolist(), cells.tolist(), vals.tolist()):
                    checksum = (checksum + content_hash(g, c, v)) & M64
                count += len(vals)
                all_g.append(genes)
                all_c.append(cells)
                all_v.append(vals)
        # §3.6 / §5.4.6: the CRC of the whole tiles.data section (see load_chunk).
        require(crc32(ch.tiles_data) == ch.tiles_data_section.crc, "K15",
                f"chunk {e.index}: checksum mismatch in section 'tiles.data'")
        # W1
        require(count == e.nnz, "W1", f"chunk {e.index}: decoded {count} nonzeros, expected "
                                      f"{e.nnz}")
        require(checksum == ch.checksum, "W1", f"chunk {e.index} fails its checksum")
        if strict and ch.counts is not None:
            require(np.array_equal(histograms["values"].reshape(-1), ch.counts.astype(np.int64)),
                    f"{counts_section} (strict)", f"chunk {e.index}: values.counts is not the "
                                                  "histogram of the decoded (context, bin) pairs")
        if strict and ch.gap_counts is not None:
            require(np.array_equal(histograms["gaps"].reshape(-1),
                                   ch.gap_counts.astype(np.int64)),
                    "§6.4 (strict)", f"chunk {e.index}: gaps.counts is not the histogram of the "
                                     "decoded (density class, gap bin) pairs")
        total = (total + checksum) & M64
    genes = np.concatenate(all_g) if all_g else np.zeros(0, np.int64)
    cells = np.concatenate(all_c) if all_c else np.zeros(0, np.int64)
    values = np.concatenate(all_v) if all_v else np.zeros(0, np.int64)
    order = np.lexsort((cells, genes))
    return DecodedMatrix(f"{f.major}.{f.minor}", f.name, (f.n_genes, f.n_cells), f.mode,
                         genes[order], cells[order],
                         values[order], names["gene_ids"], names["gene_names"],
                         names["feature_types"], cell_names, total)


def decode(data: bytes, matrix_name: str | None = None, strict: bool = False) -> DecodedMatrix:
    """Open `data` (the bytes of a whole file), validate it and decode the whole matrix."""
    return open_sinr(data, matrix_name).decode(strict)


# =================================================================================================
# CLI
# =================================================================================================

def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="Reference decoder for .sinr files of format "
                                             "3.1, 3.0, 2.1 and 2.0.")
    ap.add_argument("file")
    ap.add_argument("--matrix", default=None, help="the matrix to read (default: the first)")
    ap.add_argument("--strict", action="store_true",
                    help="also check writer rules readers need not check (see decode_matrix)")
    args = ap.parse_args(argv)
    with open(args.file, "rb") as fh:
        data = fh.read()
    try:
        m = decode(data, args.matrix, args.strict)
    except SpecViolation as e:
        label = {"format": "not a .sinr file", "version": "unsupported version",
                 "corrupt": "corrupt file"}[e.kind]
        print(f"{args.file}: INVALID ({label}), rule {e.check_id}: {e.message}")
        return 1
    digest = hashlib.sha256()
    for a in (m.genes, m.cells, m.values):
        digest.update(a.astype("<i8").tobytes())
    print(f"{args.file}: valid .sinr {m.version}, matrix {m.name!r}, mode {m.mode}")
    print(f"shape: {m.shape[0]} x {m.shape[1]}")
    print(f"nnz: {m.nnz}")
    print(f"content checksum (§6.6, summed over chunks): {m.content_checksum:#018x}")
    print(f"sha256 of COO (genes, cells, values as int64 LE, sorted by gene, cell): "
          f"{digest.hexdigest()}")
    for key in ("gene_ids", "gene_names", "feature_types", "cell_names"):
        v = getattr(m, key)
        print(f"{key}: {'none' if v is None else f'{len(v)} names'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
