"""Every choice the encoder makes, validated up front; the file records them in its footer."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import InvalidInputError
from ..codec.stages import MODES
from ..limits import (CHUNK_NNZ_AIM, DEEP_CHUNK_CELLS_STEP, DEFAULT_CHUNK_CELLS, MAX_DEFAULT_CHUNK_CELLS, MAX_DIMENSION,
                      MAX_ERROR_LIMIT, MAX_PATCH_NNZ, MAX_SIREN_LAYERS, MAX_SIREN_WIDTH, MAX_TILE_NNZ, checked_integer,
                      checked_jobs, usable_cpus)
from ..model.siren import NORMALISATIONS
from ..reader.index import recorded_inputs_error
from ..storage.container import DEFAULT_MAJOR, SUPPORTED_MAJORS

SIREN_CHOICES = ("auto", "always", "never", "force")
COORDINATES = ("isotropic", "per-axis")


@dataclass(frozen=True)
class EncodeOptions:
    """Every choice of one encode, checked when made (InvalidInputError names the bad one) and
    frozen afterwards, so the options the footer records are the ones the chunks were coded with.
    """

    # --- the format version: 3, or 2 for readers of scinrcodec 2.x (recorded in the preamble)
    format_version: int = DEFAULT_MAJOR
    # --- the format: what the file holds and how it is cut (recorded in the footer)
    mode: str = "lossless"  # one of codec.stages.MODES: exact, bounded error, or SIREN predictions only
    max_error: int = 0  # mode "max-error": the largest |decoded - input| allowed
    tile_nnz: int | None = None  # nonzeros per tile; None: limits.DEFAULT_TILE_NNZ
    patch_nnz: int | None = None  # nonzeros per band over the whole matrix; None: balanced_patch_nnz
    chunk_cells: int | None = None  # cells per chunk, the unit of appends and parallel encodes; None: default_chunk_cells
    # how far the values of a lossless file may be from the counts first encoded, where they were decoded
    # from files not coded losslessly (set by concat, subset and append): the largest --max-error E, or -1
    # for --inr-only (no bound); None where the values are those counts. Recorded only when set.
    inputs_error: int | None = None
    # --- the SIREN predictor and its training (recorded: they decide the bytes)
    siren: str = "auto"  # one of SIREN_CHOICES: fit where a cheap test says it may pay, always, never, force
    width: int = 24  # neurons per hidden layer
    hidden_layers: int = 2
    steps: int = 300  # optimiser steps per band
    batch: int = 2048  # nonzeros per step
    learning_rate: float = 1e-3
    normalisation: str = "log"  # how values are scaled for the network (model.siren.NORMALISATIONS)
    coordinates: str = "isotropic"  # one of COORDINATES: how gene and cell positions are scaled
    weight_bits: tuple[int, ...] = (6, 8)  # quantisation depths tried per band; the cheapest kept
    seed: int = 0
    # --- how this run works (not recorded: the bytes never depend on them)
    device: str | None = None  # torch device for training; None: cuda where there is one, else the CPU
    jobs: int | None = None  # worker threads; None: every CPU this process may use (limits.usable_cpus)
    progress: bool = False  # print a progress line with throughput on stderr
    layer: str | None = field(default=None, repr=False)  # the AnnData layer (or X) holding the counts

    RECORDED = ("mode", "max_error", "tile_nnz", "patch_nnz", "chunk_cells", "siren", "width", "hidden_layers",
                "steps", "batch", "learning_rate", "normalisation", "coordinates", "weight_bits", "seed", "inputs_error")

    def __post_init__(self) -> None:
        self.validate()

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # validate's normalised values, before anyone sees the options

    def validate(self) -> None:
        """Check every field; store integers as int and the SIREN choice as its name."""
        if isinstance(self.format_version, bool) or self.format_version not in SUPPORTED_MAJORS:
            raise InvalidInputError(f"format_version must be one of {', '.join(map(str, SUPPORTED_MAJORS))}, "
                                    f"not {self.format_version!r}")
        self._set("format_version", int(self.format_version))
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        self._set("max_error", checked_integer("max_error", self.max_error, 0, MAX_ERROR_LIMIT))
        if self.mode == "max-error" and self.max_error < 1:
            raise InvalidInputError("mode 'max-error' needs max_error of at least 1 (max_error 0 is mode 'lossless')")
        if self.mode != "max-error" and self.max_error:
            raise InvalidInputError("max_error is only used with mode 'max-error' (pass mode='max-error' with it)")
        if self.siren is True or self.siren is False:
            self._set("siren", "always" if self.siren else "never")
        if self.siren not in SIREN_CHOICES:
            raise InvalidInputError(f"siren must be one of {', '.join(SIREN_CHOICES)}, not {self.siren!r}")
        if self.mode == "inr-only" and self.siren == "never":
            raise InvalidInputError("--inr-only needs the SIREN")
        if self.normalisation not in NORMALISATIONS:
            raise InvalidInputError(f"unknown normalisation {self.normalisation!r}")
        if self.coordinates not in COORDINATES:
            raise InvalidInputError(f"unknown coordinate scaling {self.coordinates!r}")
        if self.inputs_error is not None:
            self._set("inputs_error", checked_integer("inputs_error", self.inputs_error, -1, MAX_ERROR_LIMIT))
            if self.mode != "lossless":
                raise InvalidInputError("inputs_error is recorded by lossless files only (of values decoded from "
                                        "lossy files)")
        if self.tile_nnz is not None:
            self._set("tile_nnz", checked_integer("tile_nnz", self.tile_nnz, 1, MAX_TILE_NNZ))
        if self.patch_nnz is not None:
            self._set("patch_nnz", checked_integer("patch_nnz", self.patch_nnz, 1, MAX_PATCH_NNZ))
        if self.chunk_cells is not None:
            self._set("chunk_cells", checked_integer("chunk_cells", self.chunk_cells, 1, MAX_DIMENSION))
        self._set("width", checked_integer("width", self.width, 1, MAX_SIREN_WIDTH))
        layers = MAX_SIREN_LAYERS - 2  # the hidden ones, between the input and output layers
        self._set("hidden_layers", checked_integer("hidden_layers", self.hidden_layers, 1, layers))
        self._set("steps", checked_integer("steps", self.steps, 1, 10**7))
        self._set("batch", checked_integer("batch", self.batch, 1, 1 << 24))
        self._set("seed", checked_integer("seed", self.seed, 0, 2**63 - 1))
        self._set("weight_bits", tuple(checked_integer("weight bits", b, 2, 16) for b in self.weight_bits))
        if not self.weight_bits:
            raise InvalidInputError("weight bit depths must not be empty")
        self._set("jobs", checked_jobs(self.jobs))
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not 0 < self.learning_rate < 10:
            raise InvalidInputError(f"learning_rate must be a number in (0, 10), not {self.learning_rate!r}")

    def chunked(self, nnz: int, n_cells: int) -> "EncodeOptions":
        """These options with chunk_cells settled for a matrix of `nnz` nonzeros over `n_cells` cells
        (what the footer records and every chunk follows)."""
        return self if self.chunk_cells is not None else replace(self, chunk_cells=default_chunk_cells(nnz, n_cells))

    @property
    def n_jobs(self) -> int:
        """Worker threads this run uses."""
        return self.jobs or usable_cpus()

    def recorded(self) -> dict:
        """The options the footer records (MessagePack types: lists, not tuples)."""
        values = asdict(self)
        return {name: (list(values[name]) if isinstance(values[name], tuple) else values[name])
                for name in self.RECORDED if name != "inputs_error" or values[name] is not None}

    @classmethod
    def from_recorded(cls, recorded: dict, **rest) -> "EncodeOptions":
        """The options a file recorded (see recorded()), with `rest` for those it does not record."""
        carried = recorded_inputs_error(recorded) if recorded.get("mode", "lossless") == "lossless" else None
        return cls(**cls.valid_recorded(recorded), **rest, **({} if carried is None else {"inputs_error": carried}))

    @classmethod
    def valid_recorded(cls, recorded) -> dict:
        """The options of a file's recorded map that are options each on its own (inputs_error aside):
        the map is informative, and a reader ignores it whatever it holds (spec §3.5), so a value no
        option takes ('siren': 7) is left out rather than refused."""
        recorded = recorded if isinstance(recorded, dict) else {}
        together = ("mode", "max_error")  # valid only as a pair
        valid = {}
        for group in [together, *((name,) for name in cls.RECORDED if name not in (*together, "inputs_error"))]:
            values = {name: tuple(recorded[name]) if isinstance(recorded[name], list) else recorded[name]
                      for name in group if name in recorded}
            try:
                cls(**values)
            except (InvalidInputError, TypeError, ValueError):
                continue
            valid.update(values)
        return valid

    @classmethod
    def defaults(cls) -> dict:
        """Every option's default, for the CLI's arguments and help."""
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def names(cls) -> set[str]:
        """Every option's name, for checking keyword arguments before building the options."""
        return {f.name for f in fields(cls)}


