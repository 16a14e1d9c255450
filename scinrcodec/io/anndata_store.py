"""Whole AnnData objects and 10x HDF5 files in one .sinr file (format 2.1, spec §14).

Count matrices (X, integer layers, raw.X) become .sinr matrices named by their place in the
AnnData ("X", "layers/counts", "raw/X"). Every other part is written by anndata's own element
writer into an HDF5 image, one zstd-compressed file-level section per part, so dataframes with
categoricals, nullable columns and sparse or dense arrays come back exactly as anndata wrote
them. A 10x file keeps an HDF5 image of everything except the matrix arrays and the names the
.sinr matrix already holds: those datasets stay as empty skeletons with their types, filters and
attributes, and decoding fills them back in. The `contents` section says where each part went.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from ..encoder.driver import finish_file, write_matrix
from ..encoder.options import EncodeOptions
from ..errors import CorruptFileError, InvalidInputError, SinrError
from ..limits import MAX_COUNT
from ..progress import Progress
from ..storage.container import (PREAMBLE, READ_MINOR_VERSION, ContainerWriter, pack_array, pack_map,
                                 parse_section_table, read_footer)
from ..storage.layout import ANNDATA_PARTS, FILE_SECTIONS, FILE_SECTIONS_MINOR, Sizes
from ..storage.source import ByteSource
from .atomic import atomic_path, check_writable
from .h5ad import cells_by_genes_source, h5ad_index
from .hdf5 import h5_errors, text_attr
from .h5ad_output import quiet_anndata
from .writers import obs_frame, var_frame
from .sources import MatrixSource, one_line

CONTENTS = "contents"
TENX_SECTION = "10x.h5"
ELEMENT_LEVEL = 9  # zstd level of element images: level 19 is slow on large obsp, for little gain
FORMATS = ("csr_matrix", "csc_matrix", "csr_array", "csc_array", "ndarray")
FRAMES = ("obs", "var")
MAPPINGS = ("obsm", "varm", "obsp", "varp", "layers")
FILLS = ("data", "indices", "indptr", "cell_names", "gene_ids", "gene_names", "feature_types")
SLICE = 1 << 24  # values checked at a time


# ------------------------------------------------------------------------------- count-likeness

def whole_counts(values: np.ndarray) -> bool:
    """Every value is a count a .sinr matrix holds exactly: whole, 0 .. MAX_COUNT."""
    if values.dtype.kind not in "iuf":
        return False
    flat = values.reshape(-1)
    for start in range(0, flat.size, SLICE):
        part = np.asarray(flat[start: start + SLICE])
        if part.dtype.kind == "f" and not (np.isfinite(part).all() and np.array_equal(part, np.floor(part))):
            return False
        if part.size and (part.min() < 0 or part.max() > MAX_COUNT):
            return False
    return True


def memory_format(x) -> str | None:
    """The format name of an in-memory matrix that a .sinr matrix stores exactly, or None. AnnData's
    views of a format count as the format."""
    name = next((name for name in FORMATS if isinstance(x, getattr(sp, name, np.ndarray))), None)
    if name is None or isinstance(x, np.matrix):
        return None
    if name == "ndarray":
        return name if x.ndim == 2 and whole_counts(x) else None
    if not whole_counts(x.data):
        return None
    if not x.has_canonical_format and not x.sorted_indices().has_canonical_format:
        return None  # repeated coordinates: scipy sums them, .sinr refuses them
    return name


def disk_format(obj) -> str | None:
    """The same for a matrix of an .h5ad file, read a slice at a time."""
    import h5py

    encoding = text_attr(obj, "encoding-type")
    if isinstance(obj, h5py.Group) and encoding in ("csr_matrix", "csc_matrix") and isinstance(obj.get("data"),
                                                                                               h5py.Dataset):
        data, name = obj["data"], encoding
    elif isinstance(obj, h5py.Dataset) and encoding == "array" and obj.ndim == 2:
        data, name = obj, "ndarray"
    else:
        return None
    if data.dtype.kind not in "iuf":
        return None
    rows = max(1, SLICE // max(1, int(np.prod(data.shape[1:]))))
    for start in range(0, data.shape[0], rows):
        if not whole_counts(data[start: start + rows]):
            return None
    return name


# ------------------------------------------------------------------------------------- the parts

class MemoryParts:
    """The parts of an in-memory AnnData, by element path ('obs', 'layers/counts', 'raw/var')."""

    def __init__(self, adata, what: str) -> None:
        if adata.isbacked:
            raise InvalidInputError(f"{what}: a backed AnnData; encode its file ({adata.filename}) instead")
        self.adata, self.what = adata, what
        self.shape = adata.shape

    def has(self, path: str) -> bool:
        """Whether 'X', 'raw' or 'raw/varm' is there."""
        a = self.adata
        has_raw = a.raw is not None
        return {"X": a.X is not None, "raw": has_raw, "raw/varm": has_raw and len(a.raw.varm) > 0}[path]

    def keys(self, part: str) -> list[str]:
        return list(getattr(self.adata, part).keys())

    def value(self, path: str):
        a = self.adata
        if path.startswith("raw/"):
            return {"X": a.raw.X, "var": a.raw.var, "varm": dict(a.raw.varm)}[path[4:]]
        if "/" in path:
            part, key = path.split("/", 1)
            return getattr(a, part)[key]
        return getattr(a, path)

    def format(self, path: str) -> str | None:
        return memory_format(self.value(path))

    def dtype(self, path: str) -> str:
        return self.value(path).dtype.str

    def source(self, path: str) -> MatrixSource:
        var = self.adata.raw.var if path == "raw/X" else self.adata.var
        return cells_by_genes_source(self.value(path), var, self.adata.obs_names, f"{self.what} {path}")


class _FileParts:
    """The parts of an .h5ad file (anndata >= 0.8 layout), each read only when asked for; count
    matrices are streamed by the readers."""

    def __init__(self, path: Path, f) -> None:
        self.file, self.path, self.what = f, path, str(path)
        self.shape = (_frame_length(f, "obs"), _frame_length(f, "var"))

    def has(self, path: str) -> bool:
        return path in self.file

    def keys(self, part: str) -> list[str]:
        return list(self.file[part].keys()) if part in self.file else []

    def value(self, path: str):
        from anndata.io import read_elem

        try:
            return read_elem(self.file[path])
        except Exception as exc:  # anndata raises many types for elements it cannot read
            raise InvalidInputError(f"{self.what}: {path} is unreadable ({one_line(exc)})") from exc

    def format(self, path: str) -> str | None:
        return disk_format(self.file[path])

    def source(self, path: str) -> MatrixSource:
        """A count matrix, streamed by the readers (which open the file again: this one is closed
        once the plan is made)."""
        import h5py
        from anndata.io import read_elem

        from .readers import read_matrix

        if path != "layers/raw":
            return read_matrix(self.path, None if path == "X" else "raw" if path == "raw/X" else path[len("layers/"):])
        with h5_errors(str(self.path)), h5py.File(self.path, "r") as f:  # the readers' layer 'raw' is adata.raw
            return cells_by_genes_source(read_elem(f[path]), read_elem(f["var"]), read_elem(f["obs"]).index,
                                  f"{self.what} {path}")

    def dtype(self, path: str) -> str:
        obj = self.file[path]
        return (obj if text_attr(obj, "encoding-type") == "array" else obj["data"]).dtype.str


def _frame_length(f, name: str) -> int:
    import h5py

    index = h5ad_index(f.get(name))
    if index is None or not isinstance(f[name][index], h5py.Dataset):
        raise InvalidInputError(f"{f.filename}: {name} is not an anndata dataframe with an index")
    return len(f[name][index])


# ----------------------------------------------------------------------------------- the images

class _Drops:
    """The parts a user asked to leave out; each must name something."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = {str(n).strip("/") for n in names}
        self.used: set[str] = set()

    def take(self, path: str) -> bool:
        if path in self.names:
            self.used.add(path)
            return True
        return False

    def check(self, what: str) -> None:
        unused = sorted(self.names - self.used)
        if unused:
            raise InvalidInputError(f"{what}: nothing named {unused[0]!r} to drop (names are element paths such as "
                                    "'uns/key', 'obsm/X_umap', 'obs/column' or 'layers/name')")


