"""Format 3.0's native tile codec (native/core/include/sinr/tile3.hpp) against the spec's independent
implementation (spec/tiles3.py): the same tables and the same stream
bytes on every tile of real fixtures and on random tiles, exact decoding, the spec's worked example
(§13.10), and hostile streams failing with the status that tile3.hpp gives the spec's rule."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from format3_tiles import (SPEC, HOSTILE_EXAMPLE_STREAMS, damaged, encode_real_files, example, example_decode,
                           real_chunks, t3)
from scinrcodec import _native
from scinrcodec.codec.tile import (BAD_ENDING, BEYOND_TILE, OK, TRUNCATED, UNEXPECTED_BYTES,
                                   UNUSED_CONTEXT)

# tile3.hpp: the status of each tile rule of spec §9.4
STATUS_OF_RULE = {"T1": UNEXPECTED_BYTES, "T2": TRUNCATED, "T3": TRUNCATED, "T4": TRUNCATED,
                  "T5": BEYOND_TILE, "T6": UNUSED_CONTEXT, "T7": BAD_ENDING, "T8": BAD_ENDING,
                  "T9": BAD_ENDING}
SLOTS = 1 << t3.PROB_BITS


def native_tables(counts: np.ndarray):
    rows = counts.shape[0]
    freq, start = np.zeros((rows, t3.N_BINS), np.int64), np.zeros((rows, t3.N_BINS), np.int64)
    packed, used = np.zeros((rows, SLOTS), np.uint32), np.zeros(rows, bool)
    _native.tile3_tables(np.ascontiguousarray(counts, np.uint64), freq, start, packed, used)
    return freq, start, packed, used


def encode_native(tiles, gaps: np.ndarray, values: np.ndarray | None) -> list[bytes]:
    """Streams of consecutive tiles (t3.TileInput) of one chunk, by one tile3_encode_tiles call."""
    k = np.array([len(t.positions) for t in tiles], np.int64)
    n = np.array([t.n_t for t in tiles], np.int64)
    flat = [np.array([v for t in tiles for v in getattr(t, name)], np.int32)  # as the encoder holds them
            for name in ("positions", "u", "contexts")]
    if values is None:
        flat[1:] = [np.zeros(0, np.int32)] * 2
    symbols = [min(kk, nn - kk) + (kk if values is not None else 0) for kk, nn in zip(k, n)]
    out = np.zeros(sum(_native.tile3_stream_bound(s) for s in symbols), np.uint8)
    lengths = np.zeros(len(tiles), np.int64)
    total = _native.tile3_encode_tiles(n, k, *flat, gaps, values, out, lengths)
    assert total == lengths.sum()
    ends = np.cumsum(lengths)
    return [out[e - ln:e].tobytes() for e, ln in zip(ends, lengths)]


def decode_native(streams, shapes, G, C, gaps, values):
    """Decode tiles (shapes: (h, w, k, first row, first column)) by one tile3_decode_tiles call:
    per tile its status, positions and u (None when values are not coded)."""
    buf = np.frombuffer(b"".join(streams), np.uint8) if any(streams) else np.zeros(0, np.uint8)
    length = np.array([len(s) for s in streams], np.int64)
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    h, w, k, row, col = (np.array(v, np.int64) for v in zip(*shapes))
    out_start = np.concatenate([[0], np.cumsum(k)[:-1]]).astype(np.int64)
    positions, u = np.full(k.sum(), -1, np.int64), np.full(k.sum(), -1, np.int64)
    status = np.full(len(streams), -1, np.int64)
    _native.tile3_decode_tiles(buf, offset, length, h, w, k, row, col, out_start,
                               np.asarray(G, np.int64), np.asarray(C, np.int32), gaps, values,
                               positions, u, status)
    return [(int(status[t]), positions[s:s + n].tolist(), None if values is None else u[s:s + n].tolist())
            for t, (s, n) in enumerate(zip(out_start, k))]


def assert_tables_match(counts: np.ndarray):
    """Native tables equal the spec's (§6.4), and every slot's packed entry is its bin's."""
    freq, start, packed, used = native_tables(counts)
    for row, table in enumerate(t3.tables_from_counts(counts, counts.shape[0])):
        assert used[row] == (table is not None)
        if table is None:
            assert not freq[row].any() and not start[row].any() and not packed[row].any()
            continue
        assert freq[row].tolist() == table.freqs and start[row].tolist() == table.starts
        bins = [table.bin_of_slot(s) for s in range(SLOTS)]
        expected = [b | (table.freqs[b] - 1) << 8 | table.starts[b] << 20 for b in bins]
        assert packed[row].tolist() == expected


# ------------------------------------------------------------------------------- real tiles

@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    return encode_real_files(tmp_path_factory.mktemp("f3n"))


