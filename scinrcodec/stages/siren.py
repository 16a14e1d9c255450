"""SIREN inference in integer arithmetic: the decoder's predictor, numpy only.

A SIREN is sin(w0 (W x + b)) layers then a linear output. Decoding must reproduce the encoder's
predictions bit for bit on any machine, so the dequantised network runs in integers: activations
are sines from a fixed table (TABLE_BITS of phase, ACTIVATION_BITS of amplitude), each layer's
integer pre-activation is rescaled by integer multipliers and a shift chosen at encode time.
Matrix products of small integers are exact in float64, so BLAS may be used in any order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorruptFileError

W0 = 30.0
TABLE_BITS = 12
ACTIVATION_BITS = 12
OUTPUT_BITS = 12
MAX_WIDTH = 512
MAX_LAYERS = 16


def _sine_table() -> np.ndarray:
    """round(sin(2 pi k / 2**TABLE_BITS) * 2**ACTIVATION_BITS); no entry is near a rounding tie."""
    scaled = np.sin(2 * np.pi * np.arange(1 << TABLE_BITS) / (1 << TABLE_BITS)) * (1 << ACTIVATION_BITS)
    assert np.all(np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) > 1e-6)
    return np.round(scaled).astype(np.int64)


SINE_TABLE = _sine_table()


@dataclass
class IntegerLayer:
    """out = (W_q . h) * weight_multiplier + b_q * bias_multiplier, arithmetic-shifted right by shift."""

    weights: np.ndarray  # int64 (out, in)
    biases: np.ndarray  # int64 (out,)
    weight_multiplier: int
    bias_multiplier: int
    shift: int

    def apply(self, h: np.ndarray) -> np.ndarray:
        z = np.rint(h.astype(np.float64) @ self.weights.T.astype(np.float64)).astype(np.int64)
        return (z * self.weight_multiplier + self.biases * self.bias_multiplier) >> self.shift


@dataclass
class IntegerSiren:
    """Sine layers giving phases in table units, then a linear layer in units of 2**-OUTPUT_BITS."""

    layers: list[IntegerLayer]

    def predict(self, coords: np.ndarray) -> np.ndarray:
        """coords: int64 (n, 2) centred integer coordinates -> int64 (n,) outputs."""
        h = coords
        for layer in self.layers[:-1]:
            h = SINE_TABLE[layer.apply(h) & ((1 << TABLE_BITS) - 1)]
        return self.layers[-1].apply(h)[:, 0]

    @property
    def n_parameters(self) -> int:
        return sum(layer.weights.size + layer.biases.size for layer in self.layers)

    def to_meta(self) -> list:
        return [[layer.weights.shape[0], layer.weights.shape[1], layer.weight_multiplier,
                 layer.bias_multiplier, layer.shift] for layer in self.layers]

    def flat_parameters(self) -> np.ndarray:
        return np.concatenate([np.concatenate([layer.weights.ravel(), layer.biases]) for layer in self.layers])

    @classmethod
    def from_meta(cls, meta, parameters: np.ndarray) -> "IntegerSiren":
        """Rebuild from stored layer shapes/multipliers and the flat integer parameters."""
        if not isinstance(meta, list) or not 2 <= len(meta) <= MAX_LAYERS:
            raise CorruptFileError("SIREN metadata is malformed")
        layers, used, fan_in = [], 0, 2
        for entry in meta:
            if (not isinstance(entry, list) or len(entry) != 5 or not all(isinstance(x, int) for x in entry)):
                raise CorruptFileError("SIREN layer metadata is malformed")
            n_out, n_in, w_mult, b_mult, shift = entry
            if n_in != fan_in or not 1 <= n_out <= MAX_WIDTH or not 0 <= shift <= 62 \
                    or max(abs(w_mult), abs(b_mult)) >= 2**40:
                raise CorruptFileError("SIREN layer shape or scaling is invalid")
            size = n_out * n_in + n_out
            if used + size > parameters.size:
                raise CorruptFileError("SIREN weights are truncated")
            block = parameters[used: used + size]
            layers.append(IntegerLayer(block[: n_out * n_in].reshape(n_out, n_in), block[n_out * n_in:],
                                       w_mult, b_mult, shift))
            used, fan_in = used + size, n_out
        if fan_in != 1:
            raise CorruptFileError("SIREN must end in one output")
        return cls(layers)


def centred_coordinates(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Integer coordinates 2r - (R-1), 2c - (C-1): the [-1, 1] scaling up to one stored factor."""
    return np.stack([2 * rows - (n_rows - 1), 2 * cols - (n_cols - 1)], axis=1).astype(np.int64)


def coordinate_scale(n_rows: int, n_cols: int, mode: str) -> tuple[float, float]:
    """Factors taking centred integers to [-1, 1]: 'isotropic' scales both axes by the longer one."""
    row = 1.0 / max(n_rows - 1, 1)
    col = 1.0 / max(n_cols - 1, 1)
    if mode == "isotropic":
        row = col = min(row, col)
    return row, col