def _unstorable(path: str, value, exc: BaseException) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: anndata cannot store this {type(value).__name__} ({one_line(exc)}); pass --drop {path} "
        f"(drop=['{path}']) to encode without it")


def _write(group, key: str, value, path: str) -> None:
    from anndata.io import write_elem

    try:
        write_elem(group, key, value)
    except Exception as exc:  # anndata raises many types for objects it cannot write
        raise _unstorable(path, value, exc) from exc


def _writable(value) -> bool:
    import h5py
    from anndata.io import write_elem

    try:
        with h5py.File(io.BytesIO(), "w") as scratch:
            write_elem(scratch, "x", value)
    except Exception:  # anndata raises many types for objects it cannot write
        return False
    return True


def _write_frame(group, key: str, frame, path: str, drops: _Drops, names: dict | None = None) -> None:
    """A dataframe less its dropped columns, and less the names a matrix holds (frame_names); a
    failure names the column anndata cannot write."""
    from anndata.io import write_elem

    from .frame_names import strip

    if drops.take(path):
        frame = frame.iloc[:, :0]  # the index stays: it names the cells or genes
    else:
        frame = frame.drop(columns=[c for c in frame.columns if drops.take(f"{path}/{c}")])
    frame = strip(frame, names)
    try:
        write_elem(group, key, frame)
    except Exception as exc:  # anndata raises many types for objects it cannot write
        bad = next((c for c in frame.columns if not _writable(frame[[c]])), None)
        raise _unstorable(path if bad is None else f"{path}/{bad}", frame if bad is None else frame[bad], exc) from exc


def _write_tree(group, key: str, value, path: str, drops: _Drops) -> None:
    """A (nested) mapping key by key, so that a failure names the one object anndata cannot write."""
    if not isinstance(value, Mapping):
        _write(group, key, value, path)
        return
    _write(group, key, {}, path)
    for name, item in value.items():
        if not isinstance(name, str):
            raise InvalidInputError(f"{path}: key {name!r} is not a string, which anndata cannot store; pass "
                                    f"--drop {path} to encode without it")
        if not drops.take(f"{path}/{name}"):
            _write_tree(group[key], name, item, f"{path}/{name}", drops)


