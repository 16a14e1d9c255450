"""Value contexts from a per-cell latent model, measured with format 2's value coder.

Issue 19's probe (../shared/research/latent_probe) measured *ideal* code lengths of cross-cell
models. This measures what a format can actually keep when the model only chooses each value's
context (its frequency table), on the tiles format 2 codes (the stream lab's dumps):

    log1p(v) at a nonzero ~ a_g + b_c + U_g . V_c          (k = 0: format 2's additive baseline)

fitted by alternating ridge least squares on the nonzeros; the context of a nonzero is its
prediction in 1/4 nat (48 contexts, as format 2) or 1/8 nat (96). Bits are the exact code lengths
of each chunk's value bins under its own context tables with format 2's 16-bit frequency scaling,
plus offset bits, plus the tables, plus what the model adds to format 2's gene and cell terms: V_c at `--cell-bits`
bits per coordinate per cell, U_g at 16 bits per gene and coordinate ("counted": over this file's nonzeros;
"at 1e9": the per-gene cost spread over a billion nonzeros, as in an atlas).

    python -m benchmarks.stream_lab.latent_contexts /tmp/lab/*.bin
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_BINS = 231


def load(path: str):
    """Every chunk's (rows, cells, u, format 2 contexts), cells numbered across chunks."""
    buf = Path(path).read_bytes()
    assert buf[:8] == b"SLAB0001"
    at, cell_base = 8, 0
    rows, cells, us, ctxs = [], [], [], []
    while True:
        n_tiles = int(np.frombuffer(buf, "<i8", 1, at)[0])
        if n_tiles < 0:
            break
        nnz, n_cells, _ = (int(x) for x in np.frombuffer(buf, "<i8", 3, at + 8))
        at += 32 + 5 * 8 * n_tiles
        arrays = [np.frombuffer(buf, "<i4", nnz, at + i * 4 * nnz) for i in range(5)]
        at += 20 * nnz + 8 * 48 * N_BINS
        _, u, ctx, r, c = arrays
        rows.append(r.astype(np.int64)), cells.append(c.astype(np.int64) + cell_base)
        us.append(u.astype(np.int64)), ctxs.append(ctx.astype(np.int64))
        cell_base += n_cells
    chunk = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
    return np.concatenate(rows), np.concatenate(cells), np.concatenate(us), np.concatenate(ctxs), chunk


