"""Predictors of a nonzero's value, turned into coding contexts.

The baseline predicts log1p(value) as a gene term plus a cell term (stored in 1/16 units, per
expressed gene and per cell). A patch may instead use its SIREN, fitted to the patch's nonzeros
under one of the study's normalisations; the encoder keeps the SIREN only where it saves more bits
than its weights cost. Both give a context: the predicted mean's log1p in quarter steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..container import pack_array, unpack_array
from ..errors import CorruptFileError
from .registry import Stage, register_stage
from .siren import OUTPUT_BITS, IntegerSiren, centred_coordinates
from .values import CONTEXT_STEPS_PER_NAT, N_CONTEXTS, context_of_log_mean, context_of_mean

NORMALISATIONS = ("none", "minmax", "log")
BASELINE_UNITS = 16


@register_stage
class Baseline(Stage):
    """log1p(value) ~ gene term + cell term, fitted by alternating means over the nonzeros."""

    codec_id = "gene-cell-baseline"

    def __init__(self, genes: np.ndarray | None = None, cells: np.ndarray | None = None) -> None:
        self.genes = np.zeros(0, dtype=np.int64) if genes is None else genes
        self.cells = np.zeros(0, dtype=np.int64) if cells is None else cells

    @classmethod
    def fit(cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int,
            iterations: int = 4) -> "Baseline":
        y = np.log1p(values.astype(np.float64))
        per_row = np.maximum(np.bincount(rows, minlength=n_rows), 1)
        per_col = np.maximum(np.bincount(cols, minlength=n_cols), 1)
        gene, cell = np.zeros(n_rows), np.zeros(n_cols)
        for _ in range(iterations):
            gene = np.bincount(rows, y - cell[cols], minlength=n_rows) / per_row
            cell = np.bincount(cols, y - gene[rows], minlength=n_cols) / per_col
        quantise = lambda a: np.clip(np.rint(a * BASELINE_UNITS), -32768, 32767).astype(np.int64)  # noqa: E731
        return cls(quantise(gene), quantise(cell))

    def contexts(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return context_of_log_mean(self.genes[rows] + self.cells[cols])

    def pack(self) -> tuple[bytes, bytes]:
        return pack_array(self.genes.astype(np.int16)), pack_array(self.cells.astype(np.int16))

    @classmethod
    def unpack(cls, gene_payload, cell_payload, n_rows: int, n_cols: int) -> "Baseline":
        return cls(unpack_array(gene_payload, "i2", n_rows, what="baseline genes").astype(np.int64),
                   unpack_array(cell_payload, "i2", n_cols, what="baseline cells").astype(np.int64))


@dataclass
class Normalisation:
    """The study's target scalings: target = (f(v) - offset) / scale.

    none: f(v) = v, offset 0, scale 1; minmax: offset = min, scale = max - min; log: f = log1p,
    offset 0, scale = log1p(max). The stored scale is used as is, so the decode path makes no
    transcendental call whose last bit could differ between machines.
    """

    kind: str
    offset: float
    scale: float

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> "Normalisation":
        low, high = float(values.min()), float(values.max())
        if kind == "log":
            return cls(kind, 0.0, max(float(np.log1p(high)), 1e-6))
        if kind == "minmax":
            return cls(kind, low, max(high - low, 1.0))
        if kind == "none":
            return cls(kind, 0.0, 1.0)
        raise ValueError(f"unknown normalisation {kind!r} (choose from {', '.join(NORMALISATIONS)})")

    def forward(self, values: np.ndarray) -> np.ndarray:
        v = values.astype(np.float64)
        return (np.log1p(v) if self.kind == "log" else v - self.offset) / self.scale

    def means(self, outputs: np.ndarray) -> np.ndarray:
        """Predicted value (float) from integer network outputs."""
        y = outputs * 2.0**-OUTPUT_BITS * self.scale
        return np.expm1(y) if self.kind == "log" else y + self.offset

    def contexts(self, outputs: np.ndarray) -> np.ndarray:
        if self.kind == "log":
            step = self.scale * CONTEXT_STEPS_PER_NAT * 2.0**-OUTPUT_BITS
            return np.clip(np.floor(outputs * step), 0, N_CONTEXTS - 1).astype(np.int64)
        return context_of_mean(self.means(outputs))

    def to_meta(self) -> list:
        return [self.kind, self.offset, self.scale]

    @classmethod
    def from_meta(cls, meta) -> "Normalisation":
        if (not isinstance(meta, list) or len(meta) != 3 or meta[0] not in NORMALISATIONS
                or not all(isinstance(x, float) and np.isfinite(x) for x in meta[1:]) or meta[2] <= 0):
            raise CorruptFileError("patch normalisation metadata is malformed")
        return cls(meta[0], meta[1], meta[2])


@dataclass
class PatchSiren:
    """A patch's quantised SIREN with its normalisation, evaluated on patch-local coordinates."""

    siren: IntegerSiren
    normalisation: Normalisation
    bits: int

    def outputs(self, local_rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
        return self.siren.predict(centred_coordinates(local_rows, cols, n_rows, n_cols))

    def to_meta(self) -> dict:
        return {"bits": self.bits, "normalisation": self.normalisation.to_meta(), "layers": self.siren.to_meta()}

    @classmethod
    def from_meta(cls, meta, parameters: np.ndarray) -> "PatchSiren":
        if not isinstance(meta, dict) or not isinstance(meta.get("bits"), int) or not 2 <= meta["bits"] <= 16:
            raise CorruptFileError("patch SIREN metadata is malformed")
        return cls(IntegerSiren.from_meta(meta.get("layers"), parameters),
                   Normalisation.from_meta(meta.get("normalisation")), meta["bits"])
