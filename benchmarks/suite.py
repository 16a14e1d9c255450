"""The benchmark run: every format on every dataset, for size, exactness and speed."""
from __future__ import annotations

import csv
import multiprocessing
import os
import platform
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

from scinrcodec import CountMatrix, read_matrix

from .formats import Format, formats
from .measure import MB, disk_bytes, median_seconds, remove, timed_peak
from .reference import static_model_bits

REPEATS = {"entry": 2000, "gene": 40, "cell": 40, "random1000": 5}
QUICK_REPEATS = {"entry": 200, "gene": 5, "cell": 5, "random1000": 2}


MEASURE_BUDGET_S = 4.0
MIN_SAMPLES = 3
RANDOM_BATCH_LIMIT_S = 30.0


def _median_seconds(fn, arguments, min_samples: int = MIN_SAMPLES) -> float:
    """Median time of fn(*args) over the arguments, stopping early once the budget is spent."""
    return median_seconds(fn, arguments, budget_s=MEASURE_BUDGET_S, min_samples=min_samples)[0]


def _megabytes(peak: float | None) -> float | None:
    return None if peak is None else peak / MB


def load(dataset: Path) -> CountMatrix:
    """A dataset with its names, counts as CSR (genes x cells), as every format's writer takes it."""
    source = read_matrix(dataset)
    return CountMatrix(source.matrix().tocsr(), source.gene_ids, source.gene_names,
                       source.cell_names(0, source.shape[1]), source.feature_types)


def measure(fmt: Format, m: CountMatrix, workdir: Path, repeats: dict, rng: np.random.Generator) -> dict:
    path = workdir / f"bench{fmt.suffix or '_dir'}"
    remove(path)
    stats, write_seconds, write_peak = timed_peak(lambda: fmt.write(m, path))
    size = disk_bytes(path)
    n_genes, n_cells = m.shape
    nnz = max(m.counts.nnz, 1)
    reader = fmt.open(path)
    try:
        decoded, read_seconds, read_peak = timed_peak(reader.full)
        decoded = decoded.tocsr()
        truth = m.counts
        row = {"format": fmt.name, "lossy": fmt.lossy, "bytes": size, "bits_per_nnz": size * 8 / nnz,
               "write_s": write_seconds, "read_s": read_seconds,
               "write_peak_mb": _megabytes(write_peak), "read_peak_mb": _megabytes(read_peak)}
        diff = (decoded - truth).tocsr()
        row["exact"] = diff.nnz == 0
        t = truth[truth.nonzero()].A1 if truth.nnz else np.zeros(0)
        d = decoded[truth.nonzero()].A1 if truth.nnz else np.zeros(0)
        row["exact_match_nonzeros"] = float(np.mean(t == d)) if t.size else 1.0
        row["mean_abs_error"] = float(abs(diff).sum() / max(n_genes * n_cells, 1))
        row["max_abs_error"] = int(abs(diff).max()) if diff.nnz else 0
        row["zeros_preserved"] = ((decoded != 0) != (truth != 0)).nnz == 0
        entries = list(zip(rng.integers(0, n_genes, repeats["entry"]).tolist(),
                           rng.integers(0, n_cells, repeats["entry"]).tolist()))
        reader.entry(*entries[0])
        row["entry_us"] = _median_seconds(reader.entry, entries) * 1e6
        expressed = np.flatnonzero(np.diff(truth.indptr))
        genes = [(int(g),) for g in rng.choice(expressed, repeats["gene"])] if expressed.size else [(0,)]
        row["gene_ms"] = _median_seconds(reader.gene, genes) * 1e3
        cells = [(int(c),) for c in rng.integers(0, n_cells, repeats["cell"])]
        row["cell_ms"] = _median_seconds(reader.cell, cells) * 1e3
        batch = entries[:1000]
        if row["entry_us"] * len(batch) < RANDOM_BATCH_LIMIT_S * 1e6:
            row["random1000_ms"] = _median_seconds(lambda: [reader.entry(i, j) for i, j in batch],
                                                   [()] * repeats["random1000"], min_samples=1) * 1e3
        for (i, j) in entries[:50]:
            if reader.entry(i, j) != decoded[i, j]:
                raise AssertionError(f"{fmt.name}: random access disagrees with full read at ({i}, {j})")
        if isinstance(stats, dict) and path.suffix == ".sinr":
            row.update(_sinr_parts(path, nnz))
    finally:
        reader.close()
    row["cold_entry_us"] = cold_entry_us(path, m, rng, fmt)
    remove(path)
    return row


