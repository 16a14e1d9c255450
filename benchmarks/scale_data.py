"""Large inputs for `scale`: real cells, replicated and thinned, streamed into a Cell Ranger-layout
10x HDF5 file, and what the measurements compare against (content digests, query workload).

Copy k of the source's cells keeps each count v as Binomial(v, p), p drawn per cell and copy
from Uniform(P_LOW, 1) with a seed of its own: library sizes vary as between real cells, and no
two columns are equal. Copies are appended one at a time to resizable datasets, so building
holds one copy in memory whatever the target size; the last copy stops at the cell that reaches
the target. Barcodes get the copy number as their suffix (-1, -2, ...), as `cellranger aggr` does.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

BUILDER = 1  # bump when the construction changes: cached files of another version are rebuilt
P_LOW = 0.5
H5_CHUNK = 80_000  # Cell Ranger's chunk length for data, indices and indptr
GZIP = dict(compression="gzip", compression_opts=4)
DIGEST_BLOCK_NNZ = 1 << 23

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


# ------------------------------------------------------------------------------------- digests

def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    return x ^ (x >> np.uint64(31))


def entries_digest(genes: np.ndarray, cells: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[count, sum of values, sum of hashes of (gene, cell, value)] mod 2**64: independent of
    order, so CSR, CSC and per-block results can be compared and added."""
    genes, cells = np.asarray(genes).astype(np.uint64), np.asarray(cells).astype(np.uint64)
    values = np.asarray(values).astype(np.uint64)
    hashes = _mix((cells << np.uint64(32)) | genes) ^ _mix(values + _M1)
    return np.array([genes.size, values.sum(dtype=np.uint64), _mix(hashes).sum(dtype=np.uint64)], dtype=np.uint64)


def digest_text(digest: np.ndarray) -> str:
    return f"{int(digest[0])}:{int(digest[1])}:{int(digest[2]):016x}"


def _blocks(indptr: np.ndarray):
    """(first, stop) major indices of consecutive blocks holding about DIGEST_BLOCK_NNZ entries each."""
    n_major, start = indptr.size - 1, 0
    while start < n_major:
        stop = int(np.searchsorted(indptr, indptr[start] + DIGEST_BLOCK_NNZ, side="right")) - 1
        stop = min(max(stop, start + 1), n_major)
        yield start, stop
        start = stop


def compressed_digest(indptr: np.ndarray, indices, data, *, major_is_cell: bool, progress: bool = False) -> str:
    """Digest of a CSC/CSR matrix (or its HDF5 datasets), one block of major rows at a time, so
    the check holds one block beyond the matrix."""
    from tqdm import tqdm

    total = np.zeros(3, dtype=np.uint64)
    with tqdm(total=int(indptr[-1]), desc="digest", unit=" nonzeros", unit_scale=True, leave=False,
              disable=not progress) as bar:
        for start, stop in _blocks(indptr):
            a, b = int(indptr[start]), int(indptr[stop])
            major = np.repeat(np.arange(start, stop), np.diff(indptr[start: stop + 1]))
            minor = indices[a:b]
            total += entries_digest(minor, major, data[a:b]) if major_is_cell else \
                entries_digest(major, minor, data[a:b])
            bar.update(b - a)
    return digest_text(total)


def h5_digest(path: Path, progress: bool = True) -> str:
    """Digest of a 10x HDF5 file read back with h5py, one block of cells at a time."""
    with h5py.File(path, "r") as f:
        g = f["matrix"]
        return compressed_digest(g["indptr"][:], g["indices"], g["data"], major_is_cell=True, progress=progress)


# ------------------------------------------------------------------------------------- building

@dataclass
class ScaleInput:
    """A built input file and what is known about it without reading it."""

    path: Path
    meta: dict

    @property
    def nnz(self) -> int:
        return self.meta["nnz"]

    @property
    def shape(self) -> tuple[int, int]:
        return self.meta["genes"], self.meta["cells"]


def _strings(values: list[str]) -> np.ndarray:
    encoded = [v.encode("utf-8") for v in values]
    return np.array(encoded, dtype=f"S{max((len(v) for v in encoded), default=1) or 1}")


def _copy_barcodes(names: list[str], copy: int) -> list[str]:
    return [f"{name[:-2] if name.endswith('-1') else name}-{copy + 1}" for name in names]


