"""The compiled codec alone: rANS primitives, tile streams, value models, geometry, checksum, SIREN."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scinrcodec import _native
from scinrcodec.codec import rans
from scinrcodec.codec.checksum import content_checksum, mapped_checksum, mix
from scinrcodec.codec.geometry import ChunkGeometry, balanced_patch_nnz, plan_band_rows
from scinrcodec.codec.models import (N_BINS, N_CONTEXTS, bin_of, bin_tables,
                                     decoding_tables, frequencies)
from scinrcodec.codec.tile import (BAD_ENDING, BEYOND_TILE, MODE_INR_ONLY, OK, TRUNCATED,
                                   UNEXPECTED_BYTES, UNUSED_CONTEXT, count_rows, decode_entry, decode_tiles,
                                   encode_tiles, symbol_bound)
from scinrcodec.errors import CorruptFileError
from scinrcodec.limits import DEFAULT_MAX_BANDS, MAX_COUNT, MAX_TILE_ENTRIES
from scinrcodec.model.siren import EXPM1_TABLE, SINE_TABLE, prediction_of_output


# ------------------------------------------------------------------------------------------- rANS

def _code(symbols: list[tuple[int, int]]) -> np.ndarray:
    starts = np.array([s for s, _ in symbols], dtype=np.int64)
    freqs = np.array([f for _, f in symbols], dtype=np.int64)
    out = np.zeros(2 * len(symbols) + 8, dtype=np.uint8)
    n = rans.encode_symbols(starts, freqs, len(symbols), out, 0)
    return out[:n]


@given(st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=300), st.integers(1, 16))
@settings(max_examples=60, deadline=None)
def test_raw_bits_round_trip_and_cost(values, bits):
    values = [v & ((1 << bits) - 1) for v in values]
    buf = _code([((v << (16 - bits)), 1 << (16 - bits)) for v in values])
    x, pos = rans.start_decoding(buf, 0, buf.size)
    got = []
    for _ in values:
        v, x, pos = rans.decode_bits(x, buf, pos, buf.size, bits)
        got.append(v)
    assert got == values and x == rans.RANS_LOW and pos == buf.size
    assert buf.size <= 4 + -(-len(values) * bits // 8) + 1  # raw bits cost exactly their width


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=200), st.integers(2, 2**24))
@settings(max_examples=80, deadline=None)
def test_uniform_model_round_trip_any_size(values, size):
    values = [v % size for v in values]
    starts, freqs = np.zeros(3 * len(values), np.int64), np.zeros(3 * len(values), np.int64)
    n = 0
    for v in values:
        n = rans.push_uniform(starts, freqs, n, v, size)
    out = np.zeros(2 * n + 8, np.uint8)
    length = rans.encode_symbols(starts, freqs, n, out, 0)
    base, extra, inv_wide, inv_narrow, low_bits = rans.uniform_model(size)
    x, pos = rans.start_decoding(out, 0, length)
    for v in values:
        got, x, pos = rans.decode_uniform(x, out, pos, length, base, extra, inv_wide, inv_narrow, low_bits)
        assert got == v
    assert x == rans.RANS_LOW and pos == length


def test_quotient_model_is_dyadic_and_escapes():
    freqs = [rans.quotient_symbol(q)[1] for q in range(16)]
    starts = [rans.quotient_symbol(q)[0] for q in range(16)]
    assert sum(freqs) == rans.PROB_SCALE and starts[0] == 0
    assert all(starts[q] + freqs[q] == starts[q + 1] for q in range(15))
    assert freqs[:15] == [2 ** (15 - q) for q in range(15)] and freqs[15] == 2
    qs = [0, 1, 14, 15, 16, 29, 30, 31, 100, 1000]
    s, f = np.zeros(400, np.int64), np.zeros(400, np.int64)
    n = 0
    for q in qs:
        n = rans.push_quotient(s, f, n, q)
    out = np.zeros(2 * n + 8, np.uint8)
    length = rans.encode_symbols(s, f, n, out, 0)
    x, pos = rans.start_decoding(out, 0, length)
    for q in qs:
        got, x, pos = rans.decode_quotient(x, out, pos, length)
        assert got == q
    assert x == rans.RANS_LOW and pos == length


def test_truncated_and_bad_state_are_reported():
    buf = _code([(0, 32768)] * 100 + [(0, 1)] * 50)
    x, pos = rans.start_decoding(buf[:3], 0, 3)
    assert pos == -1
    bad = buf.copy()
    bad[3] = 0xFF  # state >= 2**31
    assert rans.start_decoding(bad, 0, bad.size)[1] == -1


# ----------------------------------------------------------------------------------- value models

def test_bins_cover_every_count_exactly():
    u = np.concatenate([np.arange(5000), np.array([2**20, 2**24 + 12345, MAX_COUNT - 1])])
    for value in u.tolist():
        b, offset, bits = bin_of(value)
        bin_start, bin_offset_bits = bin_tables()
        assert 0 <= b < N_BINS and bits == bin_offset_bits[b] and 0 <= offset < (1 << bits) | 1
        assert bin_start[b] + offset == value
    assert bin_of(MAX_COUNT - 1)[0] == N_BINS - 1


def test_frequencies_exact_algorithm():
    counts = np.zeros((3, N_BINS), np.int64)
    counts[0, :3] = [700, 200, 100]
    counts[1, 5] = 2**39
    freqs = frequencies(counts)
    assert freqs[0].sum() == 2**16 and freqs[1].sum() == 2**16 and not freqs[2].any()
    spare = 2**16 - 3
    expected = [1 + 700 * spare // 1000, 1 + 200 * spare // 1000, 1 + 100 * spare // 1000]
    expected[0] += 2**16 - sum(expected)
    assert freqs[0, :3].tolist() == expected
    assert freqs[1, 5] == 2**16 and np.count_nonzero(freqs[1]) == 1
    tie = np.zeros((1, N_BINS), np.int64)
    tie[0, [3, 7, 9]] = [5, 5, 1]
    assert frequencies(tie)[0, [3, 7, 9]].tolist() == [29790, 29788, 5958]  # leftover to the lowest top bin


def test_decoding_tables_reject_bad_rows():
    good = frequencies(np.eye(N_CONTEXTS, N_BINS, dtype=np.int64) * 10)
    cum, lut, used = decoding_tables(good)
    assert used.all() and cum[:, -1].tolist() == [2**16] * N_CONTEXTS
    bad = good.copy()
    bad[4, 0] -= 1
    with pytest.raises(CorruptFileError):
        decoding_tables(bad)


def test_context_edges_are_platform_independent():
    scaled = np.expm1(np.arange(N_CONTEXTS) / 4) * 2.0**20
    assert np.all(np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6)
    edges = np.array(_native.context_edges())
    assert np.all(np.diff(edges) > 0) and edges[0] == 0


# ------------------------------------------------------------------------------------ tile codec

def _random_tiles(rng, n_tiles: int, densities=(0.005, 0.05, 0.3, 0.6, 0.95, 1.0)):
    tiles = []
    for _ in range(n_tiles):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 50))
        k = int(rng.binomial(h * w, rng.choice(densities)))
        positions = np.sort(rng.choice(h * w, k, replace=False)).astype(np.int64)
        u = (rng.geometric(0.4, k) - 1).astype(np.int64)
        big = rng.random(k) < 0.03
        u[big] = rng.integers(0, MAX_COUNT - 1, int(big.sum()))
        tiles.append((h, w, positions, u))
    return tiles


def _encode(tiles, gene_terms, cell_terms, code_values=True):
    k = np.array([t[2].size for t in tiles], np.int64)
    n = np.array([t[0] * t[1] for t in tiles], np.int64)
    positions = np.concatenate([t[2] for t in tiles])
    u = np.concatenate([t[3] for t in tiles])
    rows = np.concatenate([t[2] // t[1] for t in tiles])
    cols = np.concatenate([t[2] % t[1] for t in tiles])
    contexts = np.clip((gene_terms[rows] + cell_terms[cols]) >> 2, 0, N_CONTEXTS - 1)
    hist = np.zeros((N_CONTEXTS, N_BINS), np.int64)
    np.add.at(hist, (contexts, [bin_of(int(v))[0] for v in u]), 1)
    cum, lut, used = decoding_tables(frequencies(hist))
    bound = symbol_bound(k, n, code_values)
    out = np.zeros(int((2 * bound + 4).sum()), np.uint8)
    lengths, _, _ = encode_tiles(k, n, positions, u, contexts, cum, code_values, int(bound.max()), out)
    return out, lengths, k, (cum, lut, used)


def _decode(out, lengths, tiles, k, models, gene_terms, cell_terms, want_row=-1, want_col=-1, mask=None, mode=0):
    n_tiles = len(tiles)
    zero = np.zeros(n_tiles, np.int64)
    h = np.array([t[0] for t in tiles], np.int64)
    w = np.array([t[1] for t in tiles], np.int64)
    cum, lut, used = models
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out_start = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
    total = int(k.sum())
    rows, cols, vals = np.zeros(total, np.int64), np.zeros(total, np.int64), np.zeros(total, np.int64)
    counts, status = np.zeros(n_tiles, np.int64), np.zeros(n_tiles, np.int64)
    decode_tiles(out, offsets, lengths, k, h, w, zero, zero, zero, w, zero, zero - 1, gene_terms, cell_terms,
                 cum[None].astype(np.int32), lut[None], used[None], np.zeros((1, 3), np.int64), np.ones((1, 2)),
                 np.zeros((1, 6), np.int64), np.zeros(1, np.int64), mode, 0, want_row, want_col,
                 np.zeros(0, bool) if mask is None else mask, out_start, rows, cols, vals, counts, status)
    return rows, cols, vals, counts, status, out_start


def test_tiles_round_trip_every_density():
    rng = np.random.default_rng(7)
    gene_terms, cell_terms = rng.integers(-40, 150, 30), rng.integers(-30, 30, 50)
    tiles = _random_tiles(rng, 400)
    out, lengths, k, models = _encode(tiles, gene_terms, cell_terms)
    rows, cols, vals, counts, status, _ = _decode(out, lengths, tiles, k, models, gene_terms, cell_terms)
    assert (status == OK).all() and np.array_equal(counts, k)
    assert np.array_equal(rows, np.concatenate([t[2] // t[1] for t in tiles]))
    assert np.array_equal(cols, np.concatenate([t[2] % t[1] for t in tiles]))
    assert np.array_equal(vals, np.concatenate([t[3] for t in tiles]) + 1)
    assert all(length == 0 for length, t in zip(lengths, tiles) if t[2].size == 0)


def test_filtered_reads_match_full_decode():
    rng = np.random.default_rng(3)
    gene_terms, cell_terms = rng.integers(-40, 150, 30), rng.integers(-30, 30, 50)
    tiles = _random_tiles(rng, 60)
    out, lengths, k, models = _encode(tiles, gene_terms, cell_terms)
    full = _decode(out, lengths, tiles, k, models, gene_terms, cell_terms)
    mask = rng.random(50) < 0.3
    for want_row, want_col, m in ((3, -1, None), (-1, 7, None), (2, 5, None), (-1, -1, mask)):
        rows, cols, vals, counts, status, start = _decode(out, lengths, tiles, k, models, gene_terms, cell_terms,
                                                          want_row, want_col, m)
        assert (status == OK).all()
        keep = np.ones(full[0].size, bool)
        if want_row >= 0:
            keep &= full[0] == want_row
        if want_col >= 0:
            keep &= full[1] == want_col
        if m is not None:
            keep &= m[full[1]]
        written = np.concatenate([np.arange(s, s + c) for s, c in zip(start, counts)]).astype(np.int64)
        assert np.array_equal(vals[written], full[2][keep]) and np.array_equal(cols[written], full[1][keep])


def test_count_rows_matches_positions():
    rng = np.random.default_rng(5)
    gene_terms, cell_terms = rng.integers(0, 90, 30), rng.integers(-5, 5, 50)
    tiles = _random_tiles(rng, 80)
    out, lengths, k, _ = _encode(tiles, gene_terms, cell_terms)
    counts = np.zeros(30, np.int64)
    status = np.zeros(len(tiles), np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    h = np.array([t[0] for t in tiles], np.int64)
    w = np.array([t[1] for t in tiles], np.int64)
    count_rows(out, offsets, lengths, k, h, w, np.zeros(len(tiles), np.int64), counts, status)
    expected = np.bincount(np.concatenate([t[2] // t[1] for t in tiles]), minlength=30)
    assert (status == OK).all() and np.array_equal(counts, expected)


def test_damaged_streams_are_detected():
    rng = np.random.default_rng(11)
    gene_terms, cell_terms = rng.integers(0, 90, 30), rng.integers(-5, 5, 50)
    tiles = [t for t in _random_tiles(rng, 200, densities=(0.05, 0.3)) if t[2].size > 20][:100]
    out, lengths, k, models = _encode(tiles, gene_terms, cell_terms)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    caught = 0
    for t in range(len(tiles)):
        for byte in (0, 4, int(lengths[t]) - 1):
            bad = out.copy()
            bad[offsets[t] + byte] ^= 0x5A
            status = _decode(bad, lengths, tiles, k, models, gene_terms, cell_terms)[4]
            caught += status[t] != OK
    assert caught >= 0.97 * 3 * len(tiles)  # the end-of-stream state check catches nearly all
    short = lengths.copy()
    short[0] -= 1
    status = _decode(out, short, tiles, k, models, gene_terms, cell_terms)[4]
    assert status[0] in (TRUNCATED, BAD_ENDING, BEYOND_TILE, UNUSED_CONTEXT)
    assert {TRUNCATED, BAD_ENDING, BEYOND_TILE, UNUSED_CONTEXT, UNEXPECTED_BYTES} - {OK} == \
        {TRUNCATED, BAD_ENDING, BEYOND_TILE, UNUSED_CONTEXT, UNEXPECTED_BYTES}


# --------------------------------------------------------------------------------------- geometry

def test_geometry_plans_and_checks():
    row_nnz = np.array([900, 500, 300, 200, 50, 40, 10, 1, 1, 0])
    band_rows = plan_band_rows(row_nnz, 800)
    assert band_rows[0] == 0 and np.all(np.diff(band_rows) > 0)
    g = ChunkGeometry.plan(band_rows, row_nnz[:9], 100, 64)
    assert g.n_rows == 9 and g.tile_starts[-1] == g.n_tiles
    band, row, height, first, width = g.tiles()
    assert np.all(height * width <= MAX_TILE_ENTRIES) and np.all(first + width <= 100)
    ChunkGeometry.checked(g.row_starts, g.widths, 9, 100, what="t")
    with pytest.raises(CorruptFileError):
        ChunkGeometry.checked(g.row_starts, g.widths, 10, 100, what="t")
    with pytest.raises(CorruptFileError):
        ChunkGeometry.checked(g.row_starts, g.widths * 0, 9, 100, what="t")
    assert balanced_patch_nnz(10**9, 256) > balanced_patch_nnz(10**6, 256)


def test_default_bands_balance_gene_and_cell_reads_then_stop_at_the_cap():
    """Up to about 9e7 nonzeros a band holds 1.15 sqrt(nnz x tile_nnz) nonzeros; beyond, the
    bands (one tile each per cell read) stop at DEFAULT_MAX_BANDS so a cell read stops growing."""
    for nnz in (6 * 10**6, 6 * 10**7):
        assert balanced_patch_nnz(nnz, 256) == int(1.15 * np.sqrt(nnz * 256))
    for nnz in (10**8, 10**9, 4 * 10**9):
        patch = balanced_patch_nnz(nnz, 256)
        assert patch > 1.15 * np.sqrt(nnz * 256)
        assert abs(plan_band_rows(np.full(nnz // 1000, 1000), patch).size - DEFAULT_MAX_BANDS) <= 1


# ------------------------------------------------------------------------------- checksum, SIREN

def test_content_checksum_is_order_independent_and_sensitive():
    rng = np.random.default_rng(2)
    g, c, v = rng.integers(0, 2**31 - 1, 1000), rng.integers(0, 2**31 - 1, 1000), rng.integers(1, 2**31 - 1, 1000)
    total = content_checksum(g, c, v)
    order = rng.permutation(1000)
    assert content_checksum(g[order], c[order], v[order]) == total
    v2 = v.copy()
    v2[5] += 1
    assert content_checksum(g, c, v2) != total
    assert content_checksum(c, g, v) != total
    assert int(mix(np.uint64(0))) == 0xE220A8397B1DCDAF  # splitmix64's first output for seed 0


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_mapped_checksum_is_the_checksum_of_the_mapped_indices(index):
    """What concat computes for a copied chunk: rows and columns through tables, in one pass."""
    rng = np.random.default_rng(3)
    gene_of_row, cell_of_col = rng.integers(0, 2**31 - 1, 50), rng.integers(0, 2**31 - 1, 80)
    rows, cols = rng.integers(0, 50, 1000).astype(index), rng.integers(0, 80, 1000).astype(index)
    values = rng.integers(1, 2**31 - 1, 1000).astype(index)
    assert mapped_checksum(rows, cols, values, gene_of_row, cell_of_col) == \
        content_checksum(gene_of_row[rows], cell_of_col[cols], values)
    rows[7] = 50
    with pytest.raises(ValueError, match="outside its table"):
        mapped_checksum(rows, cols, values, gene_of_row, cell_of_col)


def test_siren_tables_are_exact():
    scaled = np.sin(2 * np.pi * np.arange(4096) / 4096) * 4096
    assert np.array_equal(SINE_TABLE, np.round(scaled))
    assert EXPM1_TABLE[0] == 0 and EXPM1_TABLE[-1] == MAX_COUNT and np.all(np.diff(EXPM1_TABLE) >= 0)
    assert prediction_of_output(2, 0.0, 1.0, -5000) == 1
    assert prediction_of_output(0, 0.0, 1.0, 4096 * 7) == 7
    assert prediction_of_output(0, 0.0, 1.0, 4096 * 7 + 2048) == 8  # ties round to even
    assert prediction_of_output(0, 0.0, 1.0, 4096 * 6 + 2048) == 6


# ------------------------------------------------------------------------ native core: tables, hostile input

# spec Appendix A.1: E_k = roundeven(expm1(k / 4) * 2**20)
SPEC_EDGES = [0, 297822, 680234, 1171259, 1801749, 2611314, 3650816, 4985562, 6699411, 8900036, 11725695, 15353912,
              20012636, 25994555, 33675492, 43538010, 56201734, 72462277, 93341227, 120150331, 154573901, 198774640,
              255529512, 328404210, 421977175, 542127240, 696402977, 894496945, 1148854635, 1475456373, 1894821307,
              2433296540, 3124712426, 4012507997, 5152460075, 6616187518, 8495650756, 10908929325, 14007640344,
              17986464052, 23095374821, 29655346101, 38078515956, 48894080140, 62781539447, 80613390171,
              103509939727, 132909691312]


def test_native_tables_equal_spec_appendix_a():
    """The core computes SINE, EDGE and EXPM1 itself: they must be the spec's, value for value."""
    from scinrcodec import _native
    assert _native.tables_match_spec()
    edges = np.array(_native.context_edges())
    assert (edges * 2.0**20).astype(np.int64).tolist() == SPEC_EDGES
    sine = np.array(_native.sine_table(), dtype=np.int64)
    assert np.array_equal(sine, SINE_TABLE) and sine.size == 4096
    assert sine[:4].tolist() == [0, 6, 13, 19] and sine[256] == 1567 and sine[512] == 2896
    assert sine[1024] == 4096 and sine[2048] == 0 and sine[3072] == -4096 and sine[4095] == -6
    assert int(np.abs(sine).sum()) == 10_680_676
    assert zlib.crc32(sine.astype("<i2").tobytes()) == 0x1AC8F72D
    expm1 = np.array(_native.expm1_table(), dtype=np.int64)
    assert np.array_equal(expm1, EXPM1_TABLE) and expm1.size == 22005
    assert not expm1[:415].any() and expm1[415] == 1 and expm1[1024] == 2 and expm1[2048] == 6
    assert expm1[4096] == 54 and expm1[10240] == 22_036 and expm1[20000] == 303_756_903
    assert expm1[22002] == 2_145_881_812 and np.all(expm1[22003:] == MAX_COUNT)
    assert zlib.crc32(expm1.astype("<u4").tobytes()) == 0x514976D3


