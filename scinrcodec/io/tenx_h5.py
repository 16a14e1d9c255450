"""10x Genomics HDF5 (Cell Ranger v3 `matrix/` group, or v2's genome groups): read as cells as
slices of its CSC arrays, gene ids, names and feature types read when the source opens; a v2 file
of several genomes read as one matrix, laid out as Cell Ranger 3 lays out such data (GenomeStack);
written in the Cell Ranger v3 layout."""
from __future__ import annotations

import heapq
import io
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InvalidInputError
from ..progress import Progress, Shared
from .hdf5 import (HDF5_MAGIC, CompressedH5Source, H5Cells, checked_dataset, h5_errors, members, open_h5,
                   string_dataset, write_converted)
from .matrix import CountMatrix
from .sources import CANONICAL, CellBlock, SourceSpec, check_shape, path_spec


def is_hdf5(path: Path, head: bytes) -> bool:
    """Any HDF5 file: the format table asks the .h5ad entry first, so what is left is a 10x file."""
    return head.startswith(HDF5_MAGIC)


def read_10x_h5(path: Path) -> CompressedH5Source | GenomeStack:
    """Cell Ranger HDF5: the v3 `matrix/` group, or v2's genome groups (several: a GenomeStack)."""
    import h5py

    what = str(path)
    with h5_errors(what), open_h5(path) as f:
        if "matrix" in f:
            if not isinstance(f["matrix"], h5py.Group):  # a .loom file's /matrix is a dataset
                raise InvalidInputError(f"{path}: not a 10x HDF5 file (its 'matrix' is a dataset, not Cell Ranger's "
                                        "group; .loom files are not read)")
            return _group_source(f, path, "matrix", f["matrix"].get("features"), ("id", "name", "feature_type"))
        genomes = [k for k in f if isinstance(f[k], h5py.Group)]
        if not genomes:
            raise InvalidInputError(f"{path}: not a 10x HDF5 file (no 'matrix' group, and no genome group as "
                                    "Cell Ranger v2 writes)")
        if len(genomes) > 1:
            return GenomeStack(f, path, genomes)
        return _group_source(f, path, genomes[0], f[genomes[0]], ("genes", "gene_names", None))


def _group_source(f, path: Path, group: str, features, fields: tuple, *, stacked: bool = False) -> CompressedH5Source:
    """The matrix of one group: its declared shape checked, its gene ids, names and feature types
    (`fields`: where `features` keeps them, None where the layout has none) read; its barcodes
    read per block, unless it is `stacked`, a genome group of a GenomeStack (which reads them
    itself): its messages then name the group, since a file of several has no one matrix they
    could be about (its cells counted from the group's first)."""
    what = f"{path}: genome group {group!r}" if stacked else str(path)
    ids, names, types = fields
    g = f[group]
    shape = checked_dataset(g, "shape", what, "iu")
    if shape.shape != (2,):
        raise InvalidInputError(f"{what}: {shape.name} holds {shape.shape[0]:,} numbers, not 2")
    shape = check_shape(shape[:], what)
    gene_ids = string_dataset(features, ids, shape[0], what)
    gene_names = string_dataset(features, names, shape[0], what)
    feature_types = (string_dataset(features, types, shape[0], what)
                     if types is not None and types in features else None)
    cell_names = f"{group}/barcodes" if not stacked and "barcodes" in g else None
    return CompressedH5Source(f, path, group, shape, cell_names=cell_names, gene_ids=gene_ids,
                              gene_names=gene_names, feature_types=feature_types,
                              spec=path_spec(path), description=what)