def _image(fill: Callable) -> bytes:
    """The bytes of an HDF5 file built in memory by fill(h5py.File). Nullable string columns are
    written as such (anndata >= 0.11 reads them), not refused as anndata does by default."""
    import anndata
    import h5py

    buffer = io.BytesIO()
    with warnings.catch_warnings(), anndata.settings.override(allow_write_nullable_strings=True):
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        with h5py.File(buffer, "w") as f:
            fill(f)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- the plan

@dataclass
class _Matrix:
    element: str  # where it belongs in the AnnData: 'X', 'layers/counts', 'raw/X'; 'matrix' for 10x
    open: Callable[[], MatrixSource]
    dtype: str = ""
    format: str = ""


@dataclass
class _Plan:
    contents: dict
    matrices: list[_Matrix]
    sections: list[tuple[str, bytes]] = field(default_factory=list)


def _add_image(plan: _Plan, part: str, section: str, raw: bytes) -> None:
    plan.sections.append((section, pack_array(np.frombuffer(raw, np.uint8), "u1", level=ELEMENT_LEVEL)))
    plan.contents["elements"].append({"element": part, "section": section, "bytes": len(raw)})


def plan_anndata(parts, *, layer: str | None, drop: Iterable[str]) -> _Plan:
    """Which parts become .sinr matrices and which are stored as elements; the element images are
    built here, so that an object anndata cannot write stops the encoding before any matrix."""
    drops = _Drops(drop)
    matrices: list[_Matrix] = []
    elements: dict[str, list[str]] = {}  # part -> element paths stored in its image

    def place(path: str, part: str) -> None:
        fmt = parts.format(path)
        if fmt is None:
            elements.setdefault(part, []).append(path)
            return
        matrices.append(_Matrix(path, lambda p=path: parts.source(p), parts.dtype(path), fmt))

    if parts.has("X") and not drops.take("X"):
        place("X", "X")
    layers = [k for k in parts.keys("layers") if not drops.take(f"layers/{k}")]
    for key in layers:
        place(f"layers/{key}", "layers")
    has_raw = parts.has("raw") and not drops.take("raw")
    if has_raw:
        place("raw/X", "raw")
    primary = _primary(matrices, layer, parts.what)
    matrices.sort(key=lambda m: m.element != primary)
    if not matrices:
        raise InvalidInputError(f"{parts.what}: holds no count matrix (X, a layer or raw.X of whole numbers from 0 "
                                f"to {MAX_COUNT:,}) for .sinr to code")
    from .frame_names import plan_names

    dropped_frames = {part for part in FRAMES if part in drops.names}
    names_in = plan_names({part: _kept_columns(parts.value(part), part, drops) for part in FRAMES
                           if part not in dropped_frames}, matrices)
    contents = {"object": "anndata", "writer": f"anndata {version('anndata')}", "shape": list(parts.shape),
                "matrices": [{"element": m.element, "matrix": m.element, "dtype": m.dtype, "format": m.format}
                             for m in matrices],
                "elements": [], "layers": layers, "dropped": [], "names_in": names_in}
    plan = _Plan(contents, matrices)

    def fill(f, part: str) -> None:
        """Write part `part` of the AnnData (less what is dropped or coded as a matrix) into f."""
        if part in FRAMES:
            _write_frame(f, part, parts.value(part), part, drops, names_in.get(part))
        elif part == "uns":
            _write_tree(f, "uns", parts.value("uns"), "uns", drops)
        elif part == "X":
            _write(f, "X", parts.value("X"), "X")
        elif part == "raw":
            group = f.create_group("raw")
            if "raw/X" in elements.get("raw", []):
                _write(group, "X", parts.value("raw/X"), "raw/X")
            _write_frame(group, "var", parts.value("raw/var"), "raw/var", drops)
            if parts.has("raw/varm") and not drops.take("raw/varm"):
                _write_tree(group, "varm", parts.value("raw/varm"), "raw/varm", drops)
        else:
            paths = elements.get(part) if part == "layers" else [
                f"{part}/{k}" for k in parts.keys(part) if not drops.take(f"{part}/{k}")]
            _write_tree(f, part, {}, part, drops)
            for path in paths:
                _write_tree(f[part], path.split("/", 1)[1], parts.value(path), path, drops)

    def wanted(part: str) -> bool:
        if part in FRAMES:
            return True
        if part in ("X", "layers"):
            return part in elements
        if part == "raw":
            return has_raw
        return not drops.take(part) and bool(parts.keys(part))

    for part in [p for p in ANNDATA_PARTS if wanted(p)]:
        _add_image(plan, part, f"anndata.{part}", _image(lambda f, p=part: fill(f, p)))
    drops.check(parts.what)
    contents["dropped"] = sorted(drops.used)
    return plan


def _kept_columns(frame, path: str, drops: _Drops):
    """The frame less the columns a user asked to drop (without marking them used)."""
    return frame.drop(columns=[c for c in frame.columns if f"{path}/{c}" in drops.names])


