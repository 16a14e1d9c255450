"""Quantisers: SIREN weights to integers (per-layer scales, weights and biases apart), and
values to multiples of 2E+1 for --max-error E (zeros stay exact)."""
from __future__ import annotations

import math

import numpy as np

from ..formats import MAX_COUNT
from .registry import Stage, register_stage
from .siren import OUTPUT_BITS, TABLE_BITS, W0, IntegerLayer, IntegerSiren

MULTIPLIER_BITS = 24


def _quantise(values: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    top = (1 << (bits - 1)) - 1
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    step = peak / top if peak > 0 else 1.0
    return np.clip(np.rint(values / step), -top, top).astype(np.int64), step


def _multipliers(weight_factor: float, bias_factor: float) -> tuple[int, int, int]:
    """Integer multipliers and shift approximating two real scale factors to MULTIPLIER_BITS."""
    peak = max(abs(weight_factor), abs(bias_factor), 1e-300)
    shift = int(np.clip(MULTIPLIER_BITS - math.ceil(math.log2(peak)), 0, 62))
    return round(weight_factor * 2.0**shift), round(bias_factor * 2.0**shift), shift


@register_stage
class WeightQuantiser(Stage):
    """Turns float SIREN weights (training form) into an IntegerSiren at a given bit depth."""

    codec_id = "siren-weight-quantiser"

    def quantise(self, weights: list[np.ndarray], biases: list[np.ndarray], bits: int,
                 coordinate_scales: tuple[float, float]) -> IntegerSiren:
        """weights[l] is (in, out) as trained; layers before the last are sin(w0 (x W + b))."""
        phase_per_radian = (1 << TABLE_BITS) / (2 * math.pi)
        layers = []
        for index, (w, b) in enumerate(zip(weights, biases)):
            last = index == len(weights) - 1
            if index == 0:
                w = w * np.asarray(coordinate_scales)[:, None]
            wq, w_step = _quantise(w.T, bits)
            bq, b_step = _quantise(b, bits)
            input_unit = 1.0 if index == 0 else 2.0**-12
            if last:
                factor_w, factor_b = w_step * input_unit * 2**OUTPUT_BITS, b_step * 2**OUTPUT_BITS
            else:
                factor_w = W0 * phase_per_radian * w_step * input_unit
                factor_b = W0 * phase_per_radian * b_step
            layers.append(IntegerLayer(wq, bq, *_multipliers(factor_w, factor_b)))
        return IntegerSiren(layers)


@register_stage
class ValueQuantiser(Stage):
    """Lossless (max_error 0) or near-lossless: nonzero v -> u = round((v-1)/(2E+1))."""

    codec_id = "value-quantiser"

    def __init__(self, max_error: int = 0) -> None:
        if max_error < 0:
            raise ValueError("max_error must be >= 0")
        self.max_error = int(max_error)

    def _params(self) -> dict:
        return {"max_error": self.max_error}

    def encode(self, values: np.ndarray) -> np.ndarray:
        step = 2 * self.max_error + 1
        return (values - 1 + self.max_error) // step

    def decode(self, u: np.ndarray) -> np.ndarray:
        if self.max_error == 0:
            return u + 1
        return np.minimum(1 + u * (2 * self.max_error + 1), MAX_COUNT)
