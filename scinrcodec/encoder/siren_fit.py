"""Fitting bands' SIRENs and keeping each only where it pays (torch: encoder only).

`always` fits every band of every chunk; `auto` (the default) first fits a sample of the first
chunk's bands and goes on only if one of them was kept, so that files whose bands never keep a
SIREN (every dataset measured so far) are not slowed by networks that are thrown away; neither
fits a band too small for any network to pay for its weights. `force` fits and keeps a network
in every band (for tests and experiments). The decisions depend on the data alone, so the output
is the same whatever the number of jobs. A kept network's contexts are on the grid of the file's
format version (format 3: 96 of 1/8 nat), and so are the histograms that decide whether it pays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codec.geometry import ChunkGeometry
from ..codec.models import LOG_MEAN_UNITS, code_length_bits, fine_contexts
from ..errors import InvalidInputError
from ..model.quantise import quantise_siren
from ..model.siren import (NORM_CODES, IntegerLayer, Normalisation, PatchSiren, centred_coordinates,
                           coordinate_scale, read_outputs, siren_outputs)
from .options import EncodeOptions

SIREN_META_BITS = 200  # what a kept SIREN's metadata costs, charged against its saving
PROBE_BANDS = 8
MAX_PLAUSIBLE_SAVING = 0.5  # bits per nonzero: a band needs cost / nnz below this to try a network
SCREEN_BINS = 16  # the screen's grid: rows and columns of a band in this many bins each
SCREEN_MARGIN = 2.0  # the screen's estimate is rough: it must predict this many times the weights' cost


@dataclass(frozen=True)
class SirenPlanner:
    """Which bands of a chunk try a SIREN."""

    sample: int | None  # None: every band; else at most this many bands of each chunk
    force: bool = False  # fit every band and keep every network

    def bands(self, band_nnz: np.ndarray, options: EncodeOptions) -> np.ndarray:
        """Bands worth a network: every one when forced, else those with enough nonzeros for the
        smallest network to pay, sampled in auto mode."""
        if self.force:
            return np.flatnonzero(band_nnz)
        cost = network_parameters(options) * min(options.weight_bits) + SIREN_META_BITS
        bands = np.flatnonzero(band_nnz * MAX_PLAUSIBLE_SAVING >= cost)
        if self.sample is None or bands.size <= self.sample:
            return bands
        return bands[np.unique(np.linspace(0, bands.size - 1, self.sample).round().astype(np.int64))]


def predicted_saving_bits(local_rows: np.ndarray, cols: np.ndarray, residuals: np.ndarray, height: int,
                          width: int) -> float:
    """What any smooth predictor could save over the baseline in a band, estimated cheaply: the
    share R^2 of the baseline's residuals (log1p(v) - gene term - cell term) that a coarse grid of
    the band's rows x columns explains, less what noise alone would explain, is worth
    n/2 log2(1 / (1 - R^2)) bits (Gaussian residuals). `auto` fits a network only where this pays
    for its weights; a SIREN is smooth at the grid's scale, so it rarely captures more."""
    n = residuals.size
    if n < 2 * SCREEN_BINS**2:
        return 0.0
    centred = residuals - residuals.mean()
    total = float(np.einsum("i,i->", centred, centred))
    if total <= 0:
        return 0.0
    cell = (local_rows * SCREEN_BINS // max(height, 1)) * SCREEN_BINS + cols * SCREEN_BINS // max(width, 1)
    counts = np.bincount(cell, minlength=SCREEN_BINS**2)
    sums = np.bincount(cell, centred, minlength=SCREEN_BINS**2)
    explained = float((sums[counts > 0] ** 2 / counts[counts > 0]).sum())
    noise = np.count_nonzero(counts) * total / n  # what bin means of pure noise would explain
    share = min(max((explained - noise) / total, 0.0), 0.999)
    return 0.5 * n * float(np.log2(1 / (1 - share)))


def network_parameters(options: EncodeOptions) -> int:
    """Parameters of one band's SIREN with these options (3 inputs, 1 output)."""
    width, hidden = options.width, options.hidden_layers
    return 3 * width + hidden * (width * width + width) + width + 1


INSTALL_TORCH = "pip install 'scinrcodec[encode]'"  # what every message asking for torch says


def torch_available() -> bool:
    """Whether torch can be imported, without importing it (reads never need it)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def needs_torch(options: EncodeOptions) -> bool:
    """Whether an encode with these options fits SIRENs whatever its data (auto fits them only where
    torch is there)."""
    return options.siren in ("always", "force") or options.mode == "inr-only"


def check_device(device: str | None) -> None:
    """Refuse a torch device that does not exist, or holds no data to copy back (meta), before any work
    is done."""
    if device is None:
        return
    import torch

    try:
        torch.zeros(1, device=device).cpu()
    except (RuntimeError, ValueError, AssertionError, NotImplementedError) as exc:
        raise InvalidInputError(f"--device {device!r} is not usable here ({str(exc).splitlines()[0]})") from exc


def _constant_siren(normalisation: Normalisation) -> PatchSiren:
    """A network whose output is 0 everywhere: the --inr-only fallback when no depth fits int64."""
    layers = [IntegerLayer(np.zeros((1, 2), np.int64), np.zeros(1, np.int64), 0, 0, 0),
              IntegerLayer(np.zeros((1, 1), np.int64), np.zeros(1, np.int64), 0, 0, 0)]
    return PatchSiren(layers, normalisation, 2)


def fit_band_sirens(planner: SirenPlanner, geometry: ChunkGeometry, band_bounds: np.ndarray, rows: np.ndarray,
                    cols: np.ndarray, values: np.ndarray, bins: np.ndarray, contexts: np.ndarray,
                    hist: np.ndarray, gene_terms: np.ndarray, cell_terms: np.ndarray, options: EncodeOptions):
    """Fit the planned bands of a chunk (nonzeros sorted by tile, so each band is a contiguous span);
    return the kept SIRENs by band, the updated contexts, the --inr-only predictions (or None) and
    the statistics siren_tried, siren_kept, siren_saved_bits. `contexts` and `hist` (the chunk's
    baseline contexts and their histograms) are on the grid of options.format_version; the gene and
    cell terms (1/16 nat) give the residuals that the screen of `auto` reads, band by band."""
    from ..model.siren_train import fit_sirens

    inr_only = options.mode == "inr-only"
    fine = fine_contexts(options.format_version)
    band_nnz = np.diff(band_bounds)
    bands = np.flatnonzero(band_nnz) if inr_only else planner.bands(band_nnz, options)
    if planner.sample is not None and not inr_only:  # auto: fit only where the screen predicts a gain
        cost = network_parameters(options) * min(options.weight_bits) + SIREN_META_BITS
        spans = [slice(int(band_bounds[b]), int(band_bounds[b + 1])) for b in bands]
        bands = [b for b, span in zip(bands, spans) if predicted_saving_bits(
            rows[span] - geometry.row_starts[b], cols[span],
            np.log1p(values[span]) - (gene_terms[rows[span]] + cell_terms[cols[span]]) / LOG_MEAN_UNITS,
            int(geometry.row_starts[b + 1] - geometry.row_starts[b]), geometry.n_cells) > SCREEN_MARGIN * cost]
    if not len(bands):
        return {}, contexts, None, {}
    bands = [int(b) for b in bands]
    spans = [slice(int(band_bounds[b]), int(band_bounds[b + 1])) for b in bands]
    heights = [int(geometry.row_starts[b + 1] - geometry.row_starts[b]) for b in bands]
    coords, targets, norms, scales = [], [], [], []
    for b, span, height in zip(bands, spans, heights):
        scale = coordinate_scale(height, geometry.n_cells, options.coordinates)
        local = rows[span] - geometry.row_starts[b]
        coords.append(centred_coordinates(local, cols[span], height, geometry.n_cells) * np.asarray(scale))
        norm = Normalisation.fit(options.normalisation, values[span])
        norms.append(norm)
        scales.append(scale)
        targets.append(norm.forward(values[span]))
    trained = fit_sirens(coords, targets, width=options.width, hidden_layers=options.hidden_layers,
                         steps=options.steps, batch=options.batch, learning_rate=options.learning_rate,
                         seed=options.seed, device=options.device)
    contexts = contexts.copy()
    predictions = np.ones(values.size, dtype=np.int64) if inr_only else None
    sirens: dict[int, PatchSiren] = {}
    saved = 0.0
    keep_always = inr_only or planner.force
    for b, span, height, net, norm, scale in zip(bands, spans, heights, trained, norms, scales):
        local = rows[span] - geometry.row_starts[b]
        baseline_cost = code_length_bits(hist, contexts[span], bins[span])
        best, best_cost, best_outputs = None, np.inf if keep_always else baseline_cost, None
        for bits in options.weight_bits:
            patch = quantise_siren(net.weights, net.biases, bits, scale, norm, height, geometry.n_cells)
            if patch is None:
                continue
            table, params = patch.packed()
            outputs = siren_outputs(table, params, local, cols[span], height, geometry.n_cells)
            kind = NORM_CODES[norm.kind]
            if inr_only:  # no residuals: the depth that reproduces most nonzeros
                guess = read_outputs(kind, norm.offset, norm.scale, outputs, True)
                cost = -float(np.mean(guess == values[span]))
            else:
                siren_contexts = read_outputs(kind, norm.offset, norm.scale, outputs, False, fine=fine)
                cost = code_length_bits(hist, siren_contexts, bins[span]) + patch.n_parameters * bits + SIREN_META_BITS
            if cost < best_cost:
                best, best_cost, best_outputs = patch, cost, outputs
        if inr_only and best is None:
            best = _constant_siren(norm)
            best_outputs = np.zeros(span.stop - span.start, dtype=np.int64)
        if best is None:
            continue
        sirens[b] = best
        kind = NORM_CODES[best.normalisation.kind]
        n = best.normalisation
        if inr_only:
            predictions[span] = read_outputs(kind, n.offset, n.scale, best_outputs, True)
        else:
            contexts[span] = read_outputs(kind, n.offset, n.scale, best_outputs, False, fine=fine)
            saved += baseline_cost - best_cost
    stats = {"siren_tried": len(bands), "siren_kept": len(sirens), "siren_saved_bits": saved}
    return sirens, contexts, predictions, stats
