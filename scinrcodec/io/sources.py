"""Matrix sources: what the encoder reads, one block of consecutive cells at a time.

A source knows its shape and gene names up front and yields validated blocks of cells (CSC:
for each cell its gene indices ascending and unique, values positive integers below 2**31), so
an encoder holds one block at a time whatever the input's size. The encoder makes two passes:
gene statistics first, then the chunks. A RandomAccessSource can also read any range of cells on
its own, and describe itself by a picklable spec() that another process opens again with
readers.open_source_spec (for parallel encoders).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..limits import MAX_COUNT, MAX_DIMENSION, MAX_NAME_BYTES, check_allocation


@dataclass
class CellBlock:
    """Cells start .. start + n_cells - 1 as CSC arrays (genes x cells), validated. The arrays may
    share memory with the source: read them, do not write them."""

    start: int
    indptr: np.ndarray  # int64 [n_cells + 1], from 0
    genes: np.ndarray  # int32, original gene index of each nonzero (below MAX_DIMENSION)
    values: np.ndarray  # int32 > 0 (at most MAX_COUNT)

    @property
    def n_cells(self) -> int:
        """Cells in the block."""
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        """Nonzeros in the block."""
        return int(self.values.size)


@dataclass(frozen=True)
class SourceSpec:
    """What another process needs to open the same source: a format and its arguments."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)


# A SourceSpec argument: the source opened again refuses blocks that are not canonical CSC (a whole 10x
# file's: require_canonical), as the one it describes does.
CANONICAL = "canonical"


