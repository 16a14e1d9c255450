"""SIREN inference in integer arithmetic: the decoder's predictor, evaluated by the native core
(native/core/src/siren.cpp).

A SIREN is sin(w0 (W x + b)) layers then a linear output. Decoding must reproduce the encoder's
predictions bit for bit on any machine, so the quantised network runs in int64: activations are
sines from a fixed table (TABLE_BITS of phase, ACTIVATION_BITS of amplitude) and each layer's
integer pre-activation is rescaled by integer multipliers and a shift chosen at encode time. A
file is valid only if a static bound proves that no accumulator can leave int64 (spec §7.1).
The network output y (units of 2**-OUTPUT_BITS) becomes a coding context, or in --inr-only mode
the predicted count, through the patch's normalisation.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .. import _native
from ..errors import CorruptFileError
from ..limits import (MAX_COUNT, MAX_SIREN_LAYERS, MAX_SIREN_MULTIPLIER, MAX_SIREN_SHIFT, MAX_SIREN_WIDTH,
                      SIREN_ACCUMULATOR_BOUND)

W0 = 30.0
TABLE_BITS = 12
ACTIVATION_BITS = 12
OUTPUT_BITS = 12
NORMALISATIONS = ("none", "minmax", "log")
LOG_GRID_BITS = 10  # --inr-only with log: the prediction is looked up on a 2**-10 nat grid
LAYER_FIELDS = 6  # n_out, n_in, w_mult, b_mult, shift, first parameter


SINE_CRC32 = 0x1AC8F72D  # spec Appendix A.2: the table as int16 little-endian
EXPM1_CRC32 = 0x514976D3  # spec Appendix A.3: the table as uint32 little-endian


def _sine_table() -> np.ndarray:
    """round(sin(2 pi k / 2**TABLE_BITS) * 2**ACTIVATION_BITS), as the native core computes it; no
    entry is near a rounding tie, so every libm gives this table (checked against the spec's check
    value)."""
    table = np.array(_native.sine_table(), dtype=np.int64)
    assert table.size == 1 << TABLE_BITS
    assert zlib.crc32(table.astype("<i2").tobytes()) == SINE_CRC32, "sin differs from spec Appendix A.2"
    return table


def _expm1_table() -> np.ndarray:
    """round(expm1((k + 1/2) / 2**LOG_GRID_BITS)), capped at MAX_COUNT, for every k up to the cap:
    the --inr-only prediction of the log normalisation, as the native core computes it. No entry
    is near a rounding tie (checked against the spec's check value)."""
    top = int(np.ceil(np.log1p(MAX_COUNT) * (1 << LOG_GRID_BITS))) + 1
    table = np.array(_native.expm1_table(), dtype=np.int64)
    assert table.size == top
    assert zlib.crc32(table.astype("<u4").tobytes()) == EXPM1_CRC32, "expm1 differs from spec Appendix A.3"
    return table


SINE_TABLE = _sine_table()
EXPM1_TABLE = _expm1_table()
# The context edges too (spec Appendix A.1), which only SIREN bands use: checked where SIRENs load.
assert _native.tables_match_spec(), "the native core's tables differ from spec Appendix A (libm rounds differently)"
NORM_CODES = {name: code for code, name in enumerate(NORMALISATIONS)}


@dataclass
class IntegerLayer:
    """out = (W_q . h) * weight_multiplier + b_q * bias_multiplier, arithmetic-shifted right by shift."""

    weights: np.ndarray  # int64 (out, in)
    biases: np.ndarray  # int64 (out,)
    weight_multiplier: int
    bias_multiplier: int
    shift: int


@dataclass
class Normalisation:
    """The study's target scalings: target = (f(v) - offset) / scale.

    none: f(v) = v, offset 0, scale 1; minmax: offset = min, scale = max - min; log: f = log1p,
    offset 0, scale = log1p(max). The stored scale is used as is, so decoding makes no
    transcendental call whose last bit could differ between machines."""

    kind: str
    offset: float
    scale: float

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> "Normalisation":
        """The normalisation of `kind` that maps these values into about [0, 1]."""
        low, high = float(values.min()), float(values.max())
        if kind == "log":
            return cls(kind, 0.0, max(float(np.log1p(high)), 1e-6))
        if kind == "minmax":
            return cls(kind, low, max(high - low, 1.0))
        return cls("none", 0.0, 1.0)

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Values as the network sees them."""
        v = values.astype(np.float64)
        return (np.log1p(v) if self.kind == "log" else v - self.offset) / self.scale

    def to_meta(self) -> list:
        """[kind, offset, scale], as `siren.meta` stores it."""
        return [self.kind, self.offset, self.scale]

    @classmethod
    def from_meta(cls, meta) -> "Normalisation":
        """The stored normalisation, refused if malformed or self-contradictory."""
        if (not isinstance(meta, list) or len(meta) != 3 or meta[0] not in NORMALISATIONS
                or not all(isinstance(x, float) and np.isfinite(x) for x in meta[1:]) or not meta[2] > 0):
            raise CorruptFileError("patch normalisation metadata is malformed")
        if meta[0] != "minmax" and meta[1] != 0.0 or meta[0] == "none" and meta[2] != 1.0:
            raise CorruptFileError("patch normalisation metadata contradicts its kind")
        return cls(meta[0], meta[1], meta[2])


@dataclass
class PatchSiren:
    """A patch's quantised SIREN with its normalisation and weight bit depth."""

    layers: list[IntegerLayer]
    normalisation: Normalisation
    bits: int

    @property
    def n_parameters(self) -> int:
        """Weights and biases of every layer."""
        return sum(layer.weights.size + layer.biases.size for layer in self.layers)

    def flat_parameters(self) -> np.ndarray:
        """Every layer's weights then biases, in the order `siren.weights` stores them."""
        return np.concatenate([np.concatenate([layer.weights.ravel(), layer.biases]) for layer in self.layers])

    def to_meta(self) -> dict:
        """The SIREN's entry of `siren.meta` (its parameters go to `siren.weights`)."""
        return {"bits": self.bits, "normalisation": self.normalisation.to_meta(),
                "layers": [[layer.weights.shape[0], layer.weights.shape[1], layer.weight_multiplier,
                            layer.bias_multiplier, layer.shift] for layer in self.layers]}

    @staticmethod
    def parameter_count(meta) -> int:
        """Parameters a stored meta declares (validated shapes), before any are read."""
        layers = meta.get("layers") if isinstance(meta, dict) else None
        if not isinstance(layers, list) or not 2 <= len(layers) <= MAX_SIREN_LAYERS:
            raise CorruptFileError("SIREN metadata is malformed")
        total, fan_in = 0, 2
        for entry in layers:
            if not isinstance(entry, list) or len(entry) != 5 or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in entry):
                raise CorruptFileError("SIREN layer metadata is malformed")
            n_out, n_in = entry[0], entry[1]
            if n_in != fan_in or not 1 <= n_out <= MAX_SIREN_WIDTH:
                raise CorruptFileError("SIREN layer shapes do not chain")
            total, fan_in = total + n_out * n_in + n_out, n_out
        if fan_in != 1:
            raise CorruptFileError("SIREN must end in one output")
        return total

    @classmethod
    def from_meta(cls, meta, parameters: np.ndarray) -> "PatchSiren":
        """Rebuild from stored meta and exactly `parameter_count(meta)` integer parameters."""
        if not isinstance(meta, dict) or not isinstance(meta.get("bits"), int) or not 2 <= meta["bits"] <= 16:
            raise CorruptFileError("SIREN metadata is malformed")
        if parameters.size != cls.parameter_count(meta):
            raise CorruptFileError("SIREN weights do not match their metadata")
        layers, used = [], 0
        for n_out, n_in, w_mult, b_mult, shift in meta["layers"]:
            if not 0 <= shift <= MAX_SIREN_SHIFT or max(abs(w_mult), abs(b_mult)) >= MAX_SIREN_MULTIPLIER:
                raise CorruptFileError("SIREN layer scaling is out of range")
            block = parameters[used: used + n_out * n_in + n_out]
            if block.size and np.abs(block).max() >= 1 << (meta["bits"] - 1):
                raise CorruptFileError("SIREN parameters exceed their declared bit depth")
            layers.append(IntegerLayer(block[: n_out * n_in].reshape(n_out, n_in), block[n_out * n_in:],
                                       w_mult, b_mult, shift))
            used += block.size
        return cls(layers, Normalisation.from_meta(meta.get("normalisation")), meta["bits"])

    def fits_int64(self, height: int, width: int) -> bool:
        """The static bound of spec §7.1: every accumulator stays below 2**62 for any input of a
        patch of `height` rows and `width` columns (exact integer arithmetic)."""
        bound = max(height - 1, width - 1, 0)
        for index, layer in enumerate(self.layers):
            weights = np.abs(layer.weights).astype(object)
            sums = (weights * bound).sum(axis=1)
            for s, b in zip(sums.tolist(), np.abs(layer.biases).tolist()):
                if s * abs(layer.weight_multiplier) + b * abs(layer.bias_multiplier) >= SIREN_ACCUMULATOR_BOUND:
                    return False
            bound = 1 << ACTIVATION_BITS
        return True

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(layer table int64 [n_layers, LAYER_FIELDS], flat parameters) for the native evaluator."""
        table = np.zeros((len(self.layers), LAYER_FIELDS), dtype=np.int64)
        first = 0
        for row, layer in zip(table, self.layers):
            row[:] = (layer.weights.shape[0], layer.weights.shape[1], layer.weight_multiplier,
                      layer.bias_multiplier, layer.shift, first)
            first += layer.weights.size + layer.biases.size
        return table, self.flat_parameters().astype(np.int64)


def siren_output(layers: np.ndarray, params: np.ndarray, first_layer: int, n_layers: int, row: int, col: int,
                 height: int, width: int) -> int:
    """The integer network at patch-local (row, col): layers first_layer.. of a packed layer table
    (see PatchSiren.packed), which must chain and stay inside params (else ValueError)."""
    return _native.siren_output(np.asarray(layers, np.int64), np.asarray(params, np.int64), int(first_layer),
                                int(n_layers), int(row), int(col), int(height), int(width))


def context_of_output(kind: int, offset: float, scale: float, y: int) -> int:
    """Format 2's coding context of a network output (spec §C.6)."""
    return _native.context_of_output(int(kind), float(offset), float(scale), int(y))