def _hostile_batch(rng, n_tiles: int, buf_size: int, n_models: int, n_sirens: int, wild: bool):
    """Tile directories over a buffer of random bytes: plausible ones, or with `wild` any numbers."""
    def pick(low, high, size=n_tiles):
        return rng.integers(low, high, size).astype(np.int64)
    h, w = pick(0, 40), pick(0, 60)
    k = (rng.random(n_tiles) ** 2 * (h * w + 1)).astype(np.int64)  # mostly sparse tiles, some dense or full
    offset = pick(0, buf_size)
    length = np.minimum(pick(0, 3000), buf_size - offset)
    row, first = pick(0, 10), pick(0, 20)
    model, siren = pick(0, n_models), pick(-1, n_sirens)
    if wild:
        for a in (h, w, k, offset, length, row, first, model, siren):
            hit = rng.random(n_tiles) < 0.15
            a[hit] = rng.choice([-(2**62), -(2**31), -5, -1, 0, 2**24, 2**31 - 1, 2**40, 2**62], int(hit.sum()))
    return offset, length, k, h, w, row, first, model, siren


def _hostile_models(rng, n_models: int):
    counts = rng.geometric(0.3, (n_models * N_CONTEXTS, N_BINS)) * (rng.random((n_models * N_CONTEXTS, N_BINS)) < 0.1)
    counts[rng.random(n_models * N_CONTEXTS) < 0.3] = 0  # unused contexts
    cum, lut, used = decoding_tables(frequencies(counts))
    return (cum.astype(np.int32).reshape(n_models, N_CONTEXTS, N_BINS + 1), lut.reshape(n_models, N_CONTEXTS, -1),
            used.reshape(n_models, N_CONTEXTS))


