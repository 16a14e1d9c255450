"""Issue 19's deciding measurement: what a linear latent predictor would save in format 3, counted
with the real coder's tables, chunk by chunk as the encoder cuts them.

Per dataset: pass 1 is the encoder's own (gene statistics, FileContext); a seeded sample of cells
fits per-gene loadings U (k per stored gene), by alternating ridge least squares of the residual
16 log1p(v) - G - C on nonzeros (or, --gene-fit poisson, a GLM-PCA-like Poisson fit of whole
columns). Pass 2 arranges each chunk exactly as `encode_chunk` does and measures, with
`tile3.information_bits` and the count sections' packed bytes:

- values: baseline contexts (spec §6.5) against kappa' = clamp((G + C' + D) >> 1, 0, 95) with
  D = (sum_k Uq[r,k] Vq[c,k]) >> s, Vq the cell's own ridge fit quantised to b bits, C' refitted;
- positions: the tile's density class (spec §6.2) against a table row chosen per gap from a
  predicted probability that the gap's first candidate position is nonzero (gene detection x cell
  depth, optionally x the latent factor exp(beta D / 16), relative to the tile's density), and
  against the same tile coding after grouping each chunk's cells by their latent (cells.order).

A real encode (`--siren never`) of the same input gives the whole file's size and checks the
baseline bits. Nothing here changes the package.
"""
from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import scinrcodec as sinr
from scinrcodec.codec import tile3
from scinrcodec.codec.models import LOG_MEAN_UNITS, histograms
from scinrcodec.encoder.chunk import FileContext, arrange_block, baseline_contexts, cell_totals, depth_order, \
    value_bins_of
from scinrcodec.encoder.driver import file_context, gene_statistics
from scinrcodec.encoder.options import EncodeOptions
from scinrcodec.io.readers import as_source
from scinrcodec.io.sources import CellBlock, MatrixSource
from scinrcodec.model.baseline import fit_cell_terms
from scinrcodec.progress import Progress
from scinrcodec.storage.layout import CHUNK_SECTIONS_BY_MAJOR, CONTEXTS_BY_MAJOR, N_BINS

MAJOR = 3
N_CONTEXTS = CONTEXTS_BY_MAJOR[MAJOR]
AMORTISED_NNZ = 60_000_000  # per-gene costs projected to this many nonzeros with the same genes
V_CLIP = 3.0  # latent coordinates (unit RMS on the sample) are quantised on [-V_CLIP, V_CLIP)
PACK = CHUNK_SECTIONS_BY_MAJOR[MAJOR]


def packed_bits(name: str, counts: np.ndarray) -> int:
    """Bits of a count section as the writer stores it (any number of rows of N_BINS)."""
    return 8 * len(PACK[name].pack(np.asarray(counts, np.int64).ravel()))


# ---------------------------------------------------------------- the latent model (per file)

@dataclass
class Loadings:
    """Per-gene loadings U (float, 1/16 nat per unit latent) of one rank, rows in file order, and
    the residual variance that sets the per-cell ridge."""

    u: np.ndarray
    noise: float


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Batched (gram + diag(penalty)) x = rhs."""
    return np.linalg.solve(gram + np.diag(penalty), rhs[..., None])[..., 0]


def _gram(index: np.ndarray, feats: np.ndarray, target: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (index), sum of feats feats^T and of target * feats, by bincount (memory O(nnz))."""
    d = feats.shape[1]
    gram = np.empty((n, d, d))
    for i in range(d):
        for j in range(i, d):
            gram[:, i, j] = gram[:, j, i] = np.bincount(index, feats[:, i] * feats[:, j], minlength=n)
    rhs = np.stack([np.bincount(index, feats[:, i] * target, minlength=n) for i in range(d)], axis=1)
    return gram, rhs


