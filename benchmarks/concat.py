"""Combining files: `python -m benchmarks concat [--dataset DIR ...] [--parts 10] [--part-nnz 6e6] [--repeats 3]`.

Ten samples of real cells (`scale`'s input of parts x part-nnz nonzeros, benchmarks/scale_data.py,
cut into `parts` runs of consecutive cells, each about part-nnz nonzeros) are encoded as ten .sinr
files of one matrix each (no SIREN), and combined into one file two ways:
- `scinrcodec.concat` (what `sinr concat` runs);
- decode and encode again, as a user would without it: read_sinr of every file, anndata.concat,
  write_sinr(matrix_only=True).
Two cases: `same genes` (every file has the genes of the 10x input in its order) and `permuted
genes` (the same genes, each file after the first in an order of its own). Either way each file's
chunks are copied into a segment of the output (spec §5.5), its gene order mapped to the output's
genes, and decoded once to compute their checksums anew. Every combination runs in a fresh process: wall seconds and
peak resident memory (VmHWM), with the memory the process held before the call (interpreter and
imports) beside it. Each output is checked to hold every input's cells with the input's values.
Writes concat.md and concat.csv in --out.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = {
    "sinr concat": "scinrcodec.concat(inputs, out, force=True)",
    "decode + encode": "parts = [scinrcodec.read_sinr(p) for p in inputs]\n"
                       "adata = anndata.concat(parts, join='inner', merge='first')\n"
                       "del parts\n"
                       "scinrcodec.write_sinr(adata, out, matrix_only=True, force=True, siren='never')",
}
CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import anndata, numpy, scipy.sparse, scinrcodec
import scinrcodec.wholefile.combine, scinrcodec.wholefile.restore, scinrcodec.encoder.driver
from benchmarks.measure import peak_rss_bytes, rss_bytes
inputs, out = sys.argv[1:-1], sys.argv[-1]
before = rss_bytes()
start = time.perf_counter()
{method}
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": peak_rss_bytes() / 2**20, "before_mb": before / 2**20}}))
"""


def build_parts(dataset: Path, parts: int, part_nnz: int, workdir: Path) -> dict[str, list[Path]]:
    """The part files of both cases (cached in workdir): {'same genes': [...], 'permuted genes': [...]}."""
    import numpy as np

    import scinrcodec as sinr
    from .load_anndata import anndata_of_10x
    from .scale_data import scale_input

    data = scale_input(dataset, parts * part_nnz, 0, workdir)
    folder = workdir / "concat" / f"{data.path.stem}_{parts}parts"
    cases = {case: [folder / f"{tag}{k}.sinr" for k in range(parts)]
             for case, tag in (("same genes", "part"), ("permuted genes", "permuted"))}
    if all(p.exists() for files in cases.values() for p in files):
        return cases
    folder.mkdir(parents=True, exist_ok=True)
    adata = anndata_of_10x(data.path)
    ends = np.cumsum(np.diff(adata.X.indptr))
    cuts = np.concatenate([[0], np.searchsorted(ends, np.arange(1, parts) * (ends[-1] / parts)), [adata.n_obs]])
    rng = np.random.default_rng(0)
    for k in range(parts):
        part = adata[int(cuts[k]):int(cuts[k + 1])].copy()
        sinr.write_sinr(part, cases["same genes"][k], matrix_only=True, force=True, siren="never")
        order = np.arange(adata.n_vars) if k == 0 else rng.permutation(adata.n_vars)
        sinr.write_sinr(part[:, order].copy(), cases["permuted genes"][k], matrix_only=True, force=True,
                        siren="never")
    return cases


def check(inputs: list[Path], out: Path) -> None:
    """The output holds every input's cells, in order, with the input's values for each gene id."""
    import numpy as np

    import scinrcodec as sinr

    with sinr.open(out) as m:
        combined = m.to_scipy("csc", dtype=np.int32).T.tocsr()
        ids = m.gene_ids
    start = 0
    for path in inputs:
        with sinr.open(path) as p:
            x = p.to_scipy("csc", dtype=np.int32).T.tocsr()
            column = {g: i for i, g in enumerate(p.gene_ids)}
        order = np.array([column[g] for g in ids])
        if (combined[start: start + x.shape[0]] != x[:, order]).nnz:
            raise AssertionError(f"{out}: the cells of {path} differ from the input's")
        start += x.shape[0]
    if start != combined.shape[0]:
        raise AssertionError(f"{out}: holds {combined.shape[0]} cells, the inputs {start}")


def measure(inputs: list[Path], method: str, out: Path, repeats: int) -> dict:
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    runs = []
    for _ in range(repeats):
        child = subprocess.run([sys.executable, "-c", CHILD.format(method=METHODS[method]), *map(str, inputs),
                                str(out)], capture_output=True, text=True, check=True, env=env)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    check(inputs, out)
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": statistics.median(r["peak_mb"] for r in runs),
            "before_mb": statistics.median(r["before_mb"] for r in runs), "out_bytes": out.stat().st_size,
            "repeats": repeats}


def report(rows: list[dict], command: str, load: str) -> str:
    lines = ["# Combining .sinr files", "",
             f"`{command}`, {datetime.date.today().isoformat()}, on the project's shared 2-core VM (load average "
             f"before the run: {load}). Built and checked by `benchmarks/concat.py` (its docstring says how). "
             "Peak MB is the process's VmHWM; `before` is what it held before the call (interpreter and imports). "
             "Medians of fresh processes.", "",
             "| dataset | case | method | inputs | input bytes | output bytes | seconds | peak MB | before MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['case']} | {r['method']} | {r['parts']} x {r['part_nnz']:.0e} nnz | "
                     f"{r['in_bytes']:,} | {r['out_bytes']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | "
                     f"{r['before_mb']:.0f} |")
    lines.append("")
    for dataset, case in dict.fromkeys((r["dataset"], r["case"]) for r in rows):
        by = {r["method"]: r for r in rows if (r["dataset"], r["case"]) == (dataset, case)}
        if len(by) == 2:
            speedup = by["decode + encode"]["seconds"] / by["sinr concat"]["seconds"]
            lines.append(f"- {dataset}, {case}: sinr concat is {speedup:.1f}x faster than decode + encode (target 5x: "
                         f"{'met' if speedup >= 5 else 'NOT met'}).")
    return "\n".join(lines)


def run_concat(datasets: list[Path], parts: int, part_nnz: int, repeats: int, workdir: Path, out_dir: Path,
               cases: list[str], argv: list[str]) -> str:
    """Build the parts of each dataset, time both methods on each case, write concat.md and concat.csv."""
    built = {dataset: build_parts(dataset, parts, part_nnz, workdir) for dataset in datasets}
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for (dataset, files), case in ((d, c) for d in built.items() for c in cases):
        inputs = files[case]
        for method in METHODS:
            out = inputs[0].parent / f"out_{case.split()[0]}_{method.split()[0]}.sinr"
            row = {"dataset": dataset.name, "case": case, "method": method, "parts": parts, "part_nnz": part_nnz,
                   "in_bytes": sum(p.stat().st_size for p in inputs), **measure(inputs, method, out, repeats)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            out.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "concat.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = report(rows, "python -m benchmarks " + " ".join(argv), load)
    (out_dir / "concat.md").write_text(text + "\n", encoding="utf-8")
    return text
