"""Contexts for format 3's gap symbols, measured on format 2's tiles (the stream lab's dumps).

A gap (zeros before the next coded position, in a tile's row-major order) is coded as its bin
(the value bins of spec §6.3.1) under a per-chunk table chosen by a context, its offset bits raw.
Compared contexts:

- `tile`: the tile's density class, min(bitlen((n - m) div m), 15): known from the tile's
  directory, the stream lab's `gap-bins` candidate;
- `tile, half octaves`: the same ratio in 32 classes of half an octave;
- `row`: the density class of the row of the previous coded position (the first row for the first
  gap), from each gene's share of nonzeros in the whole file (16 classes of log2 density,
  one byte per gene stored once per file): a band mixing dense and sparse genes gets each row's
  own statistics;
- `row+col`: as `row`, refined by whether the previous position ended its row (a gap that
  crosses into the next row behaves differently).

Bits: exact code lengths of the bins under each chunk's 12-bit scaled tables, plus offset bits,
plus the tables (bit_length + 2 per used bin). Tiles more than half full code their zeros, as in
format 2.

    python -m benchmarks.stream_lab.gap_contexts /tmp/lab/*.bin
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .latent_contexts import N_BINS, coded_bits, value_bins


def tiles_of(path: str):
    buf = Path(path).read_bytes()
    at = 8
    while True:
        n_tiles = int(np.frombuffer(buf, "<i8", 1, at)[0])
        if n_tiles < 0:
            return
        nnz = int(np.frombuffer(buf, "<i8", 1, at + 8)[0])
        heads = np.frombuffer(buf, "<i8", 5 * n_tiles, at + 32).reshape(5, n_tiles)
        at += 32 + 40 * n_tiles
        pos = np.frombuffer(buf, "<i4", nnz, at).astype(np.int64)
        rows = np.frombuffer(buf, "<i4", nnz, at + 12 * nnz).astype(np.int64)
        at += 20 * nnz + 8 * 48 * N_BINS
        yield heads, pos, rows


def main() -> None:
    print("| dataset | nnz | context | gap bits/nnz | tables | total | change |")
    print("|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        chunks = list(tiles_of(path))
        row_nnz = np.bincount(np.concatenate([r for _, _, r in chunks]))
        n_cells = sum(int(h[4].max() + h[2][h[4].argmax()]) for h, _, _ in chunks)  # col0 + width of last tile
        density = row_nnz / max(n_cells, 1)
        row_class = np.clip(np.floor(-np.log2(np.maximum(density, 1e-9))), 0, 15).astype(np.int64)
        gaps, tile_ctx, row_ctx, cross, chunk_id = [], [], [], [], []
        for ci, (heads, pos, rows) in enumerate(chunks):
            k, h, w, row0, _ = heads
            first = np.concatenate([[0], np.cumsum(k)])
            for t in range(k.size):
                n, kt = int(h[t] * w[t]), int(k[t])
                p = pos[first[t]:first[t + 1]]
                if 2 * kt > n:
                    mask = np.ones(n, bool)
                    mask[p] = False
                    p = np.flatnonzero(mask)
                m = p.size
                if m == 0:
                    continue
                prev = np.concatenate([[-1], p[:-1]])
                gaps.append(p - prev - 1)
                tile_ctx.append(np.full(m, min(int(n - m) // m, 1 << 20)))
                prev_row = np.maximum(prev, 0) // w[t]
                row_ctx.append(row_class[row0[t] + prev_row])
                cross.append(((prev % w[t]) == w[t] - 1).astype(np.int64))
                chunk_id.append(np.full(m, ci))
        g = np.concatenate(gaps)
        bins, offs = value_bins(g)
        tile_class = np.minimum(np.floor(np.log2(np.concatenate(tile_ctx) + 1)).astype(np.int64), 15)
        rc = np.concatenate(row_ctx)
        chunk = np.concatenate(chunk_id)
        nnz = sum(p.size for _, p, _ in chunks)
        base = None
        ratio = np.concatenate(tile_ctx)
        half_octave = np.minimum(np.floor(2 * np.log2(ratio + 1)).astype(np.int64), 31)
        for name, ctx, n_ctx in (("tile", tile_class, 16), ("tile, half octaves", half_octave, 32), ("row", rc, 16),
                                 ("row+col", rc * 2 + np.concatenate(cross), 32),
                                 ("tile x row", tile_class * 16 + rc, 256)):
            stream, tables = coded_bits(ctx, bins, chunk, n_ctx, pb=12)
            total = (stream + tables + offs.sum()) / nnz
            base = total if base is None else base
            print(f"| {Path(path).stem} | {nnz:,} | {name} | {(stream + offs.sum()) / nnz:.4f} | {tables / nnz:.4f} | "
                  f"{total:.4f} | {total - base:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
