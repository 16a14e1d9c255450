#!/usr/bin/env python3
"""The worked example of a version 3 tile (`sinr-format.md` §13.10): one real tile, coded by
`spec/tiles3.py`.

The tile is cells 57 and 58 of `tests/data/pbmc500_3p_lt_x_50genes` as their own chunk: the 12
genes with a nonzero in them, in the gene order and with the gene and cell terms that the
reference writer of version 2 chose for that two-cell matrix (stated here as constants, so the
example does not change with the writer). `python spec/worked_example3.py` prints the numbers
§13.10 quotes; `tests/test_spec_tiles3.py` checks the spec's bytes against `encode_example()`.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiles3 as t3  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "pbmc500_3p_lt_x_50genes"
FIRST_CELL = 57                       # the chunk holds cells 57 and 58 of the fixture
CELLS_ORDER = [1, 0]                  # column 0 is cell 58, column 1 is cell 57
GENES_ORDER = [5, 6, 7, 16, 29, 40, 42, 19, 27, 30, 44, 46]  # row r is gene GENES_ORDER[r]
G = [11, -14, -14, -10, 73, 10, -17, -18, -16, -18, -10, -16]  # genes.baseline, 1/16 nat
C = [29, 28]                          # cells.baseline by column, 1/16 nat


def example_tile() -> t3.TileInput:
    """The one tile of the example chunk (one band of 12 rows, width 2), read from the fixture."""
    with gzip.open(FIXTURE / "matrix.mtx.gz") as fh:
        X = scipy.io.mmread(fh).tocsc()
    block = X[:, FIRST_CELL:FIRST_CELL + 2].toarray()[GENES_ORDER][:, CELLS_ORDER]
    h, w = block.shape
    positions, u, contexts = [], [], []
    for p in range(h * w):
        v = int(block[p // w, p % w])
        if v:
            positions.append(p)
            u.append(v - 1)  # lossless: u = v - 1 (§6.3.3)
            contexts.append(t3.baseline_context(G[p // w], C[p % w]))
    return t3.TileInput(h * w, positions, u, contexts)


def encode_example() -> tuple[t3.TileInput, np.ndarray, np.ndarray, t3.EncodedTile]:
    """The tile, the chunk's gaps.counts and values.counts, and the tile's stream."""
    tile = example_tile()
    gaps, values = t3.chunk_counts([tile])
    enc = t3.encode_tile(tile.n_t, tile.positions, tile.u, tile.contexts,
                         t3.tables_from_counts(gaps, t3.N_GAP_CLASSES),
                         t3.tables_from_counts(values, t3.N_CONTEXTS))
    return tile, gaps, values, enc


def main() -> None:
    tile, gaps, values, enc = encode_example()
    gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
    value_tables = t3.tables_from_counts(values, t3.N_CONTEXTS)
    print("n_t", tile.n_t, "k", len(tile.positions), "positions", tile.positions)
    print("u", tile.u)
    print("contexts", tile.contexts)
    for name, counts, tables in (("gap class", gaps, gap_tables), ("context", values, value_tables)):
        for r, tab in enumerate(tables):
            if tab is not None:
                used = [(b, int(counts[r, b]), tab.freqs[b], tab.starts[b])
                        for b in range(t3.N_BINS) if counts[r, b]]
                print(name, r, "(bin, count, freq, start):", used)
    dec = t3.decode_tile(enc.stream, tile.n_t, len(tile.positions),
                         lambda p: t3.baseline_context(G[p // 2], C[p % 2]), gap_tables, value_tables)
    print("| # | symbol | row | x | slot | bin | start | freq | x' | word | raw field |")
    for i, s in enumerate(dec.trace, 1):
        word = "—" if s.word is None else f"`{s.word:04X}`"
        raw = "—" if s.raw[1] == 0 else f"{s.raw[0]} ({s.raw[1]} bits)"
        print(f"| {i} | {s.kind} | {s.row} | `{s.x:08X}` | {s.slot} | {s.bin} | {s.start} | "
              f"{s.freq} | `{s.x_after:08X}` | {word} | {raw} |")
    print("words", " ".join(f"{w:04X}" for w in enc.words), "B", enc.raw_bits)
    print("raw fields", enc.raw_fields)
    print("stream", len(enc.stream), "bytes:", enc.stream.hex(" ").upper())


if __name__ == "__main__":
    main()
