"""Raw (unfiltered) matrices: what .sinr costs and gains on the matrix Cell Ranger writes before cell
calling, where most barcodes are empty droplets.

python -m benchmarks.raw [--datasets NAME ...] [--barcodes 737280] [--ambient 120000] [--repeats 3]
                         [--workdir DIR] [--out benchmarks/results]

Cell Ranger's raw_feature_bc_matrix.h5 lists every barcode of its whitelist that was seen (every one
of the 737,280 of the v2 chemistry's in Cell Ranger 2's), sorted, a few thousand of them cells and
the rest empty droplets holding a few ambient molecules or none. The input built here has that shape
from a dataset's real cells: `--barcodes` random 16-base barcodes with the suffix -1, sorted; the
dataset's cells, unchanged, at random places among them; `--ambient` more barcodes each a random real
cell binomially thinned to a small total (floor(e^X) molecules, X ~ Exponential(1): most hold 1-3,
as empty droplets do), the thinning keeping its genes' proportions; every other barcode empty. It is
written in the Cell Ranger v3 layout (gzip level 4 and shuffle, as the scale inputs). Each
measurement runs in a fresh process, imports done before the clock starts; the tables give medians
over the rounds, every measurement run once per round. Writes raw.md and raw.csv in --out.
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

import numpy as np

from benchmarks.measure import publish

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("pbmc4k_v2_soupx_half", "frozen_pbmc_donor_a_v1", "visium_spaceranger3")
BUILDER = 1  # bump when the construction changes: cached files of another version are rebuilt
N_GENES_READ, N_CELLS_READ = 20, 20
# Each measurement: a setup run before the clock (imports, opening) and the timed statement; both
# see `raw` (the .h5), `sinr_path`, `out` (a scratch path) and `cells` (the real cells' barcodes).
MEASURES = {
    "encode (sinr encode)": ("from scinrcodec.cli import main",
                             "main(['encode', raw, out, '--force', '--quiet'])"),
    "whole matrix, .sinr to_scipy csc": ("import scinrcodec; m = scinrcodec.open(sinr_path)", "m.to_scipy('csc')"),
    "whole matrix, 10x h5py": ("from benchmarks.scale_formats import load_10x", "load_10x(Path(raw), names=False)"),
    "a gene over every barcode, .sinr m[g, :]": ("import scinrcodec; m = scinrcodec.open(sinr_path); m[0, :]",
                                                 "[m[g, :] for g in GENES]"),
    "a barcode, .sinr m[:, j]": ("import scinrcodec; m = scinrcodec.open(sinr_path); m[:, 0]",
                                 "[m[:, j] for j in BARCODES]"),
    "a barcode, 10x h5py": ("from benchmarks.scale_formats import TenxReader; r = TenxReader(Path(raw))",
                            "[r.cell(j) for j in BARCODES]"),
    "the cells by barcode, .sinr subset": ("import scinrcodec",
                                           "scinrcodec.subset(sinr_path, out, cells=cells, force=True)"),
}
PER_ITEM = {"a gene over every barcode, .sinr m[g, :]": N_GENES_READ, "a barcode, .sinr m[:, j]": N_CELLS_READ,
            "a barcode, 10x h5py": N_CELLS_READ}
CHILD = """
import json, sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import numpy, scipy.sparse, h5py
from benchmarks.measure import peak_rss_bytes
raw, sinr_path, out, cells_file = sys.argv[1:5]
cells = Path(cells_file).read_text().split()
GENES, BARCODES = json.loads(sys.argv[5]), json.loads(sys.argv[6])
{setup}
start = time.perf_counter()
{statement}
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mb": peak_rss_bytes() / 2**20}}))
"""


def _barcodes(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct random 16-base barcodes with the suffix -1, sorted (as Cell Ranger lists them)."""
    letters = np.frombuffer(b"ACGT", np.uint8)
    found: set[bytes] = set()
    while len(found) < n:
        found.update(bytes(row) for row in letters[rng.integers(0, 4, (n - len(found), 16))])
    return sorted(code.decode() + "-1" for code in found)