def file_version(path) -> tuple[int, int] | None:
    """A file's size and modification time (kept across shared storage), or None when it is gone."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def path_spec(path, **args) -> SourceSpec:
    """The spec of a source read from a file: its absolute path (a worker may run in another folder;
    joined to the working folder as given, as '..' after a link must not be cut as text) and the
    version read here (file_version; readers.read_matrix checks it did not change during the read),
    which readers.open_source_spec checks, so that a worker never encodes another file of that name
    or a version written since."""
    return SourceSpec("path", dict(path=os.path.join(os.getcwd(), os.fspath(path)), version=file_version(path),
                                   **args))


def var_field(var, column: str, what: str) -> tuple[list[str] | None, str | None]:
    """A per-gene field from an AnnData var column, as text: (values, None); (None, None) without
    such a column; (None, what it lacks) where some genes have no value (NaN, None, pd.NA): a field
    is all given or none, never the text 'nan'."""
    import pandas as pd

    if column not in var.columns:
        return None, None
    missing = np.asarray(pd.isna(var[column]), dtype=bool)
    if missing.any():
        return None, lacking(what, column, int(missing.sum()), str(var.index[int(missing.argmax())]))
    return [str(v) for v in var[column]], None


def lacking(what: str, column: str, count: int, first: str) -> str:
    """What a var column lacks, as a source records it in `incomplete`."""
    return f"{what}: var[{column!r}] has no value for {count:,} genes (first {first!r})"


def check_complete_names(source: "MatrixSource") -> None:
    """Raise InvalidInputError when a source to encode as a matrix alone lacks some genes' ids or
    feature types (a whole-file encode keeps var as it is, and such a field then stays out of the
    matrix's names)."""
    if source.incomplete:
        raise InvalidInputError(f"{source.incomplete[0]}: a matrix's gene ids and feature types are given for "
                                "every gene or for none; fill the column or drop it (encoding the whole AnnData "
                                "keeps var as it is)")


class MatrixSource:
    """A genes x cells count matrix read block by block (see the module docstring)."""

    shape: tuple[int, int]
    gene_ids: list[str] | None = None
    gene_names: list[str] | None = None
    feature_types: list[str] | None = None
    description: str = "input"
    paths: tuple[str, ...] = ()  # the files it reads: an output must not replace one of them

    nnz: int | None = None  # stored entries, when known before reading (a progress hint)
    # per-gene fields left out because some genes lack a value (an AnnData var column with NaN):
    # what each lacked, for a matrix alone to refuse (a whole file stores var as it is)
    incomplete: tuple[str, ...] = ()

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """Names of cells start..stop-1, None when the source has none."""
        return None

    @property
    def has_cell_names(self) -> bool:
        """Whether the source names its cells."""
        return self.cell_names(0, 0) is not None

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """The cells in order, `cells_per_block` at a time (the last block may be smaller)."""
        raise NotImplementedError

    def matrix(self) -> sp.csc_matrix:
        """The whole matrix as validated scipy CSC (genes x cells, int32 indices and values, as
        blocks hold them): for tests and small inputs."""
        indptr, genes, values, offset = [np.zeros(1, np.int64)], [], [], 0
        for block in self.blocks(1 << 16):
            indptr.append(block.indptr[1:] + offset)
            genes.append(block.genes)
            values.append(block.values)
            offset += block.nnz
        empty = np.zeros(0, np.int32)
        return sp.csc_matrix((np.concatenate(values or [empty]), np.concatenate(genes or [empty]),
                              np.concatenate(indptr)), shape=self.shape)


class RandomAccessSource(MatrixSource):
    """A source that reads any range of cells directly."""

    def block(self, start: int, stop: int) -> CellBlock:
        """Cells start..stop-1, read directly."""
        raise NotImplementedError

    def spec(self) -> SourceSpec:
        """How another process opens this source again (readers.open_source_spec)."""
        raise NotImplementedError

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """Every cell in blocks, one block() call each."""
        for start in range(0, self.shape[1], cells_per_block):
            yield self.block(start, min(start + cells_per_block, self.shape[1]))

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.shape[1]:
            raise InvalidInputError(f"{self.description}: cells {start:,}..{stop:,} are outside 0..{self.shape[1]:,}")


def check_names(names, n: int, what: str) -> list[str] | None:
    """Names as str, one per entry, each storable: no line break or NUL, at most MAX_NAME_BYTES of UTF-8.
    All names are checked at once (joined, encoded once: 100,000 names one by one took 40 ms of a
    6e6-nonzero encode); only where that finds a fault are they checked one by one, for the message."""
    if names is None:
        return None
    names = list(map(str, names))
    if len(names) != n:
        raise InvalidInputError(f"{what}: {len(names):,} names for {n:,} entries")
    text = "\n".join(names)
    try:
        text.encode("utf-8")
        at_fault = False
    except UnicodeEncodeError:
        at_fault = True
    if at_fault or "\r" in text or "\0" in text or text.count("\n") != max(len(names) - 1, 0) or \
            4 * max(map(len, names), default=0) > MAX_NAME_BYTES:  # a character takes at most 4 bytes
        _check_each_name(names, what)
    return names


def _check_each_name(names: list[str], what: str) -> None:
    """check_names one name at a time: the first name at fault raises its error."""
    for name in names:
        if "\n" in name or "\r" in name:
            raise InvalidInputError(f"{what}: the name {name[:40]!r} contains a line break, which .sinr names "
                                    "cannot hold")
        if "\0" in name:  # .sinr could; HDF5's strings cannot, so such a file could not be decoded to .h5ad or .h5
            raise InvalidInputError(f"{what}: the name {name[:40]!r} contains a NUL character, which the "
                                    ".h5ad and .h5 a .sinr file decodes to cannot hold")
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"{what}: the name {name[:40]!r} is not valid Unicode text") from exc
        if size > MAX_NAME_BYTES:
            raise InvalidInputError(f"{what}: a name of {size:,} bytes exceeds the limit of {MAX_NAME_BYTES:,}")


def decode_names(raw, what: str) -> list[str]:
    """Names stored as bytes (HDF5 strings, lines of a file) as str, checked as check_names does,
    in one decode: joined by newlines, a name holding a newline or invalid UTF-8 shows at once."""
    items = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    if not items:
        return []
    if not all(isinstance(v, bytes) for v in items):
        raise InvalidInputError(f"{what}: names are not stored as text")
    longest = max(map(len, items))
    if longest > MAX_NAME_BYTES:
        raise InvalidInputError(f"{what}: a name of {longest:,} bytes exceeds the limit of {MAX_NAME_BYTES:,}")
    blob = b"\n".join(items)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = blob.count(b"\n", 0, exc.start)
        raise InvalidInputError(f"{what}: name {bad:,} ({items[bad][:40]!r}) is not valid UTF-8 text") from exc
    names = text.split("\n")
    if len(names) != len(items) or "\r" in text:
        raise InvalidInputError(f"{what}: a name contains a line break, which .sinr names cannot hold")
    if "\0" in text:
        _check_each_name(names, what)
    return names


