"""Patch and block geometry: full-width row bands sized by nonzeros, cut into column tiles.

A patch is a band of consecutive (reordered) expressed genes holding about `patch_nnz` nonzeros,
so sparse regions get tall patches; it is the unit one SIREN is fitted to. Each patch is cut into
tiles of `width` consecutive cells, the width chosen so a tile holds about `tile_nnz` nonzeros;
a tile is the unit of entropy coding, so one entry, gene or cell is read by decoding a few tiles.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import CorruptFileError
from .registry import Stage, register_stage

MAX_TILE_ENTRIES = 2**24 - 1


class TileSpan(NamedTuple):
    tile: int
    band: int
    top: int
    height: int
    first: int
    width: int


@dataclass(frozen=True)
class Geometry:
    """Band b covers reordered genes [row_starts[b], row_starts[b+1]) in tiles of widths[b] cells."""

    n_cells: int
    row_starts: np.ndarray
    widths: np.ndarray

    def __post_init__(self) -> None:
        tiles = -(-self.n_cells // self.widths) if self.widths.size else np.zeros(0, dtype=np.int64)
        object.__setattr__(self, "tile_starts", np.concatenate([[0], np.cumsum(tiles)]).astype(np.int64))
        object.__setattr__(self, "_lists", (self.row_starts.tolist(), self.widths.tolist(), self.tile_starts.tolist()))

    @property
    def n_bands(self) -> int:
        return self.widths.size

    @property
    def n_tiles(self) -> int:
        return int(self.tile_starts[-1])

    def band_of_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.row_starts, rows, side="right") - 1

    def layout(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Band, first cell, number of cells and number of entries of each tile id."""
        band = np.searchsorted(self.tile_starts, tiles, side="right") - 1
        first = (tiles - self.tile_starts[band]) * self.widths[band]
        width = np.minimum(self.widths[band], self.n_cells - first)
        return band, first, width, (self.row_starts[band + 1] - self.row_starts[band]) * width

    def tile_of_entry(self, row: int, col: int) -> TileSpan:
        """The tile holding one (row, col) of expressed genes: scalar arithmetic, for m[i, j]."""
        row_starts, widths, tile_starts = self._lists
        band = bisect.bisect_right(row_starts, row) - 1
        block = col // widths[band]
        first = block * widths[band]
        return TileSpan(tile_starts[band] + block, band, row_starts[band], row_starts[band + 1] - row_starts[band],
                        first, min(widths[band], self.n_cells - first))

    def locate(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tile id and row-major position inside the tile of each (row, col) in expressed genes."""
        band = self.band_of_rows(rows)
        width = self.widths[band]
        block = cols // width
        tile_width = np.minimum(width, self.n_cells - block * width)
        position = (rows - self.row_starts[band]) * tile_width + (cols - block * width)
        return self.tile_starts[band] + block, position

    def to_header(self) -> dict:
        return {"row_starts": self.row_starts.tolist(), "widths": self.widths.tolist()}

    @classmethod
    def from_header(cls, header: dict, n_expressed: int, n_cells: int) -> "Geometry":
        try:
            row_starts = np.asarray(header["row_starts"], dtype=np.int64)
            widths = np.asarray(header["widths"], dtype=np.int64)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CorruptFileError(f"patch geometry is malformed ({exc})") from exc
        ok = (row_starts.ndim == 1 and widths.ndim == 1 and row_starts.size == widths.size + 1
              and row_starts[0] == 0 and row_starts[-1] == n_expressed and np.all(np.diff(row_starts) > 0)
              and np.all(widths >= 1) and np.all(widths <= max(n_cells, 1))
              and np.all(np.diff(row_starts) * np.minimum(widths, n_cells) <= MAX_TILE_ENTRIES))
        if not ok or (n_expressed > 0 and n_cells == 0):
            raise CorruptFileError("patch geometry is inconsistent with the matrix shape")
        return cls(n_cells, row_starts, widths)


@register_stage
class RowBandTiling(Stage):
    codec_id = "row-bands"

    def __init__(self, patch_nnz: int | None = None, tile_nnz: int = 256) -> None:
        if (patch_nnz is not None and patch_nnz < 1) or tile_nnz < 1:
            raise ValueError("patch_nnz and tile_nnz must be positive")
        self.patch_nnz = None if patch_nnz is None else int(patch_nnz)
        self.tile_nnz = int(tile_nnz)

    def _params(self) -> dict:
        return {"patch_nnz": self.patch_nnz, "tile_nnz": self.tile_nnz}

    def balanced_patch_nnz(self, nnz: int) -> int:
        """Patch size making a gene row (one patch's tiles) and a cell column (one tile per patch)
        cost about the same: sqrt(nnz x tile_nnz), times 1.15 because a column read decodes more of
        each tile's values than a row read does (measured on pbmc4k)."""
        return int(np.clip(1.15 * np.sqrt(nnz * self.tile_nnz), 8 * self.tile_nnz, 1 << 20))

    def plan(self, row_nnz: np.ndarray, n_cells: int) -> Geometry:
        """Cut expressed rows (reordered, nnz per row given) into bands and tiles."""
        patch_nnz = self.patch_nnz or self.balanced_patch_nnz(int(row_nnz.sum()))
        starts, band_nnz = [0], []
        total = 0
        for row, nnz in enumerate(row_nnz.tolist()):
            total += nnz
            rows = row + 1 - starts[-1]
            if total >= patch_nnz or rows * max(n_cells, 1) >= MAX_TILE_ENTRIES:
                starts.append(row + 1)
                band_nnz.append(total)
                total = 0
        if starts[-1] != row_nnz.size:
            starts.append(row_nnz.size)
            band_nnz.append(total)
        row_starts = np.asarray(starts, dtype=np.int64)
        heights = np.diff(row_starts)
        nnz = np.maximum(np.asarray(band_nnz, dtype=np.float64), 1.0)
        widths = np.clip(np.rint(n_cells * self.tile_nnz / nnz), 1, max(n_cells, 1)).astype(np.int64)
        widths = np.minimum(widths, np.maximum(MAX_TILE_ENTRIES // np.maximum(heights, 1), 1))
        return Geometry(n_cells, row_starts, widths)