@pytest.mark.parametrize("inr_only", [False, True])
def test_every_real_tile_matches_the_spec(real_files, inr_only):
    n_tiles = 0
    for path in real_files:
        for chunk in real_chunks(path):
            tiles = [t.tile for t in chunk.tiles]
            gaps, values = t3.chunk_counts(tiles, inr_only)
            assert_tables_match(gaps)
            if not inr_only:
                assert_tables_match(values)
            gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
            value_tables = None if inr_only else t3.tables_from_counts(values, t3.N_CONTEXTS)
            streams = encode_native(tiles, gaps, values)
            for tile, stream in zip(tiles, streams):
                assert stream == t3.encode_tile(tile.n_t, tile.positions, tile.u, tile.contexts,
                                                gap_tables, value_tables).stream
            shapes = [(t.h, t.w, len(t.tile.positions), t.row0, t.col0) for t in chunk.tiles]
            decoded = decode_native(streams, shapes, chunk.gene_terms, chunk.cell_terms, gaps, values)
            for tile, (status, positions, u) in zip(tiles, decoded):
                assert status == OK and positions == tile.positions
                assert u == (None if inr_only else tile.u)
            n_tiles += len(tiles)
    assert n_tiles > 100


# -------------------------------------------------------------------------------- the spec's text

def test_worked_example_bytes_come_out_of_the_native_encoder():
    blocks = re.findall(r"```hex\n(.*?)\n```", SPEC.read_text(encoding="utf-8"), flags=re.S)
    tile, gaps, values, _ = example.encode_example()
    assert encode_native([tile], gaps, values) == [bytes.fromhex(blocks[0])]


def test_normalisation_examples_and_density_classes():
    counts = np.zeros((3, t3.N_BINS), np.uint64)
    counts[0, [0, 1, 2, 15]] = [2, 1, 1, 1]
    counts[1, :3] = [3, 3, 1]
    freq, start, _, used = native_tables(counts)
    assert freq[0, [0, 1, 2, 15]].tolist() == [1639, 819, 819, 819] and freq[0].sum() == 4096
    assert start[0, [0, 1, 2, 15]].tolist() == [0, 1639, 2458, 3277]
    assert freq[1, :3].tolist() == [1756, 1755, 585] and start[1, :3].tolist() == [0, 1756, 3511]
    assert used.tolist() == [True, True, False]
    for n_t, m in [(1, 1), (24, 5), (2, 1), (3, 1), (256, 1), (2**24 - 1, 1), (2**24 - 1, 2**23),
                   (46341, 1), (46340, 1)] + [(r + 1, 1) for r in range(300)]:
        assert _native.tile3_density_class(n_t, m) == t3.density_class(n_t, m)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, t3.N_BINS - 1), st.integers(1, 2**40 - 1)), max_size=40),
       st.integers(0, 2**40 - 1))
def test_random_tables_match_the_spec(entries, ones):
    counts = np.zeros((2, t3.N_BINS), np.uint64)
    for b, c in entries:
        counts[0, b] = c
    counts[1, :] = [ones if (ones >> b) & 1 else 0 for b in range(t3.N_BINS)]
    assert_tables_match(counts)


def test_tables_where_the_quotient_is_whole_or_nearly_match_the_spec():
    """Rows whose c (4096 - K) / T is a whole number, or just above or below one: where a
    normalisation that does not divide exactly (the native one multiplies by a reciprocal and puts
    its floor right) would be off by one."""
    rows = []
    for k in (1, 2, 3, 4, 7, 8, 16, 64, 128, 231):
        for c in (1, 2, 3, 4095, 2**20 + 1, 2**39 + 1, 2**40 - 1):
            row = np.zeros(t3.N_BINS, np.uint64)
            row[:k] = c
            rows.append(row.copy())
            row[k - 1] = c - 1 if c > 1 else c + 1  # one bin off: quotients just beside whole ones
            rows.append(row.copy())
            row[0] = c + 1 if c < 2**40 - 1 else c - 2
            rows.append(row)
    for found in ([335, 110], [621, 180], [792, 810], [485, 917, 675, 713], [1000, 166, 4, 822],
                  [162, 391, 329, 682], [950, 403, 228, 319]):  # a double floor is one low on these
        row = np.zeros(t3.N_BINS, np.uint64)
        row[:len(found)] = found
        rows.append(row)
    assert_tables_match(np.array(rows))