def _primary(matrices: list[_Matrix], layer: str | None, what: str) -> str | None:
    """The matrix a reader opens by default: the one asked for, else X, else a counts layer."""
    names = [m.element for m in matrices]
    if layer is not None:
        wanted = "raw/X" if layer == "raw" else layer if layer == "X" else f"layers/{layer}"
        if wanted not in names:
            raise InvalidInputError(f"{what}: {wanted} is not a count matrix here (count matrices: {names})")
        return wanted
    for name in ("X", "layers/counts", "layers/raw_counts", "raw/X"):
        if name in names:
            return name
    return names[0] if names else None


# ------------------------------------------------------------------------------------------ 10x

def _strings(ds) -> list[str] | None:
    """A 1-D dataset of text as str, or None when it is not one."""
    import h5py

    if ds.ndim != 1 or not (ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype)):
        return None
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in ds[:].tolist()]
    except UnicodeDecodeError:
        return None


def _plan_10x(path: Path) -> _Plan:
    """The matrix, and an image of everything else (see the module docstring)."""
    import h5py

    from .tenx_h5 import read_10x_h5

    source = read_10x_h5(path)
    with h5py.File(path, "r") as f:
        group = "matrix" if "matrix" in f else next(k for k in f if isinstance(f[k], h5py.Group))
        g = f[group]
        fills = {f"{group}/{name}": name for name in ("data", "indices", "indptr")}
        named = {"barcodes": ("cell_names", source.cell_names(0, source.shape[1]))}
        if group == "matrix":
            named.update({"features/id": ("gene_ids", source.gene_ids),
                          "features/name": ("gene_names", source.gene_names),
                          "features/feature_type": ("feature_types", source.feature_types)})
        else:
            named.update({"genes": ("gene_ids", source.gene_ids), "gene_names": ("gene_names", source.gene_names)})
        for name, (fill, values) in named.items():
            if values is not None and isinstance(g.get(name), h5py.Dataset) and _strings(g[name]) == values:
                fills[f"{group}/{name}"] = fill
        if not all(isinstance(f.get(p), h5py.Dataset) and f[p].ndim == 1 for p in fills):
            raise InvalidInputError(f"{path}: {group}/data, indices and indptr are not 1-D datasets")
        resizable = {p: f[p].chunks is not None and f[p].maxshape[0] is None for p in fills}
        raw = _image(lambda out: _copy_tree(f, out, set(fills)))
    contents = {"object": "10x-h5", "group": group, "elements": [],
                "matrices": [{"element": group, "matrix": "X", "dtype": "", "format": ""}],
                "filled": [[p, fill, resizable[p]] for p, fill in fills.items()]}
    plan = _Plan(contents, [_Matrix(group, lambda: source)])
    _add_image(plan, "h5", TENX_SECTION, raw)
    return plan


def _copy_attrs(src, dst) -> None:
    """Attributes with their exact HDF5 types and shapes (h5py would otherwise pick its own)."""
    for name in src.attrs:
        attr = src.attrs.get_id(name)
        dst.attrs.create(name, src.attrs[name], shape=attr.shape, dtype=attr.dtype)


def _members(src, dst):
    """Copy a group's attributes and its soft and external links to dst; yield its other members
    as (name, object) for the caller to copy its own way."""
    import h5py

    _copy_attrs(src, dst)
    for key in src:
        link = src.get(key, getlink=True)
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            dst[key] = link
        else:
            yield key, src[key]


def _copy_tree(src, dst, skeletons: set[str]) -> None:
    """Copy a group's attributes and members; datasets in `skeletons` become empty datasets with
    the same type, creation properties (chunks, filters) and attributes."""
    import h5py

    for key, obj in _members(src, dst):
        if obj.name.lstrip("/") in skeletons:
            space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED if obj.chunks else 0,))
            made = h5py.h5d.create(dst.id, key.encode(), obj.id.get_type(), space, dcpl=obj.id.get_create_plist())
            _copy_attrs(obj, h5py.Dataset(made))
        elif isinstance(obj, h5py.Group) and any(s.startswith(obj.name.lstrip("/") + "/") for s in skeletons):
            _copy_tree(obj, dst.create_group(key), skeletons)
        else:
            src.copy(obj, dst, name=key)


def _fill_tree(skeleton, out, fills: dict[str, tuple[str, bool]], values: dict[str, np.ndarray | list[str]]) -> None:
    """Copy an image back, writing each skeleton dataset with its values in its own type."""
    import h5py

    for key, obj in _members(skeleton, out):
        path = obj.name.lstrip("/")
        if path in fills:
            fill, resizable = fills[path]
            data = values[fill]
            n = len(data)
            space = h5py.h5s.create_simple((n,), (h5py.h5s.UNLIMITED if resizable else n,))
            made = h5py.Dataset(h5py.h5d.create(out.id, key.encode(), obj.id.get_type(), space,
                                                dcpl=obj.id.get_create_plist()))
            if n:
                made[...] = _typed(data, obj.dtype)
            _copy_attrs(obj, made)
        elif isinstance(obj, h5py.Group) and any(f.startswith(path + "/") for f in fills):
            _fill_tree(obj, out.create_group(key), fills, values)
        else:
            skeleton.copy(obj, out, name=key)