def cell_fit(rows: np.ndarray, cols: np.ndarray, y: np.ndarray, u: np.ndarray, n_cells: int,
             ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's intercept and latent from its own nonzeros: ridge least squares of y on [1, U_r]
    (the intercept unpenalised)."""
    feats = np.concatenate([np.ones((rows.size, 1)), u[rows]], axis=1)
    gram, rhs = _gram(cols, feats, y, n_cells)
    penalty = np.full(feats.shape[1], ridge)
    penalty[0] = 1e-6
    sol = _ridge_solve(gram, rhs, penalty)
    return sol[:, 0], sol[:, 1:]


def fit_loadings(sample: Sample, n_rows: int, k: int, rng: np.random.Generator, iterations: int) -> Loadings:
    """U by alternating ridge least squares on the sample's nonzeros (model y = C_c + U_r . V_c),
    then rotated so that V's coordinates are uncorrelated with unit RMS over the sample."""
    rows, cols, y, n_cells = sample.rows, sample.cols, sample.y, sample.n
    intercept = np.bincount(cols, y, minlength=n_cells) / np.maximum(np.bincount(cols, minlength=n_cells), 1)
    ridge = float(np.var(y - intercept[cols]))
    v = rng.normal(0.0, 1.0, (n_cells, k))
    u = np.zeros((n_rows, k))
    for _ in range(iterations):
        gram, rhs = _gram(rows, v[cols], y - intercept[cols], n_rows)
        u = _ridge_solve(gram, rhs, np.full(k, ridge))
        intercept, v = cell_fit(rows, cols, y, u, n_cells, ridge)
    qu, ru = np.linalg.qr(u)
    qv, rv = np.linalg.qr(v)
    a, s, bt = np.linalg.svd(ru @ rv.T)
    u = qu @ a * s / math.sqrt(n_cells)
    v = qv @ bt.T * math.sqrt(n_cells)
    noise = float(np.mean((y - intercept[cols] - np.einsum("ij,ij->i", u[rows], v[cols])) ** 2))
    return Loadings(u, noise)


@dataclass
class Quantised:
    """The stored form: int8 loadings Uq, the shift s and the b-bit grid of V (step per unit)."""

    uq: np.ndarray
    shift: int
    step: float
    bits: int

    @classmethod
    def of(cls, u: np.ndarray, bits: int) -> "Quantised":
        """Uq = round(U step 2^s), s the largest shift that keeps |Uq| <= 127."""
        step = 2 * V_CLIP / (1 << bits)
        shift = int(math.floor(math.log2(127.0 / max(float(np.abs(u).max()) * step, 1e-9))))
        uq = np.clip(np.rint(u * step * 2.0 ** shift), -127, 127).astype(np.int64)
        return cls(uq, shift, step, bits)

    def codes(self, v: np.ndarray) -> np.ndarray:
        """A cell latent's b-bit codes (signed)."""
        half = 1 << (self.bits - 1)
        return np.clip(np.rint(v / self.step), -half, half - 1).astype(np.int64)

    def offsets(self, rows: np.ndarray, cols: np.ndarray, vq: np.ndarray) -> np.ndarray:
        """D = (sum_k Uq[r,k] Vq[c,k]) >> s in 1/16 nat: the decoder's integer dot product."""
        acc = np.zeros(rows.size, np.int64)
        for j in range(vq.shape[1]):
            acc += self.uq[rows, j] * vq[cols, j]
        return acc >> self.shift if self.shift >= 0 else acc << -self.shift


@dataclass
class Sample:
    """The sampled cells' nonzeros: rows (file order), sample columns, counts and residuals
    16 log1p(v) - G, over n cells."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    y: np.ndarray
    n: int


def sample_cells(source: MatrixSource, context: FileContext, chunk_cells: int, n_sample: int,
                 rng: np.random.Generator) -> Sample:
    """A seeded sample of cells, as a streaming first pass would keep them."""
    n_cells = source.shape[1]
    chosen = np.sort(rng.choice(n_cells, size=min(n_sample, n_cells), replace=False))
    rows, cols, values = [], [], []
    for block in source.blocks(chunk_cells):
        local = chosen[(chosen >= block.start) & (chosen < block.start + block.n_cells)] - block.start
        for c in local:
            a, b = block.indptr[c], block.indptr[c + 1]
            rows.append(context.gene_rank[block.genes[a:b]])
            cols.append(np.full(b - a, len(cols)))
            values.append(block.values[a:b].astype(np.float64))
    r, v = np.concatenate(rows), np.concatenate(values)
    return Sample(r, np.concatenate(cols), v, LOG_MEAN_UNITS * np.log1p(v) - context.gene_terms[r], len(cols))


def fit_loadings_poisson(sample: Sample, n_rows: int, k: int, rng: np.random.Generator,
                         iterations: int) -> Loadings:
    """U by a GLM-PCA-like Poisson fit on the sample's whole columns, zeros included (log mu =
    log lib + a_g + U_g . V_c, unit Gaussian priors on U and V, alternating damped Newton steps);
    U in 1/16 nat, rotated like fit_loadings', the residual variance that of the per-cell least
    squares fit of the values under these loadings."""
    counts = np.zeros((n_rows, sample.n), np.float32)
    counts[sample.rows, sample.cols] = sample.values
    log_lib = np.log(counts.sum(0))
    a = np.log(np.maximum(counts.sum(1), 0.5) / np.exp(log_lib).sum()).astype(np.float32)
    u = np.zeros((n_rows, k), np.float32)
    v = rng.normal(0.0, 0.1, (sample.n, k)).astype(np.float32)

    def newton(obs: np.ndarray, mu: np.ndarray, feats: np.ndarray, theta: np.ndarray,
               prior: np.ndarray) -> np.ndarray:
        """One damped Newton step per row of `theta` (counts obs, means mu, features feats)."""
        grad = (obs - mu) @ feats - theta * prior
        d = feats.shape[1]
        hess = np.empty((mu.shape[0], d, d), np.float64)
        for i in range(d):
            for j in range(i, d):
                hess[:, i, j] = hess[:, j, i] = mu @ (feats[:, i] * feats[:, j])
        step = np.linalg.solve(hess + np.diag(prior), grad[..., None].astype(np.float64))[..., 0]
        return theta + np.clip(step, -1.0, 1.0).astype(np.float32)

    for _ in range(iterations):
        mu = np.exp(np.minimum(a[:, None] + log_lib[None, :] + u @ v.T, 30.0))
        gene = newton(counts, mu, np.concatenate([np.ones((sample.n, 1), np.float32), v], axis=1),
                      np.concatenate([a[:, None], u], axis=1), np.array([0.0] + [1.0] * k, np.float32))
        a, u = gene[:, 0], gene[:, 1:]
        mu = np.exp(np.minimum(a[:, None] + log_lib[None, :] + u @ v.T, 30.0))
        v = newton(counts.T, mu.T, u, v, np.ones(k, np.float32))
    qu, ru = np.linalg.qr(u.astype(np.float64))
    qv, rv = np.linalg.qr(v.astype(np.float64))
    left, sv, right = np.linalg.svd(ru @ rv.T)
    u = LOG_MEAN_UNITS * qu @ left * sv / math.sqrt(sample.n)
    intercept = np.bincount(sample.cols, sample.y, minlength=sample.n) / np.bincount(sample.cols, minlength=sample.n)
    c0, v0 = cell_fit(sample.rows, sample.cols, sample.y, u, sample.n, float(np.var(sample.y - intercept[sample.cols])))
    noise = float(np.mean((sample.y - c0[sample.cols] - np.einsum("ij,ij->i", u[sample.rows], v0[sample.cols])) ** 2))
    return Loadings(u, noise)


# ---------------------------------------------------------------- one chunk, as encode_chunk arranges it

@dataclass
class Chunk:
    """A chunk's nonzeros in tile order with what the predictors need."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    tile_k: np.ndarray
    tile_n: np.ndarray
    tile_row: np.ndarray
    tile_col: np.ndarray
    tile_width: np.ndarray
    cell_terms: np.ndarray
    cell_nnz: np.ndarray
    bins: np.ndarray


