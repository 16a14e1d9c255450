"""The plan of a whole-file encoding: which parts of an AnnData become .sinr matrices, which are
stored as element images (built here, so that an object anndata cannot write stops the encoding
before any matrix is coded), and the `contents` map that says where each part went."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Callable, Iterable

import numpy as np

from ..errors import InvalidInputError
from ..io.frame_names import plan_names
from ..io.h5ad_output import quiet_anndata
from ..io.sources import MatrixSource, one_line
from ..limits import MAX_COUNT
from ..storage.layout import ANNDATA_PARTS, FILE_SECTIONS
from .images import Drops, anndata_image, key_problem, refuse_key, write_element, write_frame, write_tree

ELEMENT_LEVEL = 9  # zstd level of element images: level 19 is slow on large obsp, for little gain
FRAMES = ("obs", "var")


@dataclass
class PlannedMatrix:
    """A count matrix to encode: its place, how to open it as a source, and what it was."""

    element: str  # where it belongs in the AnnData: 'X', 'layers/counts', 'raw/X'; 'matrix' for 10x
    open: Callable[[], MatrixSource]
    dtype: str = ""
    format: str = ""


@dataclass
class Plan:
    """What a whole-file encoding writes: the contents map, the matrices, the element sections."""

    contents: dict
    matrices: list[PlannedMatrix]
    sections: list[tuple[str, bytes]] = field(default_factory=list)


def add_image(plan: Plan, part: str, section: str, raw: bytes) -> None:
    """Store an HDF5 image as a file-level section and record it in the contents map."""
    plan.sections.append((section, FILE_SECTIONS[section].pack(np.frombuffer(raw, np.uint8), level=ELEMENT_LEVEL)))
    plan.contents["elements"].append({"element": part, "section": section, "bytes": len(raw)})


def plan_anndata(parts, *, layer: str | None, drop: Iterable[str]) -> Plan:
    """Which parts become .sinr matrices and which are stored as elements; the element images are
    built here, so that an object anndata cannot write stops the encoding before any matrix."""
    drops = Drops(drop)
    matrices: list[PlannedMatrix] = []
    elements: dict[str, list[str]] = {}  # part -> element paths stored in its image

    def place(path: str, part: str) -> None:
        fmt = parts.format(path)
        if fmt is None:
            elements.setdefault(part, []).append(path)
            return
        matrices.append(PlannedMatrix(path, lambda p=path: parts.source(p), parts.dtype(path), fmt))

    if parts.has("X") and not drops.take("X"):
        place("X", "X")
    layers = _kept_keys(parts, "layers", drops)
    for key in layers:
        place(f"layers/{key}", "layers")
    has_raw = parts.has("raw") and not drops.take("raw")
    if has_raw:
        place("raw/X", "raw")
    primary = _primary(matrices, layer, parts, drops)
    matrices.sort(key=lambda m: m.element != primary)
    if not matrices:
        raise InvalidInputError(f"{parts.what}: holds no count matrix (X, a layer or raw.X of whole numbers from 0 "
                                f"to {MAX_COUNT:,}) for .sinr to code")
    dropped_frames = {part for part in FRAMES if part in drops.names}
    # a dropped frame keeps its index (it names the cells or genes), which the matrix holds as well
    names_in = plan_names({part: parts.value(part).iloc[:, :0] if part in dropped_frames
                           else _kept_columns(parts.value(part), part, drops) for part in FRAMES}, matrices)
    contents = {"object": "anndata", "writer": f"anndata {version('anndata')}", "shape": list(parts.shape),
                "matrices": [{"element": m.element, "matrix": m.element, "dtype": m.dtype, "format": m.format}
                             for m in matrices],
                "elements": [], "layers": layers, "dropped": [], "names_in": names_in}
    plan = Plan(contents, matrices)

    fits = _ElementFit(parts)

    def fill(f, part: str) -> None:
        """Write part `part` of the AnnData (less what is dropped or coded as a matrix) into f."""
        if part in FRAMES:
            write_frame(f, part, parts.value(part), part, drops, names_in.get(part), as_stored=parts.frames_as_stored)
        elif part == "uns":
            write_tree(f, "uns", parts.value("uns"), "uns", drops)
        elif part == "X":
            value = parts.value("X")
            fits.check("X", None, value)
            write_element(f, "X", value, "X")
        elif part == "raw":
            group = f.create_group("raw")
            if "raw/X" in elements.get("raw", []):
                write_element(group, "X", parts.value("raw/X"), "raw/X")
            write_frame(group, "var", parts.value("raw/var"), "raw/var", drops, as_stored=parts.frames_as_stored)
            if parts.has("raw/varm") and not drops.take("raw/varm"):
                write_tree(group, "varm", parts.value("raw/varm"), "raw/varm", drops)
        else:
            paths = elements.get(part) if part == "layers" else [f"{part}/{k}" for k in _kept_keys(parts, part, drops)]
            write_tree(f, part, {}, part, drops)
            for path in paths:
                key, value = path.split("/", 1)[1], parts.value(path)
                fits.check(part, key, value)
                write_tree(f[part], key, value, path, drops)

    def wanted(part: str) -> bool:
        if part in FRAMES:
            return True
        if part in ("X", "layers"):
            return part in elements
        if part == "raw":
            return has_raw
        return not drops.take(part) and bool(parts.keys(part))

    for part in [p for p in ANNDATA_PARTS if wanted(p)]:
        add_image(plan, part, f"anndata.{part}", anndata_image(lambda f, p=part: fill(f, p)))
    drops.check(parts.what)
    contents["dropped"] = sorted(drops.used)
    return plan


class _ElementFit:
    """Refuses an element anndata would refuse at its place when the file is read back (its own check
    of the element's shape against the AnnData's: an obsm of 29 rows for 30 cells, a 1-D layer), so
    that a file that encodes decodes: each is put in place, then taken off, on an AnnData of the
    input's names alone, made once."""

    def __init__(self, parts) -> None:
        self.parts = parts
        self._names_only = None

    def check(self, part: str, key: str | None, value) -> None:
        """`value` at X (key None) or at part/key."""
        import anndata
        import pandas as pd

        path = part if key is None else f"{part}/{key}"
        with quiet_anndata():  # names made unique or strings: anndata's notes, not the element's fault
            if self._names_only is None:
                self._names_only = anndata.AnnData(obs=pd.DataFrame(index=self.parts.value("obs").index),
                                                   var=pd.DataFrame(index=self.parts.value("var").index))
            adata = self._names_only
            try:
                if key is None:
                    adata.X = value
                else:
                    getattr(adata, part)[key] = value
            except Exception as exc:  # anndata raises several types for a value of the wrong shape
                raise InvalidInputError(f"{self.parts.what}: {path} does not fit the AnnData, which anndata would "
                                        f"refuse on reading it back ({one_line(exc)}); pass --drop {path} to encode "
                                        "without it") from exc
            finally:
                if key is None:
                    adata.X = None
                else:
                    getattr(adata, part).pop(key, None)


