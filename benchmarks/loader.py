"""The cell-batch loader's shuffle, measured: `python -m benchmarks loader FILE.sinr [...]`.

`SinrMatrix.iter_cells` decodes `buffer` chunks at a time (the next buffer decodes meanwhile) and
shuffles their cells together, so a batch draws its cells from the chunks of one buffer (plus the
cells carried over from the last one), not from the whole file. This measures, for each buffer
size, one epoch of shuffled batches in a fresh process: cells per second, the process's peak
memory, and how many distinct chunks each batch draws from (and how many it would draw from under
a fully random order, for comparison). Every epoch is checked to return every cell exactly once.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

BATCH = 256
PROBE = r"""
import json, sys, time
import numpy as np
import scinrcodec as sinr
from benchmarks.measure import peak_rss_bytes, MB
path, buffer, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = sinr.open(path)
bounds = m.chunk_bounds()
seen = np.zeros(m.shape[1], dtype=np.int64)
distinct = []
start = time.perf_counter()
for b in m.iter_cells(batch_size=batch, shuffle=True, seed=0, buffer=buffer, obs=False):
    np.add.at(seen, b.cells, 1)  # counts a cell repeated within a batch too
    distinct.append(np.unique(np.searchsorted(bounds, b.cells, side="right") - 1).size)
seconds = time.perf_counter() - start
assert np.all(seen == 1), "an epoch must return every cell once"
rng = np.random.default_rng(0)
random = [np.unique(np.searchsorted(bounds, rng.choice(m.shape[1], batch, replace=False), side="right") - 1).size
          for _ in range(200)]
print(json.dumps({"cells_per_s": m.shape[1] / seconds, "peak_mb": peak_rss_bytes() / MB,
                  "distinct": float(np.mean(distinct)), "random": float(np.mean(random)),
                  "chunks": int(m.n_chunks), "cells": int(m.shape[1]), "nnz": int(m.nnz)}))
"""


def epoch(path: Path, buffer: int, batch: int = BATCH) -> dict:
    """One shuffled epoch of `path` with this buffer, in a fresh process."""
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-c", PROBE, str(path), str(buffer), str(batch)], capture_output=True,
                         text=True, check=True, cwd=root)
    return json.loads(run.stdout)


def run_loader(files: list[Path], buffers: list[int], repeats: int = 3) -> str:
    """A markdown table: per file and buffer, the median cells/s and peak memory of `repeats`
    epochs, and the distinct chunks per batch (shuffled and fully random)."""
    lines = [f"Batches of {BATCH} cells, one shuffled epoch per fresh process, median of {repeats}.", "",
             "| file (chunks, cells, nonzeros) | buffer (chunks) | cells/s | peak MB | distinct chunks per batch | "
             "under a fully random order |", "|---|---|---|---|---|---|"]
    for path in files:
        for buffer in buffers:
            rows = [epoch(path, buffer) for _ in range(repeats)]
            first = rows[0]
            label = f"{path.name} ({first['chunks']}, {first['cells']:,}, {first['nnz']:,})"
            lines.append(f"| {label} | {buffer} | {statistics.median(r['cells_per_s'] for r in rows):,.0f} | "
                         f"{statistics.median(r['peak_mb'] for r in rows):,.0f} | {first['distinct']:.2f} | "
                         f"{first['random']:.2f} |")
    return "\n".join(lines)