def prediction_of_output(kind: int, offset: float, scale: float, y: int) -> int:
    """--inr-only: the predicted count of a nonzero, at least 1 (spec §7.3)."""
    return _native.prediction_of_output(int(kind), float(offset), float(scale), int(y))


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


def siren_outputs(layers: np.ndarray, params: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int,
                  width: int) -> np.ndarray:
    """The network at many patch-local (row, col) points (the encoder's view of siren_output)."""
    rows, cols = np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(cols, np.int64)
    if rows.shape != cols.shape or rows.ndim != 1:
        raise ValueError("siren_outputs: rows and cols must be 1-D arrays of one length")
    out = np.empty(rows.size, dtype=np.int64)
    _native.siren_outputs(np.ascontiguousarray(layers, np.int64), np.ascontiguousarray(params, np.int64), rows, cols,
                          int(height), int(width), out)
    return out


def read_outputs(kind: int, offset: float, scale: float, outputs: np.ndarray, predictions: bool, *,
                 fine: bool = False) -> np.ndarray:
    """Network outputs as coding contexts (format 2's, spec §C.6, or with `fine` format 3's of 1/8
    nat, §7.2), or with `predictions` as --inr-only predicted counts."""
    outputs = np.ascontiguousarray(outputs, np.int64).ravel()
    out = np.empty(outputs.size, dtype=np.int64)
    _native.read_outputs(int(kind), float(offset), float(scale), outputs, bool(predictions), out, bool(fine))
    return out