def latent_order(block: CellBlock, context: FileContext, loadings: Loadings, groups: int) -> np.ndarray:
    """Another order the format allows (cells.order is free): cells grouped by quantiles of their
    first latent coordinate (fitted from their own nonzeros), by depth within a group, so that a
    tile's cells are alike and its density class sees what the latent predicts."""
    rows = context.gene_rank[block.genes]
    cols = np.repeat(np.arange(block.n_cells), np.diff(block.indptr))
    y = LOG_MEAN_UNITS * np.log1p(block.values.astype(np.float64)) - context.gene_terms[rows]
    _, v = cell_fit(rows, cols, y, loadings.u, block.n_cells, loadings.noise)
    edges = np.quantile(v[:, 0], np.linspace(0, 1, groups + 1)[1:-1])
    group = np.searchsorted(edges, v[:, 0])
    return np.lexsort((-cell_totals(block.indptr, block.values), group))


def arrange_chunk(block: CellBlock, context: FileContext, cell_order: np.ndarray) -> Chunk:
    """encode_chunk's steps up to the contexts: geometry, arrangement, cell terms, for a cell order."""
    _, geometry, rows, cols, values, positions, tile_k = arrange_block(block, context, cell_order=cell_order)
    _, first_row, heights, first_col, widths = geometry.tiles()
    cell_terms = fit_cell_terms(cols, rows, values, context.gene_terms, block.n_cells)
    return Chunk(rows, cols, values, np.asarray(positions, np.int64),
                 np.asarray(tile_k, np.int64), (heights * widths).astype(np.int64), first_row, first_col, widths,
                 cell_terms, np.diff(block.indptr)[cell_order], value_bins_of(values - 1))


