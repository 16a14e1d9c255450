"""Human-readable descriptions of .sinr files: what `sinr info` and the demo print."""
from __future__ import annotations

from .reader import SinrMatrix


def size_by_part(matrix: SinrMatrix) -> dict[str, int]:
    """Bytes per part of the file; the ANS-coded tiles are split between bitmap and values by their bits."""
    sizes = matrix.section_sizes()
    stats = matrix.stats
    position_bits, value_bits = stats.get("position_bits", 0), stats.get("value_bits", 0)
    coded = sizes.get("blocks.words", 0)
    value_share = value_bits / (position_bits + value_bits) if position_bits + value_bits else 0.0
    value_bytes = round(coded * value_share)
    parts = {
        "bitmap": coded - value_bytes + sizes.get("bitmap.directory", 0) + sizes.get("blocks.lengths", 0),
        "values": value_bytes + sizes.get("values.histograms", 0) + sizes.get("values.offset_bits", 0)
        + sizes.get("values.offsets", 0),
        "weights": sizes.get("siren.weights", 0),
        "scaling metadata": sizes.get("siren.meta", 0) + sizes.get("baseline.genes", 0)
        + sizes.get("baseline.cells", 0),
        "names": sum(v for k, v in sizes.items() if k.startswith("names.")),
        "permutations": sizes.get("order.genes", 0) + sizes.get("order.cells", 0),
        "header": matrix.container.header_size,
    }
    return parts


def describe(matrix: SinrMatrix, file_size: int) -> str:
    n_genes, n_cells = matrix.shape
    nnz = max(matrix.nnz, 1)
    density = matrix.nnz / max(n_genes * n_cells, 1)
    stats = matrix.stats
    n_sirens = sum(s is not None for s in matrix._sirens)
    lines = [
        f"file:      {matrix.source} ({file_size:,} bytes, format {matrix.container.version[0]}."
        f"{matrix.container.version[1]}, {matrix.header.get('writer', '?')})",
        f"shape:     {n_genes:,} genes x {n_cells:,} cells, {matrix.nnz:,} nonzeros "
        f"(density {density:.2%}), {matrix.n_expressed:,} expressed genes",
        f"mode:      {matrix.mode}" + (f" (every entry within {matrix.header.get('max_error')})"
                                       if matrix.mode == "max-error" else ""),
        f"patches:   {matrix.geometry.n_bands:,} row bands, {matrix.geometry.n_tiles:,} tiles; "
        f"SIREN kept in {n_sirens} of {matrix.geometry.n_bands} patches",
    ]
    if "exact_match_rate" in stats:
        lines.append(f"exact:     {stats['exact_match_rate']:.2%} of nonzeros reproduced exactly by the SIRENs")
    lines.append("")
    lines.append(f"{'part':<18}{'bytes':>12}{'bits/nonzero':>15}{'share':>9}")
    parts = size_by_part(matrix)
    for name, size in parts.items():
        lines.append(f"{name:<18}{size:>12,}{size * 8 / nnz:>15.3f}{size / max(file_size, 1):>9.1%}")
    lines.append(f"{'total':<18}{file_size:>12,}{file_size * 8 / nnz:>15.3f}{1:>9.1%}")
    return "\n".join(lines)