def _hostile_sirens(rng, n_sirens: int):
    """SIREN tables: valid networks, and spec rows naming layers that are missing or do not chain."""
    layers, params, spec = [], [], []
    for s in range(n_sirens):
        widths = [2, *rng.integers(1, 9, rng.integers(0, 3)).tolist(), 1]
        spec.append([len(layers), len(widths) - 1, s % 3])
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers.append([n_out, n_in, int(rng.integers(-2**39, 2**39)), int(rng.integers(-2**39, 2**39)),
                           int(rng.integers(0, 63)), len(params)])
            params.extend(rng.integers(-2**15, 2**15, n_out * n_in + n_out).tolist())
    spec = np.array(spec, np.int64)
    bad = rng.random(n_sirens) < 0.3
    spec[bad, 0] += rng.integers(-3, 4, int(bad.sum()))  # layers that do not chain, or lie outside the table
    spec[rng.random(n_sirens) < 0.1, 1] = 10**6
    norm = np.column_stack([rng.normal(0, 5, n_sirens), np.abs(rng.normal(1, 5, n_sirens)) + 1e-300])
    norm[rng.random(n_sirens) < 0.1, 1] = np.nan
    return spec, norm, np.array(layers, np.int64), np.array(params, np.int64)


@pytest.mark.parametrize("wild", [False, True])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_hostile_streams_get_a_status(mode, wild):
    """Random bytes as tile streams, under plausible or arbitrary tile directories, models and SIRENs:
    every tile ends with one of the status codes and nothing is read or written out of bounds
    (the sanitizer build checks the latter; here, that nothing crashes and the output is untouched
    beyond each tile's room)."""
    rng = np.random.default_rng(100 + 10 * mode + wild)
    n_models, n_sirens = 3, 6
    cum, lut, used = _hostile_models(rng, n_models)
    spec, norm, layers, params = _hostile_sirens(rng, n_sirens)
    buf = rng.integers(0, 256, 20_000).astype(np.uint8)
    buf[rng.random(buf.size) < 0.3] = 0xFF  # long runs of escapes and large quotients
    gene_terms, cell_terms = rng.integers(-50, 200, 60), rng.integers(-40, 40, 90).astype(np.int32)
    codes = {OK, TRUNCATED, BEYOND_TILE, BAD_ENDING, UNUSED_CONTEXT, UNEXPECTED_BYTES}
    for round_ in range(12):
        offset, length, k, h, w, row, first, model, siren = _hostile_batch(rng, 200, buf.size, n_models, n_sirens,
                                                                           wild)
        col = first + rng.integers(0, 10)
        cells = np.maximum(first + w, 1) + rng.integers(0, 5, k.size)
        room = np.clip(k, 0, 500)
        out_start = np.concatenate([[0], np.cumsum(room)[:-1]]).astype(np.int64)
        size = int(room.sum())
        rows, cols, vals = (np.full(size + 16, -7, np.int64) for _ in range(3))
        counts, status = np.zeros(k.size, np.int64), np.zeros(k.size, np.int64)
        want_row, want_col = [(-1, -1), (3, -1), (-1, 12), (5, 7)][round_ % 4]
        mask = np.zeros(0, bool) if round_ % 3 else rng.random(120) < 0.5
        decode_tiles(buf, offset, length, k, h, w, row, col, first, cells, model, siren, gene_terms, cell_terms,
                     cum, lut, used, spec, norm, layers, params, mode, 3, want_row, want_col, mask, out_start,
                     rows[:size], cols[:size], vals[:size], counts, status)
        assert set(status.tolist()) <= codes and np.all(counts >= 0)
        assert np.all(rows[size:] == -7) and np.all(vals[size:] == -7)
        fine = status == OK
        if mode != MODE_INR_ONLY:  # the values a baseline tile returned are counts
            kept = np.concatenate([np.arange(s, s + c) for s, c in zip(out_start[fine], counts[fine])] + [[]])
            assert np.all(vals[kept.astype(np.int64)] >= 1)
        row_counts, row_status = np.zeros(80, np.int64), np.zeros(k.size, np.int64)
        count_rows(buf, offset, length, k, h, w, row, row_counts, row_status)
        assert set(row_status.tolist()) <= codes
        for t in range(0, k.size, 7):
            value, st = decode_entry(buf, int(offset[t]), int(length[t]), int(k[t]), int(h[t]), int(w[t]), int(row[t]),
                                     int(col[t]), int(first[t]), int(cells[t]), cum[model[t] % n_models],
                                     lut[model[t] % n_models], used[model[t] % n_models], int(siren[t]),
                                     (spec, norm, layers, params), gene_terms, cell_terms, mode, 3,
                                     int(row[t]) + 1, int(col[t]) + 1)
            assert st in codes and (st != OK or value >= 0)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_hostile_values_and_sirens_get_a_status(mode):
    """Valid position streams followed by random bytes as values, through malformed SIREN tables
    and unused contexts: the value and SIREN paths end with a status code too."""
    rng = np.random.default_rng(7 + mode)
    tiles = _random_tiles(rng, 150, densities=(0.01, 0.1, 0.4, 0.7))
    k = np.array([t[2].size for t in tiles], np.int64)
    n = np.array([t[0] * t[1] for t in tiles], np.int64)
    bound = symbol_bound(k, n, False)
    out = np.zeros(int((2 * bound + 4).sum()), np.uint8)
    lengths, _, _ = encode_tiles(k, n, np.concatenate([t[2] for t in tiles]), np.zeros(int(k.sum()), np.int64),
                                 np.zeros(int(k.sum()), np.int64), np.zeros((N_CONTEXTS, N_BINS + 1), np.int64), False,
                                 int(bound.max()), out)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    extra = rng.integers(0, 64, len(tiles)) if mode != MODE_INR_ONLY else np.zeros(len(tiles), np.int64)
    parts = [np.concatenate([out[a:b], rng.integers(0, 256, e).astype(np.uint8)])
             for a, b, e in zip(starts[:-1], starts[1:], extra)]
    length = np.array([p.size for p in parts], np.int64)
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    buf = np.concatenate(parts)
    cum, lut, used = _hostile_models(rng, 2)
    spec, norm, layers, params = _hostile_sirens(rng, 8)
    h = np.array([t[0] for t in tiles], np.int64)
    w = np.array([t[1] for t in tiles], np.int64)
    zero = np.zeros(len(tiles), np.int64)
    siren = rng.integers(-1, 9, len(tiles))
    gene_terms, cell_terms = rng.integers(-50, 200, 30), rng.integers(-40, 40, 50).astype(np.int32)
    codes = {OK, TRUNCATED, BEYOND_TILE, BAD_ENDING, UNUSED_CONTEXT, UNEXPECTED_BYTES}
    seen = set()
    for want_row, want_col in ((-1, -1), (2, -1), (-1, 3)):
        out_start = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
        rows, cols, vals = (np.zeros(int(k.sum()), np.int64) for _ in range(3))
        counts, status = np.zeros(len(tiles), np.int64), np.zeros(len(tiles), np.int64)
        decode_tiles(buf, offset, length, k, h, w, zero, zero, zero, w, rng.integers(0, 2, len(tiles)), siren,
                     gene_terms, cell_terms, cum, lut, used, spec, norm, layers, params, mode, 2, want_row, want_col,
                     np.zeros(0, bool), out_start, rows, cols, vals, counts, status)
        assert set(status.tolist()) <= codes
        seen |= set(status.tolist())
        fine = np.flatnonzero(status == OK)
        kept = np.concatenate([np.arange(out_start[t], out_start[t] + counts[t]) for t in fine] + [[]]).astype(np.int64)
        assert np.all(vals[kept] >= 1) and np.all(vals[kept] <= MAX_COUNT)
    assert OK in seen and UNUSED_CONTEXT in seen