def default_chunk_cells(nnz: int, n_cells: int) -> int:
    """Cells per chunk when none is given, so that a chunk holds about CHUNK_NNZ_AIM nonzeros at the
    matrix's mean per cell: DEFAULT_CHUNK_CELLS, or the multiple of it (up to MAX_DEFAULT_CHUNK_CELLS)
    nearest to the aim where cells are small. A chunk's fixed costs (its count sections, tables,
    headers) are then spread over about as many nonzeros whatever the cells' depth: visium at 6e7
    (310 nonzeros a cell) with 6,144-cell chunks instead of 2,048 is 2-3% smaller and reads entries,
    cells and the whole matrix faster.

    Where DEFAULT_CHUNK_CELLS cells would hold more than twice the aim (deep cells: full-length
    protocols, deep 10x v3) and n = round(nnz / aim) is 2 or more, the cells are shared among n
    chunks of equal cells, a multiple of DEEP_CHUNK_CELLS_STEP (where that makes more than one): a
    chunk is the unit an encode runs in parallel, and 2,048 cells of 4,466 nonzeros each had made a
    6e6 Smart-seq2 matrix (1,344 cells) one chunk coded on one thread (`benchmarks scale`,
    mouse_gut: from memory 12.1 -> 22.2M nonzeros/s, from its 10x file 7.7 -> 14.6M/s; at 6e7 the
    encode's peak 931 -> 379 MB; files 0.13-0.31% larger). A matrix that is one chunk either way
    keeps DEFAULT_CHUNK_CELLS, the chunk size its appends then take."""
    per_cell = nnz / max(n_cells, 1)
    chunks = round(nnz / CHUNK_NNZ_AIM)  # to even on a tie, as the spec's roundeven
    if per_cell * DEFAULT_CHUNK_CELLS > 2 * CHUNK_NNZ_AIM and chunks > 1:
        share = -(-n_cells // chunks)  # each chunk's cells, then rounded up to the step
        cells = DEEP_CHUNK_CELLS_STEP * -(-share // DEEP_CHUNK_CELLS_STEP)
        if cells < n_cells:  # more than one chunk
            return min(DEFAULT_CHUNK_CELLS, cells)
    multiple = round(CHUNK_NNZ_AIM / max(per_cell, 1.0) / DEFAULT_CHUNK_CELLS)
    needed = -(-n_cells // DEFAULT_CHUNK_CELLS)  # no more than the cells fill (one chunk either way)
    return DEFAULT_CHUNK_CELLS * max(1, min(multiple, needed, MAX_DEFAULT_CHUNK_CELLS // DEFAULT_CHUNK_CELLS))


def inputs_error(coded: Iterable) -> int | None:
    """The inputs_error of a file whose values are decoded from the matrices `coded` (anything with
    MatrixReader's mode, max_error and inputs_error) and coded losslessly: the largest error
    any of them carries (-1, no bound, where one was --inr-only), or None where every value is a
    count first encoded."""
    errors = {m.max_error if m.mode == "max-error" else -1 if m.mode == "inr-only" else m.inputs_error
              for m in coded} - {None}
    return None if not errors else -1 if -1 in errors else max(errors)
