"""The tile format: one rANS stream per tile, its encode and decode halves side by side.

A tile is h rows x w columns of one band of a chunk; entry (i, j) has position i*w + j. Its stream
holds, in this order (spec §6):

1. positions: the k nonzero positions, or when 2k > h*w the h*w - k zero positions, as Golomb
   gaps: parameter M = max(1, ((n - m)*69 + 50 m) // (100 m)) for m coded positions of n; each
   gap's quotient through the quotient model (escapes of 15), its remainder uniform over M;
2. values, in position order: each nonzero's bin through its context's frequency table, then
   its offset as raw bits (high d-16 bits first when d > 16). --inr-only files code no values.

The kernels take whole batches of tiles so that a read or a chunk costs one compiled call.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..limits import MAX_COUNT
from ..model.siren import context_of_output, prediction_of_output, siren_output
from .models import BIN_OFFSET_BITS, BIN_START, baseline_context, bin_of
from .rans import (INLINE, JIT, PROB_BITS, PROB_SCALE, RANS_LOW, decode_bits, decode_quotient, decode_table, decode_uniform,
                   encode_symbols, push, push_bits, push_quotient, push_uniform, start_decoding, uniform_model)

MODE_LOSSLESS, MODE_MAX_ERROR, MODE_INR_ONLY = 0, 1, 2
MAX_SIREN_WIDTH_WORK = 512

# Decoding status of a tile (0 = fine); the reader turns any other into a CorruptFileError.
OK, TRUNCATED, BEYOND_TILE, BAD_ENDING, UNUSED_CONTEXT, UNEXPECTED_BYTES = 0, 1, 2, 3, 4, 5
STATUS_TEXT = {TRUNCATED: "a tile's stream ends early", BEYOND_TILE: "a position lies beyond its tile",
               BAD_ENDING: "a tile's stream does not end where its coder does",
               UNUSED_CONTEXT: "a value uses a context with no frequency table",
               UNEXPECTED_BYTES: "a tile with nothing to code has bytes"}


@njit(**INLINE)
def golomb_parameter(n_entries: int, n_coded: int) -> int:
    """Golomb M ~ ln(2) x mean gap, in integer arithmetic so every platform agrees."""
    return max(1, ((n_entries - n_coded) * 69 + 50 * n_coded) // (100 * n_coded))


def symbol_bound(k: np.ndarray, n: np.ndarray, code_values: bool) -> np.ndarray:
    """An upper bound on the symbols of each tile, to size the encoder's buffers."""
    k, n = np.asarray(k, np.int64), np.asarray(n, np.int64)
    m = np.minimum(k, n - k)
    gap_m = np.maximum(1, ((n - m) * 69 + 50 * m) // np.maximum(100 * m, 1))
    return 3 * m + (n - m) // (15 * gap_m) + 2 + (3 * k if code_values else 0)


# ------------------------------------------------------------------------------------- encode

@njit(**INLINE)
def _complement(sorted_positions, count, n, out):
    """Write to out the positions of 0..n-1 not among the first `count` sorted positions; return
    how many. A tile more than half full codes its zeros, so both sides take complements."""
    filled = 0
    p = 0
    for idx in range(count + 1):
        stop = sorted_positions[idx] if idx < count else n
        while p < stop:
            out[filled] = p
            filled += 1
            p += 1
        p = stop + 1
    return filled


@njit(**JIT)
def _tile_symbols(positions: np.ndarray, n: int, u: np.ndarray, contexts: np.ndarray, cum: np.ndarray,
                  code_values: bool, starts: np.ndarray, freqs: np.ndarray, zeros: np.ndarray) -> tuple[int, int]:
    """The tile's symbols in decoding order, and how many of them code positions."""
    k = positions.size
    count = 0
    if k == 0:
        return 0, 0
    coded = positions
    m = k
    if 2 * k > n:  # code the zeros
        m = _complement(positions, k, n, zeros)
        coded = zeros[:m]
    if m > 0:
        gap_m = golomb_parameter(n, m)
        has_quotients = (n - m) // gap_m > 0
        previous = -1
        for idx in range(m):
            gap = coded[idx] - previous - 1
            previous = coded[idx]
            if has_quotients:
                count = push_quotient(starts, freqs, count, gap // gap_m)
            if gap_m > 1:
                count = push_uniform(starts, freqs, count, gap % gap_m, gap_m)
    n_position = count
    if code_values:
        for idx in range(k):
            b, offset, bits = bin_of(u[idx])
            ctx = contexts[idx]
            count = push(starts, freqs, count, cum[ctx, b], cum[ctx, b + 1] - cum[ctx, b])
            if bits > PROB_BITS:
                count = push_bits(starts, freqs, count, offset >> PROB_BITS, bits - PROB_BITS)
                count = push_bits(starts, freqs, count, offset & ((1 << PROB_BITS) - 1), PROB_BITS)
            elif bits > 0:
                count = push_bits(starts, freqs, count, offset, bits)
    return count, n_position


LOG2_TABLE = np.log2(np.maximum(np.arange(PROB_SCALE + 1), 1))


@njit(**JIT)
def encode_tiles(tile_k: np.ndarray, tile_n: np.ndarray, positions: np.ndarray, u: np.ndarray,
                 contexts: np.ndarray, cum: np.ndarray, code_values: bool, max_symbols: int,
                 out: np.ndarray, log2_table: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Encode consecutive tiles (their nonzeros back to back, positions ascending in each) into out;
    return each tile's byte length and the information content, in bits, of the positions and of
    the values (for `sinr info`). out must hold sum(2 * symbol_bound + 4) bytes."""
    n_tiles = tile_k.size
    lengths = np.zeros(n_tiles, dtype=np.int64)
    position_bits = 0.0
    value_bits = 0.0
    starts = np.empty(max_symbols, dtype=np.int64)
    freqs = np.empty(max_symbols, dtype=np.int64)
    scratch = np.empty(2 * max_symbols + 8, dtype=np.uint8)
    zeros = np.empty(max(1, int(tile_n.max()) if n_tiles else 1), dtype=np.int64)
    first = 0
    written = 0
    for t in range(n_tiles):
        k = tile_k[t]
        count, n_position = _tile_symbols(positions[first: first + k], tile_n[t], u[first: first + k],
                                          contexts[first: first + k], cum, code_values, starts, freqs, zeros)
        for idx in range(count):
            bits = PROB_BITS - log2_table[freqs[idx]]
            if idx < n_position:
                position_bits += bits
            else:
                value_bits += bits
        lengths[t] = encode_symbols(starts, freqs, count, scratch, out, written)
        written += lengths[t]
        first += k
    return lengths, position_bits, value_bits


# ------------------------------------------------------------------------------------- decode

@njit(**JIT)
def _read_positions(buf, pos, end, x, k, n, out, zeros):
    """The tile's nonzero positions into out[:k]; returns (x, pos, status)."""
    m = k if 2 * k <= n else n - k
    if m == 0:
        for idx in range(k):
            out[idx] = idx
        return x, pos, OK
    coded = out if m == k else zeros
    gap_m = golomb_parameter(n, m)
    has_quotients = (n - m) // gap_m > 0
    base, extra, inv_wide, inv_narrow, low_bits = uniform_model(gap_m)
    previous = -1
    for idx in range(m):
        q = 0
        if has_quotients:
            q, x, pos = decode_quotient(x, buf, pos, end)
            if pos < 0:
                return x, pos, TRUNCATED
        r = 0
        if gap_m > 1:
            r, x, pos = decode_uniform(x, buf, pos, end, base, extra, inv_wide, inv_narrow, low_bits)
            if pos < 0:
                return x, pos, TRUNCATED
            if r >= gap_m:
                return x, pos, BEYOND_TILE
        previous += q * gap_m + r + 1
        if previous >= n:
            return x, pos, BEYOND_TILE
        coded[idx] = previous
    if m != k:  # the nonzeros are the positions between the coded zeros
        _complement(zeros, m, n, out)
    return x, pos, OK


@njit(**INLINE)
def _value_at(buf, pos, end, x, ctx, cum, lut):
    """(u, x, pos) of one value: its bin in context ctx, then its offset bits."""
    b, x, pos = decode_table(x, buf, pos, end, cum, lut, ctx)
    if pos < 0:
        return 0, x, pos
    bits = BIN_OFFSET_BITS[b]
    offset = 0
    if bits > PROB_BITS:
        high, x, pos = decode_bits(x, buf, pos, end, bits - PROB_BITS)
        if pos < 0:
            return 0, x, pos
        low, x, pos = decode_bits(x, buf, pos, end, PROB_BITS)
        offset = (high << PROB_BITS) | low
    elif bits > 0:
        offset, x, pos = decode_bits(x, buf, pos, end, bits)
    return BIN_START[b] + offset, x, pos


@njit(**INLINE)
def _last_kept(positions, lo, hi, w, col0, want_col, col_mask):
    """The last of nonzeros lo..hi-1 that a read keeps (of column want_col, or of a column col_mask
    marks), -1 if none: values are decoded up to it and no further."""
    if want_col < 0 and col_mask.size == 0:
        return hi - 1 if hi > lo else -1
    last = -1
    row_end = w
    for idx in range(lo, hi):
        p = positions[idx]
        while p >= row_end:
            row_end += w
        c = col0 + p - (row_end - w)
        if (want_col < 0 or c == want_col) and (col_mask.size == 0 or col_mask[c]):
            last = idx
    return last


@njit(**JIT)
def _decode_values_baseline(buf, pos, end, x, positions, k, lo, hi, w, row0, col0, gene_terms, cell_terms, cum, lut,
                            used, mode, max_error, want_col, col_mask, out_rows, out_cols, out_values, written):
    """The common case of _decode_tile in one pass: a baseline band's values, read up to the last
    one kept (entries lo..hi-1, those of column want_col or of the columns col_mask marks)."""
    use_mask = col_mask.size > 0
    last = _last_kept(positions, lo, hi, w, col0, want_col, col_mask)
    step = 2 * max_error + 1
    i = 0
    row_end = w
    gene_term = gene_terms[row0]
    count = 0
    for idx in range(last + 1):
        p = positions[idx]
        while p >= row_end:
            i += 1
            row_end += w
            gene_term = gene_terms[row0 + i]
        c = col0 + p - (row_end - w)
        ctx = baseline_context(gene_term + cell_terms[c])
        if not used[ctx]:
            return count, UNUSED_CONTEXT
        code, x, pos = _value_at(buf, pos, end, x, ctx, cum, lut)
        if pos < 0:
            return count, TRUNCATED
        if idx >= lo and (want_col < 0 or c == want_col) and (not use_mask or col_mask[c]):
            out_rows[written + count] = row0 + i
            out_cols[written + count] = c
            out_values[written + count] = code + 1 if mode == MODE_LOSSLESS else min(1 + code * step, MAX_COUNT)
            count += 1
    if last == k - 1 and lo == 0 and (x != RANS_LOW or pos != end):
        return count, BAD_ENDING
    return count, OK


@njit(**JIT)
def _decode_tile(buf, start, end, k, h, w, row0, col0, first, n_cells, cum, lut, used, siren, siren_spec, siren_norm,
                 siren_layers, siren_params, gene_terms, cell_terms, mode, max_error, want_row, want_col, col_mask,
                 scratch, work, out_rows, out_cols, out_values, written):
    """Decode one tile (see decode_tiles), writing its kept triples from `written` on.
    Returns (triples written, status). scratch holds six arrays of at least k items."""
    positions, zeros, rows, cols, contexts, keep = scratch
    n = h * w
    m = k if 2 * k <= n else n - k
    if m == 0 and (k == 0 or mode == MODE_INR_ONLY):
        if end != start:
            return 0, UNEXPECTED_BYTES
        x, pos = RANS_LOW, end
    else:
        x, pos = start_decoding(buf, start, end)
        if pos < 0:
            return 0, TRUNCATED
    x, pos, st = _read_positions(buf, pos, end, x, k, n, positions, zeros)
    if st != OK:
        return 0, st
    if mode == MODE_INR_ONLY and (x != RANS_LOW or pos != end):
        return 0, BAD_ENDING
    # which nonzeros to return: [lo, hi) in position order, further filtered by column
    use_mask = col_mask.size > 0
    lo, hi = 0, k
    if want_row >= 0:
        i = want_row - row0
        lo = np.searchsorted(positions[:k], i * w)
        hi = np.searchsorted(positions[:k], (i + 1) * w)
    if siren < 0 and mode != MODE_INR_ONLY:
        return _decode_values_baseline(buf, pos, end, x, positions, k, lo, hi, w, row0, col0, gene_terms, cell_terms,
                                       cum, lut, used, mode, max_error, want_col, col_mask, out_rows, out_cols,
                                       out_values, written)
    if siren < 0:  # an --inr-only band without a SIREN holds no nonzero (the reader checks)
        return 0, OK if k == 0 else UNUSED_CONTEXT
    last = _last_kept(positions, lo, hi, w, col0, want_col, col_mask)
    i = 0
    row_end = w
    for idx in range(last + 1):  # rows, columns, what to keep, and contexts (or --inr-only predictions)
        p = positions[idx]
        while p >= row_end:
            i += 1
            row_end += w
        j = p - (row_end - w)
        c = col0 + j
        rows[idx] = i
        cols[idx] = c
        keep[idx] = idx >= lo and (want_col < 0 or c == want_col) and (not use_mask or col_mask[c])
        if mode != MODE_INR_ONLY or keep[idx]:
            y = siren_output(siren_layers, siren_params, siren_spec[siren, 0], siren_spec[siren, 1], i, first + j,
                             h, n_cells, work)
            if mode == MODE_INR_ONLY:
                contexts[idx] = prediction_of_output(siren_spec[siren, 2], siren_norm[siren, 0], siren_norm[siren, 1], y)
            else:
                contexts[idx] = context_of_output(siren_spec[siren, 2], siren_norm[siren, 0], siren_norm[siren, 1], y)
    whole = last == k - 1 and lo == 0
    step = 2 * max_error + 1
    count = 0
    for idx in range(last + 1):
        if mode == MODE_INR_ONLY:
            value = contexts[idx]
        else:
            ctx = contexts[idx]
            if not used[ctx]:
                return count, UNUSED_CONTEXT
            code, x, pos = _value_at(buf, pos, end, x, ctx, cum, lut)
            if pos < 0:
                return count, TRUNCATED
            value = code + 1 if mode == MODE_LOSSLESS else min(1 + code * step, MAX_COUNT)
        if keep[idx]:
            out_rows[written + count] = row0 + rows[idx]
            out_cols[written + count] = cols[idx]
            out_values[written + count] = value
            count += 1
    if whole and mode != MODE_INR_ONLY and (x != RANS_LOW or pos != end):
        return count, BAD_ENDING
    return count, OK


@njit(**JIT)
def tile_scratch(max_k: int):
    size = max(max_k, 1)
    return (np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64),
            np.empty(size, np.int64), np.empty(size, np.bool_))


@njit(**JIT)
def decode_tiles(buf: np.ndarray, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
                 tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, tile_col: np.ndarray,
                 tile_first: np.ndarray, tile_cells: np.ndarray, tile_model: np.ndarray, tile_siren: np.ndarray,
                 gene_terms: np.ndarray, cell_terms: np.ndarray, cum: np.ndarray, lut: np.ndarray,
                 used: np.ndarray, siren_spec: np.ndarray, siren_norm: np.ndarray, siren_layers: np.ndarray,
                 siren_params: np.ndarray, mode: int, max_error: int, want_row: int, want_col: int,
                 col_mask: np.ndarray, out_start: np.ndarray, out_rows: np.ndarray, out_cols: np.ndarray,
                 out_values: np.ndarray, out_count: np.ndarray, status: np.ndarray) -> None:
    """Decode tiles into (row, column, value) triples.

    Tile t's stream is buf[tile_offset[t]: + tile_length[t]]; it has tile_k[t] nonzeros in
    tile_h[t] x tile_w[t] entries; its first row is tile_row[t] (reordered gene), its first column
    tile_col[t] (an index into cell_terms and the output), which is column tile_first[t] of a chunk
    of tile_cells[t] cells; tile_model[t] picks the chunk's frequency tables and tile_siren[t] the
    band's SIREN (-1: the baseline). Filters: want_row >= 0 keeps that row, want_col >= 0 that
    column, a non-empty col_mask the columns it marks. Values are decoded only up to the last
    nonzero kept; a tile decoded whole must end exactly where its coder ended.
    Tile t writes out_count[t] triples from out_start[t] and sets status[t]."""
    max_k = 0
    for t in range(tile_k.size):
        max_k = max(max_k, tile_k[t])
    scratch = tile_scratch(max_k)
    work = np.empty((2, MAX_SIREN_WIDTH_WORK), dtype=np.int64)
    for t in range(tile_k.size):
        model = tile_model[t]
        out_count[t], status[t] = _decode_tile(
            buf, tile_offset[t], tile_offset[t] + tile_length[t], tile_k[t], tile_h[t], tile_w[t], tile_row[t],
            tile_col[t], tile_first[t], tile_cells[t], cum[model], lut[model], used[model], tile_siren[t],
            siren_spec, siren_norm, siren_layers, siren_params, gene_terms, cell_terms, mode, max_error, want_row,
            want_col, col_mask, scratch, work, out_rows, out_cols, out_values, out_start[t])


@njit(**JIT)
def count_rows(buf: np.ndarray, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
               tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, counts: np.ndarray,
               status: np.ndarray) -> None:
    """Add each tile's nonzeros per row to counts[row], decoding positions only (the first pass
    of a row-major full decode)."""
    max_k = 1
    for t in range(tile_k.size):
        max_k = max(max_k, tile_k[t])
    positions = np.empty(max_k, dtype=np.int64)
    zeros = np.empty(max_k, dtype=np.int64)
    for t in range(tile_k.size):
        k = tile_k[t]
        status[t] = OK
        if k == 0:
            continue
        start = tile_offset[t]
        end = start + tile_length[t]
        n = tile_h[t] * tile_w[t]
        if k == n:
            for i in range(tile_h[t]):
                counts[tile_row[t] + i] += tile_w[t]
            continue
        x, pos = start_decoding(buf, start, end)
        if pos < 0:
            status[t] = TRUNCATED
            continue
        x, pos, st = _read_positions(buf, pos, end, x, k, n, positions, zeros)
        if st != OK:
            status[t] = st
            continue
        row = tile_row[t]
        row_end = tile_w[t]
        for idx in range(k):
            while positions[idx] >= row_end:
                row += 1
                row_end += tile_w[t]
            counts[row] += 1


@njit(**JIT)
def decode_entry(buf: np.ndarray, base: int, tile_offset: np.ndarray, tile_length: np.ndarray, tile_k: np.ndarray,
                 tile_h: np.ndarray, tile_w: np.ndarray, tile_row: np.ndarray, tile_first: np.ndarray, t: int,
                 first_cell: int, n_cells: int, cum: np.ndarray, lut: np.ndarray, used: np.ndarray, siren: int,
                 siren_spec: np.ndarray, siren_norm: np.ndarray, siren_layers: np.ndarray, siren_params: np.ndarray,
                 gene_terms: np.ndarray, cell_terms: np.ndarray, mode: int, max_error: int, row: int,
                 col: int) -> tuple[int, int]:
    """(value, status) of the entry at (row, col) of tile t of a chunk whose first column is
    first_cell (its stream at buf[tile_offset[t] - base:]): the lean path of m[i, j], which reads
    the tile's positions and its values only up to the entry's own."""
    k = tile_k[t]
    start = tile_offset[t] - base
    out = np.zeros(1, dtype=np.int64)
    work = np.empty((2, MAX_SIREN_WIDTH_WORK if siren >= 0 else 1), dtype=np.int64)
    count, status = _decode_tile(buf, start, start + tile_length[t], k, tile_h[t], tile_w[t], tile_row[t],
                                 first_cell + tile_first[t], tile_first[t], n_cells, cum, lut, used, siren,
                                 siren_spec, siren_norm, siren_layers, siren_params, gene_terms, cell_terms, mode,
                                 max_error, row, col, np.zeros(0, np.bool_), tile_scratch(k), work, out, out, out, 0)
    return (out[0] if count else 0), status
