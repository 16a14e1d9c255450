#!/usr/bin/env python3
"""The tile coding of `.sinr` version 3 (`spec/sinr-format.md` §6, §7.2), written from the
specification alone, for clarity rather than speed, like `spec/reference_decoder.py`, which
decodes version 3 tiles with it.

It holds the 12-bit tables of a chunk's count sections (§6.4), the density classes (§6.2), the
contexts (§6.5, §7.2), the tile decoder (§6.1.2, §6.1.5, §6.7) and, for the worked example
(§13.10) and the tests, the tile encoder (§6.1.3) and the count sections a writer stores. Every
reader check raises :class:`RuleViolation` carrying the rule's id of §9 (G1-G3, T1-T9).

It does not parse files: a caller gives it a tile's geometry (``n_t``), its nonzero positions and
coded integers ``u`` (§6.3.1), each nonzero's context, and the chunk's count sections.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "RuleViolation", "N_BINS", "N_GAP_CLASSES", "N_CONTEXTS", "PROB_BITS", "STATE_LOW",
    "bin_of", "bin_start_and_bits", "frequencies12", "Table", "tables_from_counts",
    "density_class", "coded_set", "TileInput", "chunk_counts", "check_gap_counts",
    "check_value_counts", "stage_ids",
    "baseline_context", "EDGE3_E", "siren_context", "encode_tile",
    "EncodedTile", "decode_tile", "DecodedTile", "TileDecoder", "TraceStep",
]

N_BINS = 231            # §6.3.1
N_GAP_CLASSES = 32      # §6.2
N_CONTEXTS = 96         # §6.4, §6.5
PROB_BITS = 12          # §6.1.1
PROB_SCALE = 1 << PROB_BITS
STATE_LOW = 1 << 16     # §6.1.1: 2^16 <= x < 2^32 between symbols
COUNT_LIMIT = 1 << 40   # §6.4 (rules G1, G3)


class RuleViolation(Exception):
    """A tile or a count section breaks a rule of the specification; ``rule`` is its id (§9)."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"[{rule}] {message}")
        self.rule = rule
        self.message = message


def require(condition: bool, rule: str, message: str) -> None:
    if not condition:
        raise RuleViolation(rule, message)


def bitlen(v: int) -> int:
    return v.bit_length()


def clamp(x: int, lo: int, hi: int) -> int:
    return min(max(x, lo), hi)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# =================================================================================================
# §5.2 the stages that name this tile coding
# =================================================================================================

def stage_ids(mode: str) -> list[str]:
    """§5.2: the exact stage list of a version 3 matrix of `mode` (rule R3)."""
    six = ["reorder-detection-depth", "row-bands", "gap-bin-positions", "value-quantiser",
           "fine-context-values", "siren-predictor"]
    return [s for s in six if s != "fine-context-values"] if mode == "inr-only" else six


# =================================================================================================
# §6.3.1 bins: gaps and values share them
# =================================================================================================

def bin_start_and_bits(b: int) -> tuple[int, int]:
    """§6.3.1: (start(bin), d)."""
    if b < 7:
        return b, 0
    d = (b - 7) // 8
    return ((8 + (b - 7) % 8) << d) - 1, d


def bin_of(u: int) -> tuple[int, int, int]:
    """§6.3.1: (bin, d, offset) of a coded integer u >= 0 (a gap or a value's u)."""
    e = u + 1
    x = bitlen(e) - 1
    if x < 3:
        return e - 1, 0, 0
    d = x - 3
    return 7 + 8 * d + ((e >> d) - 8), d, e & ((1 << d) - 1)


# =================================================================================================
# §6.4 12-bit tables
# =================================================================================================

