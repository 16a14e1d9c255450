"""A whole 10x HDF5 file in a .sinr file: the matrix, and an HDF5 image of everything else in which
the matrix arrays and the names the .sinr matrix already holds stay as empty skeletons with their
types, filters and attributes; decoding fills them back in, so the file comes back as Cell Ranger
wrote it (a Cell Ranger 2 file of several genomes in Cell Ranger 3's layout: plan_10x)."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InvalidInputError
from ..io.hdf5 import copy_skeleton, fill_skeleton, h5_errors, members, open_h5, write_like
from ..io.dtypes import READ_DTYPE, widened
from ..io.tenx_h5 import TENX_VALUES, GenomeStack, read_10x_h5
from ..progress import Progress, Shared
from ..reader.contents import TENX_SECTION, StoredContents, tenx_fill_paths
from .images import hdf5_image
from .plan import Plan, PlannedMatrix, add_image


def _strings(ds) -> list[str] | None:
    """A 1-D dataset of text as str, or None when it is not one."""
    import h5py

    if ds.ndim != 1 or not (ds.dtype.kind == "S" or h5py.check_string_dtype(ds.dtype)):
        return None
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in ds[:].tolist()]
    except UnicodeDecodeError:
        return None


def plan_10x(path: Path) -> Plan:
    """The matrix, and an image of everything else (see the module docstring); of a Cell Ranger 2
    file of several genomes, read as one matrix (io.tenx_h5.GenomeStack), the image of the file
    Cell Ranger 3 writes for it, which decoding gives back."""
    import h5py

    source = read_10x_h5(path)
    source.require_canonical()  # its fills give the arrays its matrix gives: the file's, where canonical
    with h5_errors(str(path)), open_h5(path) as original, _laid_out(original, source) as f:
        group = "matrix" if "matrix" in f else next(k for k in f if isinstance(f[k], h5py.Group))
        paths = tenx_fill_paths(group)
        fills = {paths[fill]: fill for fill in ("data", "indices", "indptr")}
        names = {"cell_names": source.cell_names(0, source.shape[1]), "gene_ids": source.gene_ids,
                 "gene_names": source.gene_names, "feature_types": source.feature_types}
        for fill, values in names.items():
            at = paths.get(fill)
            if at is not None and values is not None and isinstance(f.get(at), h5py.Dataset) \
                    and _strings(f[at]) == values:
                fills[at] = fill
        if not all(isinstance(f.get(p), h5py.Dataset) and f[p].ndim == 1 for p in fills):
            raise InvalidInputError(f"{path}: {group}/data, indices and indptr are not 1-D datasets")
        resizable = {p: f[p].chunks is not None and f[p].maxshape[0] is None for p in fills}
        raw = hdf5_image(lambda out: copy_skeleton(f, out, set(fills)))
    contents = {"object": "10x-h5", "group": group, "elements": [],
                "matrices": [{"element": group, "matrix": "X", "dtype": "", "format": ""}],
                "filled": [[p, fill, resizable[p]] for p, fill in fills.items()]}
    plan = Plan(contents, [PlannedMatrix(group, lambda: source)])
    add_image(plan, "h5", TENX_SECTION, raw)
    return plan


@contextlib.contextmanager
def _laid_out(original, source):
    """The open 10x file to plan from: `original`, or the Cell Ranger 3 layout of its genomes."""
    import h5py

    if not isinstance(source, GenomeStack):
        yield original
        return
    with h5py.File(io.BytesIO(hdf5_image(lambda out: source.fill_layout(out, original))), "r") as f:
        yield f


def cut_10x_image(m, contents: StoredContents, cells: np.ndarray, genes: np.ndarray) -> bytes | None:
    """The image of a 10x file's subset, `cells` and `genes` (indices, in output order): its shape
    anew; its barcodes and each per-feature dataset (features/*, a Cell Ranger 2 file's genes and
    gene_names) cut where the image holds them; every other dataset and attribute kept (root
    attributes, _all_tag_keys). None where the image holds another dataset of a cell or a gene an
    item (a CellBender file's per-droplet arrays) or another feature field (Cell Ranger's
    features/target_sets, indices of features), whose cut is not known."""
    import h5py

    group = contents.raw["group"]
    skeletons = {p for p, _, _ in contents.raw["filled"]}
    n_genes, n_cells = m.shape
    by_gene = {f"{group}/genes", f"{group}/gene_names"}

    def cut(src, dst) -> bool:
        for key, obj in members(src, dst):
            path = obj.name.lstrip("/")
            if isinstance(obj, h5py.Group):
                if not cut(obj, dst.create_group(key)):
                    return False
                continue
            parent, _, name = path.rpartition("/")
            per_gene = parent == f"{group}/features" or path in by_gene
            if path in skeletons or name == "_all_tag_keys":  # empty until decoded; the fields' names
                take = None
            elif path == f"{group}/shape" and obj.shape == (2,):
                take = np.array([genes.size, cells.size])
            elif obj.shape == (n_genes,) and per_gene:
                take = obj[...][genes]
            elif obj.shape == (n_cells,) and path == f"{group}/barcodes":
                take = obj[...][cells]
            elif obj.ndim >= 1 and obj.shape[0] in (n_genes, n_cells) or path.startswith(f"{group}/features/"):
                return False  # its cut unknown (features/target_sets: indices of features, to be remapped)
            else:
                take = None
            if take is None:
                src.copy(obj, dst, name=key)
            else:
                write_like(obj, dst, key, take, obj.maxshape[0] is None)
        return True

    with contents.hdf5("h5") as f:
        check_skeletons(m, contents, f)
        done = []
        image = hdf5_image(lambda out: done.append(cut(f, out)))
    return image if done[0] else None


def tenx_var(m, contents: StoredContents | None) -> dict[str, list]:
    """Per-feature fields of a 10x file besides id, name and type (genome, pattern, read, ...),
    as scanpy.read_10x_h5 puts them in var."""
    if contents is None or contents.object != "10x-h5":
        return {}
    import h5py

    columns = {}
    with contents.hdf5("h5") as f:
        check_skeletons(m, contents, f)  # S5 as decoding checks it: no field read from a contradictory image
        features = f.get(f"{contents.raw['group']}/features")
        for key in features if isinstance(features, h5py.Group) else []:
            ds = features[key]
            if key in ("id", "name", "feature_type", "_all_tag_keys") or not isinstance(ds, h5py.Dataset) \
                    or ds.shape != (m.shape[0],):
                continue
            columns[key] = ds[:].astype(bool).tolist() if ds.dtype.kind == "b" else _strings(ds)
    return {k: v for k, v in columns.items() if v is not None}


def check_skeletons(m, contents: StoredContents, image) -> None:
    """Each dataset the contents fill is an empty 1-D dataset of the open 10x image, and no names
    dataset of the matrix's cells or genes is empty unfilled, to come back empty (spec §14.5, S5)."""
    import h5py

    for path, _, resizable in contents.raw["filled"]:
        if not isinstance(image.get(path), h5py.Dataset) or image[path].shape != (0,):
            raise CorruptFileError(f"{m.source}: the 10x image has no empty dataset {path!r} to fill")
        if resizable and image[path].chunks is None:  # an unlimited length needs chunks
            raise CorruptFileError(f"{m.source}: the contents make the 10x image's contiguous {path!r} resizable")
    filled = {path for path, _, _ in contents.raw["filled"]}
    n_genes, n_cells = m.shape
    for fill, path in tenx_fill_paths(contents.raw["group"]).items():  # unfilled: only names (S3)
        n = n_cells if fill == "cell_names" else n_genes
        if path not in filled and n and isinstance(image.get(path), h5py.Dataset) and image[path].shape == (0,):
            raise CorruptFileError(f"{m.source}: the 10x image leaves {path!r} empty for {n:,} "
                                   f"{'cells' if fill == 'cell_names' else 'genes'}, and the contents do not fill it")


def checked_fills(m, contents: StoredContents, skeleton, numbers: dict[str, tuple[int, int]]
                  ) -> tuple[dict, dict[str, np.dtype]]:
    """The names each fill of the open 10x image holds, and the types its fills are written in, the
    types of its skeletons (checked by check_skeletons) checked against `numbers` (data, indices and
    indptr: each one's least and largest value). Each type holds its values exactly, as the file they
    came from did (spec §14.5: the result has every dataset with equal values): a skeleton that cannot
    (an int8 indptr, barcodes of 4 bytes) makes the file self-contradictory, never a file of clamped or
    cut values; a file coded within --max-error writes its data in the wide type, whatever its values
    (io.dtypes.widened: it may decode one past uint8's 255), as its AnnData's comes back."""
    import h5py

    fills = {p: fill for p, fill, _ in contents.raw["filled"]}
    names = {}
    for fill in set(fills.values()) - set(numbers):  # the names: SinrMatrix attributes
        names[fill] = getattr(m, fill)
        if names[fill] is None:
            raise CorruptFileError(f"{m.source}: the 10x file needs the matrix's {fill.replace('_', ' ')}, "
                                   "which it does not hold")
    types = {}
    for path, fill in fills.items():
        dtype = skeleton[path].dtype
        if fill in numbers:
            if fill == "data" and m.mode != "lossless" and dtype.kind in "biuf":
                dtype = types[fill] = widened(dtype)
            fits = dtype.kind in "biuf" and _holds(dtype, *numbers[fill])
        else:
            text = h5py.check_string_dtype(dtype)
            fits = text is not None and (text.length is None or max((len(v.encode()) for v in names[fill]),
                                                                    default=0) <= text.length)
        if not fits:
            raise CorruptFileError(f"{m.source}: the 10x image's {path!r} ({dtype}) cannot hold the matrix's "
                                   f"{fill.replace('_', ' ')} (file is corrupt)")
    return names, types


def _holds(dtype: np.dtype, low: int, high: int) -> bool:
    """Whether every integer from low to high is exact in a numeric type (bool: 0 and 1)."""
    if dtype.kind == "b":
        return 0 <= low and high <= 1
    if dtype.kind == "f":
        exact = 2 ** (np.finfo(dtype).nmant + 1)
        return -exact <= low and high <= exact
    info = np.iinfo(dtype)
    return info.min <= low and high <= info.max


def check_10x_image(m, contents: StoredContents, skeleton, checked: dict) -> None:
    """What verify checks of a 10x image, from what MatrixReader.verify found (`checked`: the matrix's
    nonzeros and its largest value and gene index), without decoding the matrix again: its skeletons
    and their types (checked_fills)."""
    nnz = checked["nnz"]
    check_skeletons(m, contents, skeleton)
    checked_fills(m, contents, skeleton, {"data": (min(nnz, 1), checked["max_value"]),
                                          "indices": (0, checked["max_gene"]), "indptr": (0, nnz)})


def write_10x(m, contents: StoredContents, path: Path, progress: Progress) -> None:
    """The 10x file a .sinr file was encoded from, with every dataset and attribute it had: the
    matrix decoded, then written (its data and indices, half a nonzero each), passes of `progress`."""
    import h5py

    fills = {p: (fill, resizable) for p, fill, resizable in contents.raw["filled"]}
    image = io.BytesIO()
    with contents.hdf5("h5") as skeleton, h5py.File(image, "w") as out:
        check_skeletons(m, contents, skeleton)
        data = next(p for p, (fill, _) in fills.items() if fill == "data")  # one (reader.contents checks)
        # decoded in Cell Ranger's type where the file has it (6e7 nonzeros: 240 MB less than int64)
        csc = m.to_scipy("csc", dtype=TENX_VALUES if skeleton[data].dtype == TENX_VALUES else READ_DTYPE,
                         progress=progress)
        arrays = {"data": csc.data, "indices": csc.indices, "indptr": csc.indptr}
        names, types = checked_fills(m, contents, skeleton, {k: (int(a.min()), int(a.max())) if a.size else (0, 0)
                                                             for k, a in arrays.items()})
        progress.begin("writing", csc.nnz)
        counted = Shared(progress, 2)
        fill_skeleton(skeleton, out, fills, {**arrays, **names}, {"data": counted, "indices": counted}, types)
    with open(path, "wb") as fh:
        fh.write(image.getbuffer())