def value_bins(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format 2's bins (spec §6.3.1) and offset bits."""
    e = u + 1
    x = np.floor(np.log2(e)).astype(np.int64)
    d = np.maximum(x - 3, 0)
    b = np.where(x < 3, e - 1, 7 + 8 * d + ((e >> d) - 8))
    return b, d


def table_bits(counts: np.ndarray) -> float:
    used = counts[counts > 0]
    return float((np.floor(np.log2(used)) + 1 + 2).sum() + 0.1 * (counts.size - used.size))


def coded_bits(contexts: np.ndarray, bins: np.ndarray, chunk: np.ndarray, n_contexts: int,
               pb: int = 16) -> tuple[float, float]:
    """Stream bits of the bins under each chunk's tables scaled to 2**pb (format 2's scaling, spec
    §C.4), and the tables' bits."""
    stream, tables = 0.0, 0.0
    scale = 1 << pb
    for ch in np.unique(chunk):
        sel = chunk == ch
        hist = np.bincount(contexts[sel] * N_BINS + bins[sel], minlength=n_contexts * N_BINS).reshape(n_contexts, N_BINS)
        for row in hist:
            total = row.sum()
            if not total:
                continue
            kinds = int((row > 0).sum())
            f = np.where(row > 0, 1 + row * (scale - kinds) // total, 0)
            f[int(np.argmax(row))] += scale - f.sum()
            stream += float((row[row > 0] * (pb - np.log2(f[row > 0]))).sum())
            tables += table_bits(row)
    return stream, tables


def fit(rows, cells, y, n_rows, n_cells, k, iters=12, ridge=4.0, seed=0):
    """a_g + b_c + U_g . V_c fitted to y on the nonzeros by alternating ridge least squares."""
    a = np.bincount(rows, y, n_rows) / np.maximum(np.bincount(rows, minlength=n_rows), 1)
    b = np.zeros(n_cells)
    rng = np.random.default_rng(seed)
    U = rng.normal(0, 0.1, (n_rows, k))
    V = np.zeros((n_cells, k))
    nr, nc = np.bincount(rows, minlength=n_rows), np.bincount(cells, minlength=n_cells)
    for _ in range(iters):
        dot = np.einsum("ij,ij->i", U[rows], V[cells]) if k else 0.0
        b = np.bincount(cells, y - a[rows] - dot, n_cells) / np.maximum(nc, 1)
        a = np.bincount(rows, y - b[cells] - dot, n_rows) / np.maximum(nr, 1)
        if not k:
            continue
        res = y - a[rows] - b[cells]
        for side in range(2):
            own, other, M = (cells, rows, U) if side == 0 else (rows, cells, V)
            n = n_cells if side == 0 else n_rows
            X = M[other]
            gram = np.zeros((n, k, k))
            for i in range(k):
                for j in range(i, k):
                    gram[:, i, j] = gram[:, j, i] = np.bincount(own, X[:, i] * X[:, j], n)
            rhs = np.stack([np.bincount(own, X[:, i] * res, n) for i in range(k)], axis=1)
            sol = np.linalg.solve(gram + ridge * np.eye(k), rhs[..., None])[..., 0]
            if side == 0:
                V = sol
            else:
                U = sol
    return a, b, U, V


def quantise(V: np.ndarray, bits: int) -> np.ndarray:
    """Uniform per-coordinate quantisation to 2**bits levels over the coordinate's range."""
    lo, hi = V.min(axis=0), V.max(axis=0)
    step = np.where(hi > lo, (hi - lo) / (2**bits - 1), 1.0)
    return lo + np.rint((V - lo) / step) * step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="+")
    parser.add_argument("--ranks", default="0,2,4,8")
    parser.add_argument("--cell-bits", type=int, default=4)
    args = parser.parse_args()
    print("| dataset | nnz | model | contexts | value bits/nnz (f2 contexts) | value bits/nnz | tables | "
          "model counted | model at 1e9 | change counted | change at 1e9 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.dumps:
        rows, cells, u, ctx2, chunk = load(path)
        nnz = u.size
        bins, offs = value_bins(u)
        y = np.log1p(u + 1.0)
        base_stream, base_tables = coded_bits(ctx2, bins, chunk, 48)
        base = (base_stream + base_tables + offs.sum()) / nnz
        n_rows, n_cells = int(rows.max()) + 1, int(cells.max()) + 1
        genes = int((np.bincount(rows, minlength=n_rows) > 0).sum())
        for k in (int(x) for x in args.ranks.split(",")):
            a, b, U, V = fit(rows, cells, y, n_rows, n_cells, k)
            Vq = quantise(V, args.cell_bits) if k else V
            pred = a[rows] + b[cells] + (np.einsum("ij,ij->i", U[rows], Vq[cells]) if k else 0.0)
            # beyond format 2's own terms (a_g and b_c at 16 bits each, paid by both sides)
            cell_cost = n_cells * k * args.cell_bits
            gene_cost = genes * 16 * k
            for per_nat, n_ctx in ((4, 48), (8, 96)):
                contexts = np.clip(np.floor(pred * per_nat), 0, n_ctx - 1).astype(np.int64)
                stream, tables = coded_bits(contexts, bins, chunk, n_ctx)
                bits = (stream + tables + offs.sum()) / nnz
                counted = bits + (cell_cost + gene_cost) / nnz
                at_scale = bits + cell_cost / nnz
                print(f"| {Path(path).stem} | {nnz:,} | k={k} | {n_ctx} | {base:.4f} | {bits:.4f} | "
                      f"{tables / nnz:.4f} | {counted:.4f} | {at_scale:.4f} | {counted - base:+.4f} | "
                      f"{at_scale - base:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