def _kept_keys(parts, part: str, drops: Drops) -> list[str]:
    """The keys of a mapping part ('layers', 'obsm', ...) less those dropped; a key that would not
    read back (key_problem) is refused."""
    keys = [k for k in parts.keys(part) if not drops.take(f"{part}/{k}")]
    bad = next(((k, problem) for k in keys if (problem := key_problem(k))), None)
    if bad is not None:
        raise refuse_key(part, *bad)
    return keys


def _kept_columns(frame, path: str, drops: Drops):
    """The frame less the columns a user asked to drop (without marking them used)."""
    return frame.drop(columns=[c for c in frame.columns if f"{path}/{c}" in drops.names])


def _why_not(element: str, drops: Drops, parts) -> str:
    """Why an element asked for by --layer is not among the count matrices, where it is not that it
    holds no counts: it is dropped, or absent."""
    if element in drops.names or element.split("/")[0] in drops.names:
        return f"; {element} is dropped (--drop)"
    if element in ("X", "raw/X"):
        present = parts.has(element.split("/")[0])
    else:
        present = element[len("layers/"):] in parts.keys("layers")
    return "" if present else f"; there is no {element}"


def _primary(matrices: list[PlannedMatrix], layer: str | None, parts, drops: Drops) -> str | None:
    """The matrix a reader opens by default: the one asked for, else X, else a counts layer."""
    names = [m.element for m in matrices]
    if layer is not None:
        wanted = "raw/X" if layer == "raw" else layer if layer == "X" else f"layers/{layer}"
        if wanted not in names:
            raise InvalidInputError(f"{parts.what}: {wanted} is not a count matrix here (count matrices: {names}"
                                    f"{_why_not(wanted, drops, parts)})")
        return wanted
    for name in ("X", "layers/counts", "layers/raw_counts", "raw/X"):
        if name in names:
            return name
    return names[0] if names else None

