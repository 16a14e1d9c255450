"""Bands and tiles of a chunk: full-width row bands cut into tiles of consecutive cells.

After reordering, a chunk's rows are the genes 0..n_rows-1 (in the file's gene order) and its
columns its cells in the chunk's cell order. Band b holds rows row_starts[b]..row_starts[b+1]-1
and is cut into tiles of widths[b] columns (the last one narrower); tiles are numbered band by
band. A band is the unit one SIREN is fitted to, a tile the unit of entropy coding: a gene row
decodes the tiles of one band, a cell column one tile per band.
"""
from __future__ import annotations

import numpy as np

from ..errors import CorruptFileError
from ..limits import DEFAULT_MAX_BANDS, MAX_TILE_ENTRIES


class ChunkGeometry:
    """Where a chunk's tiles lie: its band boundaries over rows and each band's tile width. (A plain
    class, not a dataclass: opening a file should not pay for generated methods.)"""

    __slots__ = ("n_cells", "row_starts", "widths", "tile_starts")

    def __init__(self, n_cells: int, row_starts: np.ndarray, widths: np.ndarray) -> None:
        self.n_cells = n_cells
        self.row_starts = row_starts  # int64 [n_bands + 1]
        self.widths = widths  # int64 [n_bands]
        tiles = -(-n_cells // widths) if widths.size else np.zeros(0, np.int64)
        self.tile_starts = np.concatenate([[0], np.cumsum(tiles)]).astype(np.int64)  # and the tile count last

    @property
    def n_bands(self) -> int:
        """Bands of the chunk."""
        return int(self.widths.size)

    @property
    def n_tiles(self) -> int:
        """Tiles of the chunk, over all bands."""
        return int(self.tile_starts[-1])

    @property
    def n_rows(self) -> int:
        """Rows the bands cover (rows beyond have no nonzero in this chunk)."""
        return int(self.row_starts[-1])

    def tiles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per tile: band, first row, height, first column, width."""
        band = np.repeat(np.arange(self.n_bands), np.diff(self.tile_starts))
        block = np.arange(self.n_tiles) - self.tile_starts[band]
        first = block * self.widths[band]
        width = np.minimum(self.widths[band], self.n_cells - first)
        return (band, self.row_starts[band], self.row_starts[band + 1] - self.row_starts[band], first, width)

    @classmethod
    def plan(cls, band_rows: np.ndarray, row_nnz: np.ndarray, n_cells: int, tile_nnz: int) -> "ChunkGeometry":
        """Cut rows 0..len(row_nnz)-1 at the file's band boundaries `band_rows`, and give each band
        the tile width that holds about `tile_nnz` of its nonzeros (rounded up, so a band never has
        more tiles than nonzeros, bar one; spec §5.4.5)."""
        n_rows = row_nnz.size
        starts = band_rows[band_rows < n_rows]
        row_starts = np.concatenate([starts, [n_rows]]).astype(np.int64) if n_rows else np.zeros(1, np.int64)
        heights = np.diff(row_starts)
        nnz = np.add.reduceat(row_nnz, row_starts[:-1]) if n_rows else np.zeros(0, np.int64)
        widths = np.ceil(n_cells * tile_nnz / np.maximum(nnz, 1).astype(np.float64))
        widths = np.clip(widths, 1, max(n_cells, 1)).astype(np.int64)
        widths = np.maximum(np.minimum(widths, MAX_TILE_ENTRIES // np.maximum(heights, 1)), 1)
        return cls(n_cells, row_starts, widths)

    @classmethod
    def checked(cls, row_starts: np.ndarray, widths: np.ndarray, n_rows: int, n_cells: int,
                *, what: str) -> "ChunkGeometry":
        """Rebuild stored geometry, refusing any that contradicts the chunk's shape."""
        row_starts, widths = row_starts.astype(np.int64), widths.astype(np.int64)
        heights = np.diff(row_starts)
        ok = (row_starts.size == widths.size + 1 and row_starts[0] == 0 and row_starts[-1] == n_rows
              and np.all(heights > 0) and np.all(widths >= 1) and np.all(widths <= max(n_cells, 1))
              and np.all(heights * np.minimum(widths, max(n_cells, 1)) <= MAX_TILE_ENTRIES))
        if not ok or (n_rows > 0 and n_cells == 0):
            raise CorruptFileError(f"{what}: band geometry contradicts the chunk's shape")
        return cls(n_cells, row_starts, widths)


def max_tiles(band_nnz: np.ndarray, heights: np.ndarray, n_cells: int) -> int:
    """The most tiles a chunk may have (spec §5.4.5): per band, one per nonzero or one, plus the
    tiles the MAX_TILE_ENTRIES cap forces on tall bands."""
    narrowest = np.maximum(MAX_TILE_ENTRIES // np.maximum(heights, 1), 1)
    return int(np.maximum(band_nnz, 1).sum() + (-(-n_cells // narrowest)).sum())


def plan_band_rows(row_nnz: np.ndarray, patch_nnz: int) -> np.ndarray:
    """Band boundaries over the file's gene order, shared by every chunk: a band closes once it
    holds `patch_nnz` nonzeros of the whole matrix, or MAX_TILE_ENTRIES rows."""
    cumulative = np.cumsum(row_nnz)
    starts = [0]
    while starts[-1] < row_nnz.size:
        begin = starts[-1]
        before = cumulative[begin - 1] if begin else 0
        stop = int(np.searchsorted(cumulative, before + patch_nnz, side="left")) + 1
        starts.append(min(stop, begin + MAX_TILE_ENTRIES, row_nnz.size))
    return np.asarray(starts[:-1], dtype=np.int64)


def genes_sorted_in_bands(genes: np.ndarray, band_rows: np.ndarray) -> np.ndarray:
    """`genes` (the genes of rows 0, 1, ...) with each band's in increasing order: the band of row r
    starts at the last of band_rows (ascending, from 0) at or before r. Bands keep their rows, and
    so their nonzeros; only the order inside each changes."""
    band = np.searchsorted(band_rows, np.arange(genes.size), side="right") - 1
    return genes[np.lexsort((genes, band))]


def balanced_patch_nnz(nnz: int, tile_nnz: int) -> int:
    """Patch size making a gene row (one band's tiles in every chunk) and a cell column (one tile
    per band) cost about the same: sqrt(nnz x tile_nnz), times 1.15 because a column read decodes
    more of each tile's values than a row read does. Beyond about 9e7 nonzeros the bands stop at
    DEFAULT_MAX_BANDS: a cell's result does not grow with the matrix, so its read should not either,
    while a gene's result grows with the cells and its read's extra decoding (half a band) with it."""
    balanced = 1.15 * np.sqrt(max(nnz, 1) * tile_nnz)
    return int(np.clip(max(balanced, nnz / DEFAULT_MAX_BANDS), 8 * tile_nnz, 1 << 24))
