"""The encode pipeline: reorder -> tile -> predict -> quantise -> entropy-code -> container."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import __version__
from .container import ContainerWriter, pack_array, pack_strings
from .errors import InvalidInputError
from .formats import (CountMatrix, anndata_to_count_matrix, atomic_path, check_writable, make_count_matrix,
                      read_matrix)
from .stages.bitmap import GolombBitmap
from .stages.entropy import AnsCoder
from .stages.predictor import NORMALISATIONS, Baseline, Normalisation, PatchSiren
from .stages.quantise import ValueQuantiser, WeightQuantiser
from .stages.reorder import Reorder
from .stages.siren import centred_coordinates, coordinate_scale
from .stages.tiling import RowBandTiling
from .stages.values import ContextValueCoder, pack_bits, to_bins

MODES = ("lossless", "max-error", "inr-only")
SIREN_META_BITS = 200


@dataclass
class EncodeOptions:
    """Every choice the encoder makes; all of it is recorded in the file's header."""

    mode: str = "lossless"
    max_error: int = 0
    patch_nnz: int | None = None
    tile_nnz: int = 256
    siren: bool = True
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
    progress: bool = False
    layer: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.mode == "max-error" and self.max_error < 1:
            raise InvalidInputError("--max-error must be a positive integer")
        if self.mode != "max-error" and self.max_error:
            raise InvalidInputError("max_error is only used with mode 'max-error'")
        if self.normalisation not in NORMALISATIONS:
            raise InvalidInputError(f"unknown normalisation {self.normalisation!r}")
        if self.coordinates not in ("isotropic", "per-axis"):
            raise InvalidInputError(f"unknown coordinate scaling {self.coordinates!r}")
        if self.mode == "inr-only" and not self.siren:
            raise InvalidInputError("--inr-only needs the SIREN")
        if not all(2 <= b <= 16 for b in self.weight_bits) or not self.weight_bits:
            raise InvalidInputError("weight bit depths must be between 2 and 16")
        for name in ("patch_nnz", "tile_nnz", "width", "steps", "batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be positive")
        if not 1 <= self.hidden_layers <= 14 or self.width > 512:
            raise InvalidInputError("hidden_layers must be 1..14 and width at most 512")


def as_count_matrix(source, layer: str | None = None) -> CountMatrix:
    """A path, a scipy.sparse matrix / ndarray (genes x cells), an AnnData, or a CountMatrix."""
    if isinstance(source, CountMatrix):
        return make_count_matrix(source.counts, source.gene_ids, source.gene_names, source.cell_names,
                                 source.feature_types)
    if isinstance(source, (str, os.PathLike)):
        return read_matrix(source, layer=layer)
    if sp.issparse(source) or isinstance(source, np.ndarray):
        return make_count_matrix(source)
    if type(source).__name__ == "AnnData":
        return anndata_to_count_matrix(source, layer)
    raise InvalidInputError(f"cannot encode an object of type {type(source).__name__}")


def _reject_newlines(names: list[str] | None, what: str) -> None:
    if names is not None and any("\n" in n for n in names):
        raise InvalidInputError(f"{what} contain a newline, which .sinr names cannot hold")


