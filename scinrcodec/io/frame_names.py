"""Names stored once: the obs and var index of a whole AnnData (and var's gene_ids column) are the
cell and gene names its count matrices already hold, so their images leave them out.

When an AnnData is encoded whole, obs's index equal to a count matrix's cell names, and var's
index (and a gene_ids column of text) equal to the gene names (ids) of a count matrix placed in
X or a layer, are replaced in the element image by a RangeIndex (and the column left out); the
contents map's `names_in` says which matrix holds them, the index's name, and where the column
was (spec §14.2). Reading puts them back, so the frame is the one anndata wrote, exactly.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import CorruptFileError

GENE_IDS = "gene_ids"


def _texts(values) -> list[str] | None:
    """Values as a list when every one is a str held in an object array, else None: a categorical
    or pandas 'string' column is left in its frame, which restores its type (names come back as
    object arrays)."""
    if getattr(values, "dtype", object) != object:
        return None
    array = np.asarray(values)
    if array.dtype != object:
        return None
    items = array.tolist()
    return items if all(type(v) is str for v in items) else None


def plan_names(frames: dict, matrices: list) -> dict:
    """names_in entries for `frames` ({'obs': frame, 'var': frame}) given the plan's matrices
    (element, open() -> MatrixSource); each checked against what the matrix source holds."""
    out: dict[str, dict] = {}
    for item in matrices:
        if item.element == "raw/X" or len(out) == 2:
            continue
        source = item.open()
        if "obs" not in out and "obs" in frames:
            index = _texts(frames["obs"].index)
            if index is not None and source.has_cell_names and index == source.cell_names(0, source.shape[1]):
                out["obs"] = {"matrix": item.element, "index_name": frames["obs"].index.name}
        if "var" not in out and "var" in frames:
            var = frames["var"]
            index = _texts(var.index)
            if index is not None and index == source.gene_names:
                entry = {"matrix": item.element, "index_name": var.index.name}
                if GENE_IDS in var.columns and list(var.columns).count(GENE_IDS) == 1 \
                        and _texts(var[GENE_IDS]) == source.gene_ids and source.gene_ids is not None:
                    entry["gene_ids_at"] = list(var.columns).index(GENE_IDS)
                out["var"] = entry
    return {part: entry for part, entry in out.items() if isinstance(entry["index_name"], (str, type(None)))}


def strip(frame, entry: dict | None):
    """The frame as its image stores it: index replaced, gene_ids left out."""
    import pandas as pd

    if entry is None:
        return frame
    if "gene_ids_at" in entry:
        frame = frame.drop(columns=[GENE_IDS])
    return frame.set_axis(pd.RangeIndex(len(frame)), axis=0)


def restore(frame, entry: dict, names: Callable[[str, str], list[str] | None], part: str, what: str):
    """The frame as it was: its index (and gene_ids) from the matrix's names (`entry` as the contents
    map's names_in has it checked: StoredContents.names_in)."""
    import pandas as pd

    matrix = entry["matrix"]
    index = names(matrix, "cell_names" if part == "obs" else "gene_names")
    if index is None or len(index) != len(frame):
        raise CorruptFileError(f"{what}: matrix {matrix!r} does not hold the {len(frame):,} names of {part}")
    frame = frame.set_axis(pd.Index(np.array(index, dtype=object), dtype=object, name=entry["index_name"]), axis=0)
    at = entry.get("gene_ids_at")
    if at is not None:
        ids = names(matrix, "gene_ids")
        if not 0 <= at <= frame.shape[1] or ids is None:
            raise CorruptFileError(f"{what}: contents entry names_in/{part} places gene_ids impossibly")
        frame.insert(at, GENE_IDS, np.array(ids, dtype=object))
    return frame
