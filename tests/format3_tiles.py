"""Real tiles for the format-3 tile tests (test_spec_tiles3.py, test_tile3_native.py): the spec's
independent implementation of version 3's tile coding (spec/tiles3.py, as the reference decoder
loads it) and its worked example (spec/worked_example3.py, spec §13.10), and the tiles of real
fixtures with their geometry and the chunk's gene and cell terms.

Real tiles come from files the package writes in format 2 read back by spec/reference_decoder.py:
its tile decoder gives each tile's geometry, nonzero positions and values and the chunk's gene and
cell terms, exactly as format 2's encoder cut them, through public names only (the encoder's
geometry and terms are not public API)."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

import scinrcodec
from conftest import DATA, FAST, reference_decoder

SPEC_DIR = Path(__file__).resolve().parents[1] / "spec"
SPEC = SPEC_DIR / "sinr-format.md"
# The fixtures and encoder options whose tiles the tests use: several density classes, complement
# tiles, full tiles and raw bits between them.
REAL_FIXTURES = (("pbmc500_3p_lt_x_50genes", {}), ("pbmc4k_v2_soupx_half", dict(tile_nnz=32, chunk_cells=40)))


def load(name: str):
    """A module of spec/, loaded once (spec/ is not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SPEC_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


t3 = reference_decoder().tiles3
example = load("worked_example3")

# Damaged streams of the worked example (spec §13.10) and the rule of spec §9.4 each breaks first.
HOSTILE_EXAMPLE_STREAMS = [
    ("T2", lambda s: s[:3]),                          # truncated before the state ends
    ("T4", lambda s: s[:4]),                          # truncated: the first raw bit has no byte
    ("T2", lambda s: s[:2] + b"\x00\x00" + s[4:]),    # initial state below 2^16
    ("T3", lambda s: s[:6]),                          # a word would take a raw byte already read
    ("T8", lambda s: s[:6] + b"\x00" + s[6:]),        # words and raw bits do not meet
    ("T9", lambda s: s[:6] + bytes([s[6] | 0x80]) + s[7:]),  # a nonzero padding bit
]


def damaged(s: bytes, rng: np.random.Generator | None = None, n: int = 0) -> list[bytes]:
    """Every prefix, every flipped bit and two inserted bytes (0, 0x5A) at every place of a stream,
    in this order: all of them, or n drawn by rng. (tests/conformance/make_vectors.py's _damaged,
    which picks the vectors' damaged tiles, keeps its own copy: the generator imports no test
    module.)"""
    out = [s[:i] for i in range(len(s))]
    out += [s[:i] + bytes([s[i] ^ (1 << b)]) + s[i + 1:] for i in range(len(s)) for b in range(8)]
    out += [s[:i] + bytes([v]) + s[i:] for i in range(len(s) + 1) for v in (0, 0x5A)]
    return out if rng is None else [out[i] for i in rng.choice(len(out), min(n, len(out)), replace=False)]


def example_context(p: int) -> int:
    """The baseline context (spec §6.5) of position p of the worked example's tile."""
    w = len(example.C)
    return t3.baseline_context(example.G[p // w], example.C[p % w])


def example_decode(stream: bytes, context_of=example_context, n_t=None):
    """The spec's decoder on a stream of the worked example's tile (its n_t unless given)."""
    tile, gaps, values, _ = example.encode_example()
    return t3.decode_tile(stream, n_t or tile.n_t, len(tile.positions), context_of,
                          t3.tables_from_counts(gaps, t3.N_GAP_CLASSES),
                          t3.tables_from_counts(values, t3.N_CONTEXTS))


@dataclass
class RealTile:
    """One tile as the spec's encoder takes it, its context function, and where it lies: rows
    row0 .. row0 + h - 1 of the matrix's gene terms, columns col0 .. col0 + w - 1 of the chunk's."""
    tile: "t3.TileInput"
    context_of: Callable[[int], int]
    h: int
    w: int
    row0: int
    col0: int


@dataclass
class RealChunk:
    tiles: list[RealTile]
    nnz: int
    gene_terms: np.ndarray  # the matrix's, int64, 1/16 nat
    cell_terms: np.ndarray  # the chunk's, int32, 1/16 nat


def encode_real_files(folder: Path) -> list[Path]:
    """The REAL_FIXTURES written as format-2 files into folder."""
    out = []
    for name, options in REAL_FIXTURES:
        path = folder / f"{name}.sinr"
        scinrcodec.encode(DATA / name, path, format_version=2, **FAST, **options)
        out.append(path)
    return out


class DecodedTile(NamedTuple):
    """A tile of a version 2 file as spec/reference_decoder.py decodes it: band `band`, rows
    row0 .. row0 + h - 1, columns col0 .. col0 + w - 1 of its chunk, and its nonzeros."""
    band: int
    row0: int
    h: int
    col0: int
    w: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @property
    def positions(self) -> list[int]:
        """The nonzeros' positions in the tile (row-major), as version 3 codes them."""
        return ((self.rows - self.row0) * self.w + self.cols - self.col0).tolist()


def decoded_tiles(f, ch, G) -> Iterator[DecodedTile]:
    """Every tile of chunk `ch` (loaded by the reference decoder) of the version 2 file `f`, in
    order; G is the file's gene terms."""
    rd = reference_decoder()
    for b in range(ch.n_bands):
        rb, hb, wb = ch.band_rows[b], ch.band_rows[b + 1] - ch.band_rows[b], ch.band_widths[b]
        for j in range(ch.band_first_tile[b + 1] - ch.band_first_tile[b]):
            rows, cols, values = rd.decode_tile(f, ch, G, b, j)
            c0 = j * wb
            yield DecodedTile(b, rb, hb, c0, min(wb, ch.n - c0), rows, cols, values)


def real_chunks(path: Path) -> Iterator[RealChunk]:
    """Every chunk of a format-2 file, its tiles with version 3's baseline contexts (spec §6.5)."""
    rd = reference_decoder()
    f = rd.open_sinr(path.read_bytes())
    _, G = rd.load_gene_order(f)
    for e in f.chunks:
        ch = rd.load_chunk(f, e)
        C = ch.cells_baseline
        tiles = []
        for d in decoded_tiles(f, ch, G):
            def context_of(p, rb=d.row0, w=d.w, c0=d.col0):
                return t3.baseline_context(int(G[rb + p // w]), int(C[c0 + p % w]))

            positions = d.positions
            tile = t3.TileInput(d.h * d.w, positions, [int(v) - 1 for v in d.values],
                                [context_of(p) for p in positions])
            tiles.append(RealTile(tile, context_of, d.h, d.w, d.row0, d.col0))
        yield RealChunk(tiles, e.nnz, np.asarray(G, dtype=np.int64), np.asarray(C, dtype=np.int32))
