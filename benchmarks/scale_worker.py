"""One `scale` measurement in this (fresh) process: python -m benchmarks.scale_worker SPEC RESULT.

A process per measurement keeps each timing free of what ran before it, and makes the process's
peak resident memory (VmHWM) the peak of that one operation plus the interpreter and libraries.
"""
from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from .measure import MB, disk_bytes, median_seconds, peak_rss_bytes, rss_bytes
from .scale_data import compressed_digest, digest_text, entries_digest
from .scale_formats import READERS, as_entries, full, writer

# Each query: (workload key, min samples, max samples); a measure stops after BUDGET_S once it has
# its minimum, and its first minimum results are digested to check that the formats agree.
QUERIES = {"entry": ("entries", 20, 2000), "gene": ("genes", 3, 40), "cell": ("cells", 3, 40),
           "cells1000": ("cell_sets", 2, 5)}
BUDGET_S = 5.0
LOADER_BATCH = 256
LOADER_BUDGET_S = 60.0
LIBRARY = {"sinr": "scinrcodec", "10x": "h5py", "h5ad": "anndata", "bpcells": "bpcells.experimental"}


def _memory(before: int) -> dict:
    return {"peak_rss_mb": peak_rss_bytes() / MB, "rss_before_mb": before / MB}


def measure_write(spec: dict) -> dict:
    write = writer(spec["format"], Path(spec["input"]), spec["siren"], from_memory=spec["op"] == "write_memory")
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    write(Path(spec["file"]))
    seconds = time.perf_counter() - start
    size = disk_bytes(Path(spec["file"]))
    return {"seconds": seconds, **_memory(before), "bytes": size, "nnz_per_s": spec["nnz"] / seconds}


def measure_open(spec: dict) -> dict:
    importlib.import_module(LIBRARY[spec["format"]])
    before = rss_bytes()
    start = time.perf_counter()
    READERS[spec["format"]](Path(spec["file"]))
    return {"seconds": time.perf_counter() - start, **_memory(before)}


def measure_query(spec: dict) -> dict:
    """Median of warm queries: the file open and one query answered before the timing."""
    key, min_samples, max_samples = QUERIES[spec["op"]]
    items = json.loads(Path(spec["workload"]).read_text())[key][: max_samples + 1]
    reader = READERS[spec["format"]](Path(spec["file"]))
    n_genes, n_cells = spec["shape"]
    genes, cells = np.arange(n_genes), np.arange(n_cells)
    if key == "entries":
        call, cover = reader.entry, lambda i, j: ([i], [j])
    elif key == "genes":
        call, cover = reader.gene, lambda i: ([i], cells)
    elif key == "cells":
        call, cover = reader.cell, lambda j: (genes, [j])
    else:
        call, cover = reader.cells, lambda cols: (genes, cols)
    arguments = [tuple(item) if key == "entries" else (item,) for item in items]
    call(*arguments[0])
    before = rss_bytes()
    seconds, samples, kept = median_seconds(call, arguments[1:], budget_s=BUDGET_S, min_samples=min_samples,
                                            keep=min_samples)
    digest = np.zeros(3, dtype=np.uint64)
    for args, result in zip(arguments[1:], kept):
        digest += entries_digest(*as_entries(result, *cover(*args)))
    return {"seconds": seconds, "samples": samples, **_memory(before), "digest": digest_text(digest)}


def measure_read(spec: dict) -> dict:
    """Everything into memory; the result's digest against the input's tells whether it is exact."""
    fmt = spec["format"]
    importlib.import_module(LIBRARY[fmt])
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    matrix = full(fmt, Path(spec["file"]), "csc" if spec["op"] == "read_csc" else None)
    seconds = time.perf_counter() - start
    memory = _memory(before)
    result_bytes = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    major_is_cell = (matrix.format == "csc") != (fmt == "h5ad")  # h5ad holds cells x genes
    digest = compressed_digest(matrix.indptr, matrix.indices, matrix.data, major_is_cell=major_is_cell,
                               progress=True)
    return {"seconds": seconds, **memory, "result_mb": result_bytes / MB, "digest": digest,
            "exact": digest == spec["digest"]}


def measure_loader(spec: dict) -> dict:
    """The cell-batch loader (block shuffle, batches of LOADER_BATCH cells): cells per second over
    one epoch, or over LOADER_BUDGET_S of one; a whole epoch must give every cell exactly once."""
    import scinrcodec

    importlib.import_module("pandas")  # the batches' obs rows: loaded before the timing, as measure_open loads
    # the library it opens with (a training process has it loaded already; the import is 0.2 s of an epoch)

    m = scinrcodec.open(Path(spec["file"]))
    before = rss_bytes()
    seen = np.zeros(m.shape[1], dtype=np.int64)
    start = time.perf_counter()
    for batch in m.iter_cells(batch_size=LOADER_BATCH, shuffle=True, seed=0):
        np.add.at(seen, batch.cells, 1)
        if time.perf_counter() - start > LOADER_BUDGET_S:
            break
    seconds = time.perf_counter() - start
    cells = int(seen.sum())
    whole = cells == m.shape[1]
    return {"seconds": seconds, "cells_per_s": cells / seconds, "cells": cells, **_memory(before),
            "exact": bool(seen.max() == 1 and (not whole or seen.min() == 1))}


def main(spec_path: str, result_path: str) -> int:
    """Run the measurement SPEC names and write its figures, or its error, to RESULT as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    measure = {"write": measure_write, "write_memory": measure_write, "open": measure_open, "read": measure_read,
               "read_csc": measure_read, "loader": measure_loader}.get(spec["op"], measure_query)
    try:
        result = measure(spec)
    except Exception as exc:  # recorded as the measurement's outcome (MemoryError included), then shown
        Path(result_path).write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
        raise
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
