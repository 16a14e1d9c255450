"""Warm query latencies of .sinr files on a scale benchmark's own workload, alternating files:
`python -m benchmarks.workload_latency WORKLOAD.json FILE.sinr [FILE.sinr ...] [--rounds 2]`.

For comparing encodings of one input (tile sizes, say) without the whole scale run: each round
opens every file in a fresh process and reports the median of warm entries (2,000), genes (20),
cells (40) and sets of 1,000 cells (4) from the workload `python -m benchmarks scale` wrote
(WORKDIR/<input>/workload.json), the first query of each kind answered before the timing."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COUNTS = {"entries": 2000, "genes": 20, "cells": 40, "cell_sets": 4}


def measure(workload: Path, path: Path) -> dict:
    """Median seconds of each query kind for one file, in this process."""
    import scinrcodec

    items = json.loads(workload.read_text())
    m = scinrcodec.open(path)
    calls = {"entries": lambda e: m[int(e[0]), int(e[1])], "genes": m.gene, "cells": m.cell,
             "cell_sets": lambda cols: m[:, cols]}
    out = {}
    for kind, call in calls.items():
        chosen = items[kind][: COUNTS[kind] + 1]
        call(chosen[0])
        seconds = []
        for item in chosen[1:]:
            start = time.perf_counter()
            call(item)
            seconds.append(time.perf_counter() - start)
        out[kind] = float(np.median(seconds))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workload_latency", description=__doc__.split("\n")[0])
    parser.add_argument("workload", type=Path)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child process's file
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.workload, args.one)))
        return 0
    print("| round | file | entry µs | gene ms | cell ms | 1,000 cells ms |\n|---|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        for path in args.files:
            run = subprocess.run([sys.executable, "-m", "benchmarks.workload_latency", str(args.workload), "x",
                                  "--one", str(path)], capture_output=True, text=True, check=True)
            r = json.loads(run.stdout)
            print(f"| {round_} | {path.name} | {r['entries'] * 1e6:.1f} | {r['genes'] * 1e3:.2f} | "
                  f"{r['cells'] * 1e3:.2f} | {r['cell_sets'] * 1e3:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