def build(dataset: Path, n_barcodes: int, n_ambient: int, out: Path, seed: int = 0) -> dict:
    """The raw-like input of a dataset (the module docstring says how), written to `out`."""
    import h5py

    import scinrcodec
    from benchmarks.scale_data import GZIP, H5_CHUNK, _strings

    rng = np.random.default_rng([seed, n_barcodes, n_ambient])
    source = scinrcodec.read_matrix(dataset)
    csc = source.matrix().tocsc()
    csc.sort_indices()
    n_genes, n_cells = csc.shape
    if n_cells + n_ambient > n_barcodes:
        raise ValueError(f"{n_cells:,} cells and {n_ambient:,} ambient barcodes exceed {n_barcodes:,} barcodes")
    totals = np.asarray(csc.sum(axis=0)).ravel()
    kind = np.zeros(n_barcodes, np.int8)  # 0 empty, 1 a cell, 2 ambient
    places = rng.permutation(n_barcodes)
    kind[np.sort(places[:n_cells])], kind[places[n_cells:n_cells + n_ambient]] = 1, 2
    molecules = np.floor(np.exp(rng.exponential(1.0, n_ambient))).astype(np.int64)
    drawn_from = rng.integers(0, n_cells, n_ambient)
    counts, genes, values = np.zeros(n_barcodes, np.int64), [], []
    cell, ambient = 0, 0
    for b in np.flatnonzero(kind).tolist():
        j = cell if kind[b] == 1 else int(drawn_from[ambient])
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        v = csc.data[lo:hi].astype(np.int64)
        if kind[b] == 2:
            v = rng.binomial(v, min(1.0, molecules[ambient] / max(int(totals[j]), 1)))
            ambient += 1
        else:
            cell += 1
        keep = v > 0
        genes.append(csc.indices[lo:hi][keep].astype(np.int64))
        values.append(v[keep].astype(np.int32))
        counts[b] = int(keep.sum())
    barcodes = _barcodes(rng, n_barcodes)
    arrays = dict(chunks=(H5_CHUNK,), shuffle=True, **GZIP)
    gene_ids = source.gene_ids or source.gene_names or [f"gene{i}" for i in range(n_genes)]
    with h5py.File(out, "w") as f:
        f.attrs.update({"filetype": "matrix", "version": 2, "software_version": "scinrcodec benchmarks",
                        "chemistry_description": f"raw-like, from {dataset.name}"})
        g = f.create_group("matrix")
        for name, data in (("data", np.concatenate(values)), ("indices", np.concatenate(genes)),
                           ("indptr", np.concatenate([[0], np.cumsum(counts)]))):
            g.create_dataset(name, data=data, **{**arrays, "chunks": (min(H5_CHUNK, max(data.size, 1)),)})
        g.create_dataset("shape", data=np.array([n_genes, n_barcodes], dtype=np.int32))
        g.create_dataset("barcodes", data=_strings(barcodes), chunks=(min(n_barcodes, H5_CHUNK),), **GZIP)
        features = g.create_group("features")
        for key, text in (("id", gene_ids), ("name", source.gene_names or gene_ids),
                          ("feature_type", ["Gene Expression"] * n_genes), ("genome", [""] * n_genes)):
            features.create_dataset(key, data=_strings(text), **GZIP)
        features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
    cell_barcodes = [barcodes[b] for b in np.flatnonzero(kind == 1).tolist()]
    return {"builder": BUILDER, "dataset": dataset.name, "barcodes": n_barcodes, "ambient": n_ambient,
            "cells": n_cells, "genes": n_genes, "nnz": int(counts.sum()), "cell_nnz": int(csc.nnz),
            "nonempty": int(np.count_nonzero(counts)), "bytes": out.stat().st_size, "cell_barcodes": cell_barcodes}


def raw_input(dataset: Path, n_barcodes: int, n_ambient: int, workdir: Path) -> tuple[Path, dict]:
    """The cached input for these parameters, built first if missing or from another builder."""
    path = workdir / f"{dataset.name}_raw{n_barcodes}_ambient{n_ambient}.h5"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("builder") == BUILDER and meta.get("bytes") == path.stat().st_size:
            return path, meta
    workdir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    meta = build(dataset, n_barcodes, n_ambient, partial)
    os.replace(partial, path)
    meta_path.write_text(json.dumps(meta))
    return path, meta


def sizes(sinr_path: Path) -> dict[str, int]:
    """The .sinr file's bytes by part (as sinr info counts them)."""
    import scinrcodec
    from scinrcodec.report import size_by_part

    with scinrcodec.open(sinr_path) as m:
        return {"file": sinr_path.stat().st_size, **size_by_part(m)}


