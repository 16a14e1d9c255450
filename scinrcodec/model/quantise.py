"""Quantisers: SIREN weights to integers (per-layer scales, weights and biases apart), and values
to multiples of 2E+1 for --max-error E (zeros stay exact)."""
from __future__ import annotations

import math

import numpy as np

from ..codec.models import int32_items
from ..limits import MAX_COUNT, MAX_SIREN_SHIFT
from .siren import OUTPUT_BITS, TABLE_BITS, W0, IntegerLayer, Normalisation, PatchSiren

MULTIPLIER_BITS = 24


def _quantise(values: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    top = (1 << (bits - 1)) - 1
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    step = peak / top if peak > 0 else 1.0
    return np.clip(np.rint(values / step), -top, top).astype(np.int64), step


def _multipliers(weight_factor: float, bias_factor: float, precision: int) -> tuple[int, int, int]:
    """Integer multipliers and shift approximating two real factors to `precision` bits."""
    peak = max(abs(weight_factor), abs(bias_factor), 1e-300)
    shift = int(np.clip(precision - math.ceil(math.log2(peak)), 0, MAX_SIREN_SHIFT))
    return round(weight_factor * 2.0**shift), round(bias_factor * 2.0**shift), shift


def quantise_siren(weights: list[np.ndarray], biases: list[np.ndarray], bits: int, coordinate_scales,
                   normalisation: Normalisation, height: int, width: int) -> PatchSiren | None:
    """A trained network (weights[l] is (in, out); sin(w0 (x W + b)) layers) as a PatchSiren at
    `bits` per parameter, with the most multiplier precision that keeps the static int64 bound
    of its patch; None if even 8 bits of precision cannot."""
    phase_per_radian = (1 << TABLE_BITS) / (2 * math.pi)
    factors = []
    quantised = []
    for index, (w, b) in enumerate(zip(weights, biases)):
        last = index == len(weights) - 1
        if index == 0:
            w = w * np.asarray(coordinate_scales)[:, None]
        wq, w_step = _quantise(w.T, bits)
        bq, b_step = _quantise(b, bits)
        input_unit = 1.0 if index == 0 else 2.0**-12
        if last:
            factors.append((w_step * input_unit * 2**OUTPUT_BITS, b_step * 2**OUTPUT_BITS))
        else:
            factors.append((W0 * phase_per_radian * w_step * input_unit, W0 * phase_per_radian * b_step))
        quantised.append((wq, bq))
    for precision in range(MULTIPLIER_BITS, 7, -2):
        layers = [IntegerLayer(wq, bq, *_multipliers(fw, fb, precision)) for (wq, bq), (fw, fb) in zip(quantised, factors)]
        patch = PatchSiren(layers, normalisation, bits)
        if patch.fits_int64(height, width):
            return patch
    return None


def quantise_values(values: np.ndarray, max_error: int, out: np.ndarray | None = None) -> np.ndarray:
    """Nonzero v -> coded u: v - 1 when lossless, (v - 1 + E) // (2E + 1) with --max-error E; into
    `out` (int32 with E) when given: the encoder keeps one a thread, and neither mode takes a
    temporary. With E, values are int32 counts (int32_items) and the arithmetic is unsigned 32-bit,
    where v - 1 + E <= 2**32 - 4 and 2E + 1 <= 2**32 - 3 cannot overflow (v <= MAX_COUNT,
    E <= MAX_ERROR_LIMIT); u < 2**31 is int32."""
    if not max_error:
        return np.subtract(values, 1, out=out)
    values = int32_items(values)
    out = np.empty(values.size, np.int32) if out is None else out
    if out.dtype != np.int32 or out.size != values.size:
        raise ValueError("out must be an int32 array of one item a value")
    u = out.view(np.uint32)
    np.add(values.view(np.uint32), np.uint32(max_error - 1), out=u)
    np.floor_divide(u, np.uint32(2 * max_error + 1), out=u)
    return out


def dequantise_values(u: np.ndarray, max_error: int) -> np.ndarray:
    """Coded indices back to values in mode max-error (spec §6.3.3), clamped to MAX_COUNT (int64:
    u (2E + 1) may pass 2**31)."""
    return np.minimum(1 + np.asarray(u).astype(np.int64) * (2 * max_error + 1), MAX_COUNT)