def one_line(exc: BaseException) -> str:
    """A foreign exception's message on one line, at most 300 characters: how the readers quote
    what h5py, zipfile or gzip said inside their own InvalidInputError."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_shape(shape, what: str) -> tuple[int, int]:
    """(genes, cells) as ints, each in 0..MAX_DIMENSION; anything else (a float, a string) refused."""
    values = list(shape)
    if len(values) != 2 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in values):
        raise InvalidInputError(f"{what}: the shape {values[:3]!r} is not two whole numbers")
    n_genes, n_cells = (int(x) for x in values)
    for n, axis in ((n_genes, "genes"), (n_cells, "cells")):
        if not 0 <= n <= MAX_DIMENSION:
            raise InvalidInputError(f"{what}: {n:,} {axis} is outside 0..{MAX_DIMENSION:,}")
    return n_genes, n_cells


def _steps_within_cells(genes: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Gene index differences of consecutive entries, 1 where a new cell starts: all positive when
    every cell's genes ascend without repeats."""
    steps = np.diff(genes)
    cuts = indptr[1:-1]
    steps[cuts[(cuts > 0) & (cuts < genes.size)] - 1] = 1
    return steps


def exceeds_max_count(values: np.ndarray) -> bool:
    """Whether a value is above MAX_COUNT, compared exactly (as a Python float): numpy compares
    float32 in float32, where MAX_COUNT rounds up to 2**31, so a float32 count of 2**31 would pass
    (and wrap in int32)."""
    return bool(values.size) and float(values.max()) > MAX_COUNT


def checked_pointers(ptr, nnz: int, n_genes: int, what: str) -> np.ndarray:
    """A block's index pointers read from a file, as int64, checked before the entries they point to
    are read: within the `nnz` stored values, never decreasing, no cell holding more entries than
    there are genes (so that a block reads at most its cells x the genes)."""
    ptr = np.asarray(ptr)
    if ptr.dtype == np.uint64 and ptr.size and ptr.max() > nnz:
        raise InvalidInputError(f"{what}: index pointers run past the {nnz:,} stored values")
    ptr = ptr.astype(np.int64)
    steps = np.diff(ptr)
    if ptr[0] < 0 or ptr[-1] > nnz or np.any(steps < 0):
        raise InvalidInputError(f"{what}: index pointers decrease or run past the {nnz:,} stored values")
    if steps.size and steps.max() > n_genes:
        raise InvalidInputError(f"{what}: a cell holds {int(steps.max()):,} entries for {n_genes:,} genes")
    return ptr