def test_caller_errors_are_value_errors():
    tile, gaps, values, _ = example.encode_example()
    big = gaps.copy()
    big[0, 0] = 2**40
    with pytest.raises(ValueError, match="2\\*\\*40"):
        native_tables(big)
    with pytest.raises(ValueError, match="32 x 231"):
        encode_native([tile], gaps[:31], values)
    with pytest.raises(ValueError, match="not ascending"):
        encode_native([t3.TileInput(24, [3, 2], [0, 0], [5, 5])], gaps, values)
    with pytest.raises(ValueError, match="no frequency"):
        encode_native([t3.TileInput(24, [3], [1000], [5])], gaps, values)
    n, k = np.array([tile.n_t], np.int64), np.array([len(tile.positions)], np.int64)
    flat = [np.asarray(a, np.int32) for a in (tile.positions, tile.u, tile.contexts)]
    assert _native.tile3_encode_chunk(n, k, *flat, gaps, values)[0] == encode_native([tile], gaps, values)[0]
    with pytest.raises(ValueError, match="more nonzeros than given"):  # refused before any room is taken
        _native.tile3_encode_chunk(n + 10**6, k + 10**6, *flat, gaps, values)
    with pytest.raises(ValueError, match="fewer nonzeros than given"):  # every position belongs to a tile
        _native.tile3_encode_tiles(n, k, *(np.append(a, a[-1:]) for a in flat), gaps, values,
                                   np.zeros(4096, np.uint8), np.zeros(1, np.int64))


# ------------------------------------------------------------------------------- hostile streams

def example_status(stream: bytes, G=example.G, C=example.C) -> int:
    """The native status of a stream of the worked example's tile (12 x 2 entries, terms G and C)."""
    tile, gaps, values, _ = example.encode_example()
    shape = (len(example.G), len(example.C), len(tile.positions), 0, 0)
    return decode_native([stream], [shape], G, C, gaps, values)[0][0]


def spec_rule(decode) -> str:
    try:
        decode()
    except t3.RuleViolation as err:
        return err.rule
    return "ok"


@pytest.mark.parametrize("rule, make", HOSTILE_EXAMPLE_STREAMS)
def test_hostile_example_streams(rule, make):
    stream = make(example.encode_example()[3].stream)
    assert spec_rule(lambda: example_decode(stream)) == rule
    assert example_status(stream) == STATUS_OF_RULE[rule]


def test_every_damaged_example_stream_gets_the_specs_rule():
    """Every prefix, every flipped bit and every extra byte of the worked example's stream: the
    native status is the one of the rule spec/tiles3.py's decoder names (or OK where it accepts)."""
    seen = set()
    for stream in damaged(example.encode_example()[3].stream):
        rule = spec_rule(lambda: example_decode(stream))
        seen.add(rule)
        assert example_status(stream) == (OK if rule == "ok" else STATUS_OF_RULE[rule]), (stream.hex(), rule)
    assert {"T2", "T3", "T4", "T7", "T8", "T9"} <= seen


def test_damaged_real_streams_get_the_specs_rule(real_files):
    """Damaged streams of every real tile (a sample of each): native status = the spec's rule."""
    rng = np.random.default_rng(5)
    seen = set()
    for path in real_files:
        for chunk in real_chunks(path):
            tiles = [t.tile for t in chunk.tiles]
            gaps, values = t3.chunk_counts(tiles)
            tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES), t3.tables_from_counts(values, t3.N_CONTEXTS)
            for real, stream in zip(chunk.tiles, encode_native(tiles, gaps, values)):
                variants = damaged(stream, rng, 12)
                shape = (real.h, real.w, len(real.tile.positions), real.row0, real.col0)
                statuses = decode_native(variants, [shape] * len(variants), chunk.gene_terms, chunk.cell_terms,
                                         gaps, values)
                for variant, (status, _, _) in zip(variants, statuses):
                    rule = spec_rule(lambda: t3.decode_tile(variant, real.tile.n_t, len(real.tile.positions),
                                                             real.context_of, *tables))
                    seen.add(rule)
                    assert status == (OK if rule == "ok" else STATUS_OF_RULE[rule]), (variant.hex(), rule)
    assert {"T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9"} <= seen, seen


def one_value_tile(u: int):
    """A 1-entry tile holding one nonzero of context 0 (no gap symbol), its counts and stream."""
    values = np.zeros((t3.N_CONTEXTS, t3.N_BINS), np.uint64)
    values[0, t3.bin_of(u)[0]] = 1
    gaps = np.zeros((t3.N_GAP_CLASSES, t3.N_BINS), np.uint64)
    return encode_native([t3.TileInput(1, [0], [u], [0])], gaps, values)[0], gaps, values


