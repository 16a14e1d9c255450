"""A chunk's cell names as 2-bit barcodes (section cells.barcodes, feature cell-barcodes, spec §5.7):
each name is L bases of ACGT and a suffix common to the chunk, coded as a base-4 number, first base
most significant, and stored as the differences of neighbours (mod 2^64) in chunk-local order."""

from __future__ import annotations

import re

import numpy as np

from ..errors import CorruptFileError
from ..limits import MAX_NAME_BYTES

MAX_BARCODE_LENGTH = 32  # bases: 2 bits each in a uint64
BARCODE_KEYS = ("barcode_length", "barcode_suffix")  # the chunk header keys of L and S
BASES = b"ACGT"
_BARCODE = re.compile(r"([ACGT]{1,32})(.*)\Z", re.S)
_BASE_CODE = np.full(256, 255, np.uint8)
_BASE_CODE[np.frombuffer(BASES, np.uint8)] = np.arange(4, dtype=np.uint8)


def barcode_deltas(names: list[str]) -> tuple[int, str, np.ndarray] | None:
    """(L, S, the items of cells.barcodes) where every name is L bases and the one suffix S (and
    there is at least one name), else None: the names are then stored as cells.names."""
    match = _BARCODE.match(names[0]) if names else None
    if match is None:
        return None
    length, suffix = len(match.group(1)), match.group(2)
    width = length + len(suffix)
    # ASCII names of one length: each name's bytes are then one row of the table (the writer's rule; the
    # spec allows any UTF-8 suffix)
    if not suffix.isascii() or not valid_suffix(length, suffix) or any(len(name) != width for name in names):
        return None
    try:
        raw = "".join(names).encode("ascii")
    except UnicodeEncodeError:
        return None
    table = np.frombuffer(raw, np.uint8).reshape(len(names), width)
    if table[:, length:].tobytes() != suffix.encode() * len(names):
        return None
    digits = _BASE_CODE[table[:, :length]]
    if np.any(digits == 255):
        return None
    codes = np.zeros(len(names), np.uint64)
    for j in range(length):
        codes = (codes << np.uint64(2)) | digits[:, j].astype(np.uint64)
    return length, suffix, np.diff(codes, prepend=np.uint64(0))


def valid_suffix(length: int, suffix: str) -> bool:
    """Whether L bases and suffix S make names a chunk may hold (spec §5.7, rule CB2)."""
    return "\n" not in suffix and "\r" not in suffix and length + len(suffix.encode()) <= MAX_NAME_BYTES


def barcode_format(header: dict, what: str) -> tuple[int, str]:
    """The chunk header's (barcode_length, barcode_suffix), checked (rule CB2)."""
    length, suffix = (header.get(key) for key in BARCODE_KEYS)
    if type(length) is not int or not 1 <= length <= MAX_BARCODE_LENGTH or not isinstance(suffix, str) \
            or not valid_suffix(length, suffix):
        raise CorruptFileError(f"{what}: section 'cells.barcodes' needs an int 'barcode_length' of 1 .. "
                               f"{MAX_BARCODE_LENGTH} and a str 'barcode_suffix' without line ends, the two at most "
                               f"{MAX_NAME_BYTES} bytes a name")
    return length, suffix


def barcode_names(deltas: np.ndarray, length: int, suffix: str, what: str) -> list[str]:
    """The names cells.barcodes' items code (rule CB3: every code below 4^L)."""
    codes = np.cumsum(deltas.astype(np.uint64), dtype=np.uint64)
    if length < MAX_BARCODE_LENGTH and codes.size and int(codes.max()) >> (2 * length):
        raise CorruptFileError(f"{what}: section 'cells.barcodes' codes a barcode of more than {length} bases")
    if not codes.size:
        return []
    # one text of every name, each a row of its bases, suffix and a line feed, split at once (2x faster than
    # joining each name's bases and suffix)
    tail = np.frombuffer(suffix.encode() + b"\n", np.uint8)
    rows = np.empty((codes.size, length + tail.size), np.uint8)
    shifts = np.arange(2 * (length - 1), -1, -2, dtype=np.uint64)
    rows[:, :length] = np.frombuffer(BASES, np.uint8)[(codes[:, None] >> shifts) & np.uint64(3)]
    rows[:, length:] = tail
    return rows.tobytes()[:-1].decode().split("\n")
