"""Human-readable descriptions of .sinr files: what `sinr info` and the demo print."""
from __future__ import annotations

import numpy as np

from .reader.matrix import SinrMatrix
from .storage.layout import CHUNK_SECTIONS, MATRIX_SECTIONS


def size_by_part(matrix: SinrMatrix) -> dict[str, int]:
    """Bytes per part of the file. The tile streams hold positions and values together; they are
    split by the information content of each, which the encoder records."""
    sizes = matrix.section_sizes()
    specs = {**MATRIX_SECTIONS, **CHUNK_SECTIONS}
    parts: dict[str, int] = {"bitmap": 0, "values": 0}
    for name, size in sizes.items():
        part = specs[name].part if name in specs else "headers"
        parts[part] = parts.get(part, 0) + size
    stats = matrix.stats
    position_bits, value_bits = stats.get("position_bits", 0), stats.get("value_bits", 0)
    tiles = parts.pop("tiles", 0)
    share = value_bits / (position_bits + value_bits) if position_bits + value_bits else 0.0
    parts["values"] += round(tiles * share)
    parts["bitmap"] += tiles - round(tiles * share)
    parts["bitmap"] += parts.pop("tile directory", 0)
    accounted = sum(parts.values())
    parts["headers"] = parts.get("headers", 0) + matrix.file_size - accounted
    return parts


def describe(matrix: SinrMatrix) -> str:
    n_genes, n_cells = matrix.shape
    nnz = max(matrix.nnz, 1)
    density = matrix.nnz / max(n_genes * n_cells, 1)
    stats = matrix.stats
    file_size = matrix.file_size
    mode = matrix.mode + (f" (every entry within {matrix.max_error})" if matrix.mode == "max-error" else "")
    writer = matrix.footer.get("writer")
    largest_chunk = int(np.diff(matrix.chunk_bounds()).max(initial=0))  # the options are informative only
    lines = [
        f"file:      {matrix.source} ({file_size:,} bytes, format {matrix.version[0]}.{matrix.version[1]}, "
        f"{writer if isinstance(writer, str) else '?'})",
        f"shape:     {n_genes:,} genes x {n_cells:,} cells, {matrix.nnz:,} nonzeros (density {density:.2%})",
        f"mode:      {mode}",
        f"layout:    {matrix.n_chunks:,} chunks of up to {largest_chunk:,} cells, "
        f"{int(stats.get('bands', 0)):,} bands, {int(stats.get('tiles', 0)):,} tiles",
        f"SIREN:     tried in {int(stats.get('siren_tried', 0)):,} bands, kept in {int(stats.get('siren_kept', 0)):,}, "
        f"saving {stats.get('siren_saved_bits', 0) / nnz:.4f} bits per nonzero",
        "",
        f"{'part':<18}{'bytes':>14}{'bits/nonzero':>15}{'share':>9}",
    ]
    for name, size in size_by_part(matrix).items():
        lines.append(f"{name:<18}{size:>14,}{size * 8 / nnz:>15.3f}{size / max(file_size, 1):>9.1%}")
    lines.append(f"{'total':<18}{file_size:>14,}{file_size * 8 / nnz:>15.3f}{1:>9.1%}")
    return "\n".join(lines)