@dataclass
class Gaps:
    """Every coded gap of a chunk (spec §6.2): its bin, tile, the position after the previous coded
    one (the first the gap may land on) and whether its tile codes zeros."""

    bins: np.ndarray
    tile: np.ndarray
    start: np.ndarray
    complement: np.ndarray


def coded_gaps(ch: Chunk) -> Gaps:
    """The gaps the tile coder codes, with the complement rule, in numpy."""
    n, k = ch.tile_n, ch.tile_k
    comp = 2 * k > n
    nz_tile = np.repeat(np.arange(k.size), k)
    keep = ~comp[nz_tile]
    tiles, pos = [nz_tile[keep]], [ch.positions[keep]]
    ct = np.flatnonzero(comp & (k < n))
    if ct.size:
        entry_tile = np.repeat(ct, n[ct])
        base = np.concatenate([[0], np.cumsum(n[ct])])
        local = np.arange(base[-1]) - np.repeat(base[:-1], n[ct])
        is_zero = np.ones(base[-1], bool)
        slot = np.full(k.size, -1)
        slot[ct] = base[:-1]
        nz_sel = comp[nz_tile] & (k[nz_tile] < n[nz_tile])
        is_zero[slot[nz_tile[nz_sel]] + ch.positions[nz_sel]] = False
        tiles.append(entry_tile[is_zero])
        pos.append(local[is_zero])
    tile = np.concatenate(tiles)
    p = np.concatenate(pos)
    order = np.lexsort((p, tile))
    tile, p = tile[order], p[order]
    first = np.ones(tile.size, bool)
    first[1:] = tile[1:] != tile[:-1]
    prev = np.where(first, -1, np.concatenate([[-1], p[:-1]]))
    return Gaps(value_bins_of(p - prev - 1), tile, prev + 1, comp[tile])


