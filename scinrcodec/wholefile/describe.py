"""What a whole .sinr file holds and whether all of it is sound: the parts `sinr info` lists
besides the opened matrix, and the checks `sinr verify` runs on every matrix and every
file-level section."""
from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse as sp

from ..progress import progress_of
from ..reader.contents import CONTENTS
from .restore import assembled
from .tenx import check_10x_image, tenx_var


def describe_contents(m) -> str:
    """The parts of a file besides the matrix `sinr info` describes: every matrix, every stored
    element with its size, and what was dropped. Empty for a file of one bare matrix."""
    names = m.matrix_names
    contents = m.contents
    if contents is None and len(names) == 1:
        return ""
    what = {"anndata": "a whole AnnData", "10x-h5": "a whole 10x HDF5 file"}.get(getattr(contents, "object", ""),
                                                                                   "several matrices")
    genomes = genomes_listed(m)
    lines = [f"holds:     {what}"] + ([f"genomes:   {genomes}"] if genomes else []) + ["",
             f"{'matrix':<22}{'shape':>24}{'nonzeros':>14}{'bytes':>14}{'bits/nonzero':>14}  from"]
    for name in names:
        other = m.matrix(name)
        entry = contents.matrix_entry(name) if contents else None
        origin = entry["element"] if entry else ""
        if entry and entry["dtype"]:
            origin += f" ({np.dtype(entry['dtype']).name} {entry['format']})"
        shape = f"{other.shape[0]:,} x {other.shape[1]:,}"
        bits = other.stored_bytes * 8 / max(other.nnz, 1)
        lines.append(f"{name:<22}{shape:>24}{other.nnz:>14,}{other.stored_bytes:>14,}{bits:>14.3f}  {origin}")
    if contents is not None:
        lines += ["", f"{'part':<22}{'section':<18}{'bytes':>14}{'uncompressed':>14}"]
        for part, (section, size) in contents.elements.items():
            lines.append(f"{part:<22}{section:<18}{contents.section_bytes(part):>14,}{size:>14,}")
        stored = contents.sections.table[CONTENTS].length  # the map itself, uncompressed (spec §14.1)
        lines.append(f"{'(the contents map)':<22}{CONTENTS:<18}{stored:>14,}{stored:>14,}")
        if contents.dropped:
            lines += ["", f"dropped:   {', '.join(contents.dropped)}"]
    return "\n".join(lines)


def genomes_listed(m) -> str:
    """A 10x file's genomes with their genes' counts, in the order its genes take them (a Cell
    Ranger 2 file of several, stacked: io.tenx_h5.GenomeStack); empty where it records none."""
    genomes = tenx_var(m, m.contents).get("genome")
    if not genomes or not any(genomes):
        return ""
    return ", ".join(f"{name} ({n:,} gene{'' if n == 1 else 's'})" for name, n in Counter(genomes).items())


def verify_file(m, *, progress: bool = False) -> dict:
    """SinrMatrix.verify for every matrix of the file, and every file-level section's checksum,
    framing and size, each AnnData element read back by anndata and each other HDF5 image opened
    (spec §14 rule S5): what `sinr verify` checks. Raises CorruptFileError. progress=True shows a
    bar on stderr: each matrix's check a pass of it counted in nonzeros, then the other parts'."""
    report = {"chunks": 0, "nnz": 0, "bytes": m.file_size, "matrices": 0, "sections": 0}
    contents = m.contents
    parts = list(contents.elements) if contents is not None else []
    with progress_of(progress, "verifying", "nonzeros", passes=len(m.matrix_names) + bool(parts)) as bar:
        for name in m.matrix_names:
            checked = m.matrix(name).verify(progress=bar)
            report["chunks"] += checked["chunks"]
            report["nnz"] += checked["nnz"]
            report["matrices"] += 1
        if parts:
            bar.begin("checking the other parts", None)
        values = {}
        for part in parts:
            if contents.object == "anndata":
                values[part] = contents.read(part)
            else:
                with contents.hdf5(part) as image:  # a 10x file's one matrix was just verified: `checked`
                    check_10x_image(m, contents, image, checked)
            report["sections"] += 1
        if contents is not None and contents.object == "anndata":  # the parts make the AnnData read_sinr gives
            contents.check_cells()
            assembled(m, contents, values, {e["element"]: _placeholder(m.matrix(e["matrix"]).shape)
                                            for e in contents.matrices})
    return report


def _placeholder(shape: tuple[int, int]) -> sp.csr_matrix:
    """An empty cells x genes matrix of a genes x cells .sinr matrix's shape: what verify puts in its
    place to build the AnnData without decoding it again."""
    return sp.csr_matrix((shape[1], shape[0]), dtype=np.int32)