def _typed(values, dtype: np.dtype) -> np.ndarray:
    """Values in a dataset's type: names as fixed-length bytes or variable-length text."""
    import h5py

    if isinstance(values, np.ndarray):
        return values.astype(dtype, copy=False)
    if dtype.kind == "S":
        return np.array([v.encode("utf-8") for v in values], dtype=dtype)
    info = h5py.check_string_dtype(dtype)
    if info is not None and info.encoding == "ascii":
        return np.array([v.encode("utf-8") for v in values], dtype=object)
    return np.array(values, dtype=object)


# ------------------------------------------------------------------------------------- encoding

def checked_options(options: dict) -> EncodeOptions:
    """Encode keyword options as EncodeOptions, unknown names and an unusable torch device refused."""
    from ..encoder.siren_fit import check_device, torch_available

    unknown = set(options) - EncodeOptions.names()
    if unknown:
        raise InvalidInputError(f"unknown encode option(s): {', '.join(sorted(unknown))}")
    opts = EncodeOptions(**options)
    if (opts.siren in ("always", "force") or opts.mode == "inr-only") and not torch_available():
        raise InvalidInputError("the SIREN needs torch: pip install 'scinrcodec[encode]', or use --siren never")
    if opts.device is not None and torch_available():
        check_device(opts.device)
    return opts


def plan_source(source, *, layer: str | None = None, drop: Iterable[str] = ()) -> _Plan:
    """What a whole encoding of `source` writes, its element images built (and checked)."""
    if type(source).__name__ == "AnnData":
        return plan_anndata(MemoryParts(source, "AnnData"), layer=layer, drop=drop)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(f"cannot encode an object of type {type(source).__name__} whole (pass an AnnData, "
                                "or the path of an .h5ad or 10x .h5 file)")
    from .readers import sniff_format

    path = Path(source)
    kind = sniff_format(path)
    if kind == "10x-h5":
        if layer is not None or list(drop):
            raise InvalidInputError(f"{path}: --layer and --drop apply to .h5ad input only")
        return _plan_10x(path)
    if kind != "h5ad":
        raise InvalidInputError(f"{path}: a {kind} input holds one matrix and nothing else; encode it with "
                                "scinrcodec.encode")
    return _plan_h5ad(path, layer=layer, drop=drop)


def _plan_h5ad(path: Path, *, layer: str | None, drop: Iterable[str]) -> _Plan:
    import h5py

    from .h5ad_output import input_compression

    with h5_errors(str(path)), h5py.File(path, "r") as f:
        if text_attr(f, "encoding-type") == "anndata":
            plan = plan_anndata(_FileParts(path, f), layer=layer, drop=drop)
            plan.contents["h5ad_compression"] = input_compression(f)
            return plan
    import anndata

    try:
        adata = anndata.read_h5ad(path)  # written by anndata < 0.8: no element encodings to read part by part
    except Exception as exc:  # anndata raises many types for unreadable files
        raise InvalidInputError(f"{path}: unreadable .h5ad file ({one_line(exc)})") from exc
    return plan_anndata(MemoryParts(adata, str(path)), layer=layer, drop=drop)


def encode_whole(source, output: str | os.PathLike, *, layer: str | None = None, drop: Iterable[str] = (),
                 force: bool = False, client=None, **options) -> dict:
    """Encode everything `source` holds into one .sinr file, atomically: an AnnData (or the path of
    an .h5ad file) with all its parts, or a 10x .h5 file with all its fields. `layer` names the
    count matrix a reader opens by default ('X', a layer, or 'raw'); `drop` names parts to leave
    out, which is needed for objects anndata itself cannot write. Returns sizes and names."""
    opts = checked_options(options)
    inputs = [source] if isinstance(source, (str, os.PathLike)) else []
    check_writable(output, force=force, inputs=inputs)
    return write_plan(plan_source(source, layer=layer, drop=drop), output, opts, force=force, inputs=inputs,
                      client=client)


def write_plan(plan: _Plan, output: str | os.PathLike, opts: EncodeOptions, *, force: bool, inputs: list,
               client=None) -> dict:
    """Write what a plan says (its matrices encoded, its element images stored) to `output`."""
    with atomic_path(Path(output), force=force, inputs=inputs) as tmp, open(tmp, "wb") as stream:
        writer = ContainerWriter(stream, minor=FILE_SECTIONS_MINOR)
        matrices = []
        for item, entry in zip(plan.matrices, plan.contents["matrices"]):
            matrix_source = item.open()
            progress = Progress(opts.progress, 2 * matrix_source.nnz if matrix_source.nnz is not None else None,
                                f"encoding {item.element}", "nonzeros")
            try:
                matrices.append(write_matrix(writer, matrix_source, opts, name=entry["matrix"], progress=progress,
                                             client=client))
            finally:
                progress.close()
        sections = [writer.section(CONTENTS, pack_map(plan.contents))]
        sections += [writer.section(name, payload) for name, payload in plan.sections]
        size = finish_file(writer, matrices, sections)
    first = matrices[0]
    return {"bytes": size, "nnz": sum(m["nnz"] for m in matrices), "shape": tuple(first["shape"]),
            "chunks": first["n_chunks"], "matrices": [m["name"] for m in matrices],
            "parts": [e["element"] for e in plan.contents["elements"]], "dropped": plan.contents.get("dropped", [])}


