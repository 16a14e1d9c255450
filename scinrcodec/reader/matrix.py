"""MatrixReader: an open .sinr matrix. Shape, names, one entry, one gene, one cell, any submatrix
or the whole matrix, decoding only the tiles a request touches (the native core decodes).

The object users get, scinrcodec.SinrMatrix, extends this class with what needs whole-file storage
above the reader (to_anndata, iter_cells: scinrcodec.wholefile.matrix); the encoder, which extends
files, and `sinr info` need only this one."""
from __future__ import annotations

import bisect
import functools
import os
import weakref
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .. import _native
from ..codec.stages import MODE_CODES
from ..codec.tile import STATUS_TEXT, decode_entry
from ..errors import (CorruptFileError, FileChangedError, InvalidInputError, NotIterableError, ResultTooLargeError,
                      SinrError, SinrIndexError, SinrKeyError, printable)
from ..io.dtypes import READ_DTYPE, count_dtype
from ..limits import check_allocation, checked_jobs, read_threads
from ..progress import Progress, progress_of
from ..storage.container import is_newer_minor, read_footer
from ..storage.layout import CELL_NAME_SECTIONS, GENE_NAME_SECTIONS
from ..storage.opening import open_source
from ..storage.source import ByteSource, LocalFileSource, MemorySource, fork_safe_lock
from .assemble import BlockScratch, cell_major, check_whole_chunks, gene_major
from .decode import decode_batch, gather, table_batch
from .index import MatrixIndex, band_tile_ranges
from .moments import AxisMoments, MatrixMoments, check_axis, check_ddof, check_dtype, divided, in_dtype, \
    integer_variance, matrix_moments
from .oriented import CellsByGenes
from .selection import (all_distinct, as_index, expand, is_everything, is_key, is_scalar, no_such_name, place,
                        two_keys, unique_sorted)


CELLS_PER_GENE_READ = 5_000  # a gene read a gene at a time for this many cells (_by_gene_reads)
CELL_SCANS = 8  # cells looked up by a scan of the names before their table is built (_lookup)
_WITH_CORE: weakref.WeakSet = weakref.WeakSet()  # readers holding a core reader, forgotten in a forked child