def _sinr_parts(path: Path, nnz: int) -> dict:
    import scinrcodec as sinr
    from scinrcodec.report import size_by_part

    from .report import PARTS

    with sinr.open(path) as f:
        sizes = {k.replace(" ", "_"): v for k, v in size_by_part(f).items()}
        parts = {f"sinr_{part}_bits": sizes.get(part, 0) * 8 / nnz for part in PARTS}
        parts["sirens_kept"] = int(f.stats.get("siren_kept", 0))
        parts["bands"] = int(f.stats.get("bands", 0))
        parts["chunks"] = f.n_chunks
    return parts


def cold_entry_us(path: Path, m: CountMatrix, rng: np.random.Generator, fmt: Format) -> float:
    """Open + one entry, each time from a fresh open (the OS cache may still hold the file)."""
    def open_and_read(i: int, j: int) -> None:
        reader = fmt.open(path)
        reader.entry(i, j)
        reader.close()

    points = zip(rng.integers(0, m.shape[0], 20).tolist(), rng.integers(0, m.shape[1], 20).tolist())
    return _median_seconds(open_and_read, list(points), min_samples=1) * 1e6


def environment() -> dict:
    import h5py
    import scipy

    import scinrcodec
    from scinrcodec import _native

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                "h5py": h5py.__version__, "scinrcodec": scinrcodec.__version__, "native core": _native.compiler}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        versions["torch"] = "not installed"
    return {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.processor() or platform.platform()}", **versions}


def _measure_by_name(name: str, quick: bool, m: CountMatrix, workdir: Path) -> dict:
    """measure() for the format called `name`: what a fresh worker process runs."""
    fmt = next(f for f in formats(quick) if f.name == name)
    return measure(fmt, m, workdir, QUICK_REPEATS if quick else REPEATS, np.random.default_rng(0))


def run(datasets: list[Path], out: Path, quick: bool) -> list[dict]:
    """Every format on every dataset. A full run measures each format in a fresh process, so that
    no format's timings depend on what ran before it in the same interpreter (threads left by
    torch or HDF5 plugins, heap growth); a quick run (CI) stays in one process."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    workdir = out / "tmp"
    workdir.mkdir(exist_ok=True)
    rows = []
    fmts = formats(quick)
    progress = tqdm(total=len(datasets) * len(fmts), desc="benchmark", unit="run")
    for dataset in datasets:
        m = load(dataset)
        reference_bits = static_model_bits(m.counts)
        reference_size = None
        for fmt in fmts:
            progress.set_postfix_str(f"{dataset.name}: {fmt.name}")
            if quick:
                measured = _measure_by_name(fmt.name, quick, m, workdir)
            else:
                with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    measured = pool.submit(_measure_by_name, fmt.name, quick, m, workdir).result()
            row = {"dataset": dataset.name, "genes": m.shape[0], "cells": m.shape[1], "nnz": m.counts.nnz,
                   **measured}
            if reference_size is None:
                reference_size = row["bytes"]
            row["ratio_to_10x"] = row["bytes"] / reference_size
            row["static_model_bits_per_nnz"] = reference_bits
            rows.append(row)
            progress.update(1)
    progress.close()
    workdir.rmdir()
    return rows


def write_results(rows: list[dict], out: Path, env: dict) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    from .report import markdown, plots

    text = markdown(rows, env)
    (out / "results.md").write_text(text)
    plots(rows, out)
    return text
