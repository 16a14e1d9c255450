"""The tile format: one rANS stream per tile, its encode and decode halves side by side.

A tile is h rows x w columns of one band of a chunk; entry (i, j) has position i*w + j. Its stream
holds, in this order (spec Appendix C, format 2's tile coding):

1. positions: the k nonzero positions, or when 2k > h*w the h*w - k zero positions, as Golomb
   gaps: parameter M = max(1, ((n - m)*69 + 50 m) // (100 m)) for m coded positions of n; each
   gap's quotient through the quotient model (escapes of 15), its remainder uniform over M;
2. values, in position order: each nonzero's bin through its context's frequency table, then
   its offset as raw bits (high d-16 bits first when d > 16). --inr-only files code no values.

The kernels are the native core's (native/core/src/tile.cpp): they take whole batches of tiles so
that a read or a chunk costs one call, and release the GIL. The decoder checks every number it
takes from a stream or a tile directory before it indexes anything: a hostile file gets a status
below, never a read or write out of bounds. The wrappers here fix the arrays' dtypes.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import _native
from .models import int32_items
from .rans import PROB_SCALE
from .stages import MODE_CODES

MODE_LOSSLESS, MODE_MAX_ERROR, MODE_INR_ONLY = (MODE_CODES[m] for m in ("lossless", "max-error", "inr-only"))

# Decoding status of a tile (0 = fine); the reader turns any other into a CorruptFileError. Besides the
# stream's own faults, a tile directory entry that contradicts the arrays the kernel indexes gets
# TRUNCATED (bytes outside the buffer), BEYOND_TILE (rows, columns or nonzeros outside the tile or
# its arrays) or UNUSED_CONTEXT (a model or SIREN that does not exist or is malformed).
OK, TRUNCATED, BEYOND_TILE, BAD_ENDING, UNUSED_CONTEXT, UNEXPECTED_BYTES = 0, 1, 2, 3, 4, 5
STATUS_TEXT = {TRUNCATED: "a tile's stream ends early", BEYOND_TILE: "a position lies beyond its tile",
               BAD_ENDING: "a tile's stream does not end where its coder does",
               UNUSED_CONTEXT: "a value uses a context with no frequency table",
               UNEXPECTED_BYTES: "a tile with nothing to code has bytes"}


def golomb_parameter(n_entries: int, n_coded: int) -> int:
    """Golomb M ~ ln(2) x mean gap, in integer arithmetic so every platform agrees."""
    return _native.golomb_parameter(int(n_entries), int(n_coded))


def symbol_bound(k: np.ndarray, n: np.ndarray, code_values: bool) -> np.ndarray:
    """An upper bound on the symbols of each tile, to size the encoder's buffers."""
    k, n = np.asarray(k, np.int64), np.asarray(n, np.int64)
    m = np.minimum(k, n - k)
    gap_m = np.maximum(1, ((n - m) * 69 + 50 * m) // np.maximum(100 * m, 1))
    return 3 * m + (n - m) // (15 * gap_m) + 2 + (3 * k if code_values else 0)


# ------------------------------------------------------------------------------------- encode

@functools.cache
def log2_table() -> np.ndarray:
    """log2 of every frequency 0..PROB_SCALE (0 as 1), for the encoder's statistics; built on first
    use, so that a process that only reads never pays for it."""
    return np.log2(np.maximum(np.arange(PROB_SCALE + 1), 1))


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def encode_tiles(tile_k: np.ndarray, tile_n: np.ndarray, positions: np.ndarray, u: np.ndarray,
                 contexts: np.ndarray, cum: np.ndarray, code_values: bool, max_symbols: int,
                 out: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Encode consecutive tiles (their nonzeros back to back, positions ascending in each) into out;
    return each tile's byte length and the information content, in bits, of the positions and of
    the values (for `sinr info`). out (uint8) must hold sum(2 * symbol_bound + 4) bytes and
    max_symbols bound every tile's symbols; ValueError if either falls short or the input breaks
    the format's rules."""
    tile_k = _i64(tile_k)
    lengths = np.zeros(tile_k.size, dtype=np.int64)
    position_bits, value_bits = _native.encode_tiles(
        tile_k, _i64(tile_n), int32_items(positions), int32_items(u), int32_items(contexts), _i64(cum),
        bool(code_values), int(max_symbols), out, log2_table(), lengths)
    return lengths, position_bits, value_bits


# ------------------------------------------------------------------------------------- decode

def decode_tiles(buf: np.ndarray, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
                 tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, tile_col: np.ndarray,
                 tile_first: np.ndarray, tile_cells: np.ndarray, tile_model: np.ndarray, tile_siren: np.ndarray,
                 gene_terms: np.ndarray, cell_terms: np.ndarray, cum: np.ndarray, lut: np.ndarray,
                 used: np.ndarray, siren_spec: np.ndarray, siren_norm: np.ndarray, siren_layers: np.ndarray,
                 siren_params: np.ndarray, mode: int, max_error: int, want_row: int, want_col: int,
                 col_mask: np.ndarray, out_start: np.ndarray, out_rows: np.ndarray, out_cols: np.ndarray,
                 out_values: np.ndarray, out_count: np.ndarray, status: np.ndarray, tables3: list | None = None,
                 threads: int = 1) -> None:
    """Decode tiles into (row, column, value) triples.

    Tile t's stream is buf[tile_offset[t]: + tile_length[t]]; it has tile_k[t] nonzeros in
    tile_h[t] x tile_w[t] entries; its first row is tile_row[t] (reordered gene), its first column
    tile_col[t] (an index into cell_terms and the output), which is column tile_first[t] of a chunk
    of tile_cells[t] cells; tile_model[t] picks the chunk's frequency tables (cum, lut, used: one
    [n_contexts, ...] block per model) and tile_siren[t] the band's SIREN (-1: the baseline).
    Filters: want_row >= 0 keeps that row, want_col >= 0 that column, a non-empty col_mask the
    columns it marks. Values are decoded only up to the last nonzero kept; a tile decoded whole
    must end exactly where its coder ended. Tile t writes out_count[t] triples from out_start[t]
    and sets status[t].

    Per-tile arrays are int64, buf uint8; out_rows and out_cols int32 or int64 (one dtype), out_values
    int32 or int64, out_count and status int64 (written in place, so never converted). Tables of
    other dtypes are converted (a copy): the reader passes them as the kernel takes them (cum
    int32, lut uint8, used and col_mask bool, gene_terms int64, cell_terms int32).

    Format 3: tables3 lists the chunks' ChunkTables3 (tile_model[t] indexes it) and the tiles are
    format-3 streams; cum, lut and used are then not read. A batch without filters, lossless or
    max-error, decodes its baseline tiles eight at a time in AVX2 lanes where the CPU has them, with
    exactly the scalar decoder's output (_native.set_tile_lanes chooses the path, for tests).
    threads > 1 decodes runs of the tiles on that many threads of the core (the GIL released)."""
    _native.decode_tiles(
        buf, _i64(tile_offset), _i64(tile_length), _i64(tile_k), _i64(tile_h), _i64(tile_w), _i64(tile_row),
        _i64(tile_col), _i64(tile_first), _i64(tile_cells), _i64(tile_model), _i64(tile_siren), _i64(gene_terms),
        np.ascontiguousarray(cell_terms, np.int32), np.ascontiguousarray(cum, np.int32),
        np.ascontiguousarray(lut, np.uint8), np.ascontiguousarray(used, np.bool_), _i64(siren_spec),
        np.ascontiguousarray(siren_norm, np.float64), _i64(siren_layers), _i64(siren_params), int(mode),
        int(max_error), int(want_row), int(want_col), np.ascontiguousarray(col_mask, np.bool_), _i64(out_start),
        out_rows, out_cols, out_values, out_count, status, tables3, int(threads))


def count_rows(buf: np.ndarray, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
               tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, counts: np.ndarray,
               status: np.ndarray, tile_model: np.ndarray | None = None, tables3: list | None = None,
               threads: int = 1) -> None:
    """Add each tile's nonzeros per row to counts[row] (int64, in place), decoding positions only
    (the first pass of a row-major full decode); status[t] (int64) as decode_tiles sets it. Format 3
    needs each tile's model and the tables (see decode_tiles). threads: the core's threads for it."""
    _native.count_rows(buf, _i64(tile_offset), _i64(tile_length), _i64(tile_k), _i64(tile_h), _i64(tile_w),
                       _i64(tile_row), counts, status, None if tile_model is None else _i64(tile_model), tables3,
                       int(threads))


def decode_entry(buf: np.ndarray, start: int, length: int, k: int, h: int, w: int, row0: int, col0: int, first: int,
                 n_cells: int, cum: np.ndarray, lut: np.ndarray, used: np.ndarray, siren: int,
                 sirens: tuple | None, gene_terms: np.ndarray, cell_terms: np.ndarray, mode: int, max_error: int,
                 row: int, col: int, tables3=None) -> tuple[int, int]:
    """(value, status) of the entry at (row, col) of one tile: the lean path of m[i, j], which reads
    the tile's positions and its values only up to the entry's own. The tile is given as numbers
    (see decode_tiles): its stream buf[start: start + length], its k nonzeros in h x w entries,
    first row row0, first column col0, which is column `first` of a chunk of n_cells cells; the
    chunk's model (cum [n_contexts, N_BINS + 1] int32, lut uint8, used bool), the band's SIREN
    (-1: the baseline) and, for a SIREN band, the SIREN tables (spec, norm, layers, params).
    Arrays go to the kernel as they are, for a call of a few microseconds (nanobind copies any of
    another dtype than these: gene_terms int64, cell_terms int32). Format 3: tables3 is the chunk's
    ChunkTables3 (cum, lut and used are then not read)."""
    return _native.decode_entry(buf, start, length, k, h, w, row0, col0, first, n_cells, cum, lut, used, siren,
                                sirens, gene_terms, cell_terms, mode, max_error, row, col, tables3)