# ------------------------------------------------------------------------------------- contents

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

    @property
    def dropped(self) -> list[str]:
        return list(self.raw.get("dropped", []))

    def section_bytes(self, part: str) -> int:
        return self.sections.table[self.elements[part][0]].length

    def image(self, part: str) -> bytes:
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
        except SinrError:
            raise
        except Exception as exc:  # h5py and anndata raise many types for malformed data
            raise CorruptFileError(f"{self.what}: section {self.elements[part][0]!r} does not hold what its "
                                   f"contents entry says ({one_line(exc)})") from exc

    def read(self, part: str):
        """An element part, read by anndata: a value, or for 'raw' a dict of X, var and varm; obs
        and var with the names their matrix holds (frame_names)."""
        from anndata.io import read_elem

        from .frame_names import restore

        with self.hdf5(part) as f:
            if part == "raw":
                return {key: read_elem(f["raw"][key]) for key in f["raw"]}
            value = read_elem(f[part])
        entry = self.names_in.get(part)
        return value if entry is None else restore(value, entry, self._matrix_names, part, self.what)

    @property
    def names_in(self) -> dict:
        found = self.raw.get("names_in", {})
        if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
            raise CorruptFileError(f"{self.what}: contents field 'names_in' is malformed")
        return found

    def _matrix_names(self, element: str, field_name: str) -> list[str] | None:
        """A names list (cell_names, gene_names, gene_ids) of the matrix placed at `element`."""
        entry = next((e for e in self.matrices if e["element"] == element), None)
        if entry is None or self.matrix_of is None:
            raise CorruptFileError(f"{self.what}: contents name matrix {element!r} for names it does not hold")
        return getattr(self.matrix_of(entry["matrix"]), field_name)

    def matrix_entry(self, matrix: str) -> dict | None:
        return next((m for m in self.matrices if m["matrix"] == matrix), None)


def read_contents(source: ByteSource, what: str, *, matrices: Callable | None = None) -> StoredContents | None:
    """The file-level sections of an open file, checked; None when it has none (format 2.0).
    `matrices` opens a matrix of the file by name (SinrMatrix.matrix), for the names it holds."""
    from ..reader.index import SectionReader

    footer = read_footer(source)
    if footer.version[1] < FILE_SECTIONS_MINOR:  # format 2.0: readers ignore the table (spec §4)
        return None
    refs = parse_section_table(footer.content.get("sections"), low=PREAMBLE.size, high=footer.offset,
                               what=f"{what}: file sections")
    if not refs:
        return None
    newer = footer.version[1] > READ_MINOR_VERSION
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
    if not isinstance(raw.get("writer", ""), str) or not isinstance(raw.get("elements"), list):
        raise bad("has a field of the wrong type")
    for entry in entries:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("element", "matrix", "dtype",
                                                                                         "format")):
            raise bad("holds a malformed matrix entry")
        if entry["matrix"] not in names:
            raise bad(f"names matrix {entry['matrix']!r}, which the file does not hold")
        if kind == "anndata" and (entry["format"] not in FORMATS or not _count_dtype(entry["dtype"]) or not (
                entry["element"] in ("X", "raw/X") or entry["element"].startswith("layers/"))):
            raise bad(f"gives matrix {entry['matrix']!r} an impossible type or place")
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
    if kind == "10x-h5":
        filled = raw.get("filled")
        if "h5" not in elements or not isinstance(raw.get("group"), str) or not isinstance(filled, list) or not all(
                isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and e[1] in FILLS
                and isinstance(e[2], bool) for e in filled):
            raise bad("does not describe a 10x file")
    else:
        shape = raw.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and not isinstance(n, bool)
                                                                    and n >= 0 for n in shape)):
            raise bad("has no valid shape")
    return StoredContents(kind, entries, elements, raw, reader, what, opener)


def _count_dtype(text: str) -> bool:
    try:
        return np.dtype(text).kind in "iuf"
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------ restoring

def decoded(matrix, dtype, fmt: str):
    """A whole .sinr matrix, cells x genes, in the type and format it was encoded from."""
    x = matrix.to_scipy("csc", dtype=np.dtype(dtype)).T
    if fmt == "ndarray":
        return x.toarray()
    if fmt == "csc_matrix":
        return x.tocsc()
    if fmt in ("csr_array", "csc_array"):
        return getattr(sp, fmt)(x)
    return x


def restore_anndata(m, contents: StoredContents):
    """The whole AnnData of a file, every part as it was encoded."""
    import anndata
    import pandas as pd

    from concurrent.futures import ThreadPoolExecutor

    n_obs = contents.raw["shape"][0]
    for entry in contents.matrices:
        if m.matrix(entry["matrix"]).shape[1] != n_obs:
            raise CorruptFileError(f"{m.source}: matrix {entry['matrix']!r} has {m.matrix(entry['matrix']).shape[1]:,} "
                                   f"cells, the AnnData {n_obs:,}")

    def decode_all() -> dict:
        return {e["element"]: decoded(m.matrix(e["matrix"]), e["dtype"], e["format"]) for e in contents.matrices}

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sinr-restore") as pool:
        pending = pool.submit(decode_all)  # the native decode releases the GIL: anndata reads the parts meanwhile
        values = {part: contents.read(part) for part in contents.elements}
        matrices = pending.result()
    raw = values.pop("raw", None)
    stored_layers = values.pop("layers", {})
    if not set(contents.layers) <= set(stored_layers) | {k[7:] for k in matrices if k.startswith("layers/")}:
        raise CorruptFileError(f"{m.source}: contents name layers the file does not hold")
    layers = {k: matrices[f"layers/{k}"] if f"layers/{k}" in matrices else stored_layers[k] for k in contents.layers}
    x = matrices.get("X", values.pop("X", None))
    try:
        with quiet_anndata():
            adata = anndata.AnnData(X=x, layers=layers, **values)
            if raw is not None or "raw/X" in matrices:
                raw = raw or {}
                adata.raw = anndata.AnnData(X=matrices.get("raw/X", raw.get("X")),
                                            obs=pd.DataFrame(index=adata.obs_names), var=raw.get("var"),
                                            varm=raw.get("varm"))
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{m.source}: the stored parts do not make an AnnData ({one_line(exc)})") from exc
    return adata


