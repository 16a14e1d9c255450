"""The layout schema: every section of a .sinr matrix, its encoding, item type and expected size.

The encoder writes sections by these names, the reader sizes and validates them from here,
`sinr info` groups them by `part`, and the tests check files against it: one place for each fact.
Sizes are functions of header fields (never of the compressed data), so a reader knows how much
a section may hold before it decompresses anything.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .container import (SUPPORTED_MAJORS, ZSTD_LEVEL, pack_array, pack_shuffled, pack_strings, unpack_array, unpack_map,
                        unpack_shuffled, unpack_strings)

# The value model's table (spec §6.3.1, §6.4, §C.4): how values are binned fixes how many frequencies a chunk's
# `values.counts` holds, so the numbers live here, below the codec that bins with them.
MANTISSA_BITS = 3
MAX_EXPONENT = 30  # e = u + 1 < 2**31
N_BINS = (1 << MANTISSA_BITS) - 1 + (MAX_EXPONENT - MANTISSA_BITS + 1) * (1 << MANTISSA_BITS)
N_CONTEXTS = 48  # format 2's contexts of 1/4 nat (spec §C.5)
CONTEXTS_BY_MAJOR = {2: N_CONTEXTS, 3: 96}  # format 3's are of 1/8 nat (spec §6.5)
N_GAP_CLASSES = 32  # format 3's density classes, the rows of `gaps.counts` (spec §6.2, §6.4)

ZSTD_ARRAY, ZSTD_SHUFFLED, ZSTD_TEXT = "zstd-array", "zstd-shuffled-array", "zstd-text"
RAW, MSGPACK = "raw", "msgpack"
# How format 3 stores its count sections (spec §3.3, §5.4.3); format 2 keeps plain zstd arrays.
COUNTS_ENCODING_BY_MAJOR = {2: ZSTD_ARRAY, 3: ZSTD_SHUFFLED}
# The zstd level a writer uses per encoding (ZSTD_LEVEL unless listed): the byte planes of counts
# come out as small at 9 as at 19 (pbmc4k at 6e6: values.counts +1.1%, gaps.counts +0.3%, 0.002% of
# the file) in a twentieth of the time (they were a quarter of a format-3 chunk's encoding time).
# Names (cell barcodes, gene ids) come out nearly as small at 16 as at 19 in half the time or less
# (real barcodes of pbmc4k, frozen_pbmc, visium: 4.93, 2.67, 3.58 bytes a name at 16; 4.89, 2.66,
# 3.58 at 19; the repeated barcodes of replicated cells, 6e7 scale inputs: +0-2%); at 19 they were
# 30% of the CPU time of encoding frozen_pbmc at 6e7 from its 10x file. (At 15, repeated names
# came out 33% larger.)
WRITE_LEVELS = {ZSTD_SHUFFLED: 9, ZSTD_TEXT: 16}
# The required feature of format 3.2 (spec §5.6): a chunk's cell order stored as byte planes, which
# zstd codes 2.8-2.9x smaller than the plain array where most cells are empty and keep their index
# order (raw Cell Ranger matrices); codec.stages.FEATURE_MINORS gives its minor version.
CELL_ORDER_PLANES = "cell-order-planes"
# Also of format 3.2 (spec §5.7): a chunk's cell names stored as 2-bit barcodes (storage.barcodes), which take
# 1.9 bytes a raw matrix's barcode where zstd names take 2.3.
CELL_BARCODES = "cell-barcodes"
CHUNK_INDEX_FIELDS = ("offset", "header_length", "header_crc32", "block_length", "n_cells", "nnz")
SEGMENT_INDEX_FIELDS = ("n_chunks", "n_rows")  # per segment (spec §5.5)


class Sizes(NamedTuple):
    """Header fields that section sizes depend on."""

    n_genes: int = 0
    n_stored_genes: int = 0
    n_chunks: int = 0
    n_segments: int = 0  # with the feature `segments` (spec §5.5)
    n_cells: int = 0  # of the chunk
    n_bands: int = 0
    n_tiles: int = 0
    n_siren_parameters: int = 0


class SectionSpec(NamedTuple):
    """One section a matrix or chunk may hold: how it is encoded, its item type, how many items
    its header fields say it holds, and where `sinr info` counts its bytes."""

    name: str
    encoding: str
    dtype: str | None
    count: Callable[[Sizes], int] | None  # items (or names) the section holds
    part: str  # what `sinr info` reports it under
    required: bool = True
    majors: tuple[int, ...] = SUPPORTED_MAJORS  # the format versions (major) whose chunks or matrices have it
    shallow: bool = False  # names packed with a shallow search from LARGE_TEXT_BYTES (gene tables; see pack_strings)
    feature: str | None = None  # the required feature (spec §5.1.1) a matrix lists where a chunk holds it

    def expected(self, sizes: Sizes) -> int | None:
        """Items the section must hold, None when its size is not fixed by header fields."""
        return None if self.count is None else self.count(sizes)

    def pack(self, values, level: int | None = None) -> bytes:
        """The section's bytes holding `values` (an array, or a list of names), encoded as this
        table says: the writer beside the reader's `unpack`, so a writer never restates an item type
        or an encoding. Raw and MessagePack sections are built by their own writers."""
        if self.encoding not in _PACKERS:
            raise ValueError(f"section {self.name!r} is {self.encoding}: its writer builds its bytes")
        if level is None:
            level = WRITE_LEVELS.get(self.encoding, ZSTD_LEVEL)
        return _PACKERS[self.encoding](values, self.dtype, level, self.shallow)

    def unpack(self, payload, count: int | None, *, what: str):
        """The section's values from its stored bytes (CRC already checked), `count` items or names
        expected: an array, a list of names, a map, or the raw bytes."""
        return _UNPACKERS[self.encoding](payload, self.dtype, count, what)


# Each encoding's writer and reader (spec §3): one table, so that adding an encoding is one row here.
_PACKERS: dict[str, Callable] = {
    ZSTD_ARRAY: lambda array, dtype, level, _shallow: pack_array(array, dtype, level),
    ZSTD_SHUFFLED: lambda array, dtype, level, _shallow: pack_shuffled(array, dtype, level),
    ZSTD_TEXT: lambda values, _dtype, level, shallow: pack_strings(values, level, shallow=shallow),
}
_UNPACKERS: dict[str, Callable] = {
    ZSTD_ARRAY: lambda payload, dtype, count, what: unpack_array(payload, dtype, count, what=what),
    ZSTD_SHUFFLED: lambda payload, dtype, count, what: unpack_shuffled(payload, dtype, count, what=what),
    ZSTD_TEXT: lambda payload, _dtype, count, what: unpack_strings(payload, count, what=what),
    MSGPACK: lambda payload, _dtype, _count, what: unpack_map(payload, what=what),
    RAW: lambda payload, _dtype, _count, _what: payload,
}


MATRIX_SECTIONS = {s.name: s for s in [
    SectionSpec("names.gene_ids", ZSTD_TEXT, None, lambda z: z.n_genes, "names", required=False, shallow=True),
    SectionSpec("names.gene_names", ZSTD_TEXT, None, lambda z: z.n_genes, "names", required=False, shallow=True),
    SectionSpec("names.feature_types", ZSTD_TEXT, None, lambda z: z.n_genes, "names", required=False, shallow=True),
    SectionSpec("genes.order", ZSTD_ARRAY, "u4", lambda z: z.n_stored_genes, "permutations"),
    SectionSpec("genes.baseline", ZSTD_ARRAY, "i2", lambda z: z.n_stored_genes, "scaling metadata"),
    SectionSpec("chunks.index", ZSTD_ARRAY, "u8", lambda z: z.n_chunks * len(CHUNK_INDEX_FIELDS), "chunk index"),
    SectionSpec("segments.index", ZSTD_ARRAY, "u8", lambda z: z.n_segments * len(SEGMENT_INDEX_FIELDS), "chunk index",
                required=False, majors=(3,)),
]}
GENE_NAME_SECTIONS = tuple(name for name, s in MATRIX_SECTIONS.items() if s.part == "names")
# The sections a matrix of each format version may hold (format 3.1 adds `segments.index`).
MATRIX_SECTIONS_BY_MAJOR = {major: {name: s for name, s in MATRIX_SECTIONS.items() if major in s.majors}
                            for major in SUPPORTED_MAJORS}

_CHUNK_SECTIONS = [
    # a chunk holds exactly one of the two (spec §5.4.3, rule CP1): CELL_ORDER_SECTIONS
    SectionSpec("cells.order", ZSTD_ARRAY, "u4", lambda z: z.n_cells, "permutations", required=False),
    SectionSpec("cells.order_planes", ZSTD_SHUFFLED, "u4", lambda z: z.n_cells, "permutations", required=False,
                majors=(3,), feature=CELL_ORDER_PLANES),
    SectionSpec("cells.baseline", ZSTD_ARRAY, "i2", lambda z: z.n_cells, "scaling metadata"),
    # a chunk holds at most one of the two (spec §5.7, rule CB1): CELL_NAME_SECTIONS
    SectionSpec("cells.names", ZSTD_TEXT, None, lambda z: z.n_cells, "names", required=False),
    SectionSpec("cells.barcodes", ZSTD_SHUFFLED, "u8", lambda z: z.n_cells, "names", required=False, majors=(3,),
                feature=CELL_BARCODES),
    SectionSpec("bands.rows", ZSTD_ARRAY, "u4", lambda z: z.n_bands + 1, "tile directory"),
    SectionSpec("bands.widths", ZSTD_ARRAY, "u4", lambda z: z.n_bands, "tile directory"),
    SectionSpec("bands.crc32", ZSTD_ARRAY, "u4", lambda z: z.n_bands, "tile directory"),
    SectionSpec("tiles.nnz", ZSTD_ARRAY, "u4", lambda z: z.n_tiles, "tile directory"),
    SectionSpec("tiles.bytes", ZSTD_ARRAY, "u4", lambda z: z.n_tiles, "tile directory"),
    SectionSpec("gaps.counts", COUNTS_ENCODING_BY_MAJOR[3], "u8", lambda z: N_GAP_CLASSES * N_BINS, "bitmap",
                majors=(3,)),
    *(SectionSpec("values.counts", COUNTS_ENCODING_BY_MAJOR[major], "u8",
                  lambda z, n=CONTEXTS_BY_MAJOR[major]: n * N_BINS, "values", required=False, majors=(major,))
      for major in SUPPORTED_MAJORS),
    SectionSpec("siren.meta", MSGPACK, None, None, "weights", required=False),
    SectionSpec("siren.weights", ZSTD_ARRAY, "i2", lambda z: z.n_siren_parameters, "weights", required=False),
    SectionSpec("tiles.data", RAW, None, None, "tiles"),
]
# The sections a chunk of each format version may hold, in the order a writer writes them (format 3
# adds `gaps.counts`, its `values.counts` has a row per context of 1/8 nat, and both are stored as
# byte planes: spec §5.4.3).
CHUNK_SECTIONS_BY_MAJOR = {major: {s.name: s for s in _CHUNK_SECTIONS if major in s.majors}
                           for major in SUPPORTED_MAJORS}
CHUNK_SECTIONS = CHUNK_SECTIONS_BY_MAJOR[2]  # format 2.s, as spec §5.4.3 lists them
CELL_ORDER_SECTIONS = ("cells.order", "cells.order_planes")  # the same permutation, as an array or its byte planes
CELL_NAME_SECTIONS = ("cells.names", "cells.barcodes")  # the same names, as text or 2-bit barcodes

_CHUNK_FEATURES = {s.name: s.feature for s in _CHUNK_SECTIONS if s.feature}


def chunk_features(names) -> set[str]:
    """The required features (spec §5.1.1) a chunk holding sections `names` needs its matrix to list."""
    return {_CHUNK_FEATURES[name] for name in names if name in _CHUNK_FEATURES}

# File-level sections (format 2.1, spec §14; format 3.0): what a file stores besides its matrices.
# The item count of an `anndata.*` or `10x.h5` section (bytes of an HDF5 image) is given by `contents`.
ANNDATA_PARTS = ("X", "layers", "obs", "var", "obsm", "varm", "obsp", "varp", "uns", "raw")
FILE_SECTIONS = {s.name: s for s in [
    SectionSpec("contents", MSGPACK, None, None, "contents", required=False),
    *(SectionSpec(f"anndata.{part}", ZSTD_ARRAY, "u1", None, part, required=False) for part in ANNDATA_PARTS),
    SectionSpec("10x.h5", ZSTD_ARRAY, "u1", None, "10x fields", required=False),
]}
