"""The reader's view of a matrix: its footer header, checked, and its chunks, loaded on demand.

Opening reads the footer and the chunk index only. A chunk's header and sections are read and checked (CRC, sizes,
cross-field rules) the first time a read touches the chunk; a band's tile bytes are checked the
first time a read decodes one of its tiles. What is loaded is kept, so warm reads do no I/O.
"""
from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .. import _native
from ..codec.geometry import ChunkGeometry, max_tiles
from ..codec.models import LUT_SIZE, N_BINS, N_CONTEXTS, decoding_tables, frequencies
from ..codec.stages import MODES, SEGMENTS, parse_stages, required_features
from ..errors import CorruptFileError, printable
from ..limits import MAX_CHUNK_HEADER_BYTES, MAX_DIMENSION, MAX_ERROR_LIMIT
from ..storage.container import PREAMBLE, SectionRef, check_disjoint, crc32, crc32_ranges, parse_section_table, \
    names_text, unpack_header
from ..storage.barcodes import barcode_format, barcode_names
from ..storage.layout import CELL_NAME_SECTIONS, CELL_ORDER_SECTIONS, CHUNK_INDEX_FIELDS, CHUNK_SECTIONS_BY_MAJOR, \
    GENE_NAME_SECTIONS, MATRIX_SECTIONS_BY_MAJOR, SEGMENT_INDEX_FIELDS, Sizes, chunk_features
from ..storage.source import ByteSource, fork_safe_lock
from .selection import unique_sorted

if TYPE_CHECKING:
    from ..model.siren import PatchSiren

# A chunk's sections follow its header, its tiles last: a batched (remote) source is asked for this
# much past each header along with it (bytes per cell of the chunk, plus a constant; writers use
# about 20 per cell), so that a chunk usually loads in one round trip rather than two.
SECTIONS_GUESS_PER_CELL, SECTIONS_GUESS_BASE = 24, 8 << 10
ROW_TABLE_LIMIT = 1 << 24


@contextlib.contextmanager
def _naming(what: str):
    """A CorruptFileError of the model's checks (which know no file) said of `what`."""
    try:
        yield
    except CorruptFileError as exc:
        raise CorruptFileError(f"{what}: {exc}") from exc


