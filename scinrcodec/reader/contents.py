"""The `contents` section of a .sinr file (format 2.1, spec §14): what a file stores besides its
matrices (a whole AnnData or 10x file), parsed and checked. Reading it is reading the file's
structure, so it lives with the reader; writing it is whole-file storage (scinrcodec.wholefile).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import CorruptFileError, SinrError
from ..io.sources import one_line
from ..storage.container import PREAMBLE, has_file_sections, is_newer_minor, parse_section_table, read_footer
from ..storage.layout import FILE_SECTIONS, Sizes
from ..storage.source import ByteSource
from .index import SectionReader

CONTENTS = "contents"
TENX_SECTION = "10x.h5"
MATRIX_FORMATS = ("csr_matrix", "csc_matrix", "csr_array", "csc_array", "ndarray")  # of an AnnData's count matrix
# Where a 10x file keeps each array and name list a reader fills in, under its matrix group: Cell Ranger 3
# and later (group `matrix`), then Cell Ranger 2 (a genome group, without feature types). Spec §14.5, S6.
TENX_FILLS = {"data": ("data", "data"), "indices": ("indices", "indices"), "indptr": ("indptr", "indptr"),
              "cell_names": ("barcodes", "barcodes"), "gene_ids": ("features/id", "genes"),
              "gene_names": ("features/name", "gene_names"), "feature_types": ("features/feature_type", None)}


def tenx_fill_paths(group: str) -> dict[str, str]:
    """The one dataset each fill may fill in a 10x file whose matrix is in `group`, so that a file
    cannot put the right values in the wrong dataset."""
    layout = 0 if group == "matrix" else 1
    return {fill: f"{group}/{at[layout]}" for fill, at in TENX_FILLS.items() if at[layout] is not None}


@dataclass
class StoredContents:
    """What a .sinr file stores besides its matrices, as its `contents` section says."""

    object: str  # 'anndata' or '10x-h5'
    matrices: list[dict]  # element, matrix, dtype, format
    elements: dict[str, tuple[str, int]]  # part -> (section, bytes of its image)
    raw: dict  # the whole contents map
    sections: object = field(repr=False)  # the SectionReader of the file-level sections
    what: str = ""
    matrix_of: Callable | None = field(default=None, repr=False)  # matrix name -> its open SinrMatrix

    @property
    def layers(self) -> list[str]:
        return list(self.raw.get("layers", []))

    def check_cells(self) -> None:
        """Refuse an AnnData whose count matrices do not each have its n_obs cells (spec §14, S5)."""
        n_obs = self.raw["shape"][0]
        for entry in self.matrices:
            n_cells = self.matrix_of(entry["matrix"]).shape[1]
            if n_cells != n_obs:
                raise CorruptFileError(f"{self.what}: matrix {entry['matrix']!r} has {n_cells:,} cells, the AnnData "
                                       f"{n_obs:,}")

    def listed_layers(self, stored: dict, matrices: dict) -> dict:
        """The AnnData's layers by key, as anndata's readers give them (and this file's obsm, uns, ...;
        the contents list them as the AnnData written did), each a count matrix of the file
        (`matrices`: element -> value, 'layers/<name>' among them) or else one its layers element
        holds (`stored`); a listed layer that is neither makes the file self-contradictory."""
        held = {**stored, **{e[len("layers/"):]: v for e, v in matrices.items() if e.startswith("layers/")}}
        missing = [k for k in self.layers if k not in held]
        if missing:
            raise CorruptFileError(f"{self.what}: contents name layers the file does not hold "
                                   f"({', '.join(map(repr, missing[:3]))})")
        unlisted = [k for k in held if k not in self.layers]
        if unlisted:
            raise CorruptFileError(f"{self.what}: the file holds layers its contents do not list "
                                   f"({', '.join(map(repr, unlisted[:3]))})")
        return {k: held[k] for k in sorted(self.layers)}

    @property
    def dropped(self) -> list[str]:
        return list(self.raw.get("dropped", []))

    def section_bytes(self, part: str) -> int:
        """Stored (compressed) bytes of a part's section, for `sinr info`."""
        return self.sections.table[self.elements[part][0]].length

    def prefetch(self, parts) -> None:
        """Announce the sections of those of `parts` the file stores, and every matrix's gene names
        (which obs and var are rebuilt with), to the file's source: a remote file fetches them in
        one round trip, not one each as anndata asks for them."""
        names = [] if self.matrix_of is None else [
            r for e in self.matrices for r in self.matrix_of(e["matrix"]).name_ranges()]
        self.sections.source.prefetch(
            self.sections.ranges(self.elements[p][0] for p in parts if p in self.elements) + names)

    def image(self, part: str) -> bytes:
        """The decompressed HDF5 image of a part, checked against its recorded size."""
        section, size = self.elements[part]
        return bytes(self.sections.get(section, count=size))

    @contextlib.contextmanager
    def hdf5(self, part: str):
        """The image of a part, open read-only; a failure to read it is a corrupt file."""
        import h5py

        image = self.image(part)
        try:
            with h5py.File(io.BytesIO(image), "r") as f:
                yield f
        except (SinrError, MemoryError):  # no memory is no fault of the file (ulimit -v: it had said corrupt)
            raise
        except Exception as exc:  # h5py and anndata raise many types for malformed data
            raise CorruptFileError(f"{self.what}: section {self.elements[part][0]!r} does not hold what its "
                                   f"contents entry says ({one_line(exc)})") from exc

    def read(self, part: str):
        """An element part, read by anndata: a value, or for 'raw' a dict of X, var and varm; obs
        and var with the names their matrix holds (frame_names)."""
        from anndata.io import read_elem

        from ..io.frame_names import restore

        with self.hdf5(part) as f:
            if part == "raw":
                if "var" not in f["raw"]:  # raw's image holds its var (§14.3)
                    raise CorruptFileError(f"{self.what}: section {self.elements[part][0]!r} holds raw without its var "
                                           "(file is corrupt)")
                raw = {key: read_elem(f["raw"][key]) for key in f["raw"]}
                for key, value in raw.items():
                    self._check_kind(f"raw/{key}", value)
                return raw
            value = read_elem(f[part])
        self._check_kind(part, value)
        entry = self.names_in.get(part)
        return value if entry is None else restore(value, entry, self._matrix_names, part, self.what)

    def _check_kind(self, element: str, value) -> None:
        """Refuse a part that anndata read as another kind of object than the part is (a frame, a
        mapping): what AnnData would refuse, or fail on, with another message."""
        import pandas as pd

        if element in ("X", "raw/X"):  # an array of any kind: AnnData checks its shape
            return
        kind, named = (pd.DataFrame, "a data frame") if element in ("obs", "var", "raw/var") else (dict, "a mapping")
        if not isinstance(value, kind):
            raise CorruptFileError(f"{self.what}: section {self.elements[element.split('/')[0]][0]!r} holds a "
                                   f"{type(value).__name__} as {element}, which must be {named} (file is corrupt)")

    @property
    def names_in(self) -> dict:
        """obs's and var's entries of the contents' names_in, each as spec §14.2 defines it: `matrix` a
        count matrix's element other than raw/X, `index_name` a str or nil, `gene_ids_at` (var only) an int
        (keys it does not define ignored, §3.5)."""
        found = self.raw.get("names_in", {})
        elements = {e["element"] for e in self.matrices} - {"raw/X"}
        if not isinstance(found, dict) or not all(
                part in ("obs", "var") and isinstance(v, dict) and isinstance(v.get("matrix"), str)
                and v["matrix"] in elements
                and "index_name" in v and isinstance(v["index_name"], (str, type(None)))
                and ("gene_ids_at" not in v or part == "var" and type(v["gene_ids_at"]) is int)
                for part, v in found.items()):
            raise CorruptFileError(f"{self.what}: contents field 'names_in' is malformed")
        return found

    def _matrix_names(self, element: str, field_name: str) -> list[str] | None:
        """A names list (cell_names, gene_names, gene_ids) of the matrix placed at `element`."""
        entry = next((e for e in self.matrices if e["element"] == element), None)
        if entry is None or self.matrix_of is None:
            raise CorruptFileError(f"{self.what}: contents name matrix {element!r} for names it does not hold")
        return getattr(self.matrix_of(entry["matrix"]), field_name)

    def matrix_entry(self, matrix: str) -> dict | None:
        """The contents entry of a .sinr matrix (its element, dtype, format), or None."""
        return next((m for m in self.matrices if m["matrix"] == matrix), None)


