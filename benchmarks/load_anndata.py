"""Loading a whole file into AnnData: scinrcodec.read_sinr of a whole-AnnData .sinr file against
anndata.read_h5ad of the same AnnData written with gzip and uncompressed.

python -m benchmarks.load_anndata [--datasets NAME ...] [--nnz 6e6 6e7] [--repeats 3] [--workdir DIR]
                                  [--out benchmarks/results]

The inputs are `scale`'s (benchmarks/scale_data.py): real cells of each dataset replicated and
thinned to the target nonzeros, as a Cell Ranger-layout .h5. The AnnData is what scanpy's
read_10x_h5 makes of it (X float32 CSR cells x genes, barcodes as obs_names, gene names made
unique as var_names, gene_ids, feature_types and genome in var), written with write_h5ad (gzip
and uncompressed) and with write_sinr (a whole-AnnData .sinr, no SIREN). Each read runs in a
fresh process, imports done before the clock starts; the tables give the median seconds and peak
resident memory (VmHWM, imports included: about 130 MB) over the rounds. `X decode` is the .sinr
matrix alone (scinrcodec.open, then to_scipy as read_sinr decodes X): read_sinr minus it is what
the rest of read_sinr costs (obs, var and uns restored, the AnnData built). Writes
load_anndata.md and load_anndata.csv in --out.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import publish

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("pbmc4k_v2_soupx_half", "frozen_pbmc_donor_a_v1", "visium_spaceranger3")
# reader -> (file kind, setup defining read(path)); every import is done before the clock starts
READERS = {
    "read_sinr (.sinr)": ("sinr", "import scinrcodec as s, scinrcodec.wholefile.restore, scinrcodec.wholefile.scverse; "
                                  "read = lambda p: s.read_sinr(p)"),
    "X decode (.sinr)": ("sinr", "import scinrcodec as s, scinrcodec.wholefile.restore, scinrcodec.wholefile.scverse; "
                                 "read = lambda p: s.open(p).to_scipy('csc', dtype=numpy.float32).T"),
    "read_h5ad (gzip)": ("gzip", "read = lambda p: anndata.read_h5ad(p)"),
    "read_h5ad (uncompressed)": ("h5ad", "read = lambda p: anndata.read_h5ad(p)"),
}
CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import anndata, numpy, pandas, scipy.sparse, h5py
from benchmarks.measure import peak_rss_bytes
{setup}
start = time.perf_counter()
result = read(sys.argv[1])
seconds = time.perf_counter() - start
x = getattr(result, "X", result)
print(json.dumps({{"seconds": seconds, "peak_mb": peak_rss_bytes() / 2**20, "nnz": int(x.nnz)}}))
"""


def anndata_of_10x(path: Path):
    """The AnnData scanpy.read_10x_h5 gives for a Cell Ranger-layout .h5 (without importing scanpy)."""
    import anndata
    import h5py
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    with h5py.File(path, "r") as f:
        g = f["matrix"]
        n_genes, n_cells = (int(v) for v in g["shape"][:])
        x = sp.csr_matrix((g["data"][:].astype(np.float32), g["indices"][:].astype(np.int32), g["indptr"][:]),
                          shape=(n_cells, n_genes))
        text = {k: g[f"features/{k}"][:].astype(str) for k in ("id", "name", "feature_type", "genome")}
        barcodes = g["barcodes"][:].astype(str)
    var = pd.DataFrame({"gene_ids": text["id"], "feature_types": text["feature_type"], "genome": text["genome"]},
                       index=pd.Index(text["name"]))
    adata = anndata.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(barcodes)), var=var)
    adata.var_names_make_unique()
    return adata


def build(dataset: Path, nnz: int, workdir: Path) -> dict[str, Path]:
    """The three files (sinr, gzip, h5ad) of one AnnData, cached in workdir."""
    import scinrcodec as sinr
    from benchmarks.scale_data import scale_input

    data = scale_input(dataset, nnz, 0, workdir)
    stem = workdir / "load_anndata" / data.path.stem
    paths = {"sinr": stem.with_suffix(".sinr"), "gzip": stem.with_name(stem.name + "_gzip.h5ad"),
             "h5ad": stem.with_suffix(".h5ad")}
    if all(p.exists() for p in paths.values()):
        return paths
    stem.parent.mkdir(parents=True, exist_ok=True)
    adata = anndata_of_10x(data.path)
    adata.write_h5ad(paths["gzip"], compression="gzip")
    adata.write_h5ad(paths["h5ad"])
    sinr.write_sinr(adata, paths["sinr"], force=True, siren="never")
    return paths


