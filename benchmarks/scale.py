"""`scale`: the codec and its neighbours on matrices of 6e6 to 1e9 nonzeros built from real cells.

Every measurement runs in a fresh process (benchmarks/scale_worker.py) on the same input file and
the same random queries. Results are merged into the CSV already in the output folder, so sizes
can be run separately (e.g. 1e9 on a bigger machine) and compared.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from .measure import remove
from .scale_data import ScaleInput, scale_input, workload

FORMATS = ("10x", "sinr", "h5ad", "bpcells")
QUERY_OPS = ("open", "entry", "gene", "cell", "cells1000")
OPS = {"10x": (*QUERY_OPS, "read", "write"),  # its reads use the input file itself
       "sinr": ("write", "write_memory", *QUERY_OPS, "read", "read_csc", "loader"),
       "h5ad": ("write", *QUERY_OPS, "read"),
       "bpcells": ("write", *QUERY_OPS, "read")}
# Whole-matrix operations, measured once per process: `processes` fresh ones each (queries take medians of
# many calls in one process instead).
WHOLE_OPS = ("write", "write_memory", "read", "read_csc")
FILES = {"10x": "written.h5", "sinr": "matrix.sinr", "h5ad": "matrix.h5ad", "bpcells": "matrix.bpcells"}
MEMORY_FILE = "from_memory.sinr"  # what write_memory writes (removed after: the queries read FILES')
IN_MEMORY = ("h5ad", "bpcells")  # written from a matrix held in memory (several copies of it)
ROOT = Path(__file__).resolve().parent.parent


def _spawn(spec: dict, folder: Path, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter; its failure (error, kill, timeout) is its result."""
    spec_path, result_path = folder / "spec.json", folder / "result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    try:
        code = subprocess.run([sys.executable, "-m", "benchmarks.scale_worker", str(spec_path), str(result_path)],
                              cwd=ROOT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if result_path.exists():
        return json.loads(result_path.read_text())
    return {"error": "killed (out of memory?)" if code in (-9, 137) else f"exit status {code}"}


def _median_run(spec: dict, folder: Path, timeout: float, processes: int) -> dict:
    """The measurement in `processes` fresh interpreters: the run of median seconds, with the largest
    peak memory of any run, their number ('processes') and every run's seconds ('runs_s'); a failed
    run is the result."""
    runs = []
    for _ in range(max(1, processes)):
        result = _spawn(spec, folder, timeout)
        if "error" in result:
            return result
        runs.append(result)
    if len(runs) == 1:
        return runs[0]
    median = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
    return {**median, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "processes": len(runs),
            "runs_s": " ".join(f"{r['seconds']:.4g}" for r in runs)}


def _plan(data: ScaleInput, formats: list[str], in_memory_max_nnz: int) -> list[tuple[str, str, str | None]]:
    """(format, op, reason it is skipped or None) in the order they run: a format's write first."""
    plan = []
    too_big = f"skipped: written from memory, run up to {in_memory_max_nnz:.0e} nonzeros" \
        if data.nnz > in_memory_max_nnz else None
    for fmt in formats:
        skip = too_big if fmt in IN_MEMORY else None
        if fmt == "bpcells":
            try:
                import bpcells.experimental  # noqa: F401
            except ImportError:
                skip = "skipped: bpcells is not installed"
        plan += [(fmt, op, skip or (too_big if op == "write_memory" else None)) for op in OPS[fmt]]
    return plan


def measure_size(data: ScaleInput, formats: list[str], workdir: Path, seed: int, siren: str,
                 in_memory_max_nnz: int, timeout: float, processes: int = 1) -> list[dict]:
    """Every measurement on one input, each in its own process (a whole-matrix one in `processes`,
    their median); derived files are removed after."""
    from tqdm import tqdm

    folder = workdir / data.path.stem
    folder.mkdir(exist_ok=True)
    workload_path = folder / "workload.json"
    workload_path.write_text(json.dumps(workload(data, seed)))
    context = {"dataset": data.meta["dataset"], "target_nnz": data.meta["target_nnz"], "seed": seed, "nnz": data.nnz,
               "genes": data.shape[0], "cells": data.shape[1], "input_bytes": data.meta["bytes"]}
    rows, failed_writes = [], {}
    plan = _plan(data, formats, in_memory_max_nnz)
    bar = tqdm(plan, desc=f"scale {data.nnz:.1e}", unit="measure")
    for fmt, op, skip in bar:
        bar.set_postfix_str(f"{fmt} {op}")
        file = folder / FILES[fmt]
        if skip is None and fmt in failed_writes and op != "write":
            skip = f"skipped: no file ({failed_writes[fmt]})"
        if skip is not None:
            rows.append({**context, "format": fmt, "op": op, "note": skip})
            continue
        if op == "write_memory":
            file = folder / MEMORY_FILE
        spec = {"format": fmt, "op": op, "input": str(data.path), "workload": str(workload_path),
                "file": str(data.path if fmt == "10x" and op != "write" else file), "shape": list(data.shape),
                "nnz": data.nnz, "digest": data.meta["digest"], "siren": siren}
        result = _median_run(spec, folder, timeout, processes if op in WHOLE_OPS else 1)
        if op == "write" and "error" in result:
            failed_writes[fmt] = result["error"]
        if op == "write" and "bytes" in result:
            result.update(bits_per_nnz=result["bytes"] * 8 / data.nnz,
                          ratio_to_10x=result["bytes"] / data.meta["bytes"])
        if fmt == "sinr" and op == "write":
            result["siren"] = siren
        rows.append({**context, "format": fmt, "op": op, **result})
        bar.write(f"{data.nnz:.1e} {fmt:8} {op:10} " + (result.get("error") or
                  f"{result['seconds']:.4g} s, peak {result['peak_rss_mb']:.0f} MB"))
        if (fmt == "10x" and op == "write") or op == "write_memory":
            remove(file)
    for fmt in formats:
        remove(folder / FILES[fmt])
    return rows


def run_scale(dataset: Path, sizes: list[int], workdir: Path, out: Path, *, seed: int, formats: list[str],
              siren: str, in_memory_max_nnz: int, timeout: float, processes: int = 1) -> str:
    """Build (or reuse) each size's input, measure it, merge into out/results.csv, write the report."""
    from .scale_report import write_report
    from .suite import environment

    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for target in sizes:
        data = scale_input(dataset, target, seed, workdir)
        rows += measure_size(data, formats, workdir, seed, siren, in_memory_max_nnz, timeout, processes)
    merged = _merge(out / "results.csv", rows)
    return write_report(merged, out, environment(), dataset.name, seed)


def _value(text: str):
    """A CSV field back as the number, flag or None it was written from."""
    if text in ("", "True", "False"):
        return None if text == "" else text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _key(row: dict) -> tuple:
    return row["dataset"], row["target_nnz"], row["seed"], row["format"], row["op"]


def _merge(path: Path, rows: list[dict]) -> list[dict]:
    """These rows, and those already in `path` that they do not replace (another size, format or
    operation), in the order of sizes and of the measurements."""
    kept = []
    if path.exists():
        with open(path, newline="") as fh:
            kept = [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    fresh = {_key(r) for r in rows}
    merged = [r for r in kept if _key(r) not in fresh] + rows
    order = {(fmt, op): k for k, (fmt, op) in enumerate((f, o) for f in FORMATS for o in OPS[f])}
    return sorted(merged, key=lambda r: (r["dataset"], r["target_nnz"], r["seed"], order[r["format"], r["op"]]))