class GenomeStack(H5Cells):
    """A Cell Ranger 2 file of several genomes (a barnyard experiment: hg19 and mm10), read as one
    matrix the way Cell Ranger 3 lays such data out: the genes of each genome group stacked in the
    file's group order, each gene's genome recorded (`genomes`, the 10x writer's features/genome),
    the cells the union of the groups' barcodes. Cell Ranger 2 wrote every group of a raw matrix
    with the same barcodes, but each group of a filtered one with the barcodes called cells for that
    genome (its GeneBCMatrices.filter_barcodes), so the lists differ there; scanpy.read_10x_h5
    refuses such a file without genome=. Here the union is built exactly: the barcodes in an order
    that keeps each group's own (a merge taking, of the groups' next barcodes that no group lists
    later, the smallest: where each group's list is sorted, as Cell Ranger 2 writes one GEM group's,
    the union is too; where the lists agree, the matrix is the groups stacked), a cell missing from
    a genome holding zeros for its genes. Groups that order their shared barcodes differently, or whose lists differ and repeat
    a barcode, have no such union and are refused. Gene ids are kept as written (Cell Ranger's
    multi-genome references prefix them, hg19_..., mm10_...); where two genomes share an id, the two
    genes stay apart by their genome and position, and a lookup by that id names both."""

    def __init__(self, f, path: Path, groups: list[str]) -> None:
        self.path, self.description, self.paths, self._spec = path, str(path), (str(path),), path_spec(path)
        self._parts = [_group_source(f, path, group, f[group], ("genes", "gene_names", None), stacked=True)
                       for group in groups]
        lists = [string_dataset(f[group], "barcodes", part.shape[1], part.description)
                 for group, part in zip(groups, self._parts)]
        names, self._placed = _barcode_union(lists, groups, self.description)
        self._offsets = np.cumsum([0] + [part.shape[0] for part in self._parts])
        self.shape = check_shape((int(self._offsets[-1]), len(names)), self.description)
        self.nnz = sum(part.nnz for part in self._parts)
        self.gene_ids = [i for part in self._parts for i in part.gene_ids]
        self.gene_names = [n for part in self._parts for n in part.gene_names]
        self.feature_types = None
        self.genomes = [group for group, part in zip(groups, self._parts) for _ in range(part.shape[0])]
        self._check_cell_names(f, names)

    def spec(self) -> SourceSpec:
        """How to open this source again in another process (read_10x_h5 stacks it again)."""
        return self._spec

    def require_canonical(self) -> None:
        """As CompressedH5Source.require_canonical, for every genome group."""
        for part in self._parts:
            part.require_canonical()
        self._spec = SourceSpec(self._spec.kind, {**self._spec.args, CANONICAL: True})

    def _reader(self, f) -> Callable[[int, int], CellBlock]:
        readers = [part._reader(f) for part in self._parts]
        return lambda start, stop: self._read(readers, start, stop)

    def _read(self, readers: list, start: int, stop: int) -> CellBlock:
        """Cells start..stop-1: each group's columns among them (a run of its own, since the union
        keeps each group's order), their entries placed after the earlier groups' in each cell."""
        n = stop - start
        pieces = []
        for read, placed, offset in zip(readers, self._placed, self._offsets):
            lo, hi = (int(x) for x in np.searchsorted(placed, [start, stop]))
            block = read(lo, hi)
            counts = np.zeros(n, np.int64)
            counts[placed[lo:hi] - start] = np.diff(block.indptr)
            pieces.append((block, placed[lo:hi] - start, counts, np.int32(offset)))
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(sum(counts for _, _, counts, _ in pieces), out=indptr[1:])
        genes, values = np.empty(int(indptr[-1]), np.int32), np.empty(int(indptr[-1]), np.int32)
        before = indptr[:-1].copy()  # where each cell's entries of the next group go
        for block, cells, counts, offset in pieces:
            sizes = np.diff(block.indptr)
            within = np.arange(block.nnz, dtype=np.int64) - np.repeat(block.indptr[:-1], sizes)
            at = np.repeat(before[cells], sizes) + within
            genes[at], values[at] = block.genes + offset, block.values
            before += counts
        return CellBlock(start, indptr, genes, values)

    def fill_layout(self, out, original) -> None:
        """Write into the open HDF5 file `out` what Cell Ranger 3 writes for these genomes, the matrix
        arrays empty (whole-file storage fills them): the names, each gene's genome, and of the open
        Cell Ranger 2 file `original` the root attributes (its version said anew: the layout is v3's)
        and what lies beside the genome groups (a dataset, a link), as it is."""
        import h5py

        for key, obj in members(original, out):
            if not isinstance(obj, h5py.Group):
                original.copy(obj, out, name=key)
        _fill_layout(out, self.shape, self.cell_names(0, self.shape[1]), self.gene_ids, self.gene_names,
                     ["Gene Expression"] * self.shape[0], self.genomes, _empty_arrays)


def _barcode_union(lists: list[list[str]], groups: list[str], what: str) -> tuple[list[str], list[np.ndarray]]:
    """The union of the groups' barcode lists in an order keeping each list's (see GenomeStack), and
    each group's cells' places in it, ascending."""
    if all(names == lists[0] for names in lists[1:]):
        return lists[0], [np.arange(len(lists[0]), dtype=np.int64)] * len(lists)
    for group, names in zip(groups, lists):
        if len(set(names)) != len(names):
            seen: set[str] = set()
            twice = next(name for name in names if name in seen or seen.add(name))
            raise InvalidInputError(f"{what}: genome group {group!r} lists barcode {twice!r} twice and its groups' "
                                    "barcode lists differ, so its cells cannot be matched across genomes")
    holders: dict[str, list[int]] = {}  # the groups listing each barcode
    waiting: dict[str, int] = {}  # of those, the groups in which a barcode before it is not yet placed
    for g, names in enumerate(lists):
        for i, name in enumerate(names):
            holders.setdefault(name, []).append(g)
            waiting[name] = waiting.get(name, 0) + (i > 0)
    ready = [name for name, n in waiting.items() if n == 0]  # next in every group listing them
    heapq.heapify(ready)
    at = [0] * len(lists)
    placed = [np.empty(len(names), np.int64) for names in lists]
    union: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        for h in holders[name]:
            placed[h][at[h]] = len(union)
            at[h] += 1
            if at[h] < len(lists[h]):
                following = lists[h][at[h]]
                waiting[following] -= 1
                if not waiting[following]:
                    heapq.heappush(ready, following)
        union.append(name)
    if len(union) < len(holders):  # each group's next barcode comes later in another group: they order two oppositely
        g = next(g for g, names in enumerate(lists) if at[g] < len(names))
        name = lists[g][at[g]]
        h = next(h for h in holders[name] if lists[h][at[h]] != name)
        raise InvalidInputError(f"{what}: its genome groups order their shared barcodes differently "
                                f"({groups[g]!r} lists {name!r} next, {groups[h]!r} lists {lists[h][at[h]]!r} "
                                "before it), so its cells have no one order")
    return union, placed