def test_hostile_tiles():
    stream, gaps, values = one_value_tile(20)  # bin 17: one raw bit
    shape = [(1, 1, 1, 0, 0)]
    assert len(stream) == 5 and decode_native([stream], shape, [0], [0], gaps, values)[0] == (OK, [0], [20])
    assert decode_native([stream[:4]], shape, [0], [0], gaps, values)[0][0] == STATUS_OF_RULE["T4"]
    stream, gaps, values = one_value_tile(0)  # one symbol of probability 1: the state never moves
    assert stream == bytes([0, 0, 1, 0])
    assert decode_native([bytes([1, 0, 1, 0])], shape, [0], [0], gaps, values)[0][0] == STATUS_OF_RULE["T7"]
    # a tile without symbols that has a byte
    assert decode_native([b"\x00"], [(5, 1, 0, 0, 0)], [0] * 5, [0], gaps, values)[0][0] == STATUS_OF_RULE["T1"]
    # every context 0, which values.counts does not use
    assert example_status(example.encode_example()[3].stream, G=[0] * 12, C=[0, 0]) == STATUS_OF_RULE["T6"]
    # a gap past the tile: positions coded for 100 entries, decoded as a tile of 90
    gaps = np.zeros((t3.N_GAP_CLASSES, t3.N_BINS), np.uint64)
    gaps[:, t3.bin_of(90)[0]] = 1
    stream = encode_native([t3.TileInput(100, [90], [], [])], gaps, None)[0]
    assert decode_native([stream], [(100, 1, 1, 0, 0)], [], [], gaps, None)[0] == (OK, [90], None)
    assert decode_native([stream], [(90, 1, 1, 0, 0)], [], [], gaps, None)[0][0] == STATUS_OF_RULE["T5"]


def one(v: int) -> np.ndarray:
    return np.array([v], np.int64)


def test_hostile_directories():
    """Shapes and places that contradict the arrays: a status, never a read outside them."""
    tile, gaps, values, enc = example.encode_example()
    s, k = enc.stream, len(tile.positions)
    G, C = example.G, example.C
    assert decode_native([s], [(12, 2, k, 0, 0)], G, C, gaps, values)[0][0] == OK
    for shape, G_, C_ in [((12, 2, 25, 0, 0), G, C),              # more nonzeros than entries
                          ((12, 2, k, 1, 0), G, C),               # rows past the gene terms
                          ((12, 2, k, 0, 1), G, C),               # columns past the cell terms
                          ((12, 2, k, 13, 0), G, C),              # a first row past them
                          ((2**12, 2**12, k, 0, 0), G, C),        # more entries than a tile has
                          ((-1, 2, k, 0, 0), G, C)]:
        assert decode_native([s], [shape], G_, C_, gaps, values)[0][0] == BEYOND_TILE
    status = np.zeros(1, np.int64)
    out = np.zeros(k, np.int64)
    for offset, length in [(0, len(s) + 1), (-1, 2), (len(s), 1)]:
        _native.tile3_decode_tiles(np.frombuffer(s, np.uint8), one(offset), one(length), one(12), one(2),
                                   one(k), one(0), one(0), one(0), np.array(G, np.int64),
                                   np.array(C, np.int32), gaps, values, out, out.copy(), status)
        assert status[0] == TRUNCATED


# ------------------------------------------------------------------------------- random tiles

@st.composite
def random_chunks(draw):
    """1-4 tiles of one band (shared gene terms): shapes, densities, values small and large."""
    h = draw(st.integers(1, 16))
    G = draw(st.lists(st.integers(-60, 260), min_size=h, max_size=h))
    widths = draw(st.lists(st.integers(1, 16), min_size=1, max_size=4))
    C = draw(st.lists(st.integers(-60, 260), min_size=sum(widths), max_size=sum(widths)))
    tiles, shapes, col = [], [], 0
    for w in widths:
        n_t = h * w
        density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.7, 1.0]))
        mask = draw(st.lists(st.floats(0, 1), min_size=n_t, max_size=n_t))
        positions = [p for p in range(n_t) if mask[p] < density]
        u = [draw(st.one_of(st.integers(0, 9), st.integers(0, 2**31 - 2))) for _ in positions]
        contexts = [t3.baseline_context(G[p // w], C[col + p % w]) for p in positions]
        tiles.append(t3.TileInput(n_t, positions, u, contexts))
        shapes.append((h, w, len(positions), 0, col))
        col += w
    return tiles, shapes, G, C


@settings(max_examples=300, deadline=None)
@given(random_chunks(), st.booleans())
def test_random_tiles_round_trip_and_match_the_spec(chunk, inr_only):
    tiles, shapes, G, C = chunk
    gaps, values = t3.chunk_counts(tiles, inr_only)
    gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
    value_tables = None if inr_only else t3.tables_from_counts(values, t3.N_CONTEXTS)
    streams = encode_native(tiles, gaps, values)
    for tile, stream in zip(tiles, streams):
        assert stream == t3.encode_tile(tile.n_t, tile.positions, tile.u, tile.contexts, gap_tables,
                                        value_tables).stream
    for tile, (status, positions, u) in zip(tiles, decode_native(streams, shapes, G, C, gaps, values)):
        assert (status, positions, u) == (OK, tile.positions, None if inr_only else tile.u)