def read_contents(source: ByteSource, what: str, *, matrices: Callable | None = None) -> StoredContents | None:
    """The file-level sections of an open file, checked; None when it has none (format 2.0).
    `matrices` opens a matrix of the file by name (SinrMatrix.matrix), for the names it holds."""
    footer = read_footer(source)
    if not has_file_sections(footer.version):  # format 2.0: readers ignore the table (spec §4)
        return None
    refs = parse_section_table(footer.content.get("sections"), low=PREAMBLE.size, high=footer.offset,
                               what=f"{what}: file sections")
    if not refs:
        return None
    newer = is_newer_minor(footer.version)
    reader = SectionReader(source, refs, Sizes(), FILE_SECTIONS, f"{what}: file sections", newer_minor=newer)
    if not reader.has(CONTENTS):
        if newer:
            return None
        raise CorruptFileError(f"{what}: file-level sections without a 'contents' section")
    return _parse_contents(reader.get(CONTENTS), reader, footer.content.get("matrices"), what, matrices)


def _parse_contents(raw: dict, reader, matrices, what: str, opener: Callable | None = None) -> StoredContents:
    def bad(why: str) -> CorruptFileError:
        return CorruptFileError(f"{what}: contents section {why}")

    kind = raw.get("object")
    if kind not in ("anndata", "10x-h5"):
        raise bad(f"names an unknown object {kind!r}")
    names = {m.get("name") for m in matrices if isinstance(m, dict)} if isinstance(matrices, list) else set()
    entries = raw.get("matrices")
    if not isinstance(entries, list) or not entries or kind == "10x-h5" and len(entries) != 1:
        raise bad("does not list its matrices")
    if not isinstance(raw.get("elements"), list):  # `writer` is informative, whatever its type (spec §3.5)
        raise bad("has a field of the wrong type")
    for entry in entries:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("element", "matrix", "dtype",
                                                                                         "format")):
            raise bad("holds a malformed matrix entry")
        if entry["matrix"] not in names:
            raise bad(f"names matrix {entry['matrix']!r}, which the file does not hold")
        if kind == "anndata" and (entry["format"] not in MATRIX_FORMATS or not _count_dtype(entry["dtype"]) or not (
                entry["element"] in ("X", "raw/X") or entry["element"].startswith("layers/"))):
            raise bad(f"gives matrix {entry['matrix']!r} an impossible type or place")
        if kind == "anndata" and entry["matrix"] != entry["element"]:  # a matrix's name is its place (§14.4)
            raise bad(f"places matrix {entry['matrix']!r} at {entry['element']!r}, which is not its name")
    elements = {}
    for entry in raw["elements"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("element"), str) \
                or not isinstance(entry.get("section"), str) or not isinstance(entry.get("bytes"), int) \
                or isinstance(entry.get("bytes"), bool) or entry["bytes"] < 0:
            raise bad("holds a malformed element entry")
        expected = TENX_SECTION if kind == "10x-h5" else f"anndata.{entry['element']}"
        if entry["section"] != expected or entry["element"] in elements or not reader.has(expected):
            raise bad(f"places element {entry['element']!r} in a missing or wrong section")
        elements[entry["element"]] = (entry["section"], entry["bytes"])
    for key in ("layers", "dropped"):
        if not isinstance(raw.get(key, []), list) or not all(isinstance(v, str) for v in raw.get(key, [])):
            raise bad(f"field {key!r} is not a list of names")
    if kind == "anndata" and "layers" not in raw:
        raise bad("has no field 'layers'")
    if kind == "anndata" and not {"obs", "var"} <= set(elements):  # always present (§14.3)
        raise bad("does not hold the AnnData's obs and var")
    if not _compression_entry(raw.get("h5ad_compression")):
        raise bad("field 'h5ad_compression' is not nil or a map of a compression name and its int options")
    if kind == "10x-h5":
        filled = raw.get("filled")
        if "h5" not in elements or not isinstance(raw.get("group"), str) or not isinstance(filled, list) or not all(
                isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and e[1] in TENX_FILLS
                and isinstance(e[2], bool) for e in filled):
            raise bad("does not describe a 10x file")
        fills = [e[1] for e in filled]  # the matrix's three arrays, as a writer lists them (spec §14.5)
        if len(set(fills)) != len(fills) or not {"data", "indices", "indptr"} <= set(fills):
            raise bad("does not fill data, indices and indptr once each, and no fill twice")
        paths = tenx_fill_paths(raw["group"])
        for path, fill, _ in filled:  # each at its one dataset, so no dataset twice either
            if paths.get(fill) != path:
                where = f"belongs at {paths[fill]!r}" if fill in paths else f"group {raw['group']!r} does not hold"
                raise bad(f"fills {path!r} with {fill!r}, which {where}")
    else:
        shape = raw.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and not isinstance(n, bool)
                                                                    and n >= 0 for n in shape)):
            raise bad("has no valid shape")
    return StoredContents(kind, entries, elements, raw, reader, what, opener)


def _compression_entry(value) -> bool:
    """Whether `h5ad_compression` is as spec §14.2 defines it (nil, or `compression` a str and
    `compression_opts`, when present, an int), or absent."""
    if value is None:
        return True
    opts = value.get("compression_opts", 0) if isinstance(value, dict) else None
    return isinstance(value, dict) and isinstance(value.get("compression"), str) and isinstance(opts, int) \
        and not isinstance(opts, bool)


def _count_dtype(text: str) -> bool:
    try:
        return np.dtype(text).kind in "iuf"
    except (TypeError, ValueError):
        return False