def fits_in_memory(what: str):
    """A read whose result or working memory cannot be allocated raises ResultTooLargeError naming
    the read and the allocation that failed (its size), not a bare MemoryError: a file may declare
    dimensions (up to 2**31-1 genes) whose dense results no machine holds."""
    def wrap(method):
        @functools.wraps(method)
        def checked(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except ResultTooLargeError:
                raise
            except MemoryError as exc:
                detail = str(exc).strip() or "out of memory"
                raise ResultTooLargeError(f"{self.source}: {what} needs more memory than can be allocated "
                                          f"({detail[:1].lower() + detail[1:]}); the matrix has {self.shape[0]:,} "
                                          f"genes x {self.shape[1]:,} cells") from None
        return checked
    return wrap


if TYPE_CHECKING:
    from ..io.matrix import CountMatrix
    from .contents import StoredContents


class MatrixReader:
    """An open .sinr matrix. Thread-safe: decoding state is per call, caches fill under locks."""

    def __init__(self, source, *, matrix: str | None = None, jobs: int | None = None,
                 storage_options: dict | None = None) -> None:
        jobs = checked_jobs(jobs)
        self._source: ByteSource = open_source(source, storage_options)
        self.source = self._source.name
        footer = read_footer(self._source)
        content = footer.content
        if content.get("format") != "sinr":
            raise CorruptFileError(f"{self.source}: footer does not describe a .sinr file")
        matrices = content.get("matrices")
        if not isinstance(matrices, list) or not matrices:
            raise CorruptFileError(f"{self.source}: footer lists no matrix")
        names = [m.get("name") if isinstance(m, dict) else None for m in matrices]
        if not all(isinstance(n, str) for n in names):
            raise CorruptFileError(f"{self.source}: a matrix of the footer has no name")
        if len(set(names)) != len(names):
            raise CorruptFileError(f"{self.source}: two matrices share a name")
        if matrix is None:
            chosen = matrices[0]
        elif matrix in names:
            chosen = matrices[names.index(matrix)]
        else:
            raise SinrKeyError(f"{self.source}: no matrix named {matrix!r} (it holds {', '.join(map(str, names))})")
        self.version = footer.version
        self.footer = content
        self.body_end = footer.offset  # where the footer starts: an append writes its chunks from here
        # (size, footer CRC): tells two versions of the file apart wherever it is read from, since
        # the footer holds the CRC of every section (the chunk index's among them)
        self.file_identity = (self._source.size, footer.crc)
        self._index = MatrixIndex(self._source, chosen, body_end=footer.offset, what=self.source,
                                  version=footer.version, newer_minor=is_newer_minor(footer.version))
        self.jobs = jobs
        self._names: dict[str, list[str] | None] = {}
        self._lookup_tables: dict[str, dict[str, int]] = {}
        self._cell_scans = 0  # cells looked up by name before their table is built (_lookup)
        self._name_indexes: dict = {}  # obs_names and var_names (_name_index)
        self._siblings: dict[str, MatrixReader] = {}
        self._lock = fork_safe_lock()
        self._entry_of = None  # what answers m[i, j]: set at the first entry (_entry_reader)
        self._core_reader = None  # the core's reader of a local file (_core): opened at first use, False if none
        self._moments: MatrixMoments | None = None  # both axes' summaries (_summaries): one pass, at first use
        self._moments_lock = fork_safe_lock()
        self._building = fork_safe_lock()  # held while a name table or Index is built, so that it is built once

    # ------------------------------------------------------------------------------ header

    @property
    def byte_source(self) -> ByteSource:
        """Where the file's bytes come from (a local file, bytes, a file object or a URL)."""
        return self._source

    @property
    def index(self) -> MatrixIndex:
        """The matrix's parsed entry and chunk directory: what an encoder extending the file needs."""
        return self._index

    @property
    def shape(self) -> tuple[int, int]:
        return self._index.n_genes, self._index.n_cells

    @property
    def nnz(self) -> int:
        return self._index.nnz

    ndim = 2
    dtype = READ_DTYPE  # what indexing, gene, cell, to_scipy and cells_block return (generic code checks it)

    @property
    def mode(self) -> str:
        return self._index.mode

    @property
    def max_error(self) -> int:
        return self._index.max_error

    @property
    def stats(self) -> dict:
        return dict(self._index.stats)

    @property
    def options(self) -> dict:
        return dict(self._index.options)

    @property
    def inputs_error(self) -> int | None:
        """How far the values of a lossless file decoded from lossy files may be from the counts first
        encoded (the largest --max-error among those files, -1: no bound), or None (spec §12.7)."""
        return self._index.inputs_error

    @property
    def n_chunks(self) -> int:
        return self._index.n_chunks

    @property
    def name(self) -> str:
        return self._index.name

    @property
    def n_segments(self) -> int:
        """Runs of chunks with gene tables of their own (spec §5.5): 1 for a matrix without the
        feature `segments`, more for one combined from several files by copying their chunks."""
        return self._index.n_segments

    # ------------------------------------------------------------------------------- names

    def name_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the genes' name sections: the three lie side by side and are mostly
        wanted together (a lookup by name reads names and ids; AnnData's var all three), so a
        remote source fetches them in one request."""
        return self._index.sections.ranges(GENE_NAME_SECTIONS)

    def _global_names(self, section: str) -> list[str] | None:
        with self._lock:
            if section not in self._names:
                sections = self._index.sections
                sections.source.prefetch(self.name_ranges())
                self._names[section] = sections.get(section) if sections.has(section) else None
            return self._names[section]

    @property
    def gene_ids(self) -> list[str] | None:
        return self._global_names("names.gene_ids")

    @property
    def gene_names(self) -> list[str] | None:
        return self.gene_ids if self._index.gene_names_are_ids else self._global_names("names.gene_names")

    @property
    def feature_types(self) -> list[str] | None:
        return self._global_names("names.feature_types")

    @property
    def cell_names(self) -> list[str] | None:
        with self._lock:
            if "cells" not in self._names:
                index = self._index
                self._names["cells"] = None if not index.has_cell_names else [
                    name for names in index.chunk_cell_names(range(index.n_chunks)) for name in names]
            return self._names["cells"]

    # ------------------------------------------------------------ AnnData's names and orientation

    @property
    def n_obs(self) -> int:
        """Cells, as AnnData counts them."""
        return self.shape[1]

    @property
    def n_vars(self) -> int:
        """Genes, as AnnData counts them."""
        return self.shape[0]

    @property
    def obs_names(self):
        """The cells' names as a pandas Index: to_anndata's obs_names. Built once per open matrix
        (each call a view, its values read-only: they are the file's names)."""
        return self._name_index("obs")

    @property
    def var_names(self):
        """The genes' names as a pandas Index: to_anndata's var_names (gene names, else ids), built
        once per open matrix as obs_names is."""
        return self._name_index("var")

    def _name_index(self, axis: str):
        """obs_names or var_names, built once: each call gets a view of it sharing its hash table, so
        a get_loc or `in` per call costs microseconds, not a new Index and table (4 ms at 55,893
        cells), and a name a caller sets on its view is its own. The views share its values, held
        read-only: an edit in place through one (`m.obs_names.to_numpy()[0] = ...`) had renamed the
        cell in every later view and broken their lookups."""
        index = self._name_indexes.get(axis)
        if index is None:
            with self._building:
                index = self._name_indexes.get(axis)
                if index is None:
                    import pandas as pd

                    values = np.array(self._name_lists("cell" if axis == "obs" else "gene")[0], dtype=object)
                    values.flags.writeable = False
                    index = self._name_indexes[axis] = pd.Index(values, dtype=str, copy=False)
        return index.copy()

    @property
    def T(self) -> CellsByGenes:  # noqa: N802 (numpy's name)
        """This matrix in AnnData's orientation, cells x genes: m.T[cells, genes]."""
        return CellsByGenes(self)

    def _name_lists(self, axis: str) -> list[list[str]]:
        """The lists a name on an axis is looked up in, first the one obs_names or var_names give:
        the genes' names, then their ids; the cells' names. Where the file stores none, the names
        obs_names and var_names give in their place (cell_0, gene_0, ...), so that those work as keys."""
        lists = [self.gene_names, self.gene_ids] if axis == "gene" else [self.cell_names]
        stored = [names for names in lists if names is not None]
        return stored or [[f"{axis}_{i}" for i in range(self.shape[0 if axis == "gene" else 1])]]

    def _table(self, axis: str) -> dict[str, int | tuple[int, ...]]:
        """Name -> index of one axis, built once: genes by name, then by id (a name wins over another
        gene's id, as before); a name that several genes or cells have (a symbol such as visium's two
        Nnt, a duplicated barcode) maps to all of them."""
        table = self._lookup_tables.get(axis)
        if table is None:
            with self._building:  # threads asking at once wait for one table (0.18 s at 737,280 barcodes)
                table = self._lookup_tables.get(axis)
                if table is None:
                    table = {}
                    for names in reversed(self._name_lists(axis)):  # ids first, so that names replace them
                        table.update(_indices_by_name(names))
                    with self._lock:
                        self._lookup_tables[axis] = table
        return table

    def _named(self, axis: str, table: dict, key: str) -> int:
        """The index of the one gene or cell named `key`: SinrKeyError when none is, or several (their
        ids named, so that the user can pick one), never the first of them silently."""
        found = table.get(key)
        if found is None:
            raise no_such_name(axis, [key])
        if type(found) is int:  # noqa: E721
            return found
        ids = self.gene_ids if axis == "gene" and self.gene_ids is not None else None
        shown = ", ".join(repr(ids[i]) if ids is not None else str(i) for i in found[:5]) + (", ..." if len(found) > 5
                                                                                          else "")
        by = ("ids", "its id or index") if ids is not None else ("indices", "index")
        raise SinrKeyError(f"{len(found)} {axis}s are named {key!r} ({by[0]} {shown}): name one by {by[1]}")

    def _lookup(self, axis: str, key) -> int:
        n = self.shape[0 if axis == "gene" else 1]
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            index = int(key) + (n if key < 0 else 0)
            if not 0 <= index < n:
                raise SinrIndexError(f"{axis} index {key} out of range for {n} {axis}s")
            return index
        if not isinstance(key, str):  # numpy's IndexError for a float or bool key
            raise SinrIndexError(f"{axis} must be an integer index or a name, not {type(key).__name__}")
        if axis == "cell" and self._scans_a_cell():
            return self._named(axis, _scanned(self._name_lists(axis)[0], key), key)
        return self._named(axis, self._table(axis), key)

    def _scans_a_cell(self) -> bool:
        """Whether a cell is looked up by name in a scan of the names rather than in the table: the
        first few lookups are, so that one barcode of a raw matrix (`sinr get f '#0' BARCODE`) costs
        a scan (5 ms at 737,280 barcodes), not the table of every barcode (0.56 s); more go to the
        table, built once."""
        with self._lock:
            if "cell" in self._lookup_tables or self._cell_scans >= CELL_SCANS:
                return False
            self._cell_scans += 1
            return True

    # ------------------------------------------------------------------------------- reads

    def _row(self, gene: int, segment: int) -> int:
        """The gene's row in a segment (MatrixIndex.gene_rows): one index where the tables exist."""
        tables = self._index.gene_tables()
        if tables is not None:
            return int(tables[0][gene])
        return int(self._index.gene_rows(np.array([gene], dtype=np.int64), segment)[0])

    def _cell_column(self, cell: int):
        index = self._index
        chunk = index.chunk(index.chunk_of_cell(cell))
        return chunk, int(index.cell_position[cell])

    @fits_in_memory("reading an entry")
    def get(self, gene, cell) -> int:
        """One entry by index or name: one tile, decoded only as far as the entry."""
        return self._entry(self._lookup("gene", gene), self._lookup("cell", cell))

    def _entry(self, i: int, j: int) -> int:
        """Entry (i, j), both in range: the lean path m[i, j] takes for two plain ints."""
        entry_of = self._entry_of
        if entry_of is None:
            entry_of = self._entry_of = self._entry_reader()
        return entry_of(i, j)

    def _entry_reader(self):
        """What reads one entry: the core's reader where there is one (_core; one call, no Python
        per entry: about 3 us where this module's path takes 8-12), else this module's."""
        core = self._core()
        return core.entry if core is not None else self._decoded_entry

    def _core(self):
        """For a local file, the core's container reader on a duplicate of the open descriptor,
        opened once: it answers entries and single cells in one call each (a cell of a chunk not
        read before loads the chunk, checks its tiles and decodes in C++, about half this module's
        time). None for bytes, file objects and URLs, a file the core does not read, or after close."""
        core = self._core_reader
        if core is None:
            with self._lock:
                core = self._core_reader
                if core is None:
                    core = self._core_reader = self._open_core()
        return core or None

    def _core_cells(self, core, cells: list[int]) -> tuple:
        """Cells (original indices, any order) read by the core on this reader's threads:
        (shape, indptr, genes, values), a column per cell."""
        core.set_threads(read_threads(self.jobs))
        return core.cells(cells)

    def _core_every_gene(self, core, cells: np.ndarray, cells_major: bool = False) -> sp.csr_matrix:
        """m[:, cells] in one call of the core (chunk by chunk, the tiles holding the cells decoded once
        on its threads) as genes x cells CSR, its rows made by the core (scipy's CSC-to-CSR conversion
        and its checks took a tenth of a cell's read), or with cells_major as cells x genes CSR."""
        core.set_threads(read_threads(self.jobs))
        listed = cells.tolist()
        if cells_major:
            _, indptr, genes, values = core.cells(listed)
            return sp.csr_matrix((values.astype(READ_DTYPE), genes, indptr), shape=(cells.size, self.shape[0]))
        _, indptr, positions, values = core.cells_by_gene(listed)
        return sp.csr_matrix((values.astype(READ_DTYPE), positions, indptr), shape=(self.shape[0], cells.size))

    def _open_core(self):
        if isinstance(self._source, LocalFileSource):
            handed = self._source.duplicate(self._release_core)
            if handed is not None:
                try:
                    core = _native.ContainerReader.adopt(handed[0], printable(self.source), handed[1], self.name)
                except SinrError:
                    return False
                core.set_keep_bytes(0)  # single cells: nothing of a chunk decoded whole is kept for later reads
                _WITH_CORE.add(self)
                return core
        return False

    def _release_core(self) -> None:
        """close(): the core reader's descriptor goes with the file's (under the lock _open_core holds,
        so that a core reader being opened meanwhile is not stored after it)."""
        with self._lock:
            self._entry_of = self._core_reader = None

    def _decoded_entry(self, i: int, j: int) -> int:
        chunk, column = self._cell_column(j)  # first: a remote file fetches the gene tables with the chunk
        row = self._row(i, chunk.segment)
        if not chunk.row_base <= row < chunk.row_end:  # not stored, or no nonzero in the chunk's rows
            return 0
        row_starts, widths, tile_starts = chunk.lists
        band = bisect.bisect_right(row_starts, row) - 1
        tile = tile_starts[band] + (column - chunk.first_cell) // widths[band]
        index = self._index
        held = None if chunk.band_verified[band] else index.verify_band(chunk, band)
        buffer, start = index.source.array(), int(chunk.tile_offset[tile])
        length = int(chunk.tile_length[tile])
        if buffer is None and held is not None:  # the band's bytes, just read to check them
            buffer, start = np.frombuffer(held[0], dtype=np.uint8), start - held[1]
        elif buffer is None:
            buffer, start = np.frombuffer(index.source.read(start, length), dtype=np.uint8), 0
        siren = int(chunk.band_siren[band])
        first = int(chunk.tile_first[tile])
        cum, lut, used = index.entry_model(chunk)
        value, status = decode_entry(
            buffer, start, length, int(chunk.tile_k[tile]), int(chunk.tile_h[tile]), int(chunk.tile_w[tile]),
            int(chunk.tile_row[tile]), chunk.first_cell + first, first, chunk.n_cells, cum, lut, used, siren,
            index.sirens.arrays() if siren >= 0 else None,
            index.genes()[3], index.cell_terms, MODE_CODES[index.mode], index.max_error, row, column, chunk.tables3)
        if status:
            raise CorruptFileError(f"{index.what}: {STATUS_TEXT.get(status, 'a tile is corrupt')} (file is corrupt)")
        return int(value)

    @fits_in_memory("reading a gene (dense over cells)")
    def gene(self, key) -> np.ndarray:
        """One gene (row) as a dense 1-D int64 array over cells: one band's tiles in every chunk."""
        out = np.zeros(self.shape[1], dtype=READ_DTYPE)
        self._gene_into(self._lookup("gene", key), out)
        return out

    def _gene_into(self, i: int, out: np.ndarray) -> None:
        """Gene i's nonzeros written into `out` (zeros over every cell, original order)."""
        cells, values = self._gene_cells(i)
        out[cells] = values

    def _gene_cells(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Gene i's nonzeros as (original cells, values), in the order its tiles hold them."""
        index = self._index
        found: list[tuple[np.ndarray, np.ndarray]] = []
        if index.n_chunks:
            table = index.tile_table()  # first: a remote file fetches the gene tables with the chunks
            for segment, row in index.gene_segment_rows(i):  # its row in each segment that stores it
                lo, hi = index.segment_chunk_starts[segment: segment + 2].tolist()
                chunks, bands, tiles, pair = band_tile_ranges(table.band_rows[lo:hi], table.band_tiles[lo:hi],
                                                              table.chunk_base[lo:hi], table.row_end[lo:hi], row)
                if tiles.size:
                    batch = table_batch(index, table, chunks + lo, bands, tiles, pair)
                    _, cols, values = decode_batch(index, batch, want_row=row, jobs=self.jobs)
                    found.append((index.cell_original[cols], values))
        if len(found) == 1:  # the usual case: one segment
            return found[0]
        return (np.concatenate([cells for cells, _ in found] or [np.zeros(0, np.int64)]),
                np.concatenate([values for _, values in found] or [np.zeros(0, READ_DTYPE)]))

    @fits_in_memory("reading a cell (dense over genes)")
    def cell(self, key) -> np.ndarray:
        """One cell (column) as a dense 1-D int64 array over genes: one tile per band of its chunk."""
        j = self._lookup("cell", key)
        out = np.zeros(self.shape[0], dtype=READ_DTYPE)
        core = self._core()
        if core is not None:
            _, _, genes, values = self._core_cells(core, [j])
            out[genes] = values
            return out
        chunk, column = self._cell_column(j)
        geometry = chunk.geometry
        if geometry.n_bands:
            tiles = geometry.tile_starts[:-1] + (column - chunk.first_cell) // geometry.widths
            rows, _, values = decode_batch(self._index, gather(self._index, [(chunk, tiles)]), want_col=column,
                                           jobs=self.jobs)
            out[self._index.row_genes(rows)] = values
        return out

    def __getitem__(self, key):
        """m[genes, cells]: each an index, a name, a slice, a list of indices or of names, or a
        boolean mask. Two scalars give one int, anything else a genes x cells CSR matrix."""
        if type(key) is tuple and len(key) == 2 and type(key[0]) is int and type(key[1]) is int:  # noqa: E721
            n_genes, n_cells = self.shape  # the hot path of m[i, j] (bools are not ints here)
            if 0 <= key[0] < n_genes and 0 <= key[1] < n_cells:
                return self._entry(key[0], key[1])
        return self.select(*two_keys(key, "m[genes, cells] (m.T[cells, genes] in AnnData's orientation)"))

    @fits_in_memory("reading this selection")
    def select(self, genes, cells, *, cells_major: bool = False):
        """m[genes, cells], or with cells_major the same selection turned to cells x genes CSR (what
        AnnData's orientation, m.T[cells, genes], returns): where the core reads every gene of some
        cells, its compressed columns are that matrix as they come, no transposition made."""
        if is_key(genes) and is_key(cells):
            return self.get(genes, cells)
        wanted = None if is_everything(cells, self.shape[1]) else self.positions(cells, "cell")  # None: every cell
        if is_everything(genes, self.shape[0]) and (self.shape[1] if wanted is None else wanted.size):
            if wanted is None:  # m[:, :], m[...], m.T[:]: the whole matrix, decoded as to_scipy decodes it
                return self.to_scipy("csc").T if cells_major else self.to_scipy()
            if not cells_major:  # gene-major: an index pointer per gene, and the core's while it turns
                check_allocation(24 * self.shape[0], f"{self.source}: the rows of {self.shape[0]:,} genes")
            core = self._core()  # m[:, cells]: no index array over every gene, a cell's read is a millisecond
            if core is not None:
                return self._core_every_gene(core, wanted, cells_major)
        out = self._gather(self.positions(genes, "gene"), wanted)
        return sp.csr_matrix(out.T) if cells_major else out

    def positions(self, key, axis: str) -> np.ndarray:
        """An index of one axis as int64 positions; names are looked up, every unknown one named."""
        if isinstance(key, str):
            return np.array([self._lookup(axis, key)], dtype=np.int64)
        if not isinstance(key, slice) and not is_scalar(key):
            names = key.tolist() if hasattr(key, "tolist") else list(key) if isinstance(key, (list, tuple)) else None
            if not isinstance(names, list):  # a numpy scalar's, or no sequence: as_index names the fault
                names = None
            if names and all(isinstance(k, str) for k in names):
                table = self._table(axis)
                missing = [k for k in names if k not in table]
                if missing:
                    raise no_such_name(axis, missing)
                return np.fromiter((self._named(axis, table, k) for k in names), dtype=np.int64, count=len(names))
            if names and any(isinstance(k, str) for k in names):
                raise SinrIndexError(f"a {axis} index mixes names and other keys")
        return as_index(key, self.shape[0 if axis == "gene" else 1], axis)

    def _gather(self, genes: np.ndarray, cells: np.ndarray | None) -> sp.csr_matrix:
        """Submatrix for original gene and cell index arrays (any order, repeats allowed); cells None
        is every cell in order (m[genes, :]: no array over every cell)."""
        index = self._index
        out_shape = (genes.size, index.n_cells if cells is None else cells.size)
        if genes.size == 0 or out_shape[1] == 0 or index.nnz == 0:
            return sp.csr_matrix(out_shape, dtype=READ_DTYPE)
        every_gene = genes.size == index.n_genes and np.array_equal(genes, np.arange(index.n_genes))  # m[:, cells]
        core = self._core() if every_gene else None
        if core is not None:
            return self._core_every_gene(core, np.arange(index.n_cells) if cells is None else cells)
        if out_shape[1] == index.n_cells and index.n_chunks and self._by_gene_reads(genes.size):
            return self._genes_by_rows(genes, cells)
        if (cells is None and not index.segmented and not index.source.batched  # object storage: only bands wanted
                and self._share_of_rows(index.stored_rows(genes)) >= 0.5):
            return self.to_scipy()[genes]  # most of the matrix: decoded whole, its rows taken (see _share_of_rows)
        cells = np.arange(index.n_cells) if cells is None else cells
        distinct = unique_sorted(cells)
        chunk_ids = unique_sorted(np.searchsorted(index.chunk_starts, distinct, side="right") - 1)
        chunks = index.load_chunks(chunk_ids.tolist())  # first: a remote file fetches the gene tables with them
        rows_wanted = np.arange(index.n_stored) if every_gene else index.stored_rows(genes)  # ascending
        positions = unique_sorted(index.cell_position[distinct])  # a chunk reorders only its own cells
        parts, whole = [], []  # whole: the chunks decoded whole (every row and cell wanted), checked (W1)
        for chunk in chunks:
            geometry = chunk.geometry
            local = positions[np.searchsorted(positions, chunk.first_cell):
                              np.searchsorted(positions, chunk.first_cell + chunk.n_cells)] - chunk.first_cell
            rows = rows_wanted[np.searchsorted(rows_wanted, chunk.row_base):  # those of the chunk's rows
                               np.searchsorted(rows_wanted, chunk.row_end)]
            if not rows.size or not geometry.n_bands:
                continue
            if rows.size == chunk.n_rows:  # every row (m[:, cells]): every band
                bands = np.arange(geometry.n_bands)
                if local.size == chunk.n_cells:
                    whole.append(chunk)
            else:
                bands = unique_sorted(np.searchsorted(geometry.row_starts, rows, side="right") - 1)
            # each band's tiles holding the cells, in order: bands and cells ascend, so the flat
            # ids do too, and dropping repeats needs no sort
            tiles = (geometry.tile_starts[bands][:, None] + local[None, :] // geometry.widths[bands][:, None]).ravel()
            parts.append((chunk, tiles[np.concatenate([[True], tiles[1:] != tiles[:-1]])] if tiles.size else tiles))
        mask = np.zeros(self.shape[1], dtype=bool)
        mask[index.cell_position[cells]] = True
        row_mask = None
        if rows_wanted.size < index.n_stored:  # the other rows of the bands are dropped as they decode
            row_mask = np.zeros(index.n_stored, dtype=bool)
            row_mask[rows_wanted] = True
        rows, cols, values = decode_batch(index, gather(index, parts), col_mask=mask, row_mask=row_mask,
                                          jobs=self.jobs)
        check_whole_chunks(index, whole, rows, cols, values)
        if (every_gene or all_distinct(genes)) and all_distinct(cells):  # each once
            # each nonzero's output column in one lookup by its reordered column (a table the
            # index's own size), and its output row likewise where a table by row is small; in
            # scipy's index type, each replacing the decoded one, so that no copy of either is held
            # beside the result (int64 ones, copied again by scipy: 53 bytes a nonzero, now 29)
            kind = np.int32 if max(out_shape) <= np.iinfo(np.int32).max else np.int64
            column_place = np.empty(self.shape[1], kind)
            column_place[index.cell_position[cells]] = np.arange(cells.size)
            if not index.segmented and index.n_stored <= 4 * (genes.size + rows.size):  # one row per gene
                row_place = np.full(index.n_stored, -1, kind)
                wanted = index.gene_rows(genes)
                row_place[wanted[wanted < index.n_stored]] = np.flatnonzero(wanted < index.n_stored)
                rows = row_place[rows]
            else:
                rows = place(genes, index.row_genes(rows), self.shape[0]).astype(kind, copy=False)
            cols = column_place[cols]
            return sp.csr_matrix(sp.coo_matrix((values, (rows, cols)), shape=out_shape, copy=False))
        found_genes = index.row_genes(rows)
        found_cells = index.cell_original[cols]
        out_rows, src = expand(genes, found_genes)
        out_cols, src_cols = expand(cells, found_cells[src])
        return sp.csr_matrix((values[src][src_cols], (out_rows[src_cols], out_cols)), shape=out_shape)

    def _share_of_rows(self, rows: np.ndarray) -> float:
        """About what share of the nonzeros the stored rows `rows` (ascending, of a matrix of one
        segment) hold, each band's spread evenly over its rows: from the tile table, nothing decoded.
        Genes over every cell holding half or more are read whole and their rows taken: the selection
        sorts each row's cells and holds its triples beside the result, where the whole gene-major
        read needs neither (every gene but one of visium at 6e6 nonzeros: 1.5 s and 170 MB, against
        0.34 s and 96 MB; half the genes by a mask 0.65 s, against 0.23 s)."""
        table = self._index.tile_table()
        ends = np.concatenate([[0], np.cumsum(table.k)])
        band_nnz = np.diff(ends[table.chunk_base[:-1, None] + table.band_tiles], axis=1)
        heights = np.maximum(np.diff(table.band_rows, axis=1), 1)
        held = np.diff(np.searchsorted(rows, table.band_rows), axis=1)  # the rows of each band that are wanted
        return float((band_nnz * held / heights).sum()) / max(self.nnz, 1)

    def _by_gene_reads(self, n_genes: int) -> bool:
        """Whether n genes over every cell are read a gene at a time: a gene read decodes about half
        a band in each chunk, where the general path decodes each band holding a wanted gene whole,
        but each is a pass of its own over the chunks, and measured (pbmc4k at 6e6 and 6e7 nonzeros,
        visium at 6e6) the general path's one pass is faster past about a gene per four bands (256
        genes of visium's 129 bands: 0.16-0.25 s a gene at a time, 0.02-0.03 s in one pass); up to
        8 genes go a gene at a time in any file, at about the same speed, holding nothing over every
        cell. The one pass also builds arrays over every cell, which a file of many cells pays for
        (a raw matrix's 737,280 barcodes in 100 bands: 26 genes 0.065 s in one pass, 0.010 s a gene
        at a time, 100 genes 0.107 s against 0.036 s, 190 genes 0.098 s against 0.193 s), so a gene
        per CELLS_PER_GENE_READ cells goes a gene at a time too. From object storage each is a round
        trip, so only one gene goes that way there."""
        if self._index.source.batched:
            return n_genes == 1
        bands = self._index.tile_table().band_rows.shape[1] - 1
        return n_genes <= max(8, bands // 4, self.shape[1] // CELLS_PER_GENE_READ)

    def _genes_by_rows(self, genes: np.ndarray, cells: np.ndarray | None) -> sp.csr_matrix:
        """A few genes over every cell (m[genes, :], m.T[:, genes]), a gene read each (see
        _by_gene_reads). cells None is every cell in order: each gene's nonzeros sorted by cell, so
        the read costs what the genes hold, not the cells (on 737,280 barcodes of a raw matrix 8 ms a
        gene had gone to arrays over every cell); else the cells come in any order, with repeats."""
        dense = None if cells is None else np.zeros(self.shape[1], dtype=READ_DTYPE)
        indptr, found, values = [0], [], []
        for gene in genes.tolist():
            if dense is None:
                at, row = self._gene_cells(gene)
                order = np.argsort(at, kind="stable")
                at, kept = at[order], row[order]
            else:
                self._gene_into(gene, dense)
                row = dense[cells]
                at = np.flatnonzero(row)
                kept = row[at]
                dense[:] = 0
            found.append(at)
            values.append(kept)
            indptr.append(indptr[-1] + at.size)
        return sp.csr_matrix((np.concatenate(values), np.concatenate(found), np.asarray(indptr, np.int64)),
                             shape=(genes.size, self.shape[1] if cells is None else cells.size))

    @fits_in_memory("decoding the whole matrix")
    def to_scipy(self, layout: str = "csr", dtype=READ_DTYPE, *, progress: bool | Progress = False) -> sp.spmatrix:
        """The whole matrix, genes x cells, exact: CSR by default, or layout='csc' (cell-major, as
        10x files store it, and faster: no counting pass). progress=True shows a bar of the nonzeros
        decoded on stderr (a Progress: the passes of a caller's bar)."""
        if layout not in ("csr", "csc"):
            raise InvalidInputError(f"layout must be 'csr' or 'csc', not {layout!r}")
        with progress_of(progress, "decoding", "nonzeros", passes=1 if layout == "csc" else 2) as bar:
            if layout == "csr":
                return gene_major(self._index, dtype, self.jobs, bar)
            bar.begin(self._step("decoding"), self.nnz)
            return cell_major(self._index, dtype, self.jobs, progress=bar).T

    def _step(self, what: str) -> str:
        """A pass over this matrix as a bar names it: with the matrix's name where the file holds several."""
        return f"{what} {self.name}" if len(self.matrix_names) > 1 else what

    # ------------------------------------------------------------------------------ summaries

    @fits_in_memory("summarising each gene or cell")
    def count_nonzero(self, axis: int | None = None):
        """Nonzeros of each cell (axis=0: over genes), of each gene (axis=1: over cells), as int64
        arrays, or of the whole matrix (None), as scipy's count_nonzero. sum, mean, var and this come
        from one pass over the file, decoded once and kept (a few numbers per stored gene and cell)."""
        axis = check_axis(axis)
        if axis is None:
            return self.nnz
        moments, _ = self._along(axis)
        return moments.spread(moments.nonzeros, self.shape[1 - axis])

    @fits_in_memory("summarising each gene or cell")
    def sum(self, axis: int | None = None, dtype=None):
        """Sums of each cell (axis=0) or each gene (axis=1), exact int64 arrays, or of the whole
        matrix (None) as a Python int (exact at any size, where numpy's int64 would wrap); `dtype` as
        numpy's (the sums in that type: an integer type wraps as numpy's accumulation in it does, a
        float type holds them rounded once)."""
        axis, dtype = check_axis(axis), check_dtype(dtype)
        if axis is None:
            total = int(self._summaries().genes.sums.sum(dtype=object))
            return total if dtype is None else in_dtype(total, dtype)
        moments, _ = self._along(axis)
        sums = moments.spread(moments.sums, self.shape[1 - axis])
        return sums if dtype is None else in_dtype(sums, dtype)

    @fits_in_memory("summarising each gene or cell")
    def mean(self, axis: int | None = None, dtype=None):
        """Means of each cell (axis=0) or each gene (axis=1), zeros included, rounded once, as
        float64 arrays, or of the whole matrix (None) as a float; NaN over no entries, as numpy's.
        `dtype` as numpy's: a float type holds the mean rounded once; in an integer type the sum
        is taken in it (wrapping) and divided, truncated, as numpy's mean does."""
        axis, dtype = check_axis(axis), check_dtype(dtype)
        entries = self.shape[0] * self.shape[1] if axis is None else self._along(axis)[1]
        if dtype is not None and dtype.kind in "iu":
            return divided(self.sum(axis, dtype), entries, dtype)
        if axis is None:
            mean = self.sum() / entries if entries else float("nan")  # int / int: rounded once
        else:
            moments, _ = self._along(axis)
            mean = moments.spread(moments.mean(entries), self.shape[1 - axis], 0.0 if entries else np.nan)
        return mean if dtype is None else in_dtype(mean, dtype)

    @fits_in_memory("summarising each gene or cell")
    def var(self, axis: int | None = None, ddof: int = 0, dtype=None):
        """Variances of each cell (axis=0) or each gene (axis=1), zeros included, `ddof` delta degrees
        of freedom, as float64 arrays, or of the whole matrix (None) as a float, as numpy's var: each
        computed exactly (sums of squares are kept in 128 bits) and rounded once; NaN over no entries.
        `dtype` as numpy's: a float type holds the variance rounded once; an integer type gives what
        numpy's integer arithmetic gives (its truncated mean, wrapped sums: moments.integer_variance)."""
        axis, dtype = check_axis(axis), check_dtype(dtype)
        if axis is None:
            entries = self.shape[0] * self.shape[1]
            ddof = check_ddof(ddof, entries)
            total, squares = self.sum(), self._summaries().genes.total_squares()
            if dtype is not None and dtype.kind in "iu":
                return integer_variance(total, squares, entries, ddof, dtype)
            variance = (entries * squares - total * total) / (entries * (entries - ddof)) if entries else float("nan")
        else:
            moments, entries = self._along(axis)
            ddof = check_ddof(ddof, entries)
            size = self.shape[1 - axis]
            if dtype is not None and dtype.kind in "iu":
                return integer_variance(moments.spread(moments.sums, size), moments.spread(moments.squares_low, size),
                                        entries, ddof, dtype)
            variance = moments.spread(moments.variance(entries, ddof), size, 0.0 if entries else np.nan)
        return variance if dtype is None else in_dtype(variance, dtype)

    def _along(self, axis: int) -> tuple[AxisMoments, int]:
        """The summaries of the cells (axis 0) or the stored genes (axis 1), and how many entries
        each covers."""
        moments = self._summaries()
        return (moments.cells, self.shape[0]) if axis == 0 else (moments.genes, self.shape[1])

    @fits_in_memory("summarising every gene and cell")
    def _summaries(self) -> MatrixMoments:
        with self._moments_lock:
            if self._moments is None:
                self._moments = matrix_moments(self._index, self.jobs)
            return self._moments

    @fits_in_memory("decoding a block of cells")
    def cells_block(self, start: int, stop: int, dtype=READ_DTYPE, *, jobs: int | None = None) -> sp.csr_matrix:
        """Cells start..stop-1 as a cells x genes CSR matrix (AnnData's orientation), exact: the
        chunks holding them are decoded whole, checksums verified, on `jobs` threads (default the
        matrix's). The unit of out-of-core work."""
        index = self._index
        if not (is_scalar(start) and is_scalar(stop)):
            raise SinrIndexError(f"cells_block takes integer start and stop, not {start!r} and {stop!r}")
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= index.n_cells:
            raise SinrIndexError(f"cells {start}..{stop} are outside 0..{index.n_cells}")
        if start == stop:
            return sp.csr_matrix((0, index.n_genes), dtype=count_dtype(dtype))
        first, last = index.chunk_of_cell(start), index.chunk_of_cell(stop - 1)
        block = cell_major(index, dtype, checked_jobs(jobs) or self.jobs, range(first, last + 1))
        offset = int(index.chunk_starts[first])
        if start == offset and stop - offset == block.shape[0]:  # whole chunks, such as a dask block: no copy
            return block
        return block[start - offset: stop - offset]

    @fits_in_memory("decoding a block of chunks")
    def chunks_block(self, chunks, dtype=READ_DTYPE, *, jobs: int | None = None,
                     scratch: BlockScratch | None = None, head: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """The cells of these chunks (distinct ids, see chunk_bounds), chunk after chunk in the order
        given, as one cells x genes CSR matrix, exact: what a block-shuffling loader decodes at once.
        A loader passes one BlockScratch to every call: the block's arrays are then its own, reused
        two blocks later, so it must copy what it keeps (its batches are copies of rows); and the
        cells it carries over from its last block as `head` (cells x genes CSR of this matrix's genes,
        sorted indices, values of `dtype`), which become the block's first rows."""
        index = self._index
        ids = np.asarray(chunks)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" and ids.size:
            raise SinrIndexError("chunks must be a list of chunk ids")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= index.n_chunks or not all_distinct(ids)):
            raise SinrIndexError(f"chunk ids must be distinct and within 0..{index.n_chunks - 1}")
        if head is not None and (not sp.issparse(head) or head.format != "csr" or head.shape[1] != index.n_genes):
            raise SinrIndexError(f"head must be a cells x {index.n_genes} genes CSR matrix")
        return cell_major(index, dtype, checked_jobs(jobs) or self.jobs, ids.tolist(), scratch, head)

    def chunk_bounds(self) -> np.ndarray:
        """First cell of each chunk, and the number of cells last: natural block boundaries."""
        return self._index.chunk_starts.copy()

    @fits_in_memory("decoding the whole matrix")
    def to_count_matrix(self, dtype=READ_DTYPE, *, progress: bool | Progress = False) -> CountMatrix:
        """The whole matrix with its names, as the writers of other formats take it: CSC (cell-major,
        as each of them writes it), so that none converts a CSR copy of it, its values of `dtype` (the
        type the writer stores, so that none converts a copy of them either); progress as to_scipy's."""
        from ..io.matrix import CountMatrix  # writers need it, reads do not: opening a file skips it
        return CountMatrix(self.to_scipy(layout="csc", dtype=dtype, progress=progress), self.gene_ids,
                           self.gene_names, self.cell_names, self.feature_types)

    # ------------------------------------------------------------------ files of several parts

    @property
    def matrix_names(self) -> list[str]:
        """Every matrix of the file, the one opened by default first."""
        return [m["name"] for m in self.footer["matrices"]]

    def matrix(self, name: str) -> "MatrixReader":
        """Another matrix of the same file ('layers/counts', 'raw/X'), sharing its open source; one
        object per name, so what one read loads (chunks, names) serves the next. It is of this
        object's own class, so a SinrMatrix's siblings are SinrMatrix objects too."""
        if name == self.name:
            return self
        with self._lock:
            other = self._siblings.get(name)
        if other is None:
            other = type(self)(self._source, matrix=name, jobs=self.jobs)
            with self._lock:
                other = self._siblings.setdefault(name, other)
        return other

    @functools.cached_property
    def contents(self) -> StoredContents | None:
        """What the file stores besides its matrices (a whole AnnData or 10x file: format 2.1), as a
        StoredContents, or None."""
        from .contents import read_contents  # most files store one matrix: opening them skips this
        return read_contents(self._source, self.source, matrices=self.matrix)

    @property
    def stored_bytes(self) -> int:
        """Bytes of this matrix in the file: its chunk blocks and its sections."""
        index = self._index
        return int(index.chunk_index[:, 3].sum()) + sum(ref.length for ref in index.sections.table.values())

    @fits_in_memory("verifying")
    def verify(self, *, progress: bool | Progress = False) -> dict:
        """Check every section of the matrix and of each chunk against every rule of the spec (CRC,
        zstd framing, size, names' UTF-8, count, line breaks and length, cross-field rules), and
        every chunk's decoded content, one chunk at a time (memory for a chunk, not the matrix);
        raise CorruptFileError. Returns what it checked, with the largest value and gene index found
        (what a whole 10x file's skeleton types must hold). progress=True shows a bar of the nonzeros
        checked on stderr (a Progress: a pass of a caller's bar)."""
        index = self._index
        with progress_of(progress, "verifying", "nonzeros") as bar:
            bar.begin(self._step("checking"), index.nnz)
            index.source.prefetch(index.sections.ranges(index.sections.table))  # remote: every section at once
            index.genes()
            for name in index.sections.table:
                index.sections.get(name)
            checked = most = top_gene = 0
            for c in self._source.ready_in_order(index.block_ranges()):  # remote: a window at once
                chunk = index.chunk(c)
                for name in chunk.sections.table:
                    if name not in CELL_NAME_SECTIONS:  # decoded once, below, as the names they are
                        chunk.sections.get(name)
                if index.has_cell_names:  # barcodes' codes are checked as names (spec §5.7, rule CB3)
                    index.chunk_cell_names([c])
                index.verify_bands(chunk, np.arange(chunk.geometry.n_bands))
                x = cell_major(index, READ_DTYPE, self.jobs, [c])  # placed as a whole read places it, checksum checked
                if x.nnz:
                    most, top_gene = max(most, int(x.data.max())), max(top_gene, int(x.indices.max()))
                checked += chunk.nnz
                bar.update(chunk.nnz)
        return {"chunks": index.n_chunks, "nnz": checked, "bytes": self._source.size, "max_value": most,
                "max_gene": top_gene}

    def section_sizes(self) -> dict[str, int]:
        """Bytes per section name, summed over chunks (reads every chunk header)."""
        index = self._index
        sizes = {name: ref.length for name, ref in index.sections.table.items()}
        for chunk in index.load_chunks(range(index.n_chunks)):
            for name, ref in chunk.sections.table.items():
                sizes[name] = sizes.get(name, 0) + ref.length
        sizes["chunk headers"] = int(index.chunk_index[:, 1].sum()) if index.n_chunks else 0
        return sizes

    @property
    def file_size(self) -> int:
        return self._source.size

    def close(self) -> None:
        """Release the file's descriptor (or connection). A read after it still works: a local file is
        opened again if it is the very same, unchanged (else FileChangedError), bytes and URLs read on."""
        self._source.close()

    def __enter__(self) -> "MatrixReader":
        return self

    def __iter__(self):
        """Not iterable (else Python would iterate m[0], m[1], ... until an IndexError: at once)."""
        raise NotIterableError("a .sinr matrix is not iterable: read m[genes, cells], m.gene(i), m.cell(j), "
                               "or batches of cells with m.iter_cells()")

    def __reduce__(self):
        """Pickled (multiprocessing, dask), a matrix opens again on the other side: see travelling_form."""
        return reopened, (type(self), *self.travelling_form(), self.jobs)

    def travelling_form(self) -> tuple:
        """(location, matrix name, storage_options, identity) by which another process opens this
        version of the file again: its absolute path, or its URL with its storage_options, or its bytes
        when it was opened from bytes; the identity (file_identity) lets that process refuse another
        version of the file (replaced or rewritten since) instead of mixing two files' cells. A file
        object cannot travel: InvalidInputError."""
        source = self._source
        options = getattr(source, "storage_options", None)
        if not self.can_travel:
            raise InvalidInputError(f"{self.source}: a .sinr matrix read from a file object cannot go to another "
                                    "process; open it by path, URL or from bytes")
        if options is not None:
            location = source.url  # the password of its user information too, which self.source hides
        elif isinstance(source, LocalFileSource):  # absolute: the other process may run in another folder
            location = source.path
        else:
            location = bytes(source.read(0, source.size))
        return location, self.name, options, self.file_identity

    @property
    def can_travel(self) -> bool:
        """Whether another process can open this matrix again (travelling_form): not one read from a file object."""
        source = self._source
        return (getattr(source, "storage_options", None) is not None
                or isinstance(source, (LocalFileSource, MemorySource)))

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SinrMatrix {self.shape[0]} genes x {self.shape[1]} cells, nnz={self.nnz}, mode={self.mode}>"


def _forget_cores() -> None:
    """In a forked child: a core reader's own locks (taken, the GIL released, as it reads its gene table
    or checks a band) may be held by a parent's thread the fork did not copy, and the child's m[i, j]
    or m.cell(j) had waited forever on them; each reader opens a core of its own here."""
    for reader in list(_WITH_CORE):
        reader._entry_of = reader._core_reader = None
    _WITH_CORE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_cores)


def reopened(cls: type, location, name: str, storage_options: dict | None, identity: tuple[int, int],
             jobs: int | None) -> MatrixReader:
    """The matrix another process pickled (MatrixReader.travelling_form), open again here: the same
    version of the file, else FileChangedError."""
    matrix = cls(location, matrix=name, jobs=jobs, storage_options=storage_options)
    if matrix.file_identity != tuple(identity):
        matrix.close()
        raise FileChangedError(f"{matrix.source}: the file changed after it was opened in another process (it was "
                               "replaced or rewritten); open it again")
    return matrix


def _scanned(names: list[str], key: str) -> dict[str, int | tuple[int, ...]]:
    """The part of _indices_by_name(names) that `key` has, found by a scan of the list."""
    try:
        first = names.index(key)
    except ValueError:
        return {}
    try:
        names.index(key, first + 1)
    except ValueError:
        return {key: first}
    return {key: tuple(i for i, name in enumerate(names) if name == key)}


def _indices_by_name(names: list[str]) -> dict[str, int | tuple[int, ...]]:
    """Each name's index, or the indices of a name the list holds several times."""
    found: dict[str, int | tuple[int, ...]] = {}
    for i, name in enumerate(names):
        known = found.setdefault(name, i)
        if known != i:
            found[name] = (known, i) if type(known) is int else (*known, i)  # noqa: E721
    return found