def validated_block(start: int, indptr, genes, values, n_genes: int, what: str, *,
                    canonical: bool = False) -> CellBlock:
    """Check one CSC block of cells fully and return it in canonical form (zeros dropped, genes
    ascending within each cell). Refuses non-integers, negatives, values above MAX_COUNT, indices
    outside the shape, decreasing index pointers and duplicate coordinates. Genes and values come
    back as int32, what every valid index and count fits (MAX_DIMENSION, MAX_COUNT): int32 arrays,
    what 10x and AnnData files hold, are then slices of the source rather than copies (the encoder
    reads each block twice, and fresh copies fault their pages in each time). Its temporaries are
    about 4 bytes a nonzero beyond the result for cells already in order without stored zeros (16
    more where cells must be sorted, 9 where zeros are dropped), as a block may hold millions. With
    `canonical`, a block that would need either is refused: a whole 10x file comes back with the
    arrays its matrix gives (spec §14.5), which are these only where the file's were canonical."""
    indptr = np.asarray(indptr)
    genes = np.asarray(genes)
    values = np.asarray(values)
    n_cells = indptr.size - 1
    cells = f"{what} (cells {start:,}..{start + n_cells - 1:,})"
    if indptr.ndim != 1 or indptr.size < 1 or indptr.dtype.kind not in "iu":
        raise InvalidInputError(f"{cells}: index pointers are not a 1-D integer array")
    if genes.ndim != 1 or values.ndim != 1 or (genes.dtype.kind not in "iu" and genes.size):
        raise InvalidInputError(f"{cells}: indices are not a 1-D integer array")
    if indptr.dtype == np.uint64 and indptr.size and indptr.max() > np.iinfo(np.int64).max:
        raise InvalidInputError(f"{cells}: index pointers run past the data")
    indptr = indptr.astype(np.int64)
    if indptr[0] < 0 or np.any(np.diff(indptr) < 0) or indptr[-1] > min(genes.size, values.size):
        raise InvalidInputError(f"{cells}: index pointers decrease or run past the data")
    lo, hi = int(indptr[0]), int(indptr[-1])
    genes, values = genes[lo:hi], values[lo:hi]
    indptr = indptr - lo
    if values.dtype.kind not in "biuf":
        raise InvalidInputError(f"{cells}: values of type {values.dtype} are not counts")
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise InvalidInputError(f"{cells}: contains NaN or infinite values")
        if np.any(values != np.rint(values)):
            raise InvalidInputError(f"{cells}: contains non-integer values (counts must be whole numbers)")
    least = values.min() if values.size else 1  # one pass each: a block holds millions
    if least < 0:
        raise InvalidInputError(f"{cells}: contains negative values (counts must be >= 0)")
    if exceeds_max_count(values):
        raise InvalidInputError(f"{cells}: contains values above {MAX_COUNT:,}")
    if genes.size and (genes.min() < 0 or genes.max() >= n_genes):
        raise InvalidInputError(f"{cells}: a gene index lies outside 0..{n_genes - 1:,}")
    genes = genes.astype(np.int32, copy=False)  # in range: checked above
    values = values.astype(np.int32, copy=False)
    steps = _steps_within_cells(genes, indptr)  # genes lie in 0..n_genes - 1: no int32 step overflows
    if canonical and (steps.size and steps.min() < 0 or least == 0):
        raise InvalidInputError(f"{cells}: {'holds stored zeros' if least == 0 else 'holds genes out of order'}, "
                                "so that its whole-file copy would not come back as it is; encode its matrix "
                                "alone (--matrix-only), whose values come back exactly")
    if steps.size and steps.min() < 0:  # unsorted within some cell: sort by (cell, gene)
        order = np.lexsort((genes, np.repeat(np.arange(n_cells), np.diff(indptr))))
        genes, values = genes[order], values[order]
        steps = _steps_within_cells(genes, indptr)
    if steps.size and steps.min() == 0:
        raise InvalidInputError(f"{cells}: holds the same (gene, cell) coordinate twice")
    if least == 0:
        keep = values != 0
        cell_of = np.repeat(np.arange(n_cells), np.diff(indptr))
        genes, values = genes[keep], values[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cell_of[keep], minlength=n_cells))])
    return CellBlock(start, indptr, genes, values)


def sparse_values(data, what: str) -> np.ndarray:
    """Values scipy.sparse can hold: numbers (float16, which scipy refuses, widened to float32), in
    the machine's byte order (scipy refuses '>i8', which an .h5ad may store)."""
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what}: values of type {data.dtype} are not counts")
    return data.astype(np.float32 if data.dtype == np.float16 else data.dtype.newbyteorder("="), copy=False)


def checked_compressed(data, indices, indptr, *, shape: tuple[int, int], by_column: bool, what: str):
    """A scipy CSC (by_column) or CSR matrix from raw arrays, built only once its structure is valid:
    scipy would otherwise index out of bounds on hostile input."""
    data, indices, indptr = sparse_values(data, what), np.asarray(indices), np.asarray(indptr)
    major, minor = (shape[1], shape[0]) if by_column else shape
    if indptr.ndim != 1 or indptr.size != major + 1 or indptr.dtype.kind not in "iu":
        raise InvalidInputError(f"{what}: index pointers do not match the shape {shape[0]:,} x {shape[1]:,}")
    if indices.ndim != 1 or data.ndim != 1 or indices.size != data.size or \
            (indices.size and indices.dtype.kind not in "iu"):
        raise InvalidInputError(f"{what}: indices and values are not matching 1-D arrays")
    if indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0) or indptr[-1] != data.size:
        raise InvalidInputError(f"{what}: index pointers are not increasing from 0 to the number of values")
    if indices.size and (indices.min() < 0 or indices.max() >= minor):
        axis = "gene" if by_column else "cell"
        raise InvalidInputError(f"{what}: a {axis} index lies outside 0..{minor - 1:,} (the shape is "
                                f"{shape[0]:,} x {shape[1]:,})")
    cls = sp.csc_matrix if by_column else sp.csr_matrix  # scipy keeps int32 arrays as they are (no copy)
    return cls((data, indices, indptr), shape=shape, copy=False)