class _Progress:
    def __init__(self, enabled: bool, total: int, desc: str, unit: str) -> None:
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def encode_matrix(matrix: CountMatrix, options: EncodeOptions) -> bytes:
    """Encode a validated matrix into the bytes of a .sinr file."""
    options.validate()
    started = time.perf_counter()
    for names, what in ((matrix.gene_ids, "gene ids"), (matrix.gene_names, "gene names"),
                        (matrix.cell_names, "cell names"), (matrix.feature_types, "feature types")):
        _reject_newlines(names, what)
    counts = matrix.counts
    n_genes, n_cells = counts.shape
    reorder, tiling, bitmap = Reorder(), RowBandTiling(options.patch_nnz, options.tile_nnz), GolombBitmap()
    quantiser = ValueQuantiser(options.max_error if options.mode == "max-error" else 0)
    genes, cells, n_expressed = reorder.plan(counts)
    reordered = counts[genes.order[:n_expressed]][:, cells.order].tocsr()
    reordered.sort_indices()
    geometry = tiling.plan(np.diff(reordered.indptr), n_cells)
    rows = np.repeat(np.arange(n_expressed), np.diff(reordered.indptr))
    cols = reordered.indices.astype(np.int64)
    values = reordered.data.astype(np.int64)

    baseline = Baseline.fit(rows, cols, values, n_expressed, n_cells)
    coded = quantiser.encode(values)
    contexts = baseline.contexts(rows, cols)
    value_coder = ContextValueCoder()
    bins = to_bins(coded)[0]
    value_coder.fit(bins, contexts)
    band_of = geometry.band_of_rows(rows)
    band_bounds = np.searchsorted(band_of, np.arange(geometry.n_bands + 1))

    sirens: list[PatchSiren | None] = [None] * geometry.n_bands
    stats: dict = {}
    if options.siren and geometry.n_bands:
        sirens, siren_stats = _fit_patch_sirens(options, geometry, rows, cols, values, bins, contexts,
                                                band_bounds, value_coder)
        stats.update(siren_stats)
        for band, patch in enumerate(sirens):
            if patch is not None:
                span = slice(band_bounds[band], band_bounds[band + 1])
                contexts[span] = patch.normalisation.contexts(_patch_outputs(patch, geometry, band, rows[span],
                                                                               cols[span]))
    value_coder.fit(bins, contexts)

    tile_ids, positions = geometry.locate(rows, cols)
    order = np.lexsort((positions, tile_ids))
    tile_nnz = np.bincount(tile_ids, minlength=geometry.n_tiles)
    tile_bounds = np.concatenate([[0], np.cumsum(tile_nnz)])
    words, lengths = [], np.zeros(geometry.n_tiles, dtype=np.int64)
    position_bits = value_bits = 0
    offset_bits, offset_bits_per_tile = [], np.zeros(geometry.n_tiles, dtype=np.int64)
    code_values = options.mode != "inr-only"
    progress = _Progress(options.progress, geometry.n_tiles, "coding tiles", "tile")
    entries = geometry.layout(np.arange(geometry.n_tiles))[3]
    for tile in range(geometry.n_tiles):
        members = order[tile_bounds[tile]: tile_bounds[tile + 1]]
        coder = AnsCoder()
        if code_values and members.size:
            offset_bits.append(value_coder.encode_tile(coder, coded[members], contexts[members]))
            offset_bits_per_tile[tile] = offset_bits[-1].size
        after_values = coder.num_valid_bits()
        bitmap.encode_tile(coder, positions[members], int(entries[tile]))
        value_bits += after_values
        position_bits += coder.num_valid_bits() - after_values
        tile_words = coder.get_compressed()
        words.append(tile_words)
        lengths[tile] = tile_words.size
        progress.update(1)
    progress.close()

    writer = ContainerWriter()
    names_are_ids = matrix.gene_names is not None and matrix.gene_names == matrix.gene_ids
    for name, values_list in (("names.gene_ids", matrix.gene_ids),
                              ("names.gene_names", None if names_are_ids else matrix.gene_names),
                              ("names.cell_names", matrix.cell_names),
                              ("names.feature_types", matrix.feature_types)):
        if values_list is not None:
            writer.add(name, pack_strings(values_list))
    gene_order, cell_order = reorder.encode(genes, cells, n_expressed)
    writer.add("order.genes", gene_order)
    writer.add("order.cells", cell_order)
    baseline_genes, baseline_cells = baseline.pack()
    writer.add("baseline.genes", baseline_genes)
    writer.add("baseline.cells", baseline_cells)
    writer.add("bitmap.directory", bitmap.pack_directory(tile_nnz))
    writer.add("blocks.lengths", pack_array(lengths.astype(np.uint32)))
    writer.add("blocks.words", (np.concatenate(words) if words else np.zeros(0, np.uint32)).astype("<u4").tobytes())
    if code_values:
        writer.add("values.histograms", value_coder.pack())
        writer.add("values.offset_bits", pack_array(offset_bits_per_tile.astype(np.uint32)))
        all_offset_bits = np.concatenate(offset_bits) if offset_bits else np.zeros(0, np.uint8)
        writer.add("values.offsets", pack_bits(all_offset_bits).astype("<u4").tobytes())
    used = [i for i, patch in enumerate(sirens) if patch is not None]
    if used:
        import msgpack

        writer.add("siren.meta", msgpack.packb([[i, sirens[i].to_meta()] for i in used], use_bin_type=True))
        flat = np.concatenate([sirens[i].siren.flat_parameters() for i in used])
        writer.add("siren.weights", pack_array(flat.astype(np.int16)))
    stats.update({
        "position_bits": int(position_bits), "value_bits": int(value_bits),
        "encode_seconds": round(time.perf_counter() - started, 3),
    })
    if options.mode == "inr-only":
        stats["exact_match_rate"] = _inr_exact_rate(sirens, geometry, rows, cols, values, band_bounds)
    writer.header = {
        "format": "sinr", "writer": f"scinrcodec {__version__}",
        "shape": [int(n_genes), int(n_cells)], "nnz": int(counts.nnz), "n_expressed": int(n_expressed),
        "mode": options.mode, "max_error": quantiser.max_error,
        "names": [name for name in writer.sections if name.startswith("names.")],
        "gene_names_are_ids": names_are_ids,
        "stages": [s.get_config() for s in (reorder, tiling, bitmap, quantiser, value_coder)],
        "geometry": geometry.to_header(),
        "options": {k: v for k, v in asdict(options).items() if k not in ("progress", "device", "layer")},
        "stats": stats,
    }
    return writer.to_bytes()