def tenx_var(m, contents: StoredContents | None) -> dict[str, list]:
    """Per-feature fields of a 10x file besides id, name and type (genome, pattern, read, ...),
    as scanpy.read_10x_h5 puts them in var."""
    if contents is None or contents.object != "10x-h5":
        return {}
    import h5py

    columns = {}
    with contents.hdf5("h5") as f:
        features = f.get(f"{contents.raw['group']}/features")
        for key in features if isinstance(features, h5py.Group) else []:
            ds = features[key]
            if key in ("id", "name", "feature_type", "_all_tag_keys") or not isinstance(ds, h5py.Dataset) \
                    or ds.shape != (m.shape[0],):
                continue
            columns[key] = ds[:].astype(bool).tolist() if ds.dtype.kind == "b" else _strings(ds)
    return {k: v for k, v in columns.items() if v is not None}


def write_10x(m, contents: StoredContents, path: Path) -> None:
    """The 10x file a .sinr file was encoded from, with every dataset and attribute it had."""
    import h5py

    fills = {p: (fill, resizable) for p, fill, resizable in contents.raw["filled"]}
    needed = {fill for fill, _ in fills.values()}
    csc = m.to_scipy("csc")
    values: dict = {"data": csc.data, "indices": csc.indices, "indptr": csc.indptr}
    for fill in ("cell_names", "gene_ids", "gene_names", "feature_types"):  # SinrMatrix attributes
        if fill in needed:
            values[fill] = getattr(m, fill)
            if values[fill] is None:
                raise CorruptFileError(f"{m.source}: the 10x file needs the matrix's {fill.replace('_', ' ')}, "
                                       "which it does not hold")
    image = io.BytesIO()
    with contents.hdf5("h5") as skeleton, h5py.File(image, "w") as out:
        missing = [p for p in fills if not isinstance(skeleton.get(p), h5py.Dataset)]
        if missing:
            raise CorruptFileError(f"{m.source}: the 10x image has no dataset {missing[0]!r} to fill")
        _fill_tree(skeleton, out, fills, values)
    with open(path, "wb") as fh:
        fh.write(image.getbuffer())


def write_decoded(m, output: str | os.PathLike, *, force: bool = False, compression: str = "auto",
                  dtype=None) -> str:
    """Write a decoded file to `output` (format by extension): the whole AnnData of a file that
    holds one as .h5ad, the original 10x file as .h5, and otherwise the matrix `m`. An .h5ad is
    compressed as its input was, else gzip (io.h5ad_output); dtype is X's (reader.dtypes)."""
    from .h5ad_output import UNKNOWN, dataset_kwargs, h5ad_image
    from .writers import output_kind, write_matrix as write_count_matrix

    path = Path(output)
    kind = output_kind(path)
    contents = m.contents
    if contents is not None and (contents.object, kind) in (("anndata", "h5ad"), ("10x-h5", "10x-h5")):
        kwargs = dataset_kwargs(compression, contents.raw.get("h5ad_compression", UNKNOWN))
        with atomic_path(path, force=force) as tmp:
            if kind == "h5ad":
                image = h5ad_image(to_anndata(m, dtype=dtype), kwargs)
                with open(tmp, "wb") as fh:
                    fh.write(image)
            else:
                write_10x(m, contents, tmp)
        return kind
    dataset_kwargs(compression)  # a bad value fails before any work
    return write_count_matrix(path, m.to_count_matrix(), force=force, compression=compression, dtype=dtype)


# -------------------------------------------------------------------------------- what it holds