def checked_coordinates(data, rows, cols, *, shape: tuple[int, int], what: str) -> sp.csc_matrix:
    """A CSC matrix from (gene, cell, value) triples, refusing coordinates outside the shape and
    repeated coordinates (scipy would sum them)."""
    data, rows, cols = sparse_values(data, what), np.asarray(rows), np.asarray(cols)
    if not (data.ndim == rows.ndim == cols.ndim == 1 and data.size == rows.size == cols.size):
        raise InvalidInputError(f"{what}: coordinates and values are not matching 1-D arrays")
    if rows.size and (rows.dtype.kind not in "iu" or cols.dtype.kind not in "iu"):
        raise InvalidInputError(f"{what}: coordinates are not integers")
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0] or cols.min() < 0 or cols.max() >= shape[1]):
        raise InvalidInputError(f"{what}: a coordinate lies outside the shape {shape[0]:,} x {shape[1]:,}")
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    order = np.lexsort((rows, cols))
    keys = cols[order] * max(shape[0], 1) + rows[order]
    if keys.size > 1 and np.any(np.diff(keys) == 0):
        raise InvalidInputError(f"{what}: holds the same (gene, cell) coordinate twice (it would be summed)")
    check_allocation(8 * (shape[1] + 1), f"{what}: the column pointers of {shape[1]:,} cells")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=shape[1]))])
    return sp.csc_matrix((data[order], rows[order], indptr), shape=shape)


def checked_sparse(matrix, what: str):
    """Any scipy.sparse matrix as CSC, its structure checked before scipy converts it."""
    shape = check_shape(matrix.shape, what)
    if matrix.format in ("csc", "csr"):
        return checked_compressed(matrix.data, matrix.indices, matrix.indptr, shape=shape,
                                  by_column=matrix.format == "csc", what=what).tocsc()
    if matrix.format == "coo":
        return checked_coordinates(matrix.data, matrix.row, matrix.col, shape=shape, what=what)
    return checked_sparse(matrix.tocoo(), what)


class ScipySource(RandomAccessSource):
    """An in-memory genes x cells matrix (any scipy.sparse format or a dense array) with names.

    `spec`, when given, is how another process opens it again (the file it was loaded from);
    otherwise the spec carries the matrix itself."""

    def __init__(self, counts, gene_ids=None, gene_names=None, cell_names=None, feature_types=None,
                 *, description: str = "input", spec: SourceSpec | None = None, paths: tuple[str, ...] = ()) -> None:
        self.description = description
        self.paths = paths
        if not sp.issparse(counts):
            counts = np.asarray(counts)
            if counts.ndim != 2:
                raise InvalidInputError(f"{description}: expected a 2-D matrix, got {counts.ndim} dimensions")
            counts = sp.csc_matrix(sparse_values(counts, description))
        self.shape = check_shape(counts.shape, description)
        self._csc = checked_sparse(counts, description)
        self.nnz = int(self._csc.nnz)
        self.gene_ids = check_names(gene_ids, self.shape[0], f"{description} gene ids")
        self.gene_names = check_names(gene_names, self.shape[0], f"{description} gene names")
        self.feature_types = check_names(feature_types, self.shape[0], f"{description} feature types")
        self._cell_names = check_names(cell_names, self.shape[1], f"{description} cell names")
        self._spec = spec

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """Names of cells start..stop-1, or None without names."""
        return None if self._cell_names is None else self._cell_names[start:stop]

    def block(self, start: int, stop: int) -> CellBlock:
        """Cells start..stop-1 of the CSC matrix, checked."""
        self._check_range(start, stop)
        m = self._csc
        return validated_block(start, m.indptr[start: stop + 1], m.indices, m.data, self.shape[0], self.description)

    def spec(self) -> SourceSpec:
        """How to build this source again in another process: its file, else its arrays."""
        if self._spec is not None:
            return self._spec
        return SourceSpec("scipy", dict(counts=self._csc, gene_ids=self.gene_ids, gene_names=self.gene_names,
                                        cell_names=self._cell_names, feature_types=self.feature_types,
                                        description=self.description))
