"""Reading .sinr files: SinrMatrix gives the shape, names, one entry, one gene, one cell, any
submatrix or the whole matrix, decoding only the tiles a request touches (numpy only)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import msgpack
import numpy as np
import scipy.sparse as sp

from .container import Container, unpack_array, unpack_strings
from .errors import CorruptFileError, FormatError, InvalidInputError, SinrError, SinrIndexError, SinrKeyError
from .formats import MAX_COUNT, CountMatrix, check_writable, output_kind, to_anndata, write_matrix
from .stages.bitmap import GolombBitmap
from .stages.entropy import AnsCoder, new_decoders
from .stages.predictor import Baseline, PatchSiren
from .stages.quantise import ValueQuantiser
from .stages.registry import get_stage
from .stages.tiling import Geometry
from .stages.values import ContextValueCoder

MAX_DIMENSION = 2**31 - 1
MAX_NAME_BYTES_PER_ENTRY = 4096
DECODE_BATCH_TILES = 256


def _int_field(header: dict, key: str, low: int, high: int) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CorruptFileError(f"header field {key!r} is missing or out of range")
    return value


class SinrMatrix:
    """An open .sinr file. Thread-safe: decoding state is per call, caches are filled under a lock."""

    def __init__(self, blob: bytes, *, source: str = "<bytes>") -> None:
        self.source = source
        self.container = c = Container(blob, source=source)
        header = c.header
        try:
            self._parse(header)
        except SinrError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise CorruptFileError(f"{source}: inconsistent header ({exc})") from exc
        self._names: dict[str, list[str] | None] = {}
        self._name_index: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def _parse(self, header: dict) -> None:
        c = self.container
        shape = header.get("shape")
        if not isinstance(shape, list) or len(shape) != 2:
            raise CorruptFileError(f"{self.source}: header lacks a valid shape")
        n_genes = _int_field({"n": shape[0]}, "n", 0, MAX_DIMENSION)
        n_cells = _int_field({"n": shape[1]}, "n", 0, MAX_DIMENSION)
        self.shape = (n_genes, n_cells)
        self.nnz = _int_field(header, "nnz", 0, n_genes * n_cells)
        self.n_expressed = _int_field(header, "n_expressed", 0, n_genes)
        self.mode = header.get("mode")
        if self.mode not in ("lossless", "max-error", "inr-only"):
            raise CorruptFileError(f"{self.source}: unknown mode {self.mode!r}")
        stages = {s.codec_id: s for s in map(get_stage, header.get("stages", []))}
        self._quantiser = stages.get("value-quantiser")
        self._bitmap = stages.get("golomb-ans-bitmap")
        if not isinstance(self._quantiser, ValueQuantiser) or not isinstance(self._bitmap, GolombBitmap) \
                or "reorder-detection-depth" not in stages:
            raise CorruptFileError(f"{self.source}: header does not name the stages of a v1 file")
        reorder = stages["reorder-detection-depth"]
        self.genes, self.cells = reorder.decode(c.section("order.genes"), c.section("order.cells"),
                                                n_genes, n_cells, self.n_expressed)
        self.geometry = Geometry.from_header(header.get("geometry"), self.n_expressed, n_cells)
        n_tiles = self.geometry.n_tiles
        self._tile_nnz = GolombBitmap.unpack_directory(c.section("bitmap.directory"), n_tiles)
        lengths = unpack_array(c.section("blocks.lengths"), "u4", n_tiles, what="block lengths").astype(np.int64)
        self._word_offsets = np.concatenate([[0], np.cumsum(lengths)])
        words = c.section("blocks.words")
        if len(words) != 4 * int(self._word_offsets[-1]):
            raise CorruptFileError(f"{self.source}: block lengths do not match the coded data")
        self._words = np.frombuffer(words, dtype="<u4")
        if int(self._tile_nnz.sum()) != self.nnz:
            raise CorruptFileError(f"{self.source}: rank directory does not add up to nnz")
        if np.any(self._tile_nnz > self.geometry.layout(np.arange(n_tiles))[3]):
            raise CorruptFileError(f"{self.source}: a tile declares more nonzeros than entries")
        self._baseline = Baseline.unpack(c.section("baseline.genes"), c.section("baseline.cells"),
                                         self.n_expressed, n_cells)
        self._values = None
        if self.mode != "inr-only":
            self._values = ContextValueCoder.unpack(c.section("values.histograms"))
            self._load_offsets(c, n_tiles)
        self._sirens: list[PatchSiren | None] = [None] * self.geometry.n_bands
        if c.has("siren.meta"):
            self._load_sirens(c)
        if self.mode == "inr-only" and any(s is None for s in self._sirens):
            raise CorruptFileError(f"{self.source}: an --inr-only file lacks a patch's SIREN")
        stats = header.get("stats")
        self.stats = {k: v for k, v in stats.items() if isinstance(k, str) and isinstance(v, (int, float))
                      and not isinstance(v, bool)} if isinstance(stats, dict) else {}
        self.header = header

    def _load_offsets(self, c: Container, n_tiles: int) -> None:
        """The values' offset bitstream and each tile's start in it (a prefix sum of bits per tile)."""
        bits = unpack_array(c.section("values.offset_bits"), "u4", n_tiles, what="offset bit counts").astype(np.int64)
        self._offset_bit_starts = np.concatenate([[0], np.cumsum(bits)])
        stream = c.section("values.offsets")
        if len(stream) != 4 * -(-int(self._offset_bit_starts[-1]) // 32):
            raise CorruptFileError(f"{self.source}: offset bit counts do not match the offset bits")
        self._offset_words = np.frombuffer(stream, dtype="<u4")

    def _load_sirens(self, c: Container) -> None:
        try:
            meta = msgpack.unpackb(bytes(c.section("siren.meta")), raw=False)
        except Exception as exc:
            raise CorruptFileError(f"{self.source}: SIREN metadata is unreadable ({exc})") from exc
        if not isinstance(meta, list):
            raise CorruptFileError(f"{self.source}: SIREN metadata is malformed")
        sizes = []
        for entry in meta:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
                    and 0 <= entry[0] < self.geometry.n_bands and isinstance(entry[1], dict)):
                raise CorruptFileError(f"{self.source}: SIREN metadata is malformed")
            layers = entry[1].get("layers")
            if not isinstance(layers, list) or not all(isinstance(layer, list) and len(layer) == 5 for layer in layers):
                raise CorruptFileError(f"{self.source}: SIREN metadata is malformed")
            sizes.append(sum(int(layer[0]) * int(layer[1]) + int(layer[0]) for layer in layers))
        flat = unpack_array(c.section("siren.weights"), "i2", sum(sizes), what="SIREN weights").astype(np.int64)
        used = 0
        for (band, patch_meta), size in zip(meta, sizes):
            self._sirens[band] = PatchSiren.from_meta(patch_meta, flat[used: used + size])
            used += size

    # ------------------------------------------------------------------------------- names

    def _load_names(self, section: str, count: int) -> list[str] | None:
        with self._lock:
            if section not in self._names:
                self._names[section] = (unpack_strings(self.container.section(section), count, what=section,
                                                       max_bytes=count * MAX_NAME_BYTES_PER_ENTRY + 1)
                                        if self.container.has(section) else None)
            return self._names[section]

    @property
    def gene_ids(self) -> list[str] | None:
        return self._load_names("names.gene_ids", self.shape[0])

    @property
    def gene_names(self) -> list[str] | None:
        if self.header.get("gene_names_are_ids") is True:
            return self.gene_ids
        return self._load_names("names.gene_names", self.shape[0])

    @property
    def cell_names(self) -> list[str] | None:
        return self._load_names("names.cell_names", self.shape[1])

    @property
    def feature_types(self) -> list[str] | None:
        return self._load_names("names.feature_types", self.shape[0])

    def _lookup(self, axis: str, key) -> int:
        n = self.shape[0 if axis == "gene" else 1]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            index = int(key) + (n if key < 0 else 0)
            if not 0 <= index < n:
                raise SinrIndexError(f"{axis} index {key} out of range for {n} {axis}s")
            return index
        if not isinstance(key, str):
            raise SinrKeyError(f"{axis} must be an integer index or a name, not {type(key).__name__}")
        with self._lock:
            table = self._name_index.get(axis)
        if table is None:
            table = {}
            lists = [self.gene_names, self.gene_ids] if axis == "gene" else [self.cell_names]
            for names in lists:
                for i, name in enumerate(names or []):
                    table.setdefault(name, i)
            with self._lock:
                self._name_index[axis] = table
        if key not in table:
            raise SinrKeyError(f"no {axis} named {key!r}")
        return table[key]

    # ------------------------------------------------------------------------------ decoding

    def _coders(self, tiles: np.ndarray) -> list[AnsCoder]:
        return new_decoders(self._words, self._word_offsets[tiles].tolist(), self._word_offsets[tiles + 1].tolist())

    def _decode_tiles(self, tiles: np.ndarray, *, row: int | None = None,
                      col: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reordered (row, col, value) of the nonzeros of `tiles`, tile after tile in position order.

        Given `row` or `col`, only that row's or column's nonzeros are returned, and values are
        decoded only as far as they are needed."""
        tiles = np.asarray(tiles, dtype=np.int64)
        band, first, width, entries = self.geometry.layout(tiles)
        nonzeros = self._tile_nnz[tiles]
        coders = self._coders(tiles)
        positions = self._bitmap.decode_tiles(coders, nonzeros, entries)
        tile_of = np.repeat(np.arange(tiles.size), nonzeros)
        local_rows, cols = np.divmod(positions, width[tile_of])
        cols += first[tile_of]
        entry_band = band[tile_of]
        rows = local_rows + self.geometry.row_starts[entry_band]
        if row is None and col is None:
            return rows, cols, self._values_of(tiles, coders, nonzeros, local_rows, cols, entry_band, band)
        needed = rows == row if row is not None else cols == col
        touched = np.zeros(tiles.size, dtype=bool)
        touched[tile_of[needed]] = True
        inside = touched[tile_of]
        values = self._values_of(tiles[touched], [coders[t] for t in np.flatnonzero(touched).tolist()],
                                 nonzeros[touched], local_rows[inside], cols[inside], entry_band[inside],
                                 band[touched], needed[inside])
        return rows[needed], cols[needed], values[needed[inside]]

    def _predictions(self, local_rows: np.ndarray, cols: np.ndarray, entry_band: np.ndarray,
                     bands: np.ndarray) -> np.ndarray:
        """Per nonzero: its coding context, or in --inr-only mode its predicted count."""
        rows = local_rows + self.geometry.row_starts[entry_band]
        inr_only = self.mode == "inr-only"
        predictions = np.zeros(rows.size, dtype=np.int64) if inr_only else self._baseline.contexts(rows, cols)
        for b in np.unique(bands).tolist():
            patch = self._sirens[b]
            if patch is None:
                continue
            here = entry_band == b
            height = int(self.geometry.row_starts[b + 1] - self.geometry.row_starts[b])
            outputs = patch.outputs(local_rows[here], cols[here], height, self.shape[1])
            predictions[here] = (np.clip(np.rint(patch.normalisation.means(outputs)), 1, MAX_COUNT) if inr_only
                                 else patch.normalisation.contexts(outputs))
        return predictions

    def _values_of(self, tiles, coders, nonzeros, local_rows, cols, entry_band, bands,
                   needed: np.ndarray | None = None) -> np.ndarray:
        """Decode values of `tiles` given their decoders (positioned after their bitmaps)."""
        predictions = self._predictions(local_rows, cols, entry_band, bands)
        if self.mode == "inr-only":
            return predictions
        starts = self._offset_bit_starts
        u = self._values.decode_tiles(coders, self._offset_words, starts[tiles], starts[tiles + 1], predictions,
                                      nonzeros, needed)
        return self._quantiser.decode(u)

    def _gather(self, gene_index: np.ndarray, cell_index: np.ndarray) -> sp.csr_matrix:
        """Submatrix for original gene and cell index arrays (any order, repeats allowed)."""
        out_shape = (gene_index.size, cell_index.size)
        g_re, c_re = self.genes.rank[gene_index], self.cells.rank[cell_index]
        want_rows = np.unique(g_re[g_re < self.n_expressed])
        want_cols = np.unique(c_re)
        if want_rows.size == 0 or want_cols.size == 0:
            return sp.csr_matrix(out_shape, dtype=np.int64)
        tiles = []
        for band in np.unique(self.geometry.band_of_rows(want_rows)).tolist():
            blocks = np.unique(want_cols // int(self.geometry.widths[band]))
            tiles.append(self.geometry.tile_starts[band] + blocks)
        rows, cols, values = self._decode_tiles(np.concatenate(tiles))
        keep = np.isin(rows, want_rows) & np.isin(cols, want_cols)
        rows, cols, values = rows[keep], cols[keep], values[keep]
        out_rows, src_rows = _expand(g_re, rows)
        out_cols, src_cols = _expand(c_re, cols[src_rows])
        return sp.csr_matrix((values[src_rows][src_cols], (out_rows[src_cols], out_cols)), shape=out_shape)

    # -------------------------------------------------------------------------------- public

    def get(self, gene, cell) -> int:
        """One entry by index or name: one tile's bitmap, and its values only if the entry is nonzero."""
        i, j = self._lookup("gene", gene), self._lookup("cell", cell)
        g, c = int(self.genes.rank[i]), int(self.cells.rank[j])
        if g >= self.n_expressed:
            return 0
        span = self.geometry.tile_of_entry(g, c)
        coder, = self._coders(np.array([span.tile]))
        positions = self._bitmap.decode_tile(coder, int(self._tile_nnz[span.tile]), span.height * span.width)
        target = (g - span.top) * span.width + (c - span.first)
        rank = int(np.searchsorted(positions, target))
        if rank == positions.size or positions[rank] != target:
            return 0
        local_rows, cols = np.divmod(positions, span.width)
        predictions = self._predictions(local_rows, cols + span.first, np.full(positions.size, span.band),
                                        np.array([span.band]))
        if self.mode == "inr-only":
            return int(predictions[rank])
        u = self._values.decode_one(coder, self._offset_words, int(self._offset_bit_starts[span.tile]),
                                    int(self._offset_bit_starts[span.tile + 1]), predictions, rank)
        return int(self._quantiser.decode(u))

    def gene(self, key) -> np.ndarray:
        """One gene (row) as a dense 1-D int64 array over cells: the tiles of one patch."""
        i = self._lookup("gene", key)
        out = np.zeros(self.shape[1], dtype=np.int64)
        g = int(self.genes.rank[i])
        if g >= self.n_expressed:
            return out
        band = int(np.searchsorted(self.geometry.row_starts, g, side="right") - 1)
        _, cols, values = self._decode_tiles(
            np.arange(self.geometry.tile_starts[band], self.geometry.tile_starts[band + 1]), row=g)
        out[self.cells.order[cols]] = values
        return out

    def cell(self, key) -> np.ndarray:
        """One cell (column) as a dense 1-D int64 array over genes: one tile per patch."""
        j = self._lookup("cell", key)
        out = np.zeros(self.shape[0], dtype=np.int64)
        c = int(self.cells.rank[j])
        if self.geometry.n_bands:
            rows, _, values = self._decode_tiles(self.geometry.tile_starts[:-1] + c // self.geometry.widths, col=c)
            out[self.genes.order[rows]] = values
        return out

    def __getitem__(self, key):
        if not isinstance(key, tuple) or len(key) != 2:
            raise SinrIndexError("index with m[genes, cells]")
        gene_key, cell_key = key
        if _is_scalar(gene_key) and _is_scalar(cell_key):
            return self.get(int(gene_key), int(cell_key))
        return self._gather(_as_index(gene_key, self.shape[0], "gene"), _as_index(cell_key, self.shape[1], "cell"))

    def to_scipy(self) -> sp.csr_matrix:
        """The whole matrix, genes x cells, exact (int64)."""
        parts = [self._decode_tiles(np.arange(start, min(start + DECODE_BATCH_TILES, self.geometry.n_tiles)))
                 for start in range(0, self.geometry.n_tiles, DECODE_BATCH_TILES)]
        if not parts:
            return sp.csr_matrix(self.shape, dtype=np.int64)
        rows, cols, values = (np.concatenate(x) for x in zip(*parts))
        return sp.csr_matrix((values, (self.genes.order[rows], self.cells.order[cols])), shape=self.shape)

    def to_count_matrix(self) -> CountMatrix:
        return CountMatrix(self.to_scipy(), self.gene_ids, self.gene_names, self.cell_names, self.feature_types)

    def to_anndata(self):
        """Cells x genes AnnData with names, as scanpy expects."""
        return to_anndata(self.to_count_matrix())

    def section_sizes(self) -> dict[str, int]:
        return self.container.section_sizes()

    def close(self) -> None:
        """Nothing is held open (the file is read whole on open); kept for the context protocol."""

    def __enter__(self) -> "SinrMatrix":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SinrMatrix {self.shape[0]} genes x {self.shape[1]} cells, nnz={self.nnz}, mode={self.mode}>"


def _is_scalar(key) -> bool:
    return isinstance(key, (int, np.integer)) and not isinstance(key, bool)


def _as_index(key, n: int, axis: str) -> np.ndarray:
    """ints, slices, lists of ints, or boolean masks -> int64 index array."""
    if _is_scalar(key):
        key = [int(key)]
    if isinstance(key, slice):
        return np.arange(n)[key]
    array = np.asarray(key)
    if array.dtype == bool:
        if array.shape != (n,):
            raise SinrIndexError(f"boolean {axis} mask has length {array.size}, expected {n}")
        return np.flatnonzero(array)
    if array.dtype.kind not in "iu" and array.size:
        raise SinrIndexError(f"{axis} index must be integers, a slice or a boolean mask")
    array = array.astype(np.int64).ravel()
    if array.size and (array.min() < -n or array.max() >= n):
        raise SinrIndexError(f"{axis} index out of range for {n} {axis}s")
    return np.where(array < 0, array + n, array)


def _expand(requested: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output positions of each found key in `requested` (which may repeat keys), and which found."""
    order = np.argsort(requested, kind="stable")
    sorted_keys = requested[order]
    left = np.searchsorted(sorted_keys, found, side="left")
    right = np.searchsorted(sorted_keys, found, side="right")
    counts = right - left
    source = np.repeat(np.arange(found.size), counts)
    starts = np.repeat(left - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
    return order[np.arange(source.size) + starts], source


def open(path: str | os.PathLike) -> SinrMatrix:  # noqa: A001 - mirrors the built-in, as sinr.open
    """Open a .sinr file for reading (validated: magic, version, checksums, sizes)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except IsADirectoryError as exc:
        raise FormatError(f"{path}: is a folder, not a .sinr file") from exc
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror})") from exc
    return SinrMatrix(blob, source=str(path))


def decode(path: str | os.PathLike, output: str | os.PathLike | None = None, *, force: bool = False):
    """Decode a .sinr file to a genes x cells csr_matrix, or write it to `output` (format by extension)."""
    if output is not None:
        check_writable(output, force=force)
        output_kind(Path(output))
    with open(path) as matrix:
        if output is None:
            return matrix.to_scipy()
        return write_matrix(output, matrix.to_count_matrix(), force=force)
