"""Each gene's and each cell's totals, nonzero counts and variances of a whole file, three ways:
`python -m benchmarks summaries FILE.sinr ... [--repeats 3] [--jobs 1 2]`.

- `pass`: SinrMatrix.var(axis=0), one pass that decodes every chunk and adds its nonzeros to both
  axes' summaries, never building the matrix (sum, mean and count_nonzero then come from it);
- `to_scipy`: the whole matrix decoded (cell-major, the faster layout), then scipy's sums and
  nonzero counts along both axes and its variance along each;
- `dask`: read_lazy's X reduced by reduce_cells (sum and var along each axis, one graph), on dask's
  threads.

Each measurement is a fresh process (the file's pages cached by an unmeasured read first);
measurements alternate between files and ways, and medians are reported with the added peak
memory (above the process before the call) and nonzeros per second.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
import numpy as np
import scinrcodec as sinr
from benchmarks.measure import timed_peak

path, way, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if way == "dask":  # imported before the timing, as in a session that uses them
    import dask, dask.array, anndata
    from scinrcodec.wholefile import scverse


def summarise():
    if way == "pass":
        m = sinr.open(path, jobs=jobs)
        return m.var(axis=0), m.var(axis=1), m.sum(axis=0), m.count_nonzero(axis=1)
    if way == "to_scipy":
        x = sinr.open(path, jobs=jobs).to_scipy(layout="csc").astype(np.float64)
        squares = x.multiply(x)
        out = []
        for axis in (0, 1):
            mean = np.asarray(x.mean(axis=axis)).ravel()
            out += [np.asarray(squares.mean(axis=axis)).ravel() - mean * mean, x.getnnz(axis=axis)]
        return out
    lazy = sinr.read_lazy(path)
    with dask.config.set(scheduler="threads", num_workers=jobs):  # one graph: each block decoded once
        return dask.compute(*[sinr.reduce_cells(lazy.X, op, axis=axis) for op in ("sum", "var") for axis in (0, 1)])


_, seconds, peak = timed_peak(summarise)
print(json.dumps({"seconds": seconds, "peak_bytes": peak, "nnz": sinr.open(path).nnz}))
"""
WAYS = ("pass", "to_scipy", "dask")
ROOT = Path(__file__).resolve().parent.parent


def sample(path: Path, way: str, jobs: int) -> dict:
    """One fresh process's timing of `way` on `path`."""
    run = subprocess.run([sys.executable, "-c", PROBE, str(path), way, str(jobs), str(ROOT)], capture_output=True,
                         text=True, check=True)
    return json.loads(run.stdout)


def run_summaries(files: list[Path], repeats: int, jobs: list[int]) -> str:
    """A markdown table of medians per file, way and thread count."""
    seen: dict[tuple, list[dict]] = {}
    for path in files:
        path.read_bytes()  # in the page cache before any measurement
    for _ in range(repeats):
        for path in files:
            for threads in jobs:
                for way in WAYS:
                    seen.setdefault((path.name, threads, way), []).append(sample(path, way, threads))
    lines = [f"Medians of {repeats} fresh processes each ({sys.executable}); peak: memory added during the call.", "",
             "| file | threads | way | seconds | M nonzeros/s | peak MB |", "|---|---|---|---|---|---|"]
    for (name, threads, way), rows in seen.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        peaks = [r["peak_bytes"] for r in rows if r["peak_bytes"] is not None]
        peak = f"{statistics.median(peaks) / 2**20:.0f}" if peaks else "?"
        lines.append(f"| {name} | {threads} | {way} | {seconds:.3f} | {rows[0]['nnz'] / seconds / 1e6:.1f} | {peak} |")
    return "\n".join(lines)
