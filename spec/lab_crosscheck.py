#!/usr/bin/env python3
"""Cross-check of version 3's tile streams (`spec/tiles3.py`) against the stream lab
(`spec/format-3-design.md` §7).

Reads a lab dump (`python -m benchmarks.stream_lab.dump_tiles`: every tile format 2's encoder
cuts, with its positions, coded integers u and format 2's contexts), builds each chunk's count
sections, encodes every tile with `tiles3` and sums the stream bytes; with `--decode N` it also
decodes every N-th tile back and compares. `--classes lab` swaps in the lab's 16 octave classes
(`min(bitlen((n_t - m) div m), 15)`) to reproduce `gap-bins/12p` symbol for symbol; the default
uses the specification's 32 half-octave classes (§6.2). Contexts are the dump's (format 2's 48, a subset of 96).

    python spec/lab_crosscheck.py /work/lab/visium_spaceranger3.bin [--classes lab] [--decode 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiles3 as t3  # noqa: E402


def lab_chunks(path: str):
    """The chunks of a lab dump (layout: benchmarks/stream_lab/dump_tiles.py)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"SLAB0001", "not a lab dump"
    at = 8

    def take(n: int, dtype: str) -> np.ndarray:
        nonlocal at
        a = np.frombuffer(data, dtype=dtype, count=n, offset=at)
        at += a.nbytes
        return a

    while True:
        n_tiles = int(take(1, "<i8")[0])
        if n_tiles < 0:
            return
        nnz, _, _ = (int(v) for v in take(3, "<i8"))
        k, h, w = take(n_tiles, "<i8"), take(n_tiles, "<i8"), take(n_tiles, "<i8")
        take(2 * n_tiles, "<i8")  # row0, col0
        pos, u, ctx = take(nnz, "<i4"), take(nnz, "<i4"), take(nnz, "<i4")
        take(2 * nnz, "<i4")  # rows, cols
        take(48 * 231, "<i8")  # format 2's histogram
        first = np.concatenate([[0], np.cumsum(k)])
        yield [t3.TileInput(int(h[t] * w[t]), pos[first[t]:first[t + 1]].tolist(),
                            u[first[t]:first[t + 1]].tolist(), ctx[first[t]:first[t + 1]].tolist())
               for t in range(n_tiles)]


def lab_class(n_t: int, m: int) -> int:
    """The lab's gap class (stream_lab.cpp, gap_class): 16 octaves."""
    return min(((n_t - m) // m).bit_length(), 15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("--classes", choices=["spec", "lab"], default="spec")
    ap.add_argument("--decode", type=int, default=0, help="decode every N-th tile back (0: none)")
    args = ap.parse_args()
    if args.classes == "lab":
        t3.density_class = lab_class  # the lab's classes, for a symbol-for-symbol comparison
    nnz = tiles = with_raw = word_bytes = raw_bytes = decoded = 0
    for chunk in lab_chunks(args.dump):
        gaps, values = t3.chunk_counts(chunk)
        gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
        value_tables = t3.tables_from_counts(values, t3.N_CONTEXTS)
        for i, tile in enumerate(chunk):
            enc = t3.encode_tile(tile.n_t, tile.positions, tile.u, tile.contexts, gap_tables,
                                 value_tables)
            nnz += len(tile.positions)
            tiles += 1
            word_bytes += 2 * len(enc.words)
            raw_bytes += -(-enc.raw_bits // 8)
            with_raw += enc.raw_bits > 0
            if args.decode and (tiles - 1) % args.decode == 0:
                ctx = dict(zip(tile.positions, tile.contexts))
                dec = t3.decode_tile(enc.stream, tile.n_t, len(tile.positions), ctx.__getitem__,
                                     gap_tables, value_tables)
                assert dec.positions == tile.positions and dec.u == tile.u, f"tile {tiles - 1}"
                decoded += 1
    total = word_bytes + raw_bytes
    print(f"{Path(args.dump).stem}: classes={args.classes} nnz={nnz} tiles={tiles} "
          f"tiles_with_raw_bits={with_raw} word_bytes={word_bytes} raw_bytes={raw_bytes} "
          f"stream_bytes={total} stream_bits_per_nnz={8 * total / nnz:.4f} "
          f"(+1 bit per tile with raw bits, as the lab counts: "
          f"{(8 * total + with_raw) / nnz:.4f}) decoded_back={decoded}")


if __name__ == "__main__":
    main()
