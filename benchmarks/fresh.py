"""Headline figures of `.sinr`, each from a fresh process: `python -m benchmarks fresh DATASET_DIR ...`.

For each dataset: the CLI's encode (wall seconds and the process's peak memory), bits per nonzero,
the size against the same matrix as a Cell Ranger-layout 10x .h5 (written by `sinr decode`), a whole
read to scipy CSR and CSC (`sinr.open` + `to_scipy`, first-touch checks included) against h5py's
read of the 10x file, and warm latencies of one entry, one gene and one cell. Each read is measured
in `repeats` fresh processes; the table gives medians. Run it with nothing else heavy running.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ENCODE = r"""
import json, sys, time
from scinrcodec.cli import main
start = time.perf_counter()
status = main(["encode", sys.argv[1], sys.argv[2], "--force", "--matrix-only", "--format-version", sys.argv[3]])
print(json.dumps({"status": status, "seconds": time.perf_counter() - start,
                  "peak_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024}))
"""
PROBE = r"""
import json, statistics, sys, time
import numpy as np
import scipy.sparse  # as the h5py peer has it: a read is timed, not scipy's import
kind, path = sys.argv[1], sys.argv[2]
out = {}
if kind == "h5py":
    import h5py, scipy.sparse as sp
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        g = f["matrix"]
        sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g["shape"][:]))
    out["read_s"] = time.perf_counter() - start
elif kind in ("csr", "csc"):
    import scinrcodec as sinr
    start = time.perf_counter()
    sinr.open(path).to_scipy(layout=kind)
    out["read_s"] = time.perf_counter() - start
else:
    import scinrcodec as sinr
    m = sinr.open(path)
    rng = np.random.default_rng(0)
    expressed = np.flatnonzero(np.diff(m.to_scipy().indptr) > 0)
    m = sinr.open(path)

    def median(fn, calls):
        times = []
        for args in calls:
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    n_cells = m.shape[1]
    out["entry_us"] = 1e6 * median(m.get, [(int(rng.choice(expressed)), int(rng.integers(n_cells)))
                                           for _ in range(2000)])
    out["gene_ms"] = 1e3 * median(m.gene, [(int(rng.choice(expressed)),) for _ in range(40)])
    out["cell_ms"] = 1e3 * median(m.cell, [(int(rng.integers(n_cells)),) for _ in range(40)])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak
out["peak_mb"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(out))
"""


def _child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter, with bytecode caches as an installed package has them
    (startup.py says why); its last line of JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1])


def run_fresh(datasets: list[Path], workdir: Path, repeats: int = 3, versions: tuple[int, ...] = (3,)) -> str:
    """A markdown table of the headline figures of each dataset written in each format version
    (medians of `repeats` processes)."""
    import scinrcodec as sinr

    workdir.mkdir(parents=True, exist_ok=True)
    _child("import scinrcodec.wholefile.matrix, scinrcodec.reader.assemble, scinrcodec.cli; print('{}')")  # caches
    lines = [f"Each figure from fresh processes, median of {repeats} (encode: one).", "",
             "| dataset | format | nnz | bits/nnz | x 10x .h5 | encode s / peak MB | read CSR / CSC ms | "
             "10x .h5 via h5py ms | read peak MB (CSR / h5py) | entry us | gene ms | cell ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, version in ((d, v) for d in datasets for v in versions):
        sinr_path, h5_path = workdir / f"{dataset.name}.v{version}.sinr", workdir / f"{dataset.name}.h5"
        encoded = _child(ENCODE, str(dataset), str(sinr_path), str(version))
        sinr.decode(sinr_path, h5_path, force=True)
        with sinr.open(sinr_path) as m:
            nnz = m.nnz
        rows = {kind: [_child(PROBE, kind, str(h5_path if kind == "h5py" else sinr_path)) for _ in range(repeats)]
                for kind in ("h5py", "csr", "csc", "reads")}

        def med(kind: str, key: str) -> float:
            return statistics.median(row[key] for row in rows[kind])

        size = sinr_path.stat().st_size
        lines.append(
            f"| {dataset.name} | {version} | {nnz:,} | {8 * size / nnz:.2f} | {size / h5_path.stat().st_size:.3f} | "
            f"{encoded['seconds']:.2f} / {encoded['peak_mb']:.0f} | {1e3 * med('csr', 'read_s'):.0f} / "
            f"{1e3 * med('csc', 'read_s'):.0f} | {1e3 * med('h5py', 'read_s'):.0f} | {med('csr', 'peak_mb'):.0f} / "
            f"{med('h5py', 'peak_mb'):.0f} | {med('reads', 'entry_us'):.1f} | {med('reads', 'gene_ms'):.2f} | "
            f"{med('reads', 'cell_ms'):.2f} |")
    return "\n".join(lines)