def _patch_outputs(patch: PatchSiren, geometry, band: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    start, stop = int(geometry.row_starts[band]), int(geometry.row_starts[band + 1])
    return patch.outputs(rows - start, cols, stop - start, geometry.n_cells)


def _fit_patch_sirens(options, geometry, rows, cols, values, bins, contexts, band_bounds, value_coder):
    """Fit, quantise and keep each patch's SIREN only where it pays for its weights."""
    from .stages.siren_train import fit_sirens

    coords, targets, norms, scales = [], [], [], []
    for band in range(geometry.n_bands):
        span = slice(band_bounds[band], band_bounds[band + 1])
        start, stop = int(geometry.row_starts[band]), int(geometry.row_starts[band + 1])
        scales.append(coordinate_scale(stop - start, geometry.n_cells, options.coordinates))
        centred = centred_coordinates(rows[span] - start, cols[span], stop - start, geometry.n_cells)
        coords.append(centred * np.asarray(scales[-1]))
        norm = Normalisation.fit(options.normalisation, values[span])
        norms.append(norm)
        targets.append(norm.forward(values[span]))
    progress = _Progress(options.progress, geometry.n_bands, "fitting SIRENs", "patch")
    trained = fit_sirens(coords, targets, width=options.width, hidden_layers=options.hidden_layers,
                         steps=options.steps, batch=options.batch, learning_rate=options.learning_rate,
                         seed=options.seed, device=options.device, on_patches_done=progress.update)
    progress.close()
    quantiser = WeightQuantiser()
    chosen: list[PatchSiren | None] = []
    saved_bits = 0.0
    for band, (net, norm, scale) in enumerate(zip(trained, norms, scales)):
        span = slice(band_bounds[band], band_bounds[band + 1])
        inr_only = options.mode == "inr-only"
        baseline_cost = value_coder.code_length_bits(bins[span], contexts[span])
        best, best_cost = None, np.inf if inr_only else baseline_cost
        for bits in options.weight_bits:
            patch = PatchSiren(quantiser.quantise(net.weights, net.biases, bits, scale), norm, bits)
            outputs = _patch_outputs(patch, geometry, band, rows[span], cols[span])
            if inr_only:  # no residuals: keep the bit depth that reproduces most nonzeros
                cost = -np.mean(np.maximum(np.rint(norm.means(outputs)), 1) == values[span])
            else:
                cost = (value_coder.code_length_bits(bins[span], norm.contexts(outputs))
                        + patch.siren.n_parameters * bits + SIREN_META_BITS)
            if cost < best_cost:
                best, best_cost = patch, cost
        chosen.append(best)
        if best is not None and not inr_only:
            saved_bits += baseline_cost - best_cost
    n_used = sum(p is not None for p in chosen)
    return chosen, {"patches": geometry.n_bands, "patches_with_siren": n_used,
                    "siren_saved_bits": round(saved_bits, 1)}


def _inr_exact_rate(sirens, geometry, rows, cols, values, band_bounds) -> float:
    exact = 0
    for band, patch in enumerate(sirens):
        span = slice(band_bounds[band], band_bounds[band + 1])
        predicted = np.maximum(np.rint(patch.normalisation.means(_patch_outputs(patch, geometry, band, rows[span],
                                                                               cols[span]))), 1)
        exact += int(np.count_nonzero(predicted == values[span]))
    return exact / max(values.size, 1)


def encode(source, output: str | os.PathLike, *, force: bool = False, **options) -> dict:
    """Encode `source` (path, scipy.sparse genes x cells, AnnData) to a .sinr file, atomically.

    Returns the header's stats (sizes, timings, predictor use).
    """
    opts = EncodeOptions(**options)
    opts.validate()
    check_writable(output, force=force)
    matrix = as_count_matrix(source, opts.layer)
    blob = encode_matrix(matrix, opts)
    with atomic_path(Path(output), force=force) as tmp:
        tmp.write_bytes(blob)
    return {"bytes": len(blob), "nnz": matrix.counts.nnz, "shape": matrix.shape}