def describe_contents(m) -> str:
    """The parts of a file besides the matrix `sinr info` describes: every matrix, every stored
    element with its size, and what was dropped. Empty for a file of one bare matrix."""
    names = m.matrix_names
    contents = m.contents
    if contents is None and len(names) == 1:
        return ""
    what = {"anndata": "a whole AnnData", "10x-h5": "a whole 10x HDF5 file"}.get(getattr(contents, "object", ""),
                                                                                   "several matrices")
    lines = [f"holds:     {what}", "",
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
        if contents.dropped:
            lines += ["", f"dropped:   {', '.join(contents.dropped)}"]
    return "\n".join(lines)


def verify_file(m) -> dict:
    """SinrMatrix.verify for every matrix of the file, and every file-level section's checksum,
    framing and size, each AnnData element read back by anndata and each other HDF5 image opened
    (spec §14 rule S5): what `sinr verify` checks. Raises CorruptFileError."""
    report = {"chunks": 0, "nnz": 0, "bytes": m.file_size, "matrices": 0, "sections": 0}
    for name in m.matrix_names:
        checked = m.matrix(name).verify()
        report["chunks"] += checked["chunks"]
        report["nnz"] += checked["nnz"]
        report["matrices"] += 1
    contents = m.contents
    for part in contents.elements if contents is not None else []:
        if contents.object == "anndata":
            contents.read(part)
        else:
            with contents.hdf5(part):
                pass
        report["sections"] += 1
    return report


# ---------------------------------------------------------------------------------------- hints

def counts_hint(source, layer: str | None, error: SinrError) -> SinrError:
    """The error of a single-matrix encoding whose X is not counts (or is missing), naming the
    layer or raw matrix that holds counts when there is one; otherwise `error` itself."""
    text = str(error)
    missing = "has no X matrix" in text
    if layer is not None or not isinstance(error, InvalidInputError) or "holds integer counts" in text or not (
            missing or any(w in text for w in ("non-integer", "negative", "NaN", "not counts", "above"))):
        return error
    try:
        with _parts_of(source) as parts:
            if parts is None:
                return error
            candidates = [f"layers/{k}" for k in parts.keys("layers")] + (["raw/X"] if parts.has("raw") else [])
            candidates.sort(key=lambda p: p not in ("layers/counts", "layers/raw_counts", "raw/X"))
            found = next((p for p in candidates if parts.format(p) is not None), None)
            what = parts.what
    except (SinrError, OSError, KeyError, ValueError):
        return error
    if found is None:
        return error
    name = "raw" if found == "raw/X" else found[len("layers/"):]
    place = "its .raw" if name == "raw" else f"its layer {name!r}"
    problem = f"{what}: has no X matrix" if missing else f"{text}; X is not counts (normalised data?)"
    return InvalidInputError(f"{problem}, but {place} holds integer counts: encode that with --layer {name} "
                             f"(layer={name!r}), or encode the whole AnnData, X as it is (sinr encode without "
                             "--matrix-only; scinrcodec.encode_whole)")


@contextlib.contextmanager
def _parts_of(source):
    if type(source).__name__ == "AnnData":
        yield MemoryParts(source, "AnnData")
        return
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        yield None
        return
    import h5py

    try:
        f = h5py.File(source, "r")
    except OSError:
        yield None
        return
    with f:
        if text_attr(f, "encoding-type") != "anndata":
            yield None
            return
        yield _FileParts(Path(source), f)


# ---------------------------------------------------------------------------------- to AnnData

def _names(m):
    """A .sinr matrix's names, without its counts."""
    from .matrix import CountMatrix

    return CountMatrix(sp.csr_matrix(m.shape), m.gene_ids, m.gene_names, m.cell_names, m.feature_types)


def names_obs(m):
    """obs of a matrix stored without an AnnData: its cell names."""
    return obs_frame(_names(m))


def name_frames(m, contents: StoredContents | None):
    """obs and var of a matrix stored without an AnnData: its names, as scanpy expects them (and
    a 10x file's per-feature fields)."""
    names = _names(m)
    var = var_frame(names)
    for key, values in tenx_var(m, contents).items():
        if key not in var.columns:
            var[key] = values
    return obs_frame(names), var


def to_anndata(m, *, lazy: bool = False, feature_type: str | None = None, dtype=None):
    """What SinrMatrix.to_anndata returns (see there); dtype as reader.dtypes says."""
    import anndata

    from ..reader.dtypes import anndata_dtype, check_exact

    contents = m.contents
    if lazy:
        from ..reader.lazy import lazy_anndata

        adata = lazy_anndata(m, contents, dtype=dtype)
    elif contents is not None and contents.object == "anndata":
        adata = restore_anndata(m, contents)
        if dtype is not None and adata.X is not None:
            x, wanted = adata.X, anndata_dtype(dtype)
            adata.X = x.astype(wanted)
            check_exact(adata.X.data if sp.issparse(adata.X) else adata.X, wanted, m.source)
    else:
        wanted = anndata_dtype(dtype)
        obs, var = name_frames(m, contents)
        x = m.to_scipy("csc", dtype=wanted).T
        check_exact(x.data, wanted, m.source)
        with quiet_anndata():
            adata = anndata.AnnData(X=x, obs=obs, var=var)
    return adata if feature_type is None else one_modality(adata, feature_type, m.source)


def one_modality(adata, feature_type: str, what: str):
    """The features of one type ('Gene Expression', 'Antibody Capture', ...) of a multi-modal file."""
    from ..errors import SinrKeyError

    if "feature_types" not in adata.var.columns:
        raise SinrKeyError(f"{what}: holds no feature types to choose {feature_type!r} from")
    keep = (adata.var["feature_types"].astype(str) == feature_type).to_numpy()
    if not keep.any():
        types = sorted(set(adata.var["feature_types"].astype(str)))
        raise SinrKeyError(f"{what}: holds no features of type {feature_type!r} (types: {', '.join(types)})")
    with quiet_anndata():
        return adata[:, keep].copy()