def measure(raw: Path, meta: dict, workdir: Path, repeats: int) -> list[dict]:
    """Medians over `repeats` rounds, each round running every measurement once."""
    from scinrcodec.cli import main as sinr

    sinr_path = raw.with_suffix(".sinr")  # encoded afresh: a file an earlier writer made would give its sizes
    sinr(["encode", str(raw), str(sinr_path), "--force", "--quiet"])
    cells_file = raw.with_suffix(".cells.txt")
    cells_file.write_text("\n".join(meta["cell_barcodes"]) + "\n")
    rng = np.random.default_rng(1)
    genes = rng.choice(meta["genes"], N_GENES_READ, replace=False).tolist()
    barcodes = rng.choice(meta["barcodes"], N_CELLS_READ, replace=False).tolist()
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    runs: dict[str, list[dict]] = {name: [] for name in MEASURES}
    for _ in range(repeats):
        for name, (setup, statement) in MEASURES.items():
            child = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup, statement=statement), str(raw),
                                    str(sinr_path), str(workdir / "scratch.sinr"), str(cells_file),
                                    json.dumps(genes), json.dumps(barcodes)],
                                   capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(child.stdout.strip().splitlines()[-1]))
    return [{"measure": name, "seconds": statistics.median(r["seconds"] for r in runs[name]) / PER_ITEM.get(name, 1),
             "peak_mb": statistics.median(r["peak_mb"] for r in runs[name]), "repeats": repeats}
            for name in MEASURES]


def report(results: list[dict], command: str, load: str) -> str:
    lines = ["# Raw (unfiltered) matrices", "",
             f"`{command}`, {datetime.date.today().isoformat()}, on the project's shared 2-core VM (load average "
             f"before the run: {load}). Built by `benchmarks/raw.py` (its docstring says how). Seconds are "
             f"medians of fresh processes (per gene and per barcode for the reads of {N_GENES_READ} genes and "
             f"{N_CELLS_READ} barcodes); peak MB is the process's VmHWM, imports included.", ""]
    for result in results:
        meta, size = result["meta"], result["sizes"]
        lines += [f"## {meta['dataset']}: {meta['barcodes']:,} barcodes ({meta['cells']:,} cells, "
                  f"{meta['nonempty']:,} barcodes holding a molecule), {meta['genes']:,} genes, {meta['nnz']:,} "
                  f"nonzeros ({meta['nnz'] - meta['cell_nnz']:,} of them ambient)", "",
                  f"Files: the 10x .h5 {meta['bytes']:,} bytes, the .sinr {size['file']:,} bytes "
                  f"({size['file'] / meta['bytes']:.3f}x; {8 * size['file'] / meta['nnz']:.2f} bits per nonzero). "
                  "The .sinr by part: " + ", ".join(f"{part} {n:,} ({n / size['file']:.0%})"
                                                    for part, n in size.items() if part != "file" and n) + ".", "",
                  "| measure | seconds | peak MB |", "|---|---|---|"]
        lines += [f"| {row['measure']} | {row['seconds']:.4g} | {row['peak_mb']:.0f} |" for row in result["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import SCALE_DATA

    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="folders of ../shared/data")
    parser.add_argument("--barcodes", type=int, default=737_280, help="barcodes in all (v2 chemistry's whitelist)")
    parser.add_argument("--ambient", type=int, default=120_000, help="barcodes holding ambient molecules")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=SCALE_DATA / "raw", help="built inputs (cached)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder of raw.md and raw.csv")
    args = parser.parse_args(argv)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    results = []
    for dataset in args.datasets:
        raw, meta = raw_input(SHARED / dataset, args.barcodes, args.ambient, args.workdir)
        rows = measure(raw, meta, args.workdir, args.repeats)
        results.append({"meta": meta, "sizes": sizes(raw.with_suffix(".sinr")), "rows": rows})
        print(json.dumps({"dataset": dataset, "rows": rows}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "raw.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "barcodes", "nnz", "tenx_bytes", "sinr_bytes", "measure", "seconds", "peak_mb"])
        for result in results:
            meta = result["meta"]
            for row in result["rows"]:
                writer.writerow([meta["dataset"], meta["barcodes"], meta["nnz"], meta["bytes"], result["sizes"]["file"],
                                 row["measure"], f"{row['seconds']:.6g}", f"{row['peak_mb']:.1f}"])
    return publish(args.out, "raw", argv, lambda command: report(results, command, load))


if __name__ == "__main__":
    sys.exit(main())
