"""The stages a matrix's footer names, registered by id (numcodecs style).

Each stage is a small class rebuilt from its stored config, which validates its own parameters;
`parse_stages` checks that a file names exactly the stages its mode and format version need, each
once, in order, so that no header field can contradict another (spec §5.2: format 3
has position and value stages of its own because their coding changed).
"""
from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CorruptFileError, UnsupportedVersionError
from ..limits import MAX_DIMENSION, MAX_ERROR_LIMIT, MAX_PATCH_NNZ, MAX_TILE_NNZ
from ..storage.layout import CELL_BARCODES, CELL_ORDER_PLANES

# The modes of a matrix (spec §5.2), and the codes the native core knows them by.
MODES = ("lossless", "max-error", "inr-only")
MODE_CODES = {mode: code for code, mode in enumerate(MODES)}

_REGISTRY: dict[str, type["Stage"]] = {}


def _int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class Stage:
    """One step of a matrix's codec as the footer names it: an id and the parameters a reader
    needs, rebuilt and checked from its config."""

    codec_id: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.__dict__.update(params)

    def get_config(self) -> dict[str, Any]:
        """The stage as the footer stores it."""
        return {"id": self.codec_id, **{name: getattr(self, name) for name in self.params}}

    def check(self) -> bool:
        """Whether the stored parameters are in range (a stage without parameters always is)."""
        return True


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage known to parse_stages by its id."""
    _REGISTRY[cls.codec_id] = cls
    return cls


@register
class Reorder(Stage):
    """Genes by detection (file-wide), cells by depth (per chunk)."""

    codec_id = "reorder-detection-depth"


@register
class RowBands(Stage):
    """Bands of the file's gene order cut into tiles; the targets the encoder sized them by."""

    codec_id = "row-bands"
    params = ("tile_nnz", "patch_nnz", "chunk_cells")

    def check(self) -> bool:
        """Targets within the encoder's ranges (limits.py)."""
        return (_int(self.tile_nnz, 1, MAX_TILE_NNZ) and _int(self.patch_nnz, 1, MAX_PATCH_NNZ)
                and _int(self.chunk_cells, 1, MAX_DIMENSION))


@register
class GolombRansPositions(Stage):
    """Tile positions as Golomb gaps through rANS (spec §C.2)."""

    codec_id = "golomb-rans-positions"


@register
class ValueQuantiser(Stage):
    """max_error 0: exact; E >= 1: nonzero v -> (v - 1 + E) // (2E + 1) (spec §6.3.3)."""

    codec_id = "value-quantiser"
    params = ("max_error",)

    def check(self) -> bool:
        """E within 0..MAX_ERROR_LIMIT."""
        return _int(self.max_error, 0, MAX_ERROR_LIMIT)


@register
class ContextRansValues(Stage):
    """Value bins through per-context frequency tables, offsets as raw bits (spec §C.3, §C.4)."""

    codec_id = "context-rans-values"


@register
class GapBinPositions(Stage):
    """Format 3: tile positions as gap bins under the chunk's gap tables by density class (spec §6.2)."""

    codec_id = "gap-bin-positions"


@register
class FineContextValues(Stage):
    """Format 3: value bins under 96 contexts of 1/8 nat and 12-bit tables (spec §6.3.2, §6.4, §6.5)."""

    codec_id = "fine-context-values"


@register
class SirenPredictor(Stage):
    """Bands may carry a SIREN giving their contexts (or, in inr-only mode, their values)."""

    codec_id = "siren-predictor"


# The stages that code positions and values, by format version (major).
CODING_STAGES: dict[int, tuple[type[Stage], type[Stage]]] = {
    2: (GolombRansPositions, ContextRansValues),
    3: (GapBinPositions, FineContextValues),
}
# Keys of the matrix map that a format version adds, with what a writer of its first minor writes:
# format 3's required features (spec §5.1.1; 3.0 defines none).
MATRIX_KEYS: dict[int, dict] = {2: {}, 3: {"required_features": []}}


