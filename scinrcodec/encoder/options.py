"""Every choice the encoder makes, validated up front; the file records them in its footer."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from ..errors import InvalidInputError
from ..limits import DEFAULT_CHUNK_CELLS, MAX_DIMENSION, MAX_ERROR_LIMIT, MAX_SIREN_WIDTH
from ..model.siren import NORMALISATIONS

MODES = ("lossless", "max-error", "inr-only")
SIREN_CHOICES = ("auto", "always", "never", "force")
COORDINATES = ("isotropic", "per-axis")


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "__index__")):
        raise InvalidInputError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be between {low:,} and {high:,}, not {value:,}")
    return value


@dataclass
class EncodeOptions:
    mode: str = "lossless"
    max_error: int = 0
    tile_nnz: int | None = None  # None: codec.geometry.default_tile_nnz of the matrix's nonzeros
    patch_nnz: int | None = None
    chunk_cells: int = DEFAULT_CHUNK_CELLS
    siren: str = "auto"
    width: int = 24
    hidden_layers: int = 2
    steps: int = 300
    batch: int = 2048
    learning_rate: float = 1e-3
    normalisation: str = "log"
    coordinates: str = "isotropic"
    weight_bits: tuple[int, ...] = (6, 8)
    device: str | None = None
    seed: int = 0
    jobs: int | None = None
    progress: bool = False
    layer: str | None = field(default=None, repr=False)

    RECORDED = ("mode", "max_error", "tile_nnz", "patch_nnz", "chunk_cells", "siren", "width", "hidden_layers",
                "steps", "batch", "learning_rate", "normalisation", "coordinates", "weight_bits", "seed")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        self.max_error = _integer("max_error", self.max_error, 0, MAX_ERROR_LIMIT)
        if self.mode == "max-error" and self.max_error < 1:
            raise InvalidInputError("--max-error must be a positive integer")
        if self.mode != "max-error" and self.max_error:
            raise InvalidInputError("max_error is only used with mode 'max-error'")
        if self.siren is True or self.siren is False:
            self.siren = "always" if self.siren else "never"
        if self.siren not in SIREN_CHOICES:
            raise InvalidInputError(f"siren must be one of {', '.join(SIREN_CHOICES)}, not {self.siren!r}")
        if self.mode == "inr-only" and self.siren == "never":
            raise InvalidInputError("--inr-only needs the SIREN")
        if self.normalisation not in NORMALISATIONS:
            raise InvalidInputError(f"unknown normalisation {self.normalisation!r}")
        if self.coordinates not in COORDINATES:
            raise InvalidInputError(f"unknown coordinate scaling {self.coordinates!r}")
        if self.tile_nnz is not None:
            self.tile_nnz = _integer("tile_nnz", self.tile_nnz, 1, 1 << 20)
        if self.patch_nnz is not None:
            self.patch_nnz = _integer("patch_nnz", self.patch_nnz, 1, 1 << 40)
        self.chunk_cells = _integer("chunk_cells", self.chunk_cells, 1, MAX_DIMENSION)
        self.width = _integer("width", self.width, 1, MAX_SIREN_WIDTH)
        self.hidden_layers = _integer("hidden_layers", self.hidden_layers, 1, 14)
        self.steps = _integer("steps", self.steps, 1, 10**7)
        self.batch = _integer("batch", self.batch, 1, 1 << 24)
        self.seed = _integer("seed", self.seed, 0, 2**63 - 1)
        self.weight_bits = tuple(_integer("weight bits", b, 2, 16) for b in self.weight_bits)
        if not self.weight_bits:
            raise InvalidInputError("weight bit depths must not be empty")
        if self.jobs is not None:
            self.jobs = _integer("jobs", self.jobs, 1, 4096)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not 0 < self.learning_rate < 10:
            raise InvalidInputError(f"learning_rate must be a number in (0, 10), not {self.learning_rate!r}")

    @property
    def n_jobs(self) -> int:
        return self.jobs or os.cpu_count() or 1

    def recorded(self) -> dict:
        values = asdict(self)
        return {name: (list(values[name]) if isinstance(values[name], tuple) else values[name])
                for name in self.RECORDED}

    @classmethod
    def from_recorded(cls, recorded: dict, **rest) -> "EncodeOptions":
        """The options a file recorded (see recorded()), with `rest` for those it does not record."""
        values = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in recorded.items() if name in cls.RECORDED}
        return cls(**values, **rest)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
