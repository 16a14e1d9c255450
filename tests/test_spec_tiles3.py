"""Version 3's tile coding (spec/sinr-format.md §6, §7.2) against its independent implementation,
spec/tiles3.py (the reference decoder's): real tiles round-trip, hostile streams fail with their
rule ids of spec §9.4, and the spec's worked example (§13.10) and tables are the implementation's.

Real tiles come from tests/format3_tiles.py: files the package writes, read back by
spec/reference_decoder.py."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from conftest import reference_decoder
from format3_tiles import (SPEC, HOSTILE_EXAMPLE_STREAMS, encode_real_files, example, example_decode,
                           real_chunks, t3)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    return encode_real_files(tmp_path_factory.mktemp("f3"))


@pytest.mark.parametrize("inr_only", [False, True])
def test_every_real_tile_round_trips(real_files, inr_only):
    seen_classes, complements, full, raw_tiles = set(), 0, 0, 0
    for path in real_files:
        for chunk in real_chunks(path):
            tiles, nnz = [(t.tile, t.context_of) for t in chunk.tiles], chunk.nnz
            gaps, values = t3.chunk_counts([t for t, _ in tiles], inr_only)
            t3.check_gap_counts(gaps, [(t.n_t, len(t.positions)) for t, _ in tiles])
            if not inr_only:
                t3.check_value_counts(values, nnz)
            gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
            value_tables = None if inr_only else t3.tables_from_counts(values, t3.N_CONTEXTS)
            for tile, context_of in tiles:
                enc = t3.encode_tile(tile.n_t, tile.positions, tile.u, tile.contexts, gap_tables,
                                     value_tables)
                dec = t3.decode_tile(enc.stream, tile.n_t, len(tile.positions), context_of,
                                     gap_tables, value_tables)
                assert dec.positions == tile.positions
                assert dec.u == (None if inr_only else tile.u)
                k = len(tile.positions)
                m = k if 2 * k <= tile.n_t else tile.n_t - k
                if m:
                    seen_classes.add(t3.density_class(tile.n_t, m))
                complements += 2 * k > tile.n_t
                full += m == 0 and k > 0
                raw_tiles += enc.raw_bits > 0
                assert len(enc.stream) == 2 * len(enc.words) + -(-enc.raw_bits // 8)
    # the fixtures exercise several classes, complement tiles, full tiles and raw bits
    assert len(seen_classes) >= 4 and complements and full and raw_tiles


# ------------------------------------------------------------------------------- hostile streams

def one_value_tile(u: int):
    """A 1-entry tile holding one nonzero (no gap symbol: m = 0), its tables and its stream."""
    values = np.zeros((t3.N_CONTEXTS, t3.N_BINS), np.uint64)
    values[0, t3.bin_of(u)[0]] = 1
    tables = t3.tables_from_counts(values, t3.N_CONTEXTS)
    return t3.encode_tile(1, [0], [u], [0], [], tables).stream, tables


def decode_one(stream, tables):
    return t3.decode_tile(stream, 1, 1, lambda p: 0, [], tables)


def test_example_decodes():
    tile, _, _, enc = example.encode_example()
    dec = example_decode(enc.stream)
    assert dec.positions == tile.positions and dec.u == tile.u


@pytest.mark.parametrize("rule, make", HOSTILE_EXAMPLE_STREAMS)
def test_hostile_example_streams(rule, make):
    stream = example.encode_example()[3].stream
    with pytest.raises(t3.RuleViolation) as err:
        example_decode(make(stream))
    assert err.value.rule == rule


def test_hostile_tiles():
    stream, tables = one_value_tile(20)  # bin 17: one raw bit
    assert len(stream) == 5 and decode_one(stream, tables).u == [20]
    with pytest.raises(t3.RuleViolation, match=r"\[T4\]"):
        decode_one(stream[:4], tables)   # the raw bit's byte is missing
    stream, tables = one_value_tile(0)   # one symbol of probability 1: the state never moves
    assert stream == bytes([0, 0, 1, 0])
    with pytest.raises(t3.RuleViolation, match=r"\[T7\]"):
        decode_one(bytes([1, 0, 1, 0]), tables)
    with pytest.raises(t3.RuleViolation, match=r"\[T1\]"):
        t3.decode_tile(b"\x00", 5, 0, lambda p: 0, [], tables)
    with pytest.raises(t3.RuleViolation, match=r"\[T6\]"):
        example_decode(example.encode_example()[3].stream, context_of=lambda p: 0)
    # a gap past the tile: positions coded for 100 entries, decoded as a tile of 90
    gaps = np.zeros((t3.N_GAP_CLASSES, t3.N_BINS), np.uint64)
    gaps[:, t3.bin_of(90)[0]] = 1
    same = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)  # every class: the same table
    stream = t3.encode_tile(100, [90], [], [], same, None).stream
    assert t3.decode_tile(stream, 100, 1, None, same, None).positions == [90]
    with pytest.raises(t3.RuleViolation, match=r"\[T5\]"):
        t3.decode_tile(stream, 90, 1, None, same, None)


def test_count_rules():
    tile, gaps, _, _ = example.encode_example()
    sizes = [(tile.n_t, len(tile.positions))]
    t3.check_gap_counts(gaps, sizes)
    moved = gaps.copy()
    moved[4, 0] -= 1
    moved[5, 0] += 1  # same total, wrong class
    with pytest.raises(t3.RuleViolation, match=r"\[G2\]"):
        t3.check_gap_counts(moved, sizes)
    with pytest.raises(t3.RuleViolation, match=r"\[G1\]"):
        t3.check_gap_counts(gaps[:31], sizes)


# ------------------------------------------------------------------------------- the spec's text

def fenced(text: str, info: str) -> list[str]:
    return re.findall(rf"```{info}\n(.*?)\n```", text, flags=re.S)


def test_worked_example_bytes_are_the_specs():
    text = SPEC.read_text(encoding="utf-8")
    blocks = fenced(text, "hex")
    assert len(blocks) == 1
    assert bytes.fromhex(blocks[0]) == example.encode_example()[3].stream


def test_normalisation_example_and_tables():
    assert t3.frequencies12([2, 1, 1] + [0] * 12 + [1]) == [1639, 819, 819] + [0] * 12 + [819]
    assert t3.frequencies12([3, 3, 1]) == [1756, 1755, 585]
    assert t3.frequencies12([0, 0]) is None
    for r in list(range(2000)) + [2**24 - 2, 2**23, 3037000499]:
        exact = max(c for c in range(64) if 2**c <= (r + 1) ** 2)  # floor(2 log2(r + 1))
        m = 1
        assert t3.density_class(r + 1, m) == min(exact, 31)


def test_edge3_appendix():
    text = SPEC.read_text(encoding="utf-8")
    appendix = text[text.index("### A.5 `EDGE3`"):text.index("## Appendix B.")]
    listed = [int(v.replace(",", "")) for v in re.findall(r"\| \d+ \| ([\d,]+) ", appendix)]
    assert listed == t3.EDGE3_E
    assert t3.EDGE3_E == [round(math.expm1(k / 8) * 2**20) for k in range(96)]
    assert t3.EDGE3_E[::2] == reference_decoder().EDGE_E  # format 2's edges are every other one


def test_edge3_is_far_from_rounding_ties():
    """Spec §7.4: every exact expm1(k / 8) * 2^20, k = 1 .. 95, lies at least 0.0144 from a tie
    n + 1/2 (closest at k = 68), and at least 7,045 units in the last place of the binary64
    expm1(k / 8) from one (closest at k = 93), so any accurate expm1 gives Appendix A.5."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(200):
        absolute, ulps = [], []
        for k in range(1, 96):
            exact = mpmath.expm1(mpmath.mpf(k) / 8)
            scaled = exact * 2**20
            tie = mpmath.floor(scaled) + mpmath.mpf(1) / 2
            absolute.append((float(abs(scaled - tie)), k))
            ulps.append((float(abs(exact - tie / 2**20) / math.ulp(math.expm1(k / 8))), k))
    nearest, k_abs = min(absolute)
    fewest, k_ulp = min(ulps)
    assert (k_abs, k_ulp) == (68, 93)
    assert 0.01449 <= nearest < 0.0145 and 7045 <= fewest < 7046