def test_kernels_check_their_arguments():
    """What a caller gets wrong whatever the file is an exception, never a wild read or write."""
    from scinrcodec import _native
    rng = np.random.default_rng(4)
    gene_terms, cell_terms = rng.integers(-40, 150, 30), rng.integers(-30, 30, 50)
    tiles = _random_tiles(rng, 20)
    out, lengths, k, models = _encode(tiles, gene_terms, cell_terms)
    with pytest.raises(TypeError):  # an output of another dtype would be converted, and its writes lost
        count_rows(out, np.zeros(len(tiles), np.int64), lengths, k, k, k, k, np.zeros(30, np.int32),
                   np.zeros(len(tiles), np.int64))
    zero = np.zeros(len(tiles), np.int64)
    with pytest.raises(TypeError):  # rows and columns of two dtypes
        decode_tiles(out, zero, lengths, k, k, k, zero, zero, zero, k, zero, zero - 1, gene_terms, cell_terms,
                     models[0][None], models[1][None], models[2][None], np.zeros((1, 3), np.int64), np.ones((1, 2)),
                     np.zeros((1, 6), np.int64), np.zeros(1, np.int64), 0, 0, -1, -1, np.zeros(0, bool), zero,
                     np.zeros(int(k.sum()), np.int32), np.zeros(int(k.sum()), np.int64),
                     np.zeros(int(k.sum()), np.int64), zero.copy(), zero.copy())
    with pytest.raises(ValueError):
        count_rows(out, np.zeros(len(tiles) - 1, np.int64), lengths, k, k, k, k, np.zeros(30, np.int64),
                   np.zeros(len(tiles), np.int64))
    n = np.array([t[0] * t[1] for t in tiles], np.int64)
    positions = np.concatenate([t[2] for t in tiles])
    u = np.concatenate([t[3] for t in tiles])
    contexts = np.zeros(u.size, np.int64)
    cum = models[0]
    bound = symbol_bound(k, n, True)
    room = np.zeros(int((2 * bound + 4).sum()), np.uint8)
    for bad in ("order", "beyond", "value", "context", "symbols", "room"):
        p, uu, c, most, o = positions.copy(), u.copy(), contexts.copy(), int(bound.max()), room
        if bad == "order":
            p[int(np.argmax(k))] = p[int(np.argmax(k)) + 1]
        elif bad == "beyond":
            p[int(k[0])] = 10**6
        elif bad == "value":
            uu[0] = MAX_COUNT
        elif bad == "context":
            c[0] = N_CONTEXTS
        elif bad == "symbols":
            most = 1
        else:
            o = room[:10]
        with pytest.raises(ValueError):
            encode_tiles(k, n, p, uu, c, cum, True, most, o)
    with pytest.raises(ValueError):
        _native.siren_output(np.array([[1, 3, 1, 1, 0, 0]]), np.zeros(10, np.int64), 0, 1, 0, 0, 1, 1)  # n_in != 2
    with pytest.raises(ValueError):
        _native.siren_output(np.array([[1, 2, 1, 1, 0, 0]]), np.zeros(2, np.int64), 0, 1, 0, 0, 1, 1)  # 3 params