def measure(paths: dict[str, Path], repeats: int) -> list[dict]:
    """Medians over `repeats` rounds, each round running every reader once (so a burst of load on
    the shared machine touches every reader alike)."""
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    runs: dict[str, list[dict]] = {name: [] for name in READERS}
    for _ in range(repeats):
        for name, (kind, setup) in READERS.items():
            child = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup), str(paths[kind])],
                                   capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    return [{"reader": name, "bytes": paths[kind].stat().st_size, "nnz": runs[name][0]["nnz"],
             "seconds": statistics.median(r["seconds"] for r in runs[name]),
             "peak_mb": statistics.median(r["peak_mb"] for r in runs[name]), "repeats": repeats}
            for name, (kind, _) in READERS.items()]


def targets(rows: list[dict]) -> str:
    """The issue's targets, met or not, for one file: faster than the gzip read, within 1.5x of
    the uncompressed read's time and 1.3x of its peak memory."""
    by = {r["reader"]: r for r in rows}
    sinr, gz, plain = by["read_sinr (.sinr)"], by["read_h5ad (gzip)"], by["read_h5ad (uncompressed)"]
    checks = [("faster than gzip", sinr["seconds"] < gz["seconds"]),
              (f"time {sinr['seconds'] / plain['seconds']:.1f}x uncompressed (target 1.5x)",
               sinr["seconds"] <= 1.5 * plain["seconds"]),
              (f"peak {sinr['peak_mb'] / plain['peak_mb']:.2f}x uncompressed (target 1.3x)",
               sinr["peak_mb"] <= 1.3 * plain["peak_mb"])]
    return "; ".join(f"{text}: {'met' if ok else 'NOT met'}" for text, ok in checks)


def report(rows: list[dict], command: str, load: str) -> str:
    lines = ["# Loading a whole file into AnnData", "",
             f"`{command}`, {datetime.date.today().isoformat()}, on the project's shared 2-core VM (load average "
             f"before the run: {load}). Built by `benchmarks/load_anndata.py` (its docstring says how); X is "
             "float32 CSR cells x genes; `X decode` is the .sinr matrix alone (open and to_scipy), so "
             "read_sinr minus X decode is the rest of read_sinr. Peak MB is the process's VmHWM, imports "
             "(about 130 MB) included. Medians of fresh processes, every reader run once per round.", ""]
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["target_nnz"]), []).append(row)
    for (dataset, _), group in groups.items():
        lines += [f"## {dataset}, {group[0]['nnz']:,} nonzeros ({group[0]['repeats']} processes each)", "",
                  "| reader | file bytes | seconds | peak MB |", "|---|---|---|---|"]
        lines += [f"| {r['reader']} | {r['bytes']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |" for r in group]
        by = {r["reader"]: r for r in group}
        rest = by["read_sinr (.sinr)"]["seconds"] - by["X decode (.sinr)"]["seconds"]
        lines += ["", f"read_sinr = X decode {by['X decode (.sinr)']['seconds']:.2f} s + the rest {rest:.2f} s. "
                  f"Targets: {targets(group)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import SCALE_DATA, _count

    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_anndata")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="folders of ../shared/data")
    parser.add_argument("--nnz", nargs="+", type=_count, default=[6_000_000, 60_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=SCALE_DATA, help="built inputs (cached)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder of load_anndata.md and load_anndata.csv")
    parser.add_argument("--build-only", action="store_true", help="build the files and stop (no timing)")
    args = parser.parse_args(argv)
    files = {(d, n): build(SHARED / d, n, args.workdir) for d in args.datasets for n in args.nnz}
    if args.build_only:
        return 0
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for (dataset, nnz), paths in files.items():
        for row in measure(paths, args.repeats):
            rows.append({"dataset": dataset, "target_nnz": nnz, **row})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "load_anndata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return publish(args.out, "load_anndata", argv, lambda command: report(rows, command, load))


if __name__ == "__main__":
    sys.exit(main())