def stages_for(mode: str, max_error: int, tile_nnz: int, patch_nnz: int, chunk_cells: int, *,
               major: int) -> list[dict]:
    """The stage configs a writer stores for a matrix of `mode` in a file of format `major`, in the
    order parse_stages wants."""
    positions, values = CODING_STAGES[major]
    stages = [Reorder(), RowBands(tile_nnz=tile_nnz, patch_nnz=patch_nnz, chunk_cells=chunk_cells),
              positions(), ValueQuantiser(max_error=max_error)]
    if mode != "inr-only":
        stages.append(values())
    stages.append(SirenPredictor())
    return [s.get_config() for s in stages]


def parse_stages(configs, mode: str, *, what: str, major: int = 2) -> dict[str, Stage]:
    """The stages of a matrix in a file of format `major` (its preamble's), checked against each
    other, its mode and the format's stage list."""
    if not isinstance(configs, list):
        raise CorruptFileError(f"{what}: stage list is missing")
    stages: dict[str, Stage] = {}
    for config in configs:
        if not isinstance(config, dict) or not isinstance(config.get("id"), str):
            raise CorruptFileError(f"{what}: a stage config is malformed")
        cls = _REGISTRY.get(config["id"])
        if cls is None:
            raise CorruptFileError(f"{what}: unknown stage {config['id']!r}")
        if config["id"] in stages:
            raise CorruptFileError(f"{what}: stage {config['id']!r} appears twice")
        if set(config) - {"id"} != set(cls.params):
            raise CorruptFileError(f"{what}: stage {config['id']!r} has parameters {sorted(set(config) - {'id'})}")
        stage = cls(**{k: v for k, v in config.items() if k != "id"})
        if not stage.check():
            raise CorruptFileError(f"{what}: stage {config['id']!r} has invalid parameters")
        stages[config["id"]] = stage
    max_error = stages["value-quantiser"].max_error if "value-quantiser" in stages else None
    expected = stages_for(mode, max_error or 0, 1, 1, 1, major=major) if mode in MODES and major in CODING_STAGES \
        else []
    if [c["id"] for c in configs] != [c["id"] for c in expected]:
        raise CorruptFileError(f"{what}: stages {[c['id'] for c in configs]} do not match mode {mode!r}")
    if (mode == "max-error") != (max_error >= 1):
        raise CorruptFileError(f"{what}: mode {mode!r} contradicts max_error {max_error}")
    return stages


# The required features (spec §5.1.1) this reader implements, each with the minor version of
# format 3 that defines it (a writer writes the highest minor its matrices' features need).
SEGMENTS = "segments"  # gene tables per run of chunks (spec §5.5)
FEATURE_MINORS: dict[str, int] = {SEGMENTS: 1, CELL_ORDER_PLANES: 2,  # 3.2: cells.order_planes (spec §5.6)
                                   CELL_BARCODES: 2}  # and cells.barcodes (spec §5.7)
KNOWN_FEATURES: frozenset[str] = frozenset(FEATURE_MINORS)


def required_features(header: dict, version: tuple[int, int], *, what: str) -> tuple[str, ...]:
    """A format-3 matrix's `required_features` (rule R1), each one this reader implements (R2: else
    the matrix is refused as a version it does not read, naming the feature); () for format 2."""
    if version[0] < 3:
        return ()
    features = header.get("required_features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features) \
            or len(set(features)) != len(features):
        raise CorruptFileError(f"{what}: field 'required_features' is missing or not a list of distinct strings")
    unknown = [f for f in features if f not in KNOWN_FEATURES]
    if unknown:
        raise UnsupportedVersionError(
            f"{what}: matrix {header.get('name')!r} requires the feature {unknown[0]!r} of .sinr format "
            f"{version[0]}.{version[1]}, which this version of scinrcodec does not read (upgrade scinrcodec)")
    return tuple(features)
