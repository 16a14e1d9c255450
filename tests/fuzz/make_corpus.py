"""Seed the reader's fuzz corpus with small real .sinr files (run once; outputs are committed).

Every mode (lossless, max-error, inr-only, a SIREN in every band) in each format version the
writer writes: format 2 under the mode's name (`lossless.bin`), format 3 with a `v3-` prefix, a
whole AnnData (X, a count layer, raw, obs and var columns) in format 3, a matrix of three
segments (format 3.1, what concat writes), a raw-like matrix whose cell order the writer
stores as byte planes (format 3.2, cells.order_planes), and one whose barcodes it stores as 2-bit
codes (format 3.2, cells.barcodes). Each file is seeded
twice: as is (first byte 0) and resealed after each mutation (first byte 1, targets.py).

Run from the repository root: PYTHONPATH=. python tests/fuzz/make_corpus.py
"""
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

import scinrcodec as sinr
from scinrcodec.io.sources import ScipySource

HERE = Path(__file__).parent
DATA = HERE.parent / "data"
GEOMETRY = dict(tile_nnz=16, patch_nnz=64, chunk_cells=10, progress=False, force=True)
MODES = {"lossless": dict(siren="never"), "maxerror": dict(mode="max-error", max_error=2, siren="never"),
         "inr": dict(mode="inr-only", steps=20, width=8), "siren": dict(siren="force", steps=20, width=8)}
PREFIX = {2: "", 3: "v3-"}  # the seeds' names by format version


def seed(name: str, out: Path) -> None:
    """The encoded file `out` as the two seeds of `name`, then gone."""
    (HERE / "corpus" / f"{name}.bin").write_bytes(b"\x00" + out.read_bytes())
    (HERE / "corpus" / f"{name}.fixed.bin").write_bytes(b"\x01" + out.read_bytes())
    out.unlink()


def whole_anndata(m, out: Path) -> None:
    """A whole AnnData of the cut (cells x genes): X, a count layer, raw, obs and var columns."""
    x = m.T.tocsr().astype(np.float32)
    adata = anndata.AnnData(x, obs=pd.DataFrame({"n_counts": np.asarray(x.sum(axis=1)).ravel(),
                                                 "group": pd.Categorical(["a", "b"] * (x.shape[0] // 2)
                                                                         + ["a"] * (x.shape[0] % 2))},
                                                index=[f"c{i}" for i in range(x.shape[0])]),
                            var=pd.DataFrame({"gene_ids": [f"g{i}" for i in range(x.shape[1])]},
                                             index=[f"gene{i}" for i in range(x.shape[1])]))
    adata.layers["counts"] = x.astype(np.int32)
    adata.raw = adata
    sinr.write_sinr(adata, out, siren="never", format_version=3, **GEOMETRY)


def segmented(m, out: Path) -> None:
    """Three runs of the cut's cells, each with genes of its own (all; 5..24; all, reversed),
    combined by concat: three segments whose gene tables differ."""
    parts = []
    for k, (genes, cells) in enumerate(((slice(0, 30), slice(0, 8)), (slice(5, 25), slice(8, 16)),
                                        (slice(None, None, -1), slice(16, 25)))):
        part = out.with_name(f"{out.stem}.{k}.sinr")
        rows = np.arange(30)[genes]
        sinr.encode(ScipySource(m.matrix()[rows][:, cells], [m.gene_ids[i] for i in rows],
                                [m.gene_names[i] for i in rows], m.cell_names(cells.start, cells.stop)),
                    part, siren="never", **GEOMETRY)
        parts.append(part)
    sinr.concat(parts, out, join="outer", force=True)
    for part in parts:
        part.unlink()


def raw_like(m, out: Path, n_empty: int = 2400, barcodes: bool = False) -> None:
    """The cut's cells among `n_empty` barcodes without a molecule, in one chunk: mostly empty cells in
    index order, whose cell order the writer stores as byte planes (spec §5.6, §12.4); `barcodes`:
    named by sorted 16-base barcodes and '-1', which it stores as 2-bit codes (spec §5.7)."""
    x = m.matrix()
    n_cells = n_empty + x.shape[1]
    where = np.linspace(0, n_cells - 1, x.shape[1]).astype(np.int64)  # the real cells spread out
    indptr = np.concatenate([[0], np.cumsum(np.bincount(where, weights=np.diff(x.indptr), minlength=n_cells))])
    raw = type(x)((x.data, x.indices, indptr.astype(np.int64)), shape=(x.shape[0], n_cells))
    codes = np.sort(np.random.default_rng(0).choice(4**16, n_cells, replace=False)) if barcodes else []
    names = ["".join("ACGT"[(int(c) >> (2 * (15 - j))) & 3] for j in range(16)) + "-1" for c in codes] or None
    sinr.encode(ScipySource(raw, m.gene_ids, m.gene_names, names), out, siren="never",
                **{**GEOMETRY, "chunk_cells": n_cells})


if __name__ == "__main__":
    m = sinr.read_matrix(DATA / "pbmc500_3p_lt_x_50genes")
    cut = m.matrix()[:30, :25]
    small = ScipySource(cut, m.gene_ids[:30], m.gene_names[:30], m.cell_names(0, 25))
    for path in (HERE / "corpus").glob("*"):
        path.unlink()
    for version, prefix in PREFIX.items():
        for name, options in MODES.items():
            out = HERE / "corpus" / f"{prefix}{name}.sinr"
            sinr.encode(small, out, format_version=version, **GEOMETRY, **options)
            seed(prefix + name, out)
    out = HERE / "corpus" / "v3-anndata.sinr"
    whole_anndata(cut, out)
    seed("v3-anndata", out)
    out = HERE / "corpus" / "v3-segments.sinr"
    segmented(small, out)
    seed("v3-segments", out)
    out = HERE / "corpus" / "v3-order-planes.sinr"
    raw_like(small, out)
    seed("v3-order-planes", out)
    out = HERE / "corpus" / "v3-barcodes.sinr"
    raw_like(small, out, n_empty=4000, barcodes=True)
    seed("v3-barcodes", out)
