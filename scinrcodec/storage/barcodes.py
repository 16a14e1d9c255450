"""A chunk's cell names as 2-bit barcodes (section cells.barcodes, feature cell-barcodes, spec §5.7):
each name is L bases of ACGT and a suffix common to the chunk, coded as a base-4 number, first base
most significant, and stored as the differences of neighbours (mod 2^64) in chunk-local order."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError
from ..limits import MAX_NAME_BYTES

MAX_BARCODE_LENGTH = 32  # bases: 2 bits each in a uint64
BARCODE_KEYS = ("barcode_length", "barcode_suffix")  # the chunk header keys of L and S
BASES = b"ACGT"


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
    shifts = np.arange(2 * (length - 1), -1, -2, dtype=np.uint64)
    digits = ((codes[:, None] >> shifts) & np.uint64(3)).astype(np.uint8)
    text = np.frombuffer(BASES, np.uint8)[digits]
    return [b.decode("ascii") + suffix for b in text.view(f"S{length}").ravel()]
