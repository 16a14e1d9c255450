"""Human-readable descriptions of .sinr files: what `sinr info` and the demo print."""
from __future__ import annotations

import numpy as np

from .reader.matrix import MatrixReader
from .storage.layout import CHUNK_SECTIONS_BY_MAJOR, MATRIX_SECTIONS


# what info says where the writer's statistics (informative, spec §3.5: a file may hold none) lack a figure
NOT_RECORDED = "not recorded (the file holds no statistics of them)"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 chunk', '2 chunks', '1,024 matrices': a count with its noun in the right number."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def size_by_part(matrix: MatrixReader) -> dict[str, int]:
    """Bytes per part of the file. The tile streams hold positions and values together; they are
    split by the information content of each, which the encoder records. In a file of several
    parts (a whole AnnData or 10x file) the opened matrix's parts come first, then the other
    matrices, the stored AnnData or 10x parts and the footer, each on its own."""
    sizes = matrix.section_sizes()
    specs = {**MATRIX_SECTIONS, **CHUNK_SECTIONS_BY_MAJOR[matrix.version[0]]}
    parts: dict[str, int] = {"bitmap": 0, "values": 0}
    for name, size in sizes.items():
        part = specs[name].part if name in specs else "headers"
        parts[part] = parts.get(part, 0) + size
    stats = matrix.stats
    position_bits, value_bits = stats.get("position_bits", -1), stats.get("value_bits", -1)
    tiles = parts.pop("tiles", 0)
    if min(position_bits, value_bits) < 0 or not position_bits + value_bits:  # the informative stats do not
        # say (spec §3.5): not split
        if tiles:
            parts["tile streams"] = tiles
    else:
        share = value_bits / (position_bits + value_bits)
        parts["values"] += round(tiles * share)
        parts["bitmap"] += tiles - round(tiles * share)
    parts["bitmap"] += parts.pop("tile directory", 0)
    accounted = sum(parts.values())
    others = sum(matrix.matrix(name).stored_bytes for name in matrix.matrix_names if name != matrix.name)
    sections = matrix.footer.get("sections")
    stored = sum(entry[2] for entry in sections if isinstance(entry, list) and len(entry) == 4
                 and isinstance(entry[2], int)) if isinstance(sections, list) else 0
    if not others and not stored:
        parts["headers"] = parts.get("headers", 0) + matrix.file_size - accounted
        return parts
    if others:
        parts["other matrices"] = others
    if stored:
        contents = matrix.contents
        parts["10x fields" if contents is not None and contents.object == "10x-h5" else "AnnData parts"] = stored
    parts["footer"] = matrix.file_size - accounted - others - stored
    return parts


def _carried(error: int | None) -> str:
    """What a lossless file holding values decoded from lossy files says of them (MatrixReader.inputs_error)."""
    if error is None:
        return ""
    if error == -1:
        return " of values decoded from --inr-only files (SIREN predictions, not the counts)"
    return f" of values decoded from lossy files (each within {error} of the counts first encoded)"


def describe(matrix: MatrixReader) -> str:
    """What `sinr info` prints for a matrix: shape, density, mode, settings, layout, SIREN use and bits per
    nonzero by part."""
    n_genes, n_cells = matrix.shape
    nnz = max(matrix.nnz, 1)
    density = matrix.nnz / max(n_genes * n_cells, 1)
    stats = matrix.stats
    file_size = matrix.file_size
    mode = matrix.mode + (f" (every entry within {matrix.max_error})" if matrix.mode == "max-error" else
                          _carried(matrix.inputs_error))
    writer = matrix.footer.get("writer")
    largest_chunk = int(np.diff(matrix.chunk_bounds()).max(initial=0))  # the options are informative only
    several = len(matrix.matrix_names) > 1 or bool(matrix.footer.get("sections"))
    lines = [
        f"file:      {matrix.source} ({file_size:,} bytes, format {matrix.version[0]}.{matrix.version[1]}, "
        f"{writer if isinstance(writer, str) else '?'})",
        *([f"matrix:    {matrix.name!r}, opened by default (the file's other parts are listed below)"]
          if several else []),
        f"shape:     {counted(n_genes, 'gene')} x {counted(n_cells, 'cell')}, {counted(matrix.nnz, 'nonzero')} "
        f"(density {density:.2%})",
        f"mode:      {mode}",
        f"layout:    {counted(matrix.n_chunks, 'chunk')} of up to {counted(largest_chunk, 'cell')}"
        f"{f' in {matrix.n_segments:,} segments' if matrix.n_segments > 1 else ''}, "
        + (f"{counted(int(stats['bands']), 'band')}, {counted(int(stats['tiles']), 'tile')}"
           if {"bands", "tiles"} <= stats.keys() else f"bands and tiles {NOT_RECORDED}"),
        (f"SIREN:     tried in {counted(int(stats['siren_tried']), 'band')}, kept in {int(stats['siren_kept']):,}, "
         f"saving {stats.get('siren_saved_bits', 0) / nnz:.4f} bits per nonzero"
         if {"siren_tried", "siren_kept"} <= stats.keys() else f"SIREN:     use {NOT_RECORDED}"),
        "",
        f"{'part':<18}{'bytes':>14}{'bits/nonzero':>15}{'share':>9}",
    ]
    parts = size_by_part(matrix)

    def per_nonzero(size: int) -> str:  # a matrix of no nonzeros has no bits per nonzero
        return f"{size * 8 / matrix.nnz:.3f}" if matrix.nnz else "-"

    whole = ("other matrices", "AnnData parts", "10x fields", "footer")
    own = {name: size for name, size in parts.items() if name not in whole}
    for name, size in own.items():
        lines.append(f"{name:<18}{size:>14,}{per_nonzero(size):>15}{size / max(file_size, 1):>9.1%}")
    if not several:
        lines.append(f"{'total':<18}{file_size:>14,}{per_nonzero(file_size):>15}{1:>9.1%}")
        return "\n".join(lines)
    total = sum(own.values())
    lines.append(f"{'this matrix':<18}{total:>14,}{per_nonzero(total):>15}{total / max(file_size, 1):>9.1%}")
    for name in (n for n in whole if n in parts):
        lines.append(f"{name:<18}{parts[name]:>14,}{'':>15}{parts[name] / max(file_size, 1):>9.1%}")
    lines.append(f"{'total':<18}{file_size:>14,}{'':>15}{1:>9.1%}")
    lines += ["", f"bits/nonzero covers matrix {matrix.name!r} alone: its parts over its {matrix.nnz:,} nonzeros"]
    return "\n".join(lines)