def _int(header: dict, key: str, low: int, high: int, what: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CorruptFileError(f"{what}: field {key!r} is missing or out of range")
    return value


class SectionReader:
    """Reads sections of one table from a source, verifying each CRC the first time."""

    def __init__(self, source: ByteSource, table: dict[str, SectionRef], sizes: Sizes, specs: dict, what: str,
                 *, newer_minor: bool = False):
        unknown = set(table) - set(specs)
        if unknown and not newer_minor:
            raise CorruptFileError(f"{what}: unknown section(s) {sorted(unknown)}")
        table = {name: ref for name, ref in table.items() if name in specs}  # a newer minor's additions
        self.source, self.table, self.sizes, self.specs, self.what = source, table, sizes, specs, what
        missing = [name for name, spec in specs.items() if spec.required and name not in table]
        if missing:
            raise CorruptFileError(f"{what}: missing section(s) {missing}")
        self._verified: set[str] = set()
        self.barcodes: tuple[int, str] | None = None  # a chunk's (barcode_length, barcode_suffix): spec §5.7

    def has(self, name: str) -> bool:
        """Whether the table lists a section of this name."""
        return name in self.table

    def ranges(self, names) -> list[tuple[int, int]]:
        """(offset, length) of those of `names` that the table lists: what a prefetch asks for."""
        return [(self.table[n].offset, self.table[n].length) for n in names if n in self.table]

    def raw(self, name: str, *, verify: bool = True) -> memoryview:
        """A section's stored bytes, its CRC checked on first read (verify=False skips the check)."""
        ref = self.table[name]
        data = self.source.read(ref.offset, ref.length)
        if verify and name not in self._verified:
            if crc32(data) != ref.crc:
                raise CorruptFileError(f"{self.what}: checksum mismatch in section {name!r} (file is corrupt)")
            self._verified.add(name)
        return data

    def get(self, name: str, *, count: int | None = None):
        """A section decoded by its layout spec, whose encoding says how (arrays and names sized from
        the header)."""
        spec = self.specs[name]
        expected = spec.expected(self.sizes) if count is None else count
        return spec.unpack(self.raw(name), expected, what=f"{self.what}: section {name!r}")


class Chunk:
    """One loaded chunk: its geometry, tile directory, models and SIRENs, ready for the kernels.
    A plain class (not a dataclass): opening a file should not pay for generated methods.

    Its rows are matrix rows row_base .. row_end - 1 in everything kept here (band starts, tile
    rows): a chunk of a segment (spec §5.5) has its own rows offset by its segment's first row, so
    that the gene tables of all segments, one after another, serve every kernel as they are."""

    def __init__(self, index: int, first_cell: int, n_cells: int, nnz: int, n_rows: int, checksum: int,
                 geometry: ChunkGeometry, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
                 tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, tile_first: np.ndarray,
                 band_crc: np.ndarray, band_verified: np.ndarray, data_ref: SectionRef, band_siren: np.ndarray,
                 sections: SectionReader, tables3=None, segment: int = 0, row_base: int = 0) -> None:
        self.index, self.first_cell, self.n_cells, self.nnz = index, first_cell, n_cells, nnz
        self.n_rows, self.checksum, self.geometry = n_rows, checksum, geometry
        self.segment, self.row_base, self.row_end = segment, row_base, row_base + n_rows
        self.tile_offset = tile_offset  # absolute offset of each tile's stream
        self.tile_length, self.tile_k, self.tile_h, self.tile_w = tile_length, tile_k, tile_h, tile_w
        self.tile_row, self.tile_first = tile_row, tile_first
        self.band_crc, self.band_verified, self.data_ref = band_crc, band_verified, data_ref
        self.band_siren = band_siren  # band -> index into the matrix's SIREN tables, -1 for the baseline
        self.sections = sections
        self.tables3 = tables3  # format 3: the chunk's decoding tables (a ChunkTables3); format 2: None
        self.lock = fork_safe_lock()
        g = geometry
        self.lists = (g.row_starts.tolist(), g.widths.tolist(), g.tile_starts.tolist())  # for bisect


class TileTable(NamedTuple):
    """Every tile of every chunk in flat arrays, built once a read has loaded all chunks, so that a
    read spanning all chunks (a gene) is gathered with a few vectorised steps. The chunks' own
    tile arrays become views into these."""

    offset: np.ndarray  # int64, absolute offset of each tile's stream
    length: np.ndarray
    k: np.ndarray
    h: np.ndarray
    w: np.ndarray
    row: np.ndarray
    first: np.ndarray
    chunk_base: np.ndarray  # first tile of each chunk, and the tile count last
    band_rows: np.ndarray  # [n_chunks, most bands + 1]: each chunk's band starts, padded past every row
    band_tiles: np.ndarray  # [n_chunks, most bands + 1]: each chunk's first tile of each band, padded
    band_verified: np.ndarray  # [n_chunks, most bands]: which bands' CRCs have been checked
    band_crc: np.ndarray  # [n_chunks, most bands]: each band's CRC
    band_siren: np.ndarray  # [n_chunks, most bands]: each band's SIREN (-1: the baseline)
    row_end: np.ndarray  # each chunk's Chunk.row_end
    first_cell: np.ndarray
    n_cells: np.ndarray


def band_tile_ranges(table_rows: np.ndarray, table_tiles: np.ndarray, chunk_base: np.ndarray, row_end: np.ndarray,
                     row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every chunk holding `row` (below its row_end): the chunk and its band holding the row;
    then the tiles of those bands, and for each tile which (chunk, band) pair it belongs to. The
    chunks must be of one segment (their band starts begin at or below `row`)."""
    status, chunks, bands, tiles, pair = _native.band_tile_ranges(table_rows, table_tiles, chunk_base, row_end, row)
    if status:
        raise CorruptFileError(f"tile table: {_native.assemble_status_text(status)} (file is corrupt)")
    return chunks, bands, tiles, pair


def recorded_inputs_error(options: dict) -> int | None:
    """A lossless file's options.inputs_error (spec §12.7: how far values decoded from lossy files may
    be from the counts first encoded, -1 for no bound) where it is an int of -1 .. MAX_ERROR_LIMIT,
    else None: informative, so anything else is ignored, as the C++ reader ignores it."""
    value = options.get("inputs_error")
    if isinstance(value, int) and not isinstance(value, bool) and -1 <= value <= MAX_ERROR_LIMIT:
        return value
    return None


class MatrixIndex:
    """A matrix's footer header, checked field by field and against its sections."""

    def __init__(self, source: ByteSource, header, *, body_end: int, what: str, version: tuple[int, int] = (2, 0),
                 newer_minor: bool = False) -> None:
        if not isinstance(header, dict):
            raise CorruptFileError(f"{what}: matrix header is not a map")
        self.source = source
        self.what = what
        self.name = header.get("name")
        if not isinstance(self.name, str):
            raise CorruptFileError(f"{what}: matrix has no name")
        self.major = version[0]
        self.required_features = required_features(header, version, what=what)  # before any other field
        shape = header.get("shape")
        if not isinstance(shape, list) or len(shape) != 2:
            raise CorruptFileError(f"{what}: header lacks a valid shape")
        self.n_genes = _int({"n": shape[0]}, "n", 0, MAX_DIMENSION, f"{what}: shape")
        self.n_cells = _int({"n": shape[1]}, "n", 0, MAX_DIMENSION, f"{what}: shape")
        self.nnz = _int(header, "nnz", 0, self.n_genes * self.n_cells, what)
        self.mode = header.get("mode")
        if self.mode not in MODES:
            raise CorruptFileError(f"{what}: unknown mode {self.mode!r}")
        self.stages = parse_stages(header.get("stages"), self.mode, what=what, major=self.major)
        self.max_error = self.stages["value-quantiser"].max_error
        self.n_chunks = _int(header, "n_chunks", 0, max(self.n_cells, 0), what)
        if (self.n_cells > 0) != (self.n_chunks > 0):
            raise CorruptFileError(f"{what}: {self.n_chunks} chunks for {self.n_cells} cells")
        self.segmented = SEGMENTS in self.required_features  # else the matrix is one segment (spec §5.5)
        if not self.segmented and self.major >= 3 and "n_segments" in header:
            raise CorruptFileError(f"{what}: field 'n_segments' without the feature 'segments'")  # SG1
        self.n_segments = _int(header, "n_segments", 1, self.n_chunks, what) if self.segmented else 1  # SG1
        self.n_stored = _int(header, "n_stored_genes", 0, min(self.n_segments * self.n_genes, MAX_DIMENSION), what)  # M6, SG1
        names_are_ids = header.get("gene_names_are_ids")
        if not isinstance(names_are_ids, bool):
            raise CorruptFileError(f"{what}: field 'gene_names_are_ids' is missing or not a boolean")
        self.gene_names_are_ids = names_are_ids
        self.has_cell_names = header.get("has_cell_names")
        if not isinstance(self.has_cell_names, bool):
            raise CorruptFileError(f"{what}: field 'has_cell_names' is missing or not a boolean")
        stats, options = header.get("stats", {}), header.get("options", {})
        self.stats = {k: v for k, v in stats.items() if isinstance(k, str) and isinstance(v, (int, float))
                      and not isinstance(v, bool) and np.isfinite(v)} if isinstance(stats, dict) else {}
        self.options = options if isinstance(options, dict) else {}
        self.inputs_error = recorded_inputs_error(self.options) if self.mode == "lossless" else None
        self.header = header
        table = parse_section_table(header.get("sections"), low=PREAMBLE.size, high=body_end, what=what)
        sizes = Sizes(n_genes=self.n_genes, n_stored_genes=self.n_stored, n_chunks=self.n_chunks,
                      n_segments=self.n_segments)
        self.newer_minor = newer_minor
        self.sections = SectionReader(source, table, sizes, MATRIX_SECTIONS_BY_MAJOR[self.major], what,
                                      newer_minor=newer_minor)
        if names_are_ids and (self.sections.has("names.gene_names") or not self.sections.has("names.gene_ids")):
            raise CorruptFileError(f"{what}: 'gene_names_are_ids' contradicts the name sections")
        index = self.sections.get("chunks.index").reshape(self.n_chunks, len(CHUNK_INDEX_FIELDS)).astype(np.int64)
        self._parse_chunk_index(index, table, body_end)
        self._parse_segments()
        self._chunks: dict[int, Chunk] = {}
        self._lock = fork_safe_lock()
        self._genes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._gene_tables: tuple[np.ndarray, np.ndarray] | None = None
        self._tile_table: TileTable | None = None
        self.chunk_start_list = self.chunk_starts.tolist()
        self.sirens = SirenTables()

    def _parse_segments(self) -> None:
        """The segments' first chunks and first rows (spec §5.5; rules SG1, SG2): one segment of
        every chunk and every stored row for a matrix without the feature."""
        if self.sections.has("segments.index") != self.segmented:
            raise CorruptFileError(f"{self.what}: section 'segments.index' must be present if and only if the "
                                   "matrix lists the feature 'segments'")  # SG1
        if not self.segmented:
            chunks, rows = np.array([self.n_chunks], np.uint64), np.array([self.n_stored], np.uint64)
        else:
            chunks, rows = self.sections.get("segments.index").reshape(self.n_segments, len(SEGMENT_INDEX_FIELDS)).T
            # each bounded first (every sum of such values fits in an int64), then the sums
            if np.any(chunks < 1) or np.any(chunks > self.n_chunks) or int(chunks.sum()) != self.n_chunks:
                raise CorruptFileError(f"{self.what}: segment index: every segment needs at least one chunk, and the "
                                       f"segments' chunks must add up to the matrix's {self.n_chunks}")  # SG2
            if np.any(rows > self.n_genes) or int(rows.sum()) != self.n_stored:
                raise CorruptFileError(f"{self.what}: segment index: a segment's rows exceed the matrix's "
                                       f"{self.n_genes} genes, or the segments' rows do not add up to its "
                                       f"{self.n_stored} stored genes")  # SG2
        self.segment_chunk_starts = np.concatenate([[0], np.cumsum(chunks.astype(np.int64))])  # K_s, then n_chunks
        self.segment_row_starts = np.concatenate([[0], np.cumsum(rows.astype(np.int64))])  # R_s, then n_stored
        self.chunk_segment = np.repeat(np.arange(chunks.size), chunks.astype(np.int64))  # each chunk's segment

    def _parse_chunk_index(self, index: np.ndarray, table: dict[str, SectionRef], body_end: int) -> None:
        offset, header_length, _, block_length, n_cells, nnz = index.T
        if np.any(index < 0) or np.any(header_length > np.minimum(block_length, MAX_CHUNK_HEADER_BYTES)) \
                or np.any(offset < PREAMBLE.size) or np.any(offset + block_length > body_end) or np.any(n_cells < 1):
            raise CorruptFileError(f"{self.what}: chunk index holds an impossible entry")
        if sum(n_cells.tolist()) != self.n_cells or sum(nnz.tolist()) != self.nnz:  # exact (M12): no sum wraps
            raise CorruptFileError(f"{self.what}: chunk index does not add up to the matrix's cells and nonzeros")
        check_disjoint([(int(o), int(n), f"chunk {i}") for i, (o, n) in enumerate(zip(offset, block_length))]
                       + [(r.offset, r.length, r.name) for r in table.values()], what=self.what)
        self.chunk_index = index
        self.chunk_starts = np.concatenate([[0], np.cumsum(n_cells)]).astype(np.int64)
        self.nnz_starts = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
        self.largest_chunk_nnz = int(nnz.max()) if nnz.size else 0  # what a whole read's buffers must hold

    # ------------------------------------------------------------------------------- genes

    def _gene_table_ranges(self) -> list[tuple[int, int]]:
        """The gene order's, gene terms' and gene names' byte ranges while they are not loaded: every
        read that decodes needs them, so a batched source fetches them with the first chunks a read
        loads rather than in a round trip of their own (and opening, which needs none, skips them)."""
        with self._lock:
            if self._genes is not None:
                return []
        return self.sections.ranges(("genes.order", "genes.baseline") + self._counted_names())

    def _counted_names(self) -> tuple[str, ...]:
        """The gene names section whose count corroborates n_genes before anything decodes (M14): the
        one of fewest stored bytes, the least to fetch (a file's feature types: 79 bytes for 33,694
        genes, whose 539 KB of text still take 0.3-0.6 ms to decompress and count, where every names
        section took about 2 ms), the others checked where read."""
        present = [name for name in GENE_NAME_SECTIONS if self.sections.has(name)]
        return (min(present, key=lambda name: self.sections.table[name].length),) if present else ()

    def genes(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
        """(gene of each stored row, the stored rows' keys sorted, the row of each of those, gene
        terms), loaded and checked once (rules M13, SG3), with the count of each gene names section
        (M14): every read that decodes trusts n_genes, which a footer could claim one more of than
        the names hold (an empty gene read as if stored). A row's key is its segment times n_genes
        plus its gene (its gene, in a matrix of one segment), so that one binary search finds a
        gene's row in a segment. Matrices of one segment of up to ROW_TABLE_LIMIT genes get the row
        and gene tables instead of the sorted arrays (None): one scatter builds them and finds a
        repeated gene on the way."""
        loaded = self._genes
        if loaded is not None:
            return loaded
        self.source.prefetch(self._gene_table_ranges())  # all in one round trip
        with self._lock:
            if self._genes is None:
                order = self.sections.get("genes.order").astype(np.int64)
                if order.size and order.max() >= self.n_genes:
                    raise CorruptFileError(f"{self.what}: stored gene order is not part of a permutation")
                terms = self.sections.get("genes.baseline").astype(np.int64)
                for name in self._counted_names():
                    names_text(self.sections.raw(name), self.n_genes, what=f"{self.what}: section {name!r}")
                if self.n_genes <= ROW_TABLE_LIMIT and not self.segmented:
                    rows = np.full(self.n_genes, -1, dtype=np.int64)
                    rows[order] = np.arange(order.size)
                    stored = rows >= 0
                    if np.count_nonzero(stored) != order.size:
                        raise CorruptFileError(f"{self.what}: stored gene order is not part of a permutation")
                    rows[~stored] = np.arange(order.size, self.n_genes)  # unstored genes follow, ascending
                    genes = np.empty(self.n_genes, dtype=np.int64)
                    genes[rows] = np.arange(self.n_genes)
                    self._gene_tables = (rows, genes)
                    self._genes = (order, None, None, terms)
                else:
                    keys = order + self.n_genes * np.repeat(np.arange(self.n_segments),
                                                            np.diff(self.segment_row_starts))
                    by_key = np.argsort(keys, kind="stable")
                    keys = keys[by_key]
                    if keys.size > 1 and np.any(keys[1:] == keys[:-1]):
                        raise CorruptFileError(f"{self.what}: stored gene order is not part of a permutation"
                                               + (" within a segment" if self.segmented else ""))  # M13, SG3
                    self._genes = (order, keys, by_key, terms)
            return self._genes

    def gene_tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(row of each gene, gene of each row) as arrays, for matrices of one segment of up to
        ROW_TABLE_LIMIT genes (scalar lookups then cost one index); None for others."""
        self.genes()
        return self._gene_tables

    def gene_rows(self, genes: np.ndarray, segment: int | np.ndarray = 0) -> np.ndarray:
        """Row of each original gene index in `segment`: in a matrix of one segment its row in the
        file's gene order (spec §5.3.2: unstored genes follow the stored rows); in a segmented one
        its row in the matrix's rows (the segment's first row plus its row in the segment), or -1
        where the segment does not store it (§5.5)."""
        tables = self.gene_tables()
        if tables is not None:
            return tables[0][genes]
        _, keys, row_of_key, _ = self.genes()
        wanted = genes + segment * self.n_genes
        pos = np.searchsorted(keys, wanted)
        clipped = np.minimum(pos, max(keys.size - 1, 0))
        found = (pos < keys.size) & (keys[clipped] == wanted) if keys.size else np.zeros(genes.size, bool)
        absent = np.full(genes.size, -1, np.int64) if self.segmented else self.n_stored + genes - pos
        return np.where(found, row_of_key[clipped] if keys.size else absent, absent)

    def stored_rows(self, genes: np.ndarray) -> np.ndarray:
        """Every stored row (ascending, each once) whose gene is one of `genes`: one per stored gene
        in a matrix of one segment, one in each segment that stores it in a segmented one."""
        if not self.segmented:
            rows = unique_sorted(self.gene_rows(genes))
            return rows[rows < self.n_stored]
        wanted = np.zeros(self.n_genes, bool)
        wanted[genes] = True
        return np.flatnonzero(wanted[self.genes()[0]])

    def gene_segment_rows(self, gene: int) -> list[tuple[int, int]]:
        """(segment, row) of every stored row of `gene`, segments ascending: what a read of the gene
        decodes (spec §5.5: its row in each segment that stores it)."""
        if not self.segmented:
            row = int(self.gene_rows(np.array([gene], np.int64))[0])
            return [(0, row)] if row < self.n_stored else []
        segments = np.arange(self.n_segments, dtype=np.int64)
        rows = self.gene_rows(np.full(self.n_segments, gene, np.int64), segments)
        return [(s, r) for s, r in zip(segments.tolist(), rows.tolist()) if r >= 0]

    def row_genes(self, rows: np.ndarray) -> np.ndarray:
        """Original gene index of each row of the file's gene order (in a segmented matrix, of its
        stored rows)."""
        tables = self.gene_tables()
        if tables is not None:
            return tables[1][rows]
        order, stored_sorted, _, _ = self.genes()
        if self.segmented:
            return order[rows]
        out = np.empty(rows.size, dtype=np.int64)
        stored = rows < self.n_stored
        out[stored] = order[rows[stored]]
        k = rows[~stored] - self.n_stored  # the k-th unstored gene: smallest g with g - #stored<=g == k
        if k.size:
            lo = k.copy()
            hi = k + stored_sorted.size
            while np.any(lo < hi):
                mid = (lo + hi) // 2
                below = np.searchsorted(stored_sorted, mid, side="right")
                free = mid - below
                go_right = free < k
                lo = np.where(go_right, mid + 1, lo)
                hi = np.where(go_right, hi, mid)
            out[~stored] = lo
        return out

    def segment_genes(self, segment: int) -> np.ndarray:
        """The genes of a segment's rows, in row order: what its chunks' own rows 0, 1, ... hold."""
        lo, hi = self.segment_row_starts[segment: segment + 2].tolist()
        return self.genes()[0][lo:hi]

    # ------------------------------------------------------------------------------ chunks

    def chunk_of_cell(self, cell: int) -> int:
        """The chunk that holds a cell (by its position in the file's order)."""
        return bisect.bisect_right(self.chunk_start_list, cell) - 1

    def block_ranges(self, ids=None) -> list[tuple[int, int]]:
        """(offset, length) of the blocks (header and sections) of chunks `ids` (default all), in that
        order: what a copy or a check of whole chunks reads (ByteSource.ready_in_order takes them)."""
        rows = self.chunk_index if ids is None else self.chunk_index[np.asarray(ids, dtype=np.int64)]
        columns = [CHUNK_INDEX_FIELDS.index("offset"), CHUNK_INDEX_FIELDS.index("block_length")]
        return [(int(o), int(n)) for o, n in rows[:, columns].tolist()]

    def chunk(self, i: int) -> Chunk:
        """One chunk's parsed header, loaded once and cached."""
        with self._lock:
            chunk = self._chunks.get(i)
        return chunk if chunk is not None else self.load_chunks([i])[0]

    def load_chunks(self, ids) -> list[Chunk]:
        """The chunks of `ids`; those not loaded yet are read in one batch of ranges (each header
        and a guess at its sections), and a second for sections beyond the guess, whatever their number."""
        ids = list(ids)
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._chunks]
        if missing:
            rows = self.chunk_index[missing]
            guess = np.minimum(rows[:, 1] + SECTIONS_GUESS_BASE + SECTIONS_GUESS_PER_CELL * rows[:, 4], rows[:, 3])
            self.source.prefetch(list(zip(rows[:, 0].tolist(), guess.tolist())) + self._gene_table_ranges())
            readers = {i: self._chunk_sections(i) for i in missing}
            self.source.prefetch([(ref.offset, ref.length) for reader, _ in readers.values()
                                  for name, ref in reader.table.items() if name != "tiles.data"])
            for i, (reader, header) in readers.items():
                chunk = self._load_chunk(i, reader, header)
                with self._lock:
                    self._chunks.setdefault(i, chunk)
        with self._lock:
            return [self._chunks[i] for i in ids]

    def chunk_cell_names(self, ids) -> list[list[str]]:
        """Each chunk's cell names (its `cells.names`), reading a chunk not loaded yet no further
        than its header and that section: all a file's cell names then cost a tenth of loading
        every chunk (and a read decoding them meanwhile does not load them twice)."""
        ids = list(ids)
        with self._lock:
            loaded = {i: self._chunks[i].sections for i in ids if i in self._chunks}
        missing = [i for i in dict.fromkeys(ids) if i not in loaded]
        if missing:
            rows = self.chunk_index[missing]
            self.source.prefetch(list(zip(rows[:, 0].tolist(), rows[:, 1].tolist())))
            loaded.update((i, self._chunk_sections(i)[0]) for i in missing)
            self.source.prefetch([ref for i in missing for ref in loaded[i].ranges(CELL_NAME_SECTIONS)])
        return [self._cell_names(loaded[i], f"{self.what}: chunk {i}") for i in ids]

    def _cell_names(self, reader: SectionReader, what: str) -> list[str]:
        """A chunk's cell names, from whichever section holds them (spec §5.7), once the rules they
        derive from hold (spec §9.3: K1-K3 and K5 checked with the header, CP1 here, K6, CB1-CB3)."""
        self._cell_order_section(reader, what)
        name = self._cell_names_section(reader, what)
        if name == "cells.names":
            return reader.get(name)
        return barcode_names(reader.get(name), *reader.barcodes, what)

    def _chunk_sections(self, i: int) -> tuple[SectionReader, dict]:
        """Chunk i's header, checked, and a reader of its sections."""
        what = f"{self.what}: chunk {i}"
        offset, header_length, header_crc, block_length, n_cells, nnz = (int(x) for x in self.chunk_index[i])
        raw = self.source.read(offset, header_length)
        if crc32(raw) != header_crc:
            raise CorruptFileError(f"{what}: header checksum mismatch (file is corrupt)")
        header = unpack_header(raw, MAX_CHUNK_HEADER_BYTES, what=f"{what} header")
        if _int(header, "n_cells", 0, MAX_DIMENSION, what) != n_cells or _int(header, "nnz", 0, 2**63 - 1, what) != nnz:
            raise CorruptFileError(f"{what}: header contradicts the chunk index")
        n_rows = _int(header, "n_rows", 0, self.n_stored, what)
        segment = int(self.chunk_segment[i])
        segment_rows = int(self.segment_row_starts[segment + 1] - self.segment_row_starts[segment])
        if n_rows > segment_rows:
            raise CorruptFileError(f"{what}: {n_rows} rows, more than its segment {segment} stores "
                                   f"({segment_rows})")  # SG4
        if (nnz == 0) != (n_rows == 0):
            raise CorruptFileError(f"{what}: {n_rows} rows for {nnz} nonzeros")
        body = offset + header_length
        n_bands = _int(header, "n_bands", 0, n_rows, what)
        if (n_rows > 0) != (n_bands > 0):
            raise CorruptFileError(f"{what}: {n_bands} bands for {n_rows} rows")
        table = parse_section_table(header.get("sections"), low=body, high=offset + block_length, what=what,
                                    base=body)
        reader = SectionReader(self.source, table, Sizes(n_cells=n_cells, n_bands=n_bands),
                               CHUNK_SECTIONS_BY_MAJOR[self.major], what, newer_minor=self.newer_minor)
        if reader.has("cells.barcodes"):
            reader.barcodes = barcode_format(header, what)
        return reader, header

    def _load_chunk(self, i: int, reader: SectionReader, header: dict) -> Chunk:
        what = f"{self.what}: chunk {i}"
        _, _, _, _, n_cells, nnz = (int(x) for x in self.chunk_index[i])
        n_rows, n_bands = header["n_rows"], header["n_bands"]
        checksum = _int(header, "checksum", 0, 2**64 - 1, what)
        self._cell_names_section(reader, what)
        if reader.has("values.counts") == (self.mode == "inr-only"):
            raise CorruptFileError(f"{what}: value tables contradict mode {self.mode!r}")
        rows = reader.get("bands.rows")
        geometry = ChunkGeometry.checked(rows, reader.get("bands.widths"), n_rows, n_cells, what=what)
        segment = int(self.chunk_segment[i])
        row_base = int(self.segment_row_starts[segment])
        geometry.row_starts += row_base  # virtual rows (Chunk): the tiles' rows follow
        reader.sizes = Sizes(n_cells=n_cells, n_bands=n_bands, n_tiles=geometry.n_tiles)
        if geometry.n_tiles > nnz + max_tiles(np.zeros(n_bands, np.int64), np.diff(geometry.row_starts), n_cells):
            raise CorruptFileError(f"{what}: more tiles than its nonzeros and shape allow")
        cell_order = reader.get(self._cell_order_section(reader, what)).astype(np.int64)
        if not _is_permutation(cell_order, n_cells):
            raise CorruptFileError(f"{what}: cell order is not a permutation")
        cell_terms = reader.get("cells.baseline").astype(np.int64)
        tile_k = reader.get("tiles.nnz").astype(np.int64)
        tile_length = reader.get("tiles.bytes").astype(np.int64)
        _, tile_row, tile_h, tile_first, tile_w = geometry.tiles()
        if int(tile_k.sum()) != nnz or np.any(tile_k > tile_h * tile_w):
            raise CorruptFileError(f"{what}: tile nonzeros contradict the chunk's nonzeros or tile sizes")
        data_ref = reader.table["tiles.data"]
        if int(tile_length.sum()) != data_ref.length:
            raise CorruptFileError(f"{what}: tile lengths do not add up to the tile data")
        tile_offset = data_ref.offset + np.concatenate([[0], np.cumsum(tile_length)])[:-1].astype(np.int64)
        band_crc = reader.get("bands.crc32").astype(np.int64)
        tables3 = None
        if self.major == 2:
            if self.mode == "inr-only":
                cum, lut, used = (np.zeros((N_CONTEXTS, N_BINS + 1), np.int64),
                                  np.zeros((N_CONTEXTS, LUT_SIZE), np.uint8), np.zeros(N_CONTEXTS, bool))
            else:
                counts = reader.get("values.counts")
                _native.check_value_counts(np.ascontiguousarray(counts, np.uint64), nnz, printable(what))  # K13
                cum, lut, used = decoding_tables(frequencies(counts.reshape(-1, N_BINS).astype(np.int64)))
        else:  # K13, G3, G1 and G2 in the core (count_sections.hpp), as the container reader checks them
            values = None if self.mode == "inr-only" else reader.raw("values.counts")
            tables3 = _native.format3_chunk_tables(reader.raw("gaps.counts"), values, nnz, tile_h * tile_w, tile_k,
                                                   printable(what))
        band_siren = self._load_sirens(reader, geometry, tile_k, what)
        first = int(self.chunk_starts[i])
        with self._lock:
            self._allocate()
            if tables3 is None:
                self.model_cum[i], self.model_lut[i], self.model_used[i] = cum, lut, used
            self.cell_terms[first: first + n_cells] = cell_terms
            self.cell_original[first: first + n_cells] = first + cell_order
            self.cell_position[first + cell_order] = first + np.arange(n_cells)
        return Chunk(i, first, n_cells, nnz, n_rows, checksum, geometry, tile_offset, tile_length, tile_k, tile_h,
                     tile_w, tile_row, tile_first, band_crc, np.zeros(n_bands, bool), data_ref, band_siren, reader,
                     tables3, segment, row_base)

    def _cell_order_section(self, reader: SectionReader, what: str) -> str:
        """The one section of a chunk holding its cell order (rule CP1, spec §5.4.3): `cells.order`, or
        its byte planes `cells.order_planes` in a matrix that lists their feature; in one that does not
        (every version 2 matrix), `cells.order` is the only place, and missing as any section K5 requires."""
        return self._one_section(reader, CELL_ORDER_SECTIONS, what)

    def _cell_names_section(self, reader: SectionReader, what: str) -> str | None:
        """The one section of a chunk holding its cell names where the matrix has them (rules K6, CB1,
        spec §5.7): `cells.names`, or `cells.barcodes` in a matrix that lists their feature; else None."""
        if any(reader.has(name) for name in CELL_NAME_SECTIONS) != self.has_cell_names:
            raise CorruptFileError(f"{what}: cell names contradict the matrix's 'has_cell_names'")
        return self._one_section(reader, CELL_NAME_SECTIONS, what) if self.has_cell_names else None

    def _one_section(self, reader: SectionReader, sections: tuple[str, str], what: str) -> str:
        """Which of `sections`, the same content in two forms the second of which needs a feature, the
        chunk holds: exactly one, and the second only where the matrix lists its feature."""
        held = [name for name in sections if reader.has(name)]
        allowed = [name for name in sections if chunk_features([name]) <= set(self.required_features)]
        if not held and len(allowed) == 1:
            raise CorruptFileError(f"{what}: missing section(s) {allowed}")
        if len(held) != 1:
            raise CorruptFileError(f"{what}: holds {'both' if held else 'neither'} of the sections "
                                   f"{' and '.join(map(repr, sections))}; a chunk holds exactly one")
        unlisted = chunk_features(held) - set(self.required_features)
        if unlisted:
            raise CorruptFileError(f"{what}: section {held[0]!r} needs the feature {unlisted.pop()!r}, which the "
                                   "matrix's required_features does not list")
        return held[0]

    def models(self, model: np.ndarray) -> tuple[tuple, np.ndarray, list | None]:
        """What the tile kernels take for tiles of the chunks `model` names: format 2's stacked value
        models (cum, lut, used) with the chunk ids as they are, or format 3's tables of the chunks
        named, as a list, with each tile's index into it (format 2's models are then empty)."""
        stacked = (self.model_cum, self.model_lut, self.model_used)
        if self.major == 2:
            return stacked, model, None
        ids, position = np.unique(model, return_inverse=True)
        return stacked, position.astype(np.int64), [self.chunk(int(c)).tables3 for c in ids.tolist()]

    def entry_model(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The format-2 value model (cum, lut, used) decode_entry takes for a tile of `chunk`; empty
        for a format-3 chunk, whose tables are chunk.tables3."""
        if chunk.tables3 is None:
            return self.model_cum[chunk.index], self.model_lut[chunk.index], self.model_used[chunk.index]
        return (self.model_cum.reshape(-1, N_BINS + 1), self.model_lut.reshape(-1, LUT_SIZE),
                self.model_used.reshape(-1))

    def _allocate(self) -> None:
        """Per-chunk models and per-cell arrays of the whole matrix, filled as chunks load (zeroed
        pages cost no memory until a chunk writes them). Format 3's models live on its chunks
        (Chunk.tables3)."""
        if hasattr(self, "cell_terms"):
            return
        n_models = self.n_chunks if self.major == 2 else 0
        self.model_cum = np.zeros((n_models, N_CONTEXTS, N_BINS + 1), np.int32)
        self.model_lut = np.zeros((n_models, N_CONTEXTS, LUT_SIZE), np.uint8)
        self.model_used = np.zeros((n_models, N_CONTEXTS), bool)
        self.cell_terms = np.zeros(self.n_cells, np.int32)
        self.cell_original = np.zeros(self.n_cells, np.int64)  # reordered column -> original cell
        self.cell_position = np.zeros(self.n_cells, np.int64)  # original cell -> reordered column

    def _load_sirens(self, reader: SectionReader, geometry: ChunkGeometry, tile_k: np.ndarray,
                     what: str) -> np.ndarray:
        band_siren = np.full(geometry.n_bands, -1, dtype=np.int64)
        if reader.has("siren.meta") != reader.has("siren.weights"):
            raise CorruptFileError(f"{what}: SIREN metadata and weights must come together")
        if reader.has("siren.meta"):
            from ..model.siren import PatchSiren  # only files with SIRENs pay for importing the model
            meta = reader.get("siren.meta").get("bands")
            if not isinstance(meta, list) or not meta:
                raise CorruptFileError(f"{what}: SIREN metadata is malformed")
            counts = []
            for entry in meta:
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
                        and not isinstance(entry[0], bool) and 0 <= entry[0] < geometry.n_bands):
                    raise CorruptFileError(f"{what}: SIREN metadata is malformed")
                with _naming(what):
                    counts.append(PatchSiren.parameter_count(entry[1]))
            bands = [entry[0] for entry in meta]
            if len(set(bands)) != len(bands):
                raise CorruptFileError(f"{what}: a band has two SIRENs")
            reader.sizes = reader.sizes._replace(n_siren_parameters=sum(counts))
            flat = reader.get("siren.weights").astype(np.int64)
            used = 0
            for (band, patch_meta), count in zip(meta, counts):
                with _naming(what):
                    patch = PatchSiren.from_meta(patch_meta, flat[used: used + count])
                used += count
                height = int(geometry.row_starts[band + 1] - geometry.row_starts[band])
                if not patch.fits_int64(height, geometry.n_cells):
                    raise CorruptFileError(f"{what}: band {band}'s SIREN can overflow 64-bit integers")
                band_siren[band] = self.sirens.add(patch)
        if self.mode == "inr-only":
            band_nnz = np.add.reduceat(tile_k, geometry.tile_starts[:-1]) if geometry.n_bands else tile_k[:0]
            if np.any((band_nnz > 0) & (band_siren < 0)):
                raise CorruptFileError(f"{what}: an --inr-only band with nonzeros has no SIREN")
        return band_siren

    def stream_chunks(self, ids) -> Iterator[Chunk]:
        """The chunks of `ids`. A batched (remote) source fetches every chunk's whole block
        (header, sections, tiles) concurrently, boundedly ahead of the caller (RemoteSource.stream),
        and each chunk comes as soon as its block arrives, so the first decode while the others are
        on the way. A file object's are loaded all first, in order (positioned reads of it interleaved
        with the decoders' would defeat its read-ahead); a local file's and bytes' one by one as the
        caller takes them, so the first decode does not wait for every chunk's header (28 of them,
        60 ms, in a 60M-nonzero file)."""
        ids = list(ids)
        if self.source.in_order:
            yield from self.load_chunks(ids)
            return
        if not self.source.batched:
            for i in ids:
                yield self.load_chunks([i])[0]
            return
        rows = self.chunk_index[ids] if ids else np.zeros((0, len(CHUNK_INDEX_FIELDS)), np.int64)
        with contextlib.closing(self.source.stream(list(zip(rows[:, 0].tolist(), rows[:, 3].tolist())))) as arrived:
            for k in arrived:  # closed here, so fetches still running are cancelled at once
                yield self.load_chunks([ids[k]])[0]

    def tile_table(self) -> TileTable:
        """All tiles in flat arrays (loads every chunk the first time)."""
        with self._lock:
            table = self._tile_table
        if table is not None:
            return table
        chunks = self.load_chunks(range(self.n_chunks))
        with self._lock:
            if self._tile_table is None:
                self._tile_table = _build_tile_table(chunks, max(self.n_genes, self.n_stored))
            return self._tile_table

    def deepest_chunk(self) -> Chunk | None:
        """The chunk with the most rows, whose bands are the file's: the first that holds every
        stored gene, loading no chunk after it."""
        deepest = None
        if self.source.batched:  # all headers in two round trips rather than one chunk after another
            self.load_chunks(range(self.n_chunks))
        for c in range(self.n_chunks):
            chunk = self.chunk(c)
            if deepest is None or chunk.n_rows > deepest.n_rows:
                deepest = chunk
            if chunk.n_rows == self.n_stored:
                break
        return deepest

    def verify_bands(self, chunk: Chunk, bands: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Check the CRC of the tile bytes of each band of `bands` (distinct, ascending) not checked
        before. When any is unchecked, every band's bytes come in one gathered read and their CRCs
        in one native call (a cell read checks every band of its chunk), and those bytes are
        returned with, for each band, what to add to a file offset in it to find it in them (for the
        decoder to use rather than read again)."""
        todo = ~chunk.band_verified[bands]
        if not todo.any():
            return None
        lo, length = self.band_ranges(chunk, bands)
        buffer, at = self.source.gather(lo, length)
        bad = np.flatnonzero(todo & (crc32_ranges(buffer, at, length) != chunk.band_crc[bands]))
        if bad.size:
            raise CorruptFileError(f"{self.what}: chunk {chunk.index}: checksum mismatch in the tiles of "
                                   f"band {int(bands[bad[0]])} (file is corrupt)")
        with chunk.lock:
            chunk.band_verified[bands] = True
        return buffer, at - lo

    def band_ranges(self, chunk: Chunk, bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and lengths of the tile bytes of `bands` (band_range of each, at once)."""
        if not chunk.tile_offset.size:
            return np.full(bands.size, chunk.data_ref.offset, np.int64), np.zeros(bands.size, np.int64)
        starts = chunk.geometry.tile_starts
        first, last = starts[bands], starts[bands + 1]
        empty = last == first
        last_tile = np.maximum(last - 1, 0)
        lo = np.where(empty, chunk.data_ref.offset, chunk.tile_offset[np.minimum(first, last_tile)])
        end = np.where(empty, lo, chunk.tile_offset[last_tile] + chunk.tile_length[last_tile])
        return lo.astype(np.int64), (end - lo).astype(np.int64)

    def band_range(self, chunk: Chunk, band: int) -> tuple[int, int]:
        """(offset, length) of one band's tile bytes."""
        first, last = chunk.lists[2][band], chunk.lists[2][band + 1]
        if last == first:
            return chunk.data_ref.offset, 0
        lo = int(chunk.tile_offset[first])
        return lo, int(chunk.tile_offset[last - 1] + chunk.tile_length[last - 1]) - lo

    def verify_band(self, chunk: Chunk, band: int) -> tuple[memoryview, int] | None:
        """Check the CRC of one band's tile bytes, unless done before (the lean path of one entry);
        returns the bytes and their file offset when it read them, for the decoder to use."""
        with chunk.lock:
            if chunk.band_verified[band]:
                return None
            offset, length = self.band_range(chunk, band)
            data = self.source.read(offset, length)
            if crc32(data) != int(chunk.band_crc[band]):
                raise CorruptFileError(f"{self.what}: chunk {chunk.index}: checksum mismatch in the tiles of "
                                       f"band {band} (file is corrupt)")
            chunk.band_verified[band] = True
            return data, offset


class SirenTables:
    """Every loaded band SIREN of a matrix, stacked for the compiled evaluator."""

    def __init__(self) -> None:
        self.spec = np.zeros((0, 3), np.int64)  # first layer, layers, normalisation code
        self.norm = np.zeros((0, 2), np.float64)  # offset, scale
        self.layers = np.zeros((0, 6), np.int64)
        self.params = np.zeros(0, np.int64)
        self._lock = fork_safe_lock()
        self._arrays: tuple | None = None  # what arrays() returns until the next add()

    def add(self, patch: PatchSiren) -> int:
        """Append a band's SIREN to the packed tables the native evaluator reads; return its index."""
        from ..model.siren import NORM_CODES  # only files with SIRENs pay for importing the model
        table, params = patch.packed()
        with self._lock:
            table[:, 5] += self.params.size
            index = self.spec.shape[0]
            self.spec = np.vstack([self.spec, [[self.layers.shape[0], table.shape[0],
                                                NORM_CODES[patch.normalisation.kind]]]])
            self.norm = np.vstack([self.norm, [[patch.normalisation.offset, patch.normalisation.scale]]])
            self.layers = np.vstack([self.layers, table])
            self.params = np.concatenate([self.params, params])
            self._arrays = None
            return index

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """spec, norm, layers, params; never empty, as the compiled kernels want arrays to index."""
        with self._lock:
            if self._arrays is None:
                self._arrays = (self.spec if self.spec.size else np.zeros((1, 3), np.int64),
                                self.norm if self.norm.size else np.ones((1, 2), np.float64),
                                self.layers if self.layers.size else np.zeros((1, 6), np.int64),
                                self.params if self.params.size else np.zeros(1, np.int64))
            return self._arrays


def _build_tile_table(chunks: list[Chunk], past_rows: int) -> TileTable:
    """The TileTable of `chunks`; `past_rows` is above every row (pads band_rows)."""
    counts = [chunk.geometry.n_tiles for chunk in chunks]
    chunk_base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    widest = max((chunk.geometry.n_bands for chunk in chunks), default=0)
    band_rows = np.full((len(chunks), widest + 1), past_rows, dtype=np.int64)
    band_tiles = np.zeros((len(chunks), widest + 1), dtype=np.int64)
    band_verified = np.zeros((len(chunks), max(widest, 1)), dtype=bool)
    band_crc = np.zeros((len(chunks), max(widest, 1)), dtype=np.int64)
    band_siren = np.full((len(chunks), max(widest, 1)), -1, dtype=np.int64)
    columns = {}
    for name, dtype in (("offset", np.int64), ("length", np.int32), ("k", np.int32), ("h", np.int32),
                        ("w", np.int32), ("row", np.int32), ("first", np.int32)):
        columns[name] = np.concatenate([getattr(chunk, f"tile_{name}") for chunk in chunks]).astype(dtype) \
            if chunks else np.zeros(0, dtype)
    for c, chunk in enumerate(chunks):
        g = chunk.geometry
        band_rows[c, : g.n_bands + 1] = g.row_starts
        band_tiles[c, : g.n_bands + 1] = g.tile_starts
        band_tiles[c, g.n_bands + 1:] = g.n_tiles
        band_verified[c, : g.n_bands] = chunk.band_verified
        band_crc[c, : g.n_bands] = chunk.band_crc
        band_siren[c, : g.n_bands] = chunk.band_siren
        chunk.band_verified = band_verified[c, : g.n_bands]  # one flag array, seen from both
        chunk.band_crc = band_crc[c, : g.n_bands]  # and one copy of the CRCs
        span = slice(chunk_base[c], chunk_base[c + 1])
        for name in columns:  # the chunk's arrays become views: no copy is kept twice
            setattr(chunk, f"tile_{name}", columns[name][span])
    return TileTable(**columns, chunk_base=chunk_base, band_rows=band_rows, band_tiles=band_tiles,
                     band_verified=band_verified, band_crc=band_crc, band_siren=band_siren,
                     row_end=np.array([chunk.row_end for chunk in chunks], dtype=np.int64),
                     first_cell=np.array([chunk.first_cell for chunk in chunks], dtype=np.int64),
                     n_cells=np.array([chunk.n_cells for chunk in chunks], dtype=np.int64))


def _is_permutation(order: np.ndarray, n: int) -> bool:
    if order.size != n or (n and (order.min() < 0 or order.max() >= n)):
        return False
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    return bool(seen.all())