def frequencies12(c: Sequence[int]) -> list[int] | None:
    """§6.4: one row of counts -> 12-bit frequencies summing to 4096, or None (an unused row)."""
    K = sum(1 for v in c if v > 0)
    if K == 0:
        return None
    T = sum(c)
    f = [1 + (v * (PROB_SCALE - K)) // T if v > 0 else 0 for v in c]
    m = list(c).index(max(c))  # the most frequent bin, lowest on ties
    f[m] += PROB_SCALE - sum(f)
    return f


@dataclass
class Table:
    """A used row's frequency-table model (§6.1.4): (start, freq) per bin and the bin of a slot."""
    freqs: list[int]
    starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.starts, acc = [], 0
        for f in self.freqs:
            self.starts.append(acc)
            acc += f
        assert acc == PROB_SCALE

    def symbol(self, b: int) -> tuple[int, int]:
        return self.starts[b], self.freqs[b]

    def bin_of_slot(self, slot: int) -> int:
        """The bin b with start_b <= slot < start_b + freq_b: the last bin whose start is <= slot
        (a bin of frequency 0 shares its start with the next bin, so it is never the last)."""
        return bisect.bisect_right(self.starts, slot) - 1


def tables_from_counts(counts: np.ndarray, rows: int) -> list[Table | None]:
    """§6.4: a count section (rows x 231, row-major) -> one table per row (None: unused)."""
    flat = [int(v) for v in np.asarray(counts).reshape(-1)]
    assert len(flat) == rows * N_BINS
    out: list[Table | None] = []
    for r in range(rows):
        f = frequencies12(flat[r * N_BINS:(r + 1) * N_BINS])
        out.append(Table(f) if f is not None else None)
    return out


# =================================================================================================
# §6.2 the coded set and density classes
# =================================================================================================

def coded_set(n_t: int, nonzeros: Sequence[int]) -> list[int]:
    """§6.2's complement rule: the nonzero positions, or the zeros when 2k > n_t."""
    k = len(nonzeros)
    if 2 * k <= n_t:
        return list(nonzeros)
    nz = set(nonzeros)
    return [p for p in range(n_t) if p not in nz]


def density_class(n_t: int, m: int) -> int:
    """§6.2: c = min(bitlen((r + 1)^2) - 1, 31), r = (n_t - m) div m, for m >= 1."""
    r = (n_t - m) // m
    return min(bitlen((r + 1) ** 2) - 1, N_GAP_CLASSES - 1)


# =================================================================================================
# §6.4 the chunk's count sections (writer side) and their reader checks
# =================================================================================================

@dataclass
class TileInput:
    """A tile as a writer sees it: entries, sorted nonzero positions, their u and contexts."""
    n_t: int
    positions: list[int]
    u: list[int]
    contexts: list[int]


def chunk_counts(tiles: Sequence[TileInput], inr_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """§6.4: gaps.counts (32 x 231) and values.counts (96 x 231; None in inr-only)."""
    gaps = np.zeros((N_GAP_CLASSES, N_BINS), dtype=np.uint64)
    values = None if inr_only else np.zeros((N_CONTEXTS, N_BINS), dtype=np.uint64)
    for t in tiles:
        coded = coded_set(t.n_t, t.positions)
        if coded:
            c = density_class(t.n_t, len(coded))
            prev = -1
            for p in coded:
                gaps[c, bin_of(p - prev - 1)[0]] += 1
                prev = p
        if values is not None:
            for u, kappa in zip(t.u, t.contexts):
                values[kappa, bin_of(u)[0]] += 1
    return gaps, values


def check_gap_counts(gaps_counts: np.ndarray, tile_sizes: Sequence[tuple[int, int]]) -> None:
    """Rules G1, G2: before any tile is decoded, from (n_t, k) of every tile of the chunk."""
    g = np.asarray(gaps_counts)
    require(g.size == N_GAP_CLASSES * N_BINS, "G1",
            f"gaps.counts holds {g.size} items, not {N_GAP_CLASSES * N_BINS}")
    rows = [[int(v) for v in g.reshape(-1)[c * N_BINS:(c + 1) * N_BINS]]
            for c in range(N_GAP_CLASSES)]
    require(all(v < COUNT_LIMIT for row in rows for v in row), "G1", "a gap count >= 2^40")
    expected = [0] * N_GAP_CLASSES
    for n_t, k in tile_sizes:
        m = k if 2 * k <= n_t else n_t - k
        if m > 0:
            expected[density_class(n_t, m)] += m
    for c in range(N_GAP_CLASSES):
        require(sum(rows[c]) == expected[c], "G2",
                f"gap class {c}: gaps.counts sums to {sum(rows[c])}, its tiles code "
                f"{expected[c]} positions")


def check_value_counts(values_counts: np.ndarray, nnz: int) -> None:
    """Rule G3 (its counts part): 96 x 231 items, each < 2^40, summing to the chunk's nnz."""
    v = [int(x) for x in np.asarray(values_counts).reshape(-1)]
    require(len(v) == N_CONTEXTS * N_BINS, "G3",
            f"values.counts holds {len(v)} items, not {N_CONTEXTS * N_BINS}")
    require(all(x < COUNT_LIMIT for x in v), "G3", "a value count >= 2^40")
    require(sum(v) == nnz, "G3", f"values.counts sums to {sum(v)}, the chunk has {nnz} nonzeros")


# =================================================================================================
# §6.5, §7.2 contexts
# =================================================================================================

def baseline_context(G_r: int, C_c: int) -> int:
    """§6.5: kappa = clamp((G[r] + C[c]) >> 1, 0, 95); Python's >> is arithmetic."""
    return clamp((G_r + C_c) >> 1, 0, N_CONTEXTS - 1)


# Appendix A.5, copied from the specification: EDGE3_E[k] = roundeven(expm1(k / 8) * 2^20).
EDGE3_E = [
    0, 139616, 297822, 477093, 680234, 910422, 1171259, 1466827, 1801749, 2181265, 2611314,
    3098623, 3650816, 4276532, 4985562, 5788998, 6699411, 7731043, 8900036, 10224678, 11725695,
    13426569, 15353912, 17537878, 20012636, 22816904, 25994555, 29595307, 33675492, 38298948,
    43538010, 49474645, 56201734, 63824524, 72462277, 82250133, 93341227, 105909084, 120150331,
    136287778, 154573901, 175294793, 198774640, 225380792, 255529512, 289692487, 328404210,
    372270339, 421977175, 478302399, 542127240, 614450259, 696402977, 789267572, 894496945,
    1013737446, 1148854635, 1301962468, 1475456373, 1672050723, 1894821307, 2147253449, 2433296540,
    2757425827, 3124712426, 3540902668, 4012507997, 4546906846, 5152460075, 5838641780, 6616187518,
    7497262267, 8495650756, 9626973129, 10908929325, 12361576005, 14007640344, 15872875603,
    17986464052, 20381473533, 23095374821, 26170627868, 29655346101, 33604049175, 38078515956,
    43148751067, 48894080140, 55404390891, 62781539447, 71140943922, 80613390171, 91347077985,
    103509939727, 117292267695, 132909691312, 150606550724,
]
EDGE3 = [e / 2**20 for e in EDGE3_E]  # exact in binary64


def siren_context(y: int, kind: str, offset: float, scale: float) -> int:
    """§7.2: the context of a SIREN output y (units of 2^-12) on the 1/8-nat grid."""
    if kind == "log":
        t = float(y) * (scale * 2.0**-9)
        if math.isnan(t):
            raise AssertionError("y is finite and scale > 0")
        if math.isinf(t):
            return N_CONTEXTS - 1 if t > 0 else 0
        return clamp(math.floor(t), 0, N_CONTEXTS - 1)
    mean = ((float(y) * 2.0**-12) * scale) + offset
    kappa = 0
    for k in range(N_CONTEXTS):
        if EDGE3[k] <= mean:
            kappa = k
    return kappa


# =================================================================================================
# §6.1.3 the coder and §6.1.5 the stream layout: encoder
# =================================================================================================

@dataclass
class EncodedTile:
    """A tile's stream, with what the worked example shows: its symbols, words and raw bits."""
    stream: bytes
    symbols: list[tuple[str, int, int, int, int]]  # (kind, table row, bin, start, freq)
    raw_fields: list[tuple[int, int]]               # (value, d) in order
    words: list[int]                                # W words, initial state's two included
    raw_bits: int                                   # B


def tile_symbols(n_t: int, positions: Sequence[int], u: Sequence[int], contexts: Sequence[int],
                 gap_tables: Sequence[Table | None], value_tables: Sequence[Table | None] | None
                 ) -> tuple[list[tuple[str, int, int, int, int]], list[tuple[int, int]]]:
    """§6.2, §6.3.2: a tile's symbols and raw fields in order (value_tables None: mode inr-only)."""
    symbols: list[tuple[str, int, int, int, int]] = []
    raw: list[tuple[int, int]] = []
    coded = coded_set(n_t, positions)
    if coded:
        c = density_class(n_t, len(coded))
        table = gap_tables[c]
        prev = -1
        for p in coded:
            b, d, off = bin_of(p - prev - 1)
            prev = p
            start, freq = table.symbol(b)
            symbols.append(("gap", c, b, start, freq))
            raw.append((off, d))
    if value_tables is not None:
        for uu, kappa in zip(u, contexts):
            b, d, off = bin_of(uu)
            start, freq = value_tables[kappa].symbol(b)
            symbols.append(("value", kappa, b, start, freq))
            raw.append((off, d))
    return symbols, raw


def encode_tile(n_t: int, positions: Sequence[int], u: Sequence[int], contexts: Sequence[int],
                gap_tables: Sequence[Table | None],
                value_tables: Sequence[Table | None] | None) -> EncodedTile:
    """§6.1.3 and §6.1.5: the tile's stream (empty when the tile has no symbol, §6.7)."""
    symbols, raw = tile_symbols(n_t, positions, u, contexts, gap_tables, value_tables)
    if not symbols:
        return EncodedTile(b"", [], [], [], 0)
    # The coder, from the last symbol to the first.
    x, emitted = STATE_LOW, []
    for _, _, _, start, freq in reversed(symbols):
        if x >= (1 << 20) * freq:
            emitted.append(x & 0xFFFF)
            x >>= 16
        x = ((x // freq) << PROB_BITS) + (x % freq) + start
    words = [x & 0xFFFF, x >> 16] + emitted[::-1]
    # The raw bit string: fields in order, each least significant bit first.
    bits: list[int] = []
    for value, d in raw:
        bits.extend((value >> i) & 1 for i in range(d))
    R = ceil_div(len(bits), 8)
    raw_bytes = bytearray(R)       # raw_bytes[j // 8] holds bit j; padding bits stay 0
    for j, bit in enumerate(bits):
        raw_bytes[j // 8] |= bit << (j % 8)
    stream = b"".join(w.to_bytes(2, "little") for w in words) + bytes(reversed(raw_bytes))
    return EncodedTile(stream, symbols, raw, words, len(bits))


# =================================================================================================
# §6.1.2, §6.1.5, §6.1.6: decoder (§6.7 "Decoding a tile")
# =================================================================================================

@dataclass
class TraceStep:
    """One decoded symbol, for the worked example's table."""
    kind: str
    row: int
    x: int
    slot: int
    bin: int
    start: int
    freq: int
    x_after: int          # freq * (x >> 12) + slot - start
    word: int | None      # the word read by renormalisation, if any
    raw: tuple[int, int]  # (offset, d) read after the symbol


class StreamReader:
    """§6.1.2 and §6.1.6: words forward from byte 0, raw bits backward from the last byte."""

    def __init__(self, stream: bytes):
        self.s = stream
        self.len = len(stream)
        require(self.len >= 4, "T2", f"a tile with symbols has a {self.len}-byte stream")
        self.x = int.from_bytes(stream[0:4], "little")
        require(self.x >= STATE_LOW, "T2", f"initial state {self.x:#x} below 2^16")
        self.pos = 4   # bytes taken by words
        self.B = 0     # raw bits read

    def raw_bytes_taken(self) -> int:
        return ceil_div(self.B, 8)

    def symbol(self, table: Table) -> tuple[int, int, int, int, int | None]:
        """§6.1.2: decode one symbol; returns (bin, slot, start, freq, word read)."""
        slot = self.x & (PROB_SCALE - 1)
        b = table.bin_of_slot(slot)
        start, freq = table.symbol(b)
        self.x = freq * (self.x >> PROB_BITS) + slot - start
        word = None
        if self.x < STATE_LOW:
            require(self.pos + 2 + self.raw_bytes_taken() <= self.len, "T3",
                    f"word at byte {self.pos} reaches past the stream or into its raw bits "
                    f"({self.raw_bytes_taken()} raw bytes taken of {self.len})")
            word = int.from_bytes(self.s[self.pos:self.pos + 2], "little")
            self.x = (self.x << 16) | word
            self.pos += 2
        return b, slot, start, freq, word

    def raw(self, d: int) -> int:
        """§6.1.6: the next d raw bits, least significant first."""
        require(self.pos + ceil_div(self.B + d, 8) <= self.len, "T4",
                f"{d} raw bits after {self.B} reach past the stream or into its words "
                f"({self.pos} word bytes taken of {self.len})")
        v = 0
        for i in range(d):
            j = self.B + i
            v |= ((self.s[self.len - 1 - j // 8] >> (j % 8)) & 1) << i
        self.B += d
        return v

    def finish(self) -> None:
        """§6.1.2 step 3 and §6.1.6's meeting rule."""
        require(self.x == STATE_LOW, "T7", f"final state {self.x:#x} is not 2^16")
        R = self.raw_bytes_taken()
        require(self.pos + R == self.len, "T8",
                f"words ({self.pos} bytes) and raw bits ({R} bytes) do not meet in "
                f"{self.len} bytes")
        if self.B % 8:
            last = self.s[self.len - R]
            require(last >> (self.B % 8) == 0, "T9",
                    f"padding bits of raw byte {self.len - R} are not zero ({last:#04x})")


@dataclass
class DecodedTile:
    positions: list[int]    # the nonzero positions, increasing
    u: list[int] | None     # their coded integers (None in inr-only)
    trace: list[TraceStep]


class TileDecoder:
    """§6.7 in two steps: the positions when made, then the values of given contexts, so that a
    caller can compute the contexts of all decoded positions at once (a SIREN band's come from
    one evaluation of its network, §7.2). Raises RuleViolation (T1-T9)."""

    def __init__(self, stream: bytes, n_t: int, k: int, gap_tables: Sequence[Table | None],
                 code_values: bool):
        m = k if 2 * k <= n_t else n_t - k
        self.trace: list[TraceStep] = []
        self.reader: StreamReader | None = None
        if m == 0 and (k == 0 or not code_values):  # no symbol
            require(len(stream) == 0, "T1", f"a tile without symbols has {len(stream)} bytes")
            self.positions = list(range(k))
            return
        self.reader = StreamReader(stream)
        coded: list[int] = []
        if m > 0:
            c = density_class(n_t, m)
            table = gap_tables[c]
            require(table is not None, "G2", f"gap class {c} has no table")  # excluded by G2
            p = -1
            for _ in range(m):
                p = p + self._step("gap", c, table) + 1
                require(p < n_t, "T5", f"decoded position {p} >= the tile's {n_t} entries")
                coded.append(p)
        if 2 * k <= n_t:
            self.positions = coded
        else:
            zeros = set(coded)
            self.positions = [p for p in range(n_t) if p not in zeros]

    def _step(self, kind: str, row: int, table: Table) -> int:
        """One symbol and its raw field (§6.1.2, §6.1.5): the coded integer start(bin) + offset."""
        rd = self.reader
        x = rd.x
        b, slot, start, freq, word = rd.symbol(table)
        x_after = freq * (x >> PROB_BITS) + slot - start
        s, d = bin_start_and_bits(b)
        off = rd.raw(d)
        self.trace.append(TraceStep(kind, row, x, slot, b, start, freq, x_after, word, (off, d)))
        return s + off

    def values(self, contexts: Sequence[int], value_tables: Sequence[Table | None]) -> list[int]:
        """§6.3.2: the coded integers u of the nonzeros, in position order, of these contexts."""
        us = []
        for kappa in contexts:
            table = value_tables[kappa]
            require(table is not None, "T6", f"context {kappa} has no used row in values.counts")
            us.append(self._step("value", kappa, table))
        return us

    def finish(self) -> None:
        """§6.1.2 step 3 (T7-T9), after the whole tile; nothing for a tile without symbols."""
        if self.reader is not None:
            self.reader.finish()


def decode_tile(stream: bytes, n_t: int, k: int, context_of: Callable[[int], int] | None,
                gap_tables: Sequence[Table | None],
                value_tables: Sequence[Table | None] | None) -> DecodedTile:
    """§6.7: decode a whole tile. `context_of(p)` gives the context of the nonzero at position p
    (§6.5, §7.2); `value_tables` is None in mode inr-only. Raises RuleViolation (T1-T9)."""
    tile = TileDecoder(stream, n_t, k, gap_tables, value_tables is not None)
    us = None
    if value_tables is not None:
        us = tile.values([context_of(p) for p in tile.positions], value_tables)
    tile.finish()
    return DecodedTile(tile.positions, us, tile.trace)