def density_class(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Spec §6.2's class of a tile of n entries coding m positions."""
    r = (n - m) // m
    return np.minimum(np.frexp(((r + 1) ** 2).astype(np.float64))[1] - 1, 31)


def quantised_depth(cell_nnz: np.ndarray) -> np.ndarray:
    """Each cell's nonzeros relative to the chunk's mean, on a grid of 1/8 octave (one byte per cell)."""
    return 2.0 ** (np.rint(8 * np.log2(np.maximum(cell_nnz, 1) / cell_nnz.mean())) / 8)


def relative_density(ch: Chunk, gaps: Gaps, detect: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per gap, detect_r depth_c at its first candidate position over the tile's mean of the same
    product (two prefix sums per tile: the rank-1 model's density relative to the tile's)."""
    t = gaps.tile
    w = ch.tile_width[t]
    r = ch.tile_row[t] + gaps.start // w
    c = ch.tile_col[t] + gaps.start % w
    cum_d = np.concatenate([[0.0], np.cumsum(detect)])
    cum_e = np.concatenate([[0.0], np.cumsum(depth)])
    heights = ch.tile_n // ch.tile_width
    row_sum = cum_d[ch.tile_row + heights] - cum_d[ch.tile_row]
    col_sum = cum_e[ch.tile_col + ch.tile_width] - cum_e[ch.tile_col]
    mean = row_sum * col_sum / ch.tile_n
    return detect[r] * depth[c] / np.maximum(mean[t], 1e-300)


def gap_rows(ch: Chunk, gaps: Gaps, tile_class: np.ndarray, ratio: np.ndarray, scheme: str) -> np.ndarray:
    """Each gap's table row under a scheme: "class32" / "class64", the class (half / quarter octaves
    of 1 / pi, as spec §6.2's) of pi = the tile's density x ratio; "split64", the tile's class and
    whether ratio > 1 (64 rows); "split128", the tile's class and ratio in 4 bins of an octave.
    Complement tiles keep their tile's class (ratio 1)."""
    ratio = np.where(gaps.complement, 1.0, ratio)
    if scheme == "split64":
        return 2 * tile_class + (ratio > 1)
    if scheme == "split128":
        return 4 * tile_class + np.clip(np.floor(np.log2(ratio)).astype(np.int64) + 2, 0, 3)
    per_octave = {"class32": 2, "class64": 4}[scheme]
    m = np.where(2 * ch.tile_k > ch.tile_n, ch.tile_n - ch.tile_k, ch.tile_k)[gaps.tile]
    pi = np.clip(m / ch.tile_n[gaps.tile] * ratio, 2.0 ** -30, 1.0)
    return np.clip(np.floor(-per_octave * np.log2(pi)).astype(np.int64), 0, 16 * per_octave - 1)


GAP_SCHEMES = {"class32": 32, "class64": 64, "split64": 64, "split128": 128}


# ---------------------------------------------------------------- the measurement

@dataclass
class Tally:
    """Bits summed over chunks, by key."""

    bits: dict = field(default_factory=dict)

    def add(self, key: tuple, value: float) -> None:
        """Add `value` bits under key."""
        self.bits[key] = self.bits.get(key, 0.0) + value

    def section(self, part: str, variant: str, name: str, counts: np.ndarray) -> None:
        """A chunk's count section: its symbols' information under (part, variant) and its own
        stored size under (part + " tables", variant)."""
        self.add((part, variant), tile3.information_bits(counts))
        self.add((part + " tables", variant), packed_bits(name, counts))

    def coded(self, part: str, variant: str) -> float:
        """Information plus tables."""
        return self.bits[(part, variant)] + self.bits[(part + " tables", variant)]


def gap_row_counts(gaps: Gaps, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Counts of (row, gap bin): the section a format would store for these rows."""
    return np.bincount(rows * N_BINS + gaps.bins, minlength=n_rows * N_BINS).reshape(n_rows, N_BINS)


@dataclass
class Settings:
    """What a run sweeps (see the command line's help)."""

    ks: list[int]
    bs: list[int]
    gap_b: int
    betas: list[float]
    order_rank: int
    order_groups: list[int]
    gene_fit: str
    n_sample: int
    iterations: int
    seed: int


def measure_dataset(path: str, st: Settings) -> tuple[dict, Tally, dict]:
    """Every part's bits for one input; returns facts about the file, the tally and cell-code entropies."""
    ks, bs, gap_b, betas = st.ks, st.bs, st.gap_b, st.betas
    t0 = time.time()
    source = as_source(path)
    options = EncodeOptions(siren="never")
    quiet = Progress(False, None, "", "")
    gene_nnz, deviation = gene_statistics(source, options, quiet)
    nnz, n_cells = int(gene_nnz.sum()), source.shape[1]
    options = options.chunked(nnz, n_cells)
    context, stored, _ = file_context(options, gene_nnz, deviation)
    n_stored = int(stored.size)
    print(f"{path}: {nnz:,} nonzeros, {n_cells:,} cells, {n_stored:,} stored genes, "
          f"chunk_cells {options.chunk_cells}", flush=True)

    sample = sample_cells(source, context, options.chunk_cells, st.n_sample, np.random.default_rng(st.seed))
    fit = {"ls": fit_loadings, "poisson": fit_loadings_poisson}[st.gene_fit]
    loadings = {}
    for k in ks:
        loadings[k] = fit(sample, n_stored, k, np.random.default_rng([st.seed, k]), st.iterations)  # any --ranks
        print(f"  k={k}: {st.gene_fit} loadings fitted on {sample.n:,} cells ({sample.y.size:,} nonzeros), residual sd "
              f"{math.sqrt(loadings[k].noise) / LOG_MEAN_UNITS:.3f} nat  [{time.time() - t0:.0f} s]", flush=True)
    quantised = {(k, b): Quantised.of(loadings[k].u, b) for k in ks for b in bs}
    detect_file = np.zeros(context.gene_terms.size)
    detect_file[:n_stored] = gene_nnz[stored] / n_cells
    detect_q = 2.0 ** (np.rint(8 * np.log2(np.maximum(detect_file, 2.0 ** -31))) / 8)  # one byte per gene

    tally = Tally()
    codes: dict = {key: [] for key in quantised}
    for block in source.blocks(options.chunk_cells):
        ch = arrange_chunk(block, context, depth_order(block))
        tally.add(("order", "depth"), packed_bits("cells.order", depth_order(block)))
        for groups in st.order_groups:
            order = latent_order(block, context, loadings[st.order_rank], groups)
            other = arrange_chunk(block, context, order)
            tally.section("positions", f"cells grouped by latent k{st.order_rank} ({groups} groups)", "gaps.counts",
                          tile3.gap_counts(other.tile_n, other.tile_k, other.positions))
            tally.add(("order", f"{groups} groups"), packed_bits("cells.order", order))
        g = context.gene_terms
        base_ctx = baseline_contexts(ch.rows, ch.cols, g, ch.cell_terms, major=MAJOR)
        tally.section("values", "baseline", "values.counts", histograms(base_ctx, ch.bins, major=MAJOR))
        gaps = coded_gaps(ch)
        base_gaps = tile3.gap_counts(ch.tile_n, ch.tile_k, ch.positions)
        coded_m = np.where(2 * ch.tile_k > ch.tile_n, ch.tile_n - ch.tile_k, ch.tile_k)
        tile_class = density_class(ch.tile_n[gaps.tile], coded_m[gaps.tile])
        if not np.array_equal(gap_row_counts(gaps, tile_class, 32), base_gaps.astype(np.int64)):
            raise AssertionError("coded gaps differ from the coder's gaps.counts")
        tally.section("positions", "tile class", "gaps.counts", base_gaps)
        y = LOG_MEAN_UNITS * np.log1p(ch.values.astype(np.float64)) - g[ch.rows]
        depth = quantised_depth(ch.cell_nnz)
        t = gaps.tile
        w = ch.tile_width[t]
        gap_r, gap_c = ch.tile_row[t] + gaps.start // w, ch.tile_col[t] + gaps.start % w
        ratio = relative_density(ch, gaps, detect_q, depth)
        for scheme, n_rows in GAP_SCHEMES.items():
            rows = gap_rows(ch, gaps, tile_class, ratio, scheme)
            tally.section("positions", f"depth {scheme}", "gaps.counts", gap_row_counts(gaps, rows, n_rows))
        for k in ks:
            _, v = cell_fit(ch.rows, ch.cols, y, loadings[k].u, block.n_cells, loadings[k].noise)
            for b in bs:
                q = quantised[(k, b)]
                vq = q.codes(v)
                codes[(k, b)].append(vq)
                d = q.offsets(ch.rows, ch.cols, vq)
                sums = np.bincount(ch.cols, y - d, minlength=block.n_cells)
                c_new = np.rint(sums / np.maximum(np.bincount(ch.cols, minlength=block.n_cells), 1)).astype(np.int64)
                ctx = np.clip((g[ch.rows] + c_new[ch.cols] + d) >> 1, 0, N_CONTEXTS - 1)
                tally.section("values", f"k{k} b{b}", "values.counts", histograms(ctx, ch.bins, major=MAJOR))
                if b != gap_b:
                    continue
                d = q.offsets(gap_r, gap_c, vq)
                for beta in betas:
                    for scheme, n_rows in GAP_SCHEMES.items():
                        rows = gap_rows(ch, gaps, tile_class, ratio * np.exp(beta * d / LOG_MEAN_UNITS), scheme)
                        tally.section("positions", f"latent k{k} b{b} beta{beta:g} {scheme}",
                                      "gaps.counts", gap_row_counts(gaps, rows, n_rows))
        print(f"  chunk of {block.n_cells:,} cells from {block.start:,} [{time.time() - t0:.0f} s]", flush=True)

    entropy = {}
    for key, parts in codes.items():
        allv = np.concatenate(parts)
        h = 0.0
        for j in range(allv.shape[1]):
            p = np.bincount(allv[:, j] - allv[:, j].min()) / allv.shape[0]
            h -= float((p[p > 0] * np.log2(p[p > 0])).sum())
        entropy[key] = h

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "baseline.sinr"
        result = sinr.encode(path, out, siren="never")
    facts = {"path": path, "nnz": nnz, "n_cells": n_cells, "n_stored": n_stored, "file_bits": 8 * result["bytes"],
             "enc_position_bits": result["position_bits"], "enc_value_bits": result["value_bits"],
             "position_bits": tally.bits[("positions", "tile class")], "value_bits": tally.bits[("values", "baseline")]}
    print(f"  real encode: {result['bytes']:,} bytes, position_bits {result['position_bits']:,}, "
          f"value_bits {result['value_bits']:,}  [{time.time() - t0:.0f} s]", flush=True)
    return facts, tally, entropy


def rows_for(facts: dict, tally: Tally, entropy: dict, ks: list[int], bs: list[int]) -> list[dict]:
    """The table's rows, bits per nonzero: one per value variant (positions at baseline) and one
    per position variant (values at baseline). Per-cell and per-gene costs as the variant needs."""
    nnz, n_cells, n_stored = facts["nnz"], facts["n_cells"], facts["n_stored"]
    base_positions, base_values = ("positions", "tile class"), ("values", "baseline")
    rest = facts["file_bits"] - tally.coded(*base_positions) - tally.coded(*base_values)
    name = Path(facts["path"]).name

    def row(variant: str, pos: tuple[str, str], val: tuple[str, str], cell_fixed: float, cell_coded: float,
            gene: float) -> dict:
        pos_bits, val_bits = tally.coded(*pos), tally.coded(*val)
        total = rest + pos_bits + val_bits + cell_fixed + gene
        total_amortised = rest + pos_bits + val_bits + cell_coded + gene * nnz / max(nnz, AMORTISED_NNZ)
        return {"dataset": name, "nnz": nnz, "variant": variant, "positions": pos_bits / nnz, "values": val_bits / nnz,
                "position_tables": tally.bits[(pos[0] + " tables", pos[1])] / nnz,
                "value_tables": tally.bits[(val[0] + " tables", val[1])] / nnz,
                "per_cell_fixed": cell_fixed / nnz, "per_cell_coded": cell_coded / nnz, "per_gene": gene / nnz,
                "per_gene_amortised": gene / max(nnz, AMORTISED_NNZ), "other": rest / nnz, "total": total / nnz,
                "total_coded_amortised": total_amortised / nnz,
                "saving_pct": 100 * (1 - total / facts["file_bits"]),
                "saving_pct_coded_amortised": 100 * (1 - total_amortised / facts["file_bits"])}

    out = [row("baseline", base_positions, base_values, 0, 0, 0)]
    for k in ks:
        for b in bs:
            out.append(row(f"values k{k} b{b}", base_positions, ("values", f"k{k} b{b}"), k * b * n_cells,
                           entropy[(k, b)] * n_cells, 8 * k * n_stored))
    for part, variant in list(tally.bits):
        if part != "positions" or variant == "tile class":
            continue
        bits = (part, variant)
        if variant.startswith("cells grouped"):  # the decoder needs nothing new: cells.order's bytes change
            groups = variant.split("(")[1].split()[0]
            order = tally.bits[("order", f"{groups} groups")] - tally.bits[("order", "depth")]
            out.append(row(f"positions {variant}", bits, base_values, order, order, 0))
            for k in ks:
                for b in bs:
                    out.append(row(f"values k{k} b{b} + positions {variant}", bits,
                                   ("values", f"k{k} b{b}"), order + k * b * n_cells,
                                   order + entropy[(k, b)] * n_cells, 8 * k * n_stored))
            continue
        # depth: one byte per gene (detection) and per cell (depth); latent: plus the value predictor's costs
        k = int(variant.split()[1][1:]) if variant.startswith("latent") else 0
        b = int(variant.split()[2][1:]) if k else 0
        out.append(row(f"positions {variant}", bits, base_values, 8 * n_cells + k * b * n_cells,
                       8 * n_cells + (entropy[(k, b)] * n_cells if k else 0), 8 * n_stored + 8 * k * n_stored))
        if k:  # both parts from one latent: its costs once
            out.append(row(f"values k{k} b{b} + positions {variant}", bits, ("values", f"k{k} b{b}"),
                           8 * n_cells + k * b * n_cells, 8 * n_cells + entropy[(k, b)] * n_cells,
                           8 * n_stored + 8 * k * n_stored))
    return out


def markdown(rows: list[dict], facts: list[dict]) -> str:
    """One table per dataset."""
    lines = ["# Latent contexts in format 3: bits per nonzero by part (issue 19)", ""]
    cols = ["positions", "values", "per_cell_fixed", "per_cell_coded", "per_gene", "per_gene_amortised", "total",
            "saving_pct", "total_coded_amortised", "saving_pct_coded_amortised"]
    for f in facts:
        name = Path(f["path"]).name
        lines += [f"## {name}", "",
                  f"{f['nnz']:,} nonzeros, {f['n_cells']:,} cells, {f['n_stored']:,} stored genes; real encode "
                  f"(`--siren never`) {f['file_bits'] / f['nnz']:.4f} bits/nnz; position / value information: "
                  f"its footer "
                  f"{f['enc_position_bits']:,.1f} / {f['enc_value_bits']:,.1f} bits, measured here "
                  f"{f['position_bits']:,.1f} / {f['value_bits']:,.1f} bits (the table's parts add the count "
                  "sections' stored bytes).", "",
                  "| variant | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for r in rows:
            if r["dataset"] == name:
                lines.append(f"| {r['variant']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV, floats to 5 decimals."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def net_rows(csv_paths: list[str]) -> list[dict]:
    """The value predictor's net saving per (input, k, b) from earlier runs' CSVs: values saved
    minus the entropy-coded cell codes minus the loadings spread over the input's own nonzeros,
    6e7 and 1e9 (same genes, the per-cell cost kept per nonzero), in bits/nnz and % of the file."""
    out = []
    for path in csv_paths:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        base = {r["dataset"]: r for r in rows if r["variant"] == "baseline"}
        for r in rows:
            if not r["variant"].startswith("values") or "+" in r["variant"]:
                continue
            b = base[r["dataset"]]
            nnz, file_bits = int(r["nnz"]), float(b["total"])
            saved = float(b["values"]) - float(r["values"])
            row = {"run": Path(path).stem, "dataset": r["dataset"], "nnz": nnz, "config": r["variant"][7:],
                   "positions": float(b["positions"]), "values": float(b["values"]), "file": file_bits,
                   "values_saved": saved, "per_cell_coded": float(r["per_cell_coded"])}
            for label, scale in (("here", nnz), ("6e7", max(nnz, AMORTISED_NNZ)), ("1e9", max(nnz, 10 ** 9))):
                net = saved - float(r["per_cell_coded"]) - float(r["per_gene"]) * nnz / scale
                row[f"per_gene_{label}"] = float(r["per_gene"]) * nnz / scale
                row[f"net_{label}"] = net
                row[f"file_pct_{label}"] = 100 * net / file_bits
            out.append(row)
    return out


def net_markdown(rows: list[dict]) -> str:
    """The net table, one line per (input, k, b)."""
    cols = ["positions", "values", "file", "values_saved", "per_cell_coded", "per_gene_here", "per_gene_6e7",
            "per_gene_1e9", "net_here", "net_6e7", "net_1e9", "file_pct_here", "file_pct_6e7", "file_pct_1e9"]
    lines = ["| run | dataset | k, b | " + " | ".join(cols) + " |", "|---|---|---|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['run']} | {r['dataset']} | {r['config']} | " + " | ".join(f"{r[c]:.4f}" for c in cols)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command line: datasets in, CSV and markdown out."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.latent_contexts", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+", help="inputs the encoder reads (10x mtx folder, .h5, .h5ad, ...), or "
                    "with --net the CSVs of earlier runs")
    ap.add_argument("--net", action="store_true", help="only tabulate the value predictor's net saving from CSVs")
    ap.add_argument("--ranks", default="2,4,8", help="latent dimensions k")
    ap.add_argument("--bits", default="3,4,5,6", help="bits b per latent coordinate")
    ap.add_argument("--gap-bits", type=int, default=4, help="b of the latent used for gap contexts")
    ap.add_argument("--betas", default="0.5,1", help="latent exponents beta of the gap predictor")
    ap.add_argument("--order-rank", type=int, default=4, help="k of the latent that groups cells")
    ap.add_argument("--order-groups", default="2,4,8", help="numbers of cell groups tried")
    ap.add_argument("--gene-fit", choices=("ls", "poisson"), default="ls",
                    help="loadings by least squares on nonzero residuals, or a Poisson GLM-PCA on whole columns")
    ap.add_argument("--sample-cells", type=int, default=2000, help="cells the loadings are fitted on")
    ap.add_argument("--iterations", type=int, default=8, help="alternating least squares sweeps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/latent_contexts_real", help="output stem (.csv, .md)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.net:
        rows = net_rows(args.datasets)
        write_csv(out.with_suffix(".csv"), rows)
        out.with_suffix(".md").write_text(net_markdown(rows))
        print(net_markdown(rows))
        return
    st = Settings([int(x) for x in args.ranks.split(",")], [int(x) for x in args.bits.split(",")], args.gap_bits,
                  [float(x) for x in args.betas.split(",") if x], args.order_rank,
                  [int(x) for x in args.order_groups.split(",") if x], args.gene_fit, args.sample_cells,
                  args.iterations, args.seed)
    if st.order_groups and st.order_rank not in st.ks:
        ap.error("--order-rank must be one of --ranks")
    rows, facts = [], []
    for path in args.datasets:
        f, tally, entropy = measure_dataset(path, st)
        facts.append(f)
        rows += rows_for(f, tally, entropy, st.ks, st.bs)
    write_csv(out.with_suffix(".csv"), rows)
    out.with_suffix(".md").write_text(markdown(rows, facts))
    print(markdown(rows, facts))


if __name__ == "__main__":
    main()