# ------------------------------------------------------------------------------------ writing

def _write_hdf5(path: Path, fill: Callable) -> None:
    """Build an HDF5 file in memory with `fill(h5py.File)`, then write its bytes to `path`."""
    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        fill(f)
    with open(path, "wb") as fh:
        fh.write(image.getbuffer())


def _strings(values: list[str]) -> np.ndarray:
    encoded = [v.encode("utf-8") for v in values]
    width = max((len(v) for v in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


TENX_VALUES = np.dtype(np.int32)  # the type of a 10x file's values, as Cell Ranger writes them
TENX_MATRIX_VERSION = 2  # the matrix HDF5 layout of Cell Ranger 3 and later, as its `version` attribute says


CHUNK_ITEMS = 80_000  # items of a matrix array's chunk, as Cell Ranger writes them
CHUNKED = dict(compression="gzip", compression_opts=4, shuffle=True)
MATRIX_ARRAYS = (("data", TENX_VALUES), ("indices", np.dtype(np.int64)), ("indptr", np.dtype(np.int64)))


def _fill_layout(f, shape: tuple[int, int], barcodes: list[str], ids: list[str], names: list[str], types: list[str],
                 genomes: list[str], arrays: Callable) -> None:
    """The Cell Ranger layout: the root attributes that say it is one (Cell Ranger's own loader
    refuses a file without filetype, and reads one without version as the layout of Cell Ranger 1
    and 2), the matrix group's arrays written by `arrays(group)`, its shape, barcodes and features."""
    f.attrs["filetype"] = "matrix"
    f.attrs["version"] = np.int64(TENX_MATRIX_VERSION)
    g = f.create_group("matrix")
    arrays(g)
    g.create_dataset("shape", data=np.array(shape, dtype=np.int32))
    g.create_dataset("barcodes", data=_strings(barcodes), **CHUNKED)
    feats = g.create_group("features")
    feats.create_dataset("id", data=_strings(ids), **CHUNKED)
    feats.create_dataset("name", data=_strings(names), **CHUNKED)
    feats.create_dataset("feature_type", data=_strings(types), **CHUNKED)
    feats.create_dataset("genome", data=_strings(genomes), **CHUNKED)
    feats.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


def _empty_arrays(g) -> None:
    """The matrix arrays as empty resizable datasets in Cell Ranger's types, chunks and filters."""
    for name, dtype in MATRIX_ARRAYS:
        g.create_dataset(name, shape=(0,), dtype=dtype, chunks=(CHUNK_ITEMS,), maxshape=(None,), **CHUNKED)


def _fill_10x(f, m: CountMatrix, progress: Progress | None) -> None:
    """The Cell Ranger layout (_fill_layout): CSC by cell, int32 data, int64 indices, gzip 4 +
    shuffle. The nonzeros are counted on `progress` as their data and indices are written, half a
    nonzero each."""
    csc = m.counts.tocsc()
    counted = Shared(progress, 2) if progress is not None else None

    def arrays(g) -> None:
        for (name, dtype), arr in zip(MATRIX_ARRAYS, (csc.data, csc.indices, csc.indptr)):
            made = g.create_dataset(name, shape=arr.shape, dtype=dtype, chunks=(min(CHUNK_ITEMS, max(arr.size, 1)),),
                                    maxshape=(None,), **CHUNKED)
            write_converted(made, arr, counted if name != "indptr" else None)

    _fill_layout(f, csc.shape, m.filled_cell_names(), m.filled_gene_ids(), m.filled_gene_names(),
                 m.filled_feature_types(), m.genomes or [""] * m.shape[0], arrays)


def write_10x_h5(path: Path, m: CountMatrix, progress: Progress | None = None) -> None:
    """Write as Cell Ranger does (see _fill_10x), the file built in memory first (io.writers says why)."""
    _write_hdf5(path, lambda f: _fill_10x(f, m, progress))