def thinned_copy(csc, copy: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy `copy` of the source cells, each cell's counts thinned with its own probability:
    (counts per cell, gene indices int64, values int32)."""
    rng = np.random.default_rng([seed, copy])
    per_cell = np.diff(csc.indptr)
    p = rng.uniform(P_LOW, 1.0, csc.shape[1])
    values = rng.binomial(csc.data.astype(np.int64), np.repeat(p, per_cell))
    keep = values > 0
    cell_of = np.repeat(np.arange(csc.shape[1]), per_cell)
    counts = np.bincount(cell_of[keep], minlength=csc.shape[1])
    return counts, csc.indices[keep].astype(np.int64), values[keep].astype(np.int32)


def _append(dataset: h5py.Dataset, values: np.ndarray) -> None:
    n = dataset.shape[0]
    dataset.resize((n + values.size,))
    dataset[n:] = values


def build(dataset: Path, target_nnz: int, seed: int, out: Path) -> dict:
    """Write the input for (dataset, target_nnz, seed) to `out`; return its metadata."""
    from tqdm import tqdm

    import scinrcodec

    source = scinrcodec.read_matrix(dataset)
    csc = source.matrix().tocsc()
    csc.sort_indices()
    n_genes, n_source_cells = csc.shape
    names = source.cell_names(0, n_source_cells) or [f"cell{j}" for j in range(n_source_cells)]
    gene_ids = source.gene_ids or source.gene_names or [f"gene{i}" for i in range(n_genes)]
    gene_names = source.gene_names or gene_ids
    feature_types = source.feature_types or ["Gene Expression"] * n_genes
    gene_nnz = np.zeros(n_genes, dtype=np.int64)
    nnz, copies, barcodes = 0, 0, []
    arrays = dict(chunks=(H5_CHUNK,), maxshape=(None,), shuffle=True, **GZIP)
    bar = tqdm(total=target_nnz, desc=f"building {out.name}", unit=" nonzeros", unit_scale=True)
    with h5py.File(out, "w") as f:
        f.attrs.update({"filetype": "matrix", "version": 2, "software_version": "scinrcodec benchmarks",
                        "chemistry_description": f"replicated and thinned from {dataset.name}"})
        g = f.create_group("matrix")
        data = g.create_dataset("data", shape=(0,), dtype=np.int32, **arrays)
        indices = g.create_dataset("indices", shape=(0,), dtype=np.int64, **arrays)
        indptr = g.create_dataset("indptr", data=np.zeros(1, dtype=np.int64), **arrays)
        while nnz < target_nnz:
            counts, genes, values = thinned_copy(csc, copies, seed)
            ends = np.cumsum(counts)
            n_cells = min(int(np.searchsorted(ends, target_nnz - nnz, side="left")) + 1, n_source_cells)
            taken = int(ends[n_cells - 1]) if n_cells else 0
            _append(data, values[:taken])
            _append(indices, genes[:taken])
            _append(indptr, nnz + ends[:n_cells])
            gene_nnz += np.bincount(genes[:taken], minlength=n_genes)
            barcodes += _copy_barcodes(names[:n_cells], copies)
            nnz += taken
            copies += 1
            bar.update(taken)
        bar.close()
        g.create_dataset("shape", data=np.array([n_genes, len(barcodes)], dtype=np.int32), **arrays)
        g.create_dataset("barcodes", data=_strings(barcodes), chunks=(len(barcodes),), **GZIP)
        features = g.create_group("features")
        for key, values in (("id", gene_ids), ("name", gene_names), ("feature_type", feature_types),
                            ("genome", [""] * n_genes)):
            features.create_dataset(key, data=_strings(values), chunks=(n_genes,), **GZIP)
        features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        f.attrs["library_ids"] = _strings([f"{dataset.name}-{k + 1}" for k in range(copies)])
        f.attrs["original_gem_groups"] = np.arange(1, copies + 1)
    return {"builder": BUILDER, "dataset": dataset.name, "target_nnz": target_nnz, "seed": seed, "p_low": P_LOW,
            "nnz": nnz, "genes": n_genes, "cells": len(barcodes), "copies": copies,
            "source_cells": n_source_cells, "source_nnz": int(csc.nnz), "bytes": out.stat().st_size,
            "digest": h5_digest(out), "gene_nnz": gene_nnz.tolist()}


def scale_input(dataset: Path, target_nnz: int, seed: int, workdir: Path) -> ScaleInput:
    """The cached input for these parameters, built first if missing or from another builder."""
    path = workdir / f"{dataset.name}_nnz{target_nnz}_seed{seed}.h5"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("builder") == BUILDER and meta.get("bytes") == path.stat().st_size:
            return ScaleInput(path, meta)
    workdir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    meta = build(dataset, target_nnz, seed, partial)
    os.replace(partial, path)
    meta_path.write_text(json.dumps(meta))
    return ScaleInput(path, meta)


def workload(data: ScaleInput, seed: int) -> dict:
    """The random queries every format answers, the same for all: entries and genes among
    expressed genes (a query of an all-zero gene is trivial for every format), any cells."""
    rng = np.random.default_rng(seed)
    n_genes, n_cells = data.shape
    expressed = np.flatnonzero(np.asarray(data.meta["gene_nnz"]) > 0)
    return {
        "entries": np.stack([rng.choice(expressed, 2000), rng.integers(0, n_cells, 2000)], axis=1).tolist(),
        "genes": rng.choice(expressed, 40).tolist(),
        "cells": rng.integers(0, n_cells, 40).tolist(),
        "cell_sets": [np.sort(rng.choice(n_cells, min(1000, n_cells), replace=False)).tolist() for _ in range(5)],
    }
