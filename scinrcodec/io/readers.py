"""Reading the formats users have: 10x mtx, 10x HDF5, AnnData .h5ad, scipy .npz, in-memory objects.

Each reader returns a MatrixSource (see sources.py) that yields validated blocks of cells and,
where the format allows, holds about one block of the input at a time:

- 10x HDF5 (Cell Ranger v3 `matrix/` group, or v2 with one genome group) and .h5ad whose X (or
  layer, or raw.X) is CSR cells x genes, as scanpy writes it: a block is one slice of each of
  data/indices/indptr, read with h5py. Random access and spec().
- .h5ad with a dense X: a block reads its rows, a few at a time. Random access and spec().
- .h5ad with a CSC X (genes-major): a cell's entries are spread over the whole file, so X is
  loaded whole. Files written by anndata < 0.8 (no encoding attributes) are loaded whole by anndata.
- Matrix Market: a first pass reads every line (the native parser, chunk by chunk) to check it and
  to learn whether entries are sorted by column, as 10x writes them; sorted files are then streamed
  a chunk of lines at a time, others are loaded whole. The header's sizes are checked before anything
  is allocated.
- .npz (scipy.sparse.save_npz): loaded whole (a compressed zip cannot be sliced), once each array's
  declared size has been checked against the archive.

Gene names are read when the source opens; cell names are checked then and read per block (HDF5)
or kept packed (one bytes object and offsets; Matrix Market barcodes).
"""
from __future__ import annotations

import contextlib
import gzip
import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from .._native import mtx_parse_entries
from ..errors import InvalidInputError, SinrError
from ..limits import MAX_COUNT, MAX_NAME_BYTES
from .sources import (CellBlock, MatrixSource, RandomAccessSource, ScipySource, SourceSpec, check_names, check_shape,
                      checked_compressed, checked_coordinates, decode_names, validated_block)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
H5_CACHE_BYTES = 16 << 20  # HDF5 chunk cache: a slice re-read across chunk boundaries is not inflated twice
NAME_BATCH = 1 << 16  # cell names checked this many at a time
DENSE_READ_BYTES = 32 << 20  # rows of a dense X read at a time
MTX_CHUNK_BYTES = 1 << 22  # Matrix Market text parsed at a time
MTX_MAX_LINE = 1 << 16  # longest Matrix Market line accepted


def _one_line(exc: BaseException) -> str:
    """A foreign exception's message on one line, at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------------------------------ text


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_binary(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _read_bytes(path: Path) -> bytes:
    try:
        with _open_binary(path) as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(f"{path}: unreadable ({_one_line(exc)})") from exc


def _text_lines(path: Path) -> list[bytes]:
    """The lines of a (gzipped) text file, CRLF or LF, trailing empty lines dropped."""
    text = _read_bytes(path).replace(b"\r\n", b"\n").rstrip(b"\n")
    return text.split(b"\n") if text else []


class PackedNames:
    """Names kept as one UTF-8 bytes object and offsets (16 bytes a name besides the text): a
    million barcodes cost about 40 MB less than a list of str. Checked once, sliced per block."""

    def __init__(self, lines: list[bytes], what: str) -> None:
        longest = max(map(len, lines), default=0)
        if longest > MAX_NAME_BYTES:
            raise InvalidInputError(f"{what}: a name of {longest:,} bytes exceeds the limit of {MAX_NAME_BYTES:,}")
        self._text = b"\n".join(lines)
        try:
            self._text.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = self._text.count(b"\n", 0, exc.start)
            raise InvalidInputError(f"{what}: line {line + 1:,} is not valid UTF-8 text") from exc
        if b"\r" in self._text:
            raise InvalidInputError(f"{what}: a name contains a line break, which .sinr names cannot hold")
        ends = np.flatnonzero(np.frombuffer(self._text, np.uint8) == 10)
        self._starts = np.concatenate([[0], ends + 1]) if lines else np.zeros(0, np.int64)
        self._stops = np.concatenate([ends, [len(self._text)]]) if lines else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self._starts.size)

    def slice(self, start: int, stop: int) -> list[str]:
        """Names start..stop-1, decoded only now (a block's worth at a time)."""
        if stop <= start:
            return []
        return self._text[self._starts[start]: self._stops[stop - 1]].decode("utf-8").split("\n")


def _find(folder: Path, stems: Sequence[str]) -> Path | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


# ---------------------------------------------------------------------------------- Matrix Market

# Codes of the native parser (native/core/include/sinr/matrix_market.hpp; _native.MTX_CODES names them)
_OK, _SYNTAX, _FIELDS, _INDEX, _FRACTION, _NAN, _LARGE, _NEGATIVE = range(8)


_MTX_FIELDS = {"integer": "integer", "real": "real", "double": "real", "pattern": "pattern"}


class MtxSource(MatrixSource):
    """A Matrix Market file (genes x cells, 1-based coordinates), with 10x features.tsv /
    genes.tsv and barcodes.tsv beside it when present. See the module docstring for how it is read.

    A `pattern` file lists positions without values; it is refused unless pattern_as_ones, which
    reads every listed entry as the count 1."""

    def __init__(self, path: Path, *, pattern_as_ones: bool = False) -> None:
        folder = path if path.is_dir() else path.parent
        matrix_path = _find(folder, ["matrix.mtx"]) if path.is_dir() else path
        if matrix_path is None:
            raise InvalidInputError(f"{path}: no matrix.mtx or matrix.mtx.gz in this folder")
        self.path = matrix_path
        self.description = str(matrix_path)
        try:
            with _open_binary(matrix_path) as fh:
                self._read_header(fh, pattern_as_ones)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{matrix_path}: unreadable Matrix Market file ({_one_line(exc)})") from exc
        paths = [matrix_path]
        n_genes, n_cells = self.shape
        features = _find(folder, ["features.tsv", "genes.tsv"])
        if features is not None:
            rows = [line.split(b"\t") for line in _text_lines(features)]
            if len(rows) != n_genes:
                raise InvalidInputError(f"{features}: {len(rows):,} lines for the {n_genes:,} genes of {matrix_path}")
            self.gene_ids = decode_names([r[0] for r in rows], f"{features} gene ids")
            self.gene_names = decode_names([r[1] if len(r) > 1 else r[0] for r in rows], f"{features} gene names")
            if rows and all(len(r) > 2 for r in rows):
                self.feature_types = decode_names([r[2] for r in rows], f"{features} feature types")
            paths.append(features)
        self._barcodes = None
        barcodes = _find(folder, ["barcodes.tsv"])
        if barcodes is not None:
            lines = [line.split(b"\t", 1)[0] for line in _text_lines(barcodes)]
            if len(lines) != n_cells:
                raise InvalidInputError(f"{barcodes}: {len(lines):,} lines for the {n_cells:,} cells of {matrix_path}")
            self._barcodes = PackedNames(lines, str(barcodes))
            paths.append(barcodes)
        self.paths = tuple(str(p) for p in paths)
        self._sorted: bool | None = None
        self._whole: sp.csc_matrix | None = None

    def _read_header(self, fh, pattern_as_ones: bool) -> None:
        """The banner and the size line, checked before anything is allocated."""
        what = self.description
        banner = fh.readline(MTX_MAX_LINE).split()
        words = [w.decode("ascii", "replace").lower() for w in banner]
        if len(words) != 5 or words[0] != "%%matrixmarket" or words[1] != "matrix":
            raise InvalidInputError(f"{what}: not a Matrix Market file (no '%%MatrixMarket matrix ...' banner)")
        if words[2] != "coordinate":
            raise InvalidInputError(f"{what}: a Matrix Market '{words[2]}' file; only sparse 'coordinate' files "
                                    "hold counts")
        if words[3] not in _MTX_FIELDS:
            raise InvalidInputError(f"{what}: Matrix Market field '{words[3]}' cannot hold counts")
        if words[4] != "general":
            raise InvalidInputError(f"{what}: a '{words[4]}' Matrix Market file; a count matrix must be 'general'")
        self.field = _MTX_FIELDS[words[3]]
        if self.field == "pattern" and not pattern_as_ones:
            raise InvalidInputError(f"{what}: a 'pattern' Matrix Market file lists positions without counts; pass "
                                    "--pattern-as-ones (pattern_as_ones=True) to read each listed entry as 1")
        self.header_lines = 1
        while True:
            line = fh.readline(MTX_MAX_LINE)
            self.header_lines += 1
            if not line:
                raise InvalidInputError(f"{what}: ends before its size line")
            if len(line) == MTX_MAX_LINE and not line.endswith(b"\n"):
                raise InvalidInputError(f"{what}: line {self.header_lines:,} is longer than {MTX_MAX_LINE:,} bytes")
            if line.strip() and not line.lstrip().startswith(b"%"):
                break
        sizes = line.split()
        if len(sizes) != 3 or not all(s.isdigit() and len(s) <= 20 for s in sizes):
            raise InvalidInputError(f"{what}: the size line {line[:80]!r} is not three whole numbers "
                                    "(genes, cells, entries)")
        n_rows, n_cols, nnz = (int(s) for s in sizes)
        self.shape = check_shape((n_rows, n_cols), what)
        if nnz > n_rows * n_cols:
            raise InvalidInputError(f"{what}: declares {nnz:,} entries, more than its {n_rows:,} x {n_cols:,} "
                                    "positions (so some would repeat)")
        self.nnz = nnz

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        return None if self._barcodes is None else self._barcodes.slice(start, stop)

    def _entry_error(self, buf: bytes, at: int, first_line: int, code: int, field: int) -> InvalidInputError:
        number = first_line + buf.count(b"\n", 0, at) + 1
        stop = buf.find(b"\n", at)
        text = buf[at: stop if stop >= 0 else len(buf)].strip()[:80].decode("utf-8", "replace")
        which = ("row", "column", "value")[min(field, 2)]
        reason = {
            _SYNTAX: f"the {which} is not a number" if field < 2 or self.field == "real" else
                     "the value is not a whole number (the header declares an 'integer' matrix)",
            _FIELDS: f"an entry has {2 if self.field == 'pattern' else 3} fields (row, column"
                     f"{'' if self.field == 'pattern' else ', value'})",
            _INDEX: f"the {which} lies outside the {self.shape[0]:,} x {self.shape[1]:,} matrix of the header "
                    "(positions count from 1)",
            _FRACTION: "a non-integer value (counts must be whole numbers)",
            _NAN: "a NaN or infinite value",
            _LARGE: f"a value above {MAX_COUNT:,}",
            _NEGATIVE: "a negative value (counts must be >= 0)",
        }[code]
        return InvalidInputError(f"{self.description}: line {number:,} ({text!r}): {reason}")

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
        """Every entry, in file order: (genes, cells, values) as 0-based int32 arrays, a chunk of
        lines at a time, each with whether its cells kept ascending. Every line is checked."""
        n_fields = 2 if self.field == "pattern" else 3
        count, last_col, line_no, carry = 0, -1, 0, b""
        try:
            with _open_binary(self.path) as fh:
                for _ in range(self.header_lines):
                    fh.readline(MTX_MAX_LINE)
                line_no = self.header_lines
                while True:
                    data = fh.read(MTX_CHUNK_BYTES)
                    buf = carry + data
                    if data:
                        cut = buf.rfind(b"\n") + 1
                        if cut == 0 and len(buf) > MTX_MAX_LINE:
                            raise InvalidInputError(f"{self.description}: line {line_no + 1:,} is longer than "
                                                    f"{MTX_MAX_LINE:,} bytes")
                        buf, carry = buf[:cut], buf[cut:]
                    capacity = buf.count(b"\n") + 1
                    genes, cells, values = (np.empty(capacity, np.int32) for _ in range(3))
                    n, code, at, field, last, unsorted_at = mtx_parse_entries(
                        np.frombuffer(buf, np.uint8), n_fields, self.field == "integer", self.shape[0],
                        self.shape[1], last_col, genes, cells, values)
                    if code != _OK:
                        raise self._entry_error(buf, at, line_no, code, field)
                    count += n
                    if count > self.nnz:
                        raise InvalidInputError(f"{self.description}: holds more entries than the {self.nnz:,} its "
                                                "header declares")
                    last_col = last
                    line_no += capacity - 1
                    yield genes[:n], cells[:n], values[:n], unsorted_at < 0
                    if not data:
                        break
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{self.description}: unreadable Matrix Market file ({_one_line(exc)})") from exc
        if count != self.nnz:
            raise InvalidInputError(f"{self.description}: ends after {count:,} of the {self.nnz:,} entries its header "
                                    "declares")

    def _is_sorted(self) -> bool:
        """First pass: check every line; stop at the first entry whose cell comes before the last one's."""
        return all(in_order for _, _, _, in_order in self._chunks())

    def _load_whole(self) -> sp.csc_matrix:
        parts = list(zip(*((g, c, v) for g, c, v, _ in self._chunks()))) or [[np.zeros(0, np.int32)]] * 3
        genes, cells, values = (np.concatenate(p) for p in parts)
        return checked_coordinates(values, genes, cells, shape=self.shape, what=self.description)

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        if self._sorted is None:
            self._sorted = self._is_sorted()
        if not self._sorted:
            if self._whole is None:
                self._whole = self._load_whole()
            m = self._whole
            for start in range(0, self.shape[1], cells_per_block):
                stop = min(start + cells_per_block, self.shape[1])
                yield validated_block(start, m.indptr[start: stop + 1], m.indices, m.data, self.shape[0],
                                      self.description)
            return
        yield from self._stream(cells_per_block)

    def _stream(self, cells_per_block: int) -> Iterator[CellBlock]:
        n_cells = self.shape[1]
        start, pending = 0, []
        for genes, cells, values, in_order in self._chunks():
            if not in_order:
                raise InvalidInputError(f"{self.description}: changed while being read (entries no longer sorted "
                                        "by column)")
            if not cells.size:
                continue
            pending.append((genes, cells, values))
            while start < n_cells and cells[-1] >= start + cells_per_block:
                block, pending = self._cut(pending, start, start + cells_per_block)
                yield block
                start += cells_per_block
        while start < n_cells:
            block, pending = self._cut(pending, start, min(start + cells_per_block, n_cells))
            yield block
            start = block.start + block.n_cells

    def _cut(self, pending: list, start: int, stop: int) -> tuple[CellBlock, list]:
        """The block of cells start..stop-1 from the pending entries (sorted by cell); the rest."""
        if len(pending) > 1:
            pending = [tuple(np.concatenate(part) for part in zip(*pending))]
        genes, cells, values = pending[0] if pending else (np.zeros(0, np.int32),) * 3
        split = int(np.searchsorted(cells, stop))
        rest = [(genes[split:], cells[split:], values[split:])] if split < cells.size else []
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cells[:split] - start, minlength=stop - start))])
        return validated_block(start, indptr, genes[:split], values[:split], self.shape[0], self.description), rest


# ------------------------------------------------------------------------------------------ HDF5


@contextlib.contextmanager
def _h5_errors(what: str):
    """HDF5 and h5py failures on a damaged or unexpected file, as one clear error."""
    try:
        yield
    except SinrError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        raise InvalidInputError(f"{what}: unreadable HDF5 content ({_one_line(exc)})") from exc


def _open_h5(path: Path):
    import h5py

    return h5py.File(path, "r", rdcc_nbytes=H5_CACHE_BYTES)


def _dataset(group, name: str, what: str, kinds: str, ndim: int = 1):
    """group[name] when it is a dataset of `ndim` dimensions whose dtype kind is one of `kinds`."""
    import h5py

    obj = group.get(name) if isinstance(group, h5py.Group) else None
    if not isinstance(obj, h5py.Dataset):
        raise InvalidInputError(f"{what}: has no {name!r} dataset where the format keeps it")
    kind = obj.dtype.kind
    if kind == "O" and "S" in kinds and h5py.check_string_dtype(obj.dtype) is not None:
        kind = "S"
    if obj.ndim != ndim or kind not in kinds:
        raise InvalidInputError(f"{what}: {obj.name} is a {obj.ndim}-D {obj.dtype} dataset, not what the format "
                                "stores there")
    return obj


def _string_dataset(group, name: str, n: int, what: str) -> list[str]:
    ds = _dataset(group, name, what, "S")
    if ds.shape[0] != n:
        raise InvalidInputError(f"{what}: {ds.name} holds {ds.shape[0]:,} names for {n:,} entries")
    return decode_names(ds[:], f"{what} {ds.name}")


class _H5Cells(RandomAccessSource):
    """Cells of an HDF5 file, with cell names read per block from one string dataset."""

    path: Path
    _names: str | None = None

    def _check_cell_names(self, f, names: str | None) -> None:
        self._names = names
        if names is None:
            return
        ds = _dataset(f, names, self.description, "S")
        if ds.shape[0] != self.shape[1]:
            raise InvalidInputError(f"{self.description}: {ds.shape[0]:,} cell names for {self.shape[1]:,} cells")
        for start in range(0, self.shape[1], NAME_BATCH):
            decode_names(ds[start: start + NAME_BATCH], f"{self.description} cell names")

    @property
    def has_cell_names(self) -> bool:
        return self._names is not None

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        if self._names is None:
            return None
        self._check_range(start, stop)
        with _h5_errors(self.description), _open_h5(self.path) as f:
            return decode_names(f[self._names][start:stop], f"{self.description} cell names")

    def block(self, start: int, stop: int) -> CellBlock:
        self._check_range(start, stop)
        with _h5_errors(self.description), _open_h5(self.path) as f:
            return self._read(f, start, stop)

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        with _h5_errors(self.description), _open_h5(self.path) as f:
            for start in range(0, self.shape[1], cells_per_block):
                yield self._read(f, start, min(start + cells_per_block, self.shape[1]))

    def _read(self, f, start: int, stop: int) -> CellBlock:
        raise NotImplementedError


class CompressedH5Source(_H5Cells):
    """Cells as slices of one HDF5 group's data/indices/indptr: a 10x .h5 matrix (CSC, genes x
    cells) or an .h5ad X in CSR (cells x genes): the same three arrays."""

    def __init__(self, f, path: Path, group: str, shape: tuple[int, int], *, cell_names: str | None,
                 gene_ids=None, gene_names=None, feature_types=None, spec: SourceSpec, description: str) -> None:
        self.path, self.description, self.paths, self._spec = path, description, (str(path),), spec
        self.shape = shape
        self.gene_ids, self.gene_names, self.feature_types = gene_ids, gene_names, feature_types
        self._group = group
        g = f[group]
        data = _dataset(g, "data", description, "biuf")
        indices = _dataset(g, "indices", description, "iu")
        indptr = _dataset(g, "indptr", description, "iu")
        if indptr.shape[0] != shape[1] + 1:
            raise InvalidInputError(f"{description}: {indptr.name} holds {indptr.shape[0]:,} index pointers for "
                                    f"{shape[1]:,} cells")
        if indices.shape[0] != data.shape[0]:
            raise InvalidInputError(f"{description}: {indices.shape[0]:,} indices for {data.shape[0]:,} values")
        first, last = int(indptr[0]), int(indptr[-1])
        if first != 0 or last != data.shape[0]:
            raise InvalidInputError(f"{description}: index pointers run from {first:,} to {last:,}, not from 0 to "
                                    f"the {data.shape[0]:,} stored values")
        self.nnz = int(data.shape[0])
        self._check_cell_names(f, cell_names)

    def spec(self) -> SourceSpec:
        return self._spec

    def _read(self, f, start: int, stop: int) -> CellBlock:
        g = f[self._group]
        cells = f"{self.description} (cells {start:,}..{stop - 1:,})"
        ptr = g["indptr"][start: stop + 1]
        if ptr.dtype == np.uint64 and ptr.size and ptr.max() > self.nnz:
            raise InvalidInputError(f"{cells}: index pointers run past the {self.nnz:,} stored values")
        ptr = ptr.astype(np.int64)
        steps = np.diff(ptr)
        if ptr[0] < 0 or ptr[-1] > self.nnz or np.any(steps < 0):
            raise InvalidInputError(f"{cells}: index pointers decrease or run past the {self.nnz:,} stored values")
        if steps.size and steps.max() > self.shape[0]:
            raise InvalidInputError(f"{cells}: a cell holds {int(steps.max()):,} entries for {self.shape[0]:,} genes")
        lo, hi = int(ptr[0]), int(ptr[-1])
        return validated_block(start, ptr - lo, g["indices"][lo:hi], g["data"][lo:hi], self.shape[0], self.description)


class DenseH5Source(_H5Cells):
    """An .h5ad X stored dense (cells x genes): a block reads its rows, DENSE_READ_BYTES at a time
    (one row at least: _h5ad_source refuses longer rows), and keeps their nonzeros."""

    def __init__(self, f, path: Path, dataset: str, *, cell_names: str | None, gene_ids=None, gene_names=None,
                 feature_types=None, spec: SourceSpec, description: str) -> None:
        self.path, self.description, self.paths, self._spec = path, description, (str(path),), spec
        self._dataset = dataset
        ds = _dataset(f, dataset, description, "biuf", ndim=2)
        self.shape = check_shape((ds.shape[1], ds.shape[0]), description)
        self.gene_ids, self.gene_names, self.feature_types = gene_ids, gene_names, feature_types
        self._check_cell_names(f, cell_names)

    def spec(self) -> SourceSpec:
        return self._spec

    def _read(self, f, start: int, stop: int) -> CellBlock:
        ds = f[self._dataset]
        step = max(1, DENSE_READ_BYTES // max(1, self.shape[0] * ds.dtype.itemsize))
        cells, genes, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, ds.dtype)]
        for first in range(start, stop, step):
            rows = ds[first: min(first + step, stop)]
            cell, gene = np.nonzero(rows)
            cells.append(cell + (first - start))
            genes.append(gene)
            values.append(rows[cell, gene])
        cells = np.concatenate(cells)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cells, minlength=stop - start))])
        return validated_block(start, indptr, np.concatenate(genes), np.concatenate(values), self.shape[0],
                               self.description)


def _attr(obj, name: str) -> str | None:
    value = obj.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def read_10x_h5(path: Path) -> CompressedH5Source:
    """Cell Ranger HDF5: the v3 `matrix/` group, or v2 with one genome group."""
    import h5py

    what = str(path)
    with _h5_errors(what), _open_h5(path) as f:
        if "matrix" in f:
            group, features = "matrix", f["matrix"].get("features")
            ids, names, types = "id", "name", "feature_type"
        else:
            genomes = [k for k in f if isinstance(f[k], h5py.Group)]
            if len(genomes) != 1:
                raise InvalidInputError(f"{path}: not a 10x HDF5 file (no 'matrix' group, and {len(genomes)} "
                                        "genome groups where Cell Ranger v2 writes one)")
            group = genomes[0]
            features, ids, names, types = f[group], "genes", "gene_names", None
        g = f[group]
        shape = _dataset(g, "shape", what, "iu")
        if shape.shape != (2,):
            raise InvalidInputError(f"{path}: {shape.name} holds {shape.shape[0]:,} numbers, not 2")
        shape = check_shape(shape[:], what)
        gene_ids = _string_dataset(features, ids, shape[0], what)
        gene_names = _string_dataset(features, names, shape[0], what)
        feature_types = (_string_dataset(features, types, shape[0], what)
                         if types is not None and types in features else None)
        barcodes = f"{group}/barcodes" if "barcodes" in g else None
        return CompressedH5Source(f, path, group, shape, cell_names=barcodes, gene_ids=gene_ids,
                                  gene_names=gene_names, feature_types=feature_types,
                                  spec=SourceSpec("path", dict(path=str(path))), description=what)


def _h5ad_column(group, name: str, n: int, what: str) -> list[str]:
    """A string column of an .h5ad dataframe: a string array, or a categorical (missing: 'nan')."""
    import h5py

    obj = group[name]
    where = f"{what} {obj.name}"
    if isinstance(obj, h5py.Group) and _attr(obj, "encoding-type") == "categorical":
        categories = decode_names(_dataset(obj, "categories", where, "S")[:], where)
        codes = _dataset(obj, "codes", where, "iu")[:].astype(np.int64)
        if codes.size != n or (codes.size and (codes.min() < -1 or codes.max() >= len(categories))):
            raise InvalidInputError(f"{where}: categorical codes do not match {n:,} entries of {len(categories):,} "
                                    "categories")
        return [categories[c] if c >= 0 else "nan" for c in codes]
    if isinstance(obj, h5py.Dataset):
        return _string_dataset(group, name, n, what)
    from anndata.io import read_elem

    try:
        values = [str(v) for v in read_elem(obj)]
    except Exception as exc:  # anndata raises many types for elements it cannot read
        raise InvalidInputError(f"{where}: unreadable column ({_one_line(exc)})") from exc
    return check_names(values, n, where)


def _h5ad_index(frame) -> str | None:
    """The column holding an .h5ad dataframe's index (anndata >= 0.8 layout), or None."""
    import h5py

    if not isinstance(frame, h5py.Group):
        return None
    index = _attr(frame, "_index")
    return index if index is not None and index in frame else None


def _h5ad_source(f, path: Path, layer: str | None) -> MatrixSource | None:
    """The source of an .h5ad file in the layout of anndata >= 0.8, or None for older layouts."""
    import h5py

    what = f"{path}" if layer is None else f"{path} ({'raw' if layer == 'raw' else f'layer {layer}'})"
    if layer == "raw":
        if not isinstance(f.get("raw"), h5py.Group):
            raise InvalidInputError(f"{path}: has no raw matrix")
        x_path, var = "raw/X", f["raw"].get("var")
    elif layer is not None:
        layers = f.get("layers")
        names = sorted(layers) if isinstance(layers, h5py.Group) else []
        if layer not in names:
            raise InvalidInputError(f"{path}: has no layer {layer!r} (layers: {names})")
        x_path, var = f"layers/{layer}", f.get("var")
    else:
        x_path, var = "X", f.get("var")
    if x_path not in f:
        raise InvalidInputError(f"{path}: has no {x_path} matrix" + (" (use --layer)" if layer is None else ""))
    obs_index, var_index = _h5ad_index(f.get("obs")), _h5ad_index(var)
    x = f[x_path]
    encoding = _attr(x, "encoding-type")
    if obs_index is None or var_index is None or encoding not in ("csr_matrix", "csc_matrix", "array"):
        return None
    if encoding == "array":
        dense = _dataset(f, x_path, what, "biuf", ndim=2)
        n_genes = dense.shape[1]
        if n_genes * dense.dtype.itemsize > DENSE_READ_BYTES:
            raise InvalidInputError(f"{what}: a dense row of {n_genes:,} genes is too large to read; store X as a "
                                    "sparse matrix")
    else:
        shape = x.attrs.get("shape")
        if shape is None or np.shape(shape) != (2,):
            raise InvalidInputError(f"{what}: {x_path} has no (cells, genes) shape attribute")
        n_genes, n_cells = check_shape((shape[1], shape[0]), what)
    gene_names = _h5ad_column(var, var_index, n_genes, what)
    gene_ids = _h5ad_column(var, "gene_ids", n_genes, what) if "gene_ids" in var else None
    feature_types = _h5ad_column(var, "feature_types", n_genes, what) if "feature_types" in var else None
    names = dict(gene_ids=gene_ids, gene_names=gene_names, feature_types=feature_types)
    spec = SourceSpec("path", dict(path=str(path), layer=layer))
    obs_index = f"obs/{obs_index}"
    if encoding == "array":
        return DenseH5Source(f, path, x_path, cell_names=obs_index, spec=spec, description=what, **names)
    if encoding == "csr_matrix":
        return CompressedH5Source(f, path, x_path, (n_genes, n_cells), cell_names=obs_index, spec=spec,
                                  description=what, **names)
    arrays = [_dataset(x, name, what, kinds)[:] for name, kinds in (("data", "biuf"), ("indices", "iu"),
                                                                     ("indptr", "iu"))]
    counts = checked_compressed(*arrays, shape=(n_cells, n_genes), by_column=True, what=what).T
    cells = _string_dataset(f, obs_index, n_cells, what)
    return ScipySource(counts, cell_names=cells, description=what, spec=spec, paths=(str(path),), **names)


def anndata_source(adata, layer: str | None = None, *, what: str = "AnnData", spec: SourceSpec | None = None,
                   paths: tuple[str, ...] = ()) -> ScipySource:
    """An in-memory AnnData (cells x genes); `layer` picks a layer, or 'raw' for adata.raw."""
    if layer == "raw":
        if adata.raw is None:
            raise InvalidInputError(f"{what}: has no raw matrix")
        x, var = adata.raw.X, adata.raw.var
    elif layer is not None:
        if layer not in adata.layers:
            raise InvalidInputError(f"{what}: has no layer {layer!r} (layers: {sorted(adata.layers)})")
        x, var = adata.layers[layer], adata.var
    else:
        if adata.X is None:
            raise InvalidInputError(f"{what}: has no X matrix (use --layer)")
        x, var = adata.X, adata.var
    return cells_by_genes_source(x, var, adata.obs_names, what, spec=spec, paths=paths)


def cells_by_genes_source(x, var, obs_names, what: str, *, spec: SourceSpec | None = None,
                          paths: tuple[str, ...] = ()) -> ScipySource:
    """A cells x genes matrix with AnnData's var and obs names, as a genes x cells source."""
    gene_ids = [str(v) for v in var["gene_ids"]] if "gene_ids" in var.columns else None
    feature_types = [str(v) for v in var["feature_types"]] if "feature_types" in var.columns else None
    return ScipySource(x.T, gene_ids, [str(v) for v in var.index], [str(v) for v in obs_names], feature_types,
                       description=what, spec=spec, paths=paths)


def read_h5ad(path: Path, layer: str | None = None) -> MatrixSource:
    """An .h5ad file's X, a layer, or raw.X ('raw'), read as the module docstring says."""
    with _h5_errors(str(path)), _open_h5(path) as f:
        source = _h5ad_source(f, path, layer)
    if source is not None:
        return source
    import anndata

    try:
        adata = anndata.read_h5ad(path)
    except Exception as exc:  # anndata raises many types for unreadable files
        raise InvalidInputError(f"{path}: unreadable .h5ad file ({_one_line(exc)})") from exc
    return anndata_source(adata, layer, what=str(path), spec=SourceSpec("path", dict(path=str(path), layer=layer)),
                          paths=(str(path),))


# ------------------------------------------------------------------------------------------- npz

_NPZ_ARRAYS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
               "coo": ("data", "row", "col")}


def _npz_array(archive: zipfile.ZipFile, name: str, what: str) -> np.ndarray:
    """One array of an .npz archive, its header checked against the archive's size for it first."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise InvalidInputError(f"{what}: holds no {name!r} array") from None
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh, max_header_size=1 << 16)
        if dtype.hasobject or dtype.itemsize == 0:
            raise InvalidInputError(f"{what}: array {name!r} holds {dtype} items, not numbers")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if size != info.file_size - fh.tell():
            raise InvalidInputError(f"{what}: array {name!r} declares {count:,} items of {dtype} but holds "
                                    f"{info.file_size - fh.tell():,} bytes")
        array = np.empty(count, dtype)
        view = memoryview(array).cast("B")
        done = 0
        while done < size:
            got = fh.readinto(view[done:])
            if not got:
                raise InvalidInputError(f"{what}: array {name!r} ends early")
            done += got
        fh.read(1)  # reach the end of the member, where zipfile checks its CRC
    return array.reshape(shape, order="F" if fortran else "C")


def read_npz(path: Path) -> ScipySource:
    """A scipy.sparse .npz (CSR, CSC or COO) of genes x cells."""
    what = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            kind = _npz_array(archive, "format", what)
            kind = kind.item().decode("ascii", "replace") if kind.dtype.kind == "S" else str(kind.item())
            if kind not in _NPZ_ARRAYS:
                raise InvalidInputError(f"{path}: holds a scipy '{kind}' matrix; save it as CSR, CSC or COO")
            shape = _npz_array(archive, "shape", what)
            if shape.shape != (2,) or shape.dtype.kind not in "iu":
                raise InvalidInputError(f"{path}: its shape is not two whole numbers")
            shape = check_shape(shape, what)
            data, first, second = (_npz_array(archive, name, what) for name in _NPZ_ARRAYS[kind])
    except (OSError, EOFError, ValueError, TypeError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, RuntimeError) as exc:  # a damaged array header reaches Python's tokenizer
        raise InvalidInputError(f"{path}: unreadable scipy .npz file ({_one_line(exc)})") from exc
    if kind == "coo":
        counts = checked_coordinates(data, first, second, shape=shape, what=what)
    else:
        counts = checked_compressed(data, first, second, shape=shape, by_column=kind == "csc", what=what)
    return ScipySource(counts, description=what, spec=SourceSpec("path", dict(path=str(path))), paths=(str(path),))


# ---------------------------------------------------------------------------------------- entry


def sniff_format(path: Path) -> str:
    """Name the format of `path` from its content: 'sinr', 'mtx', '10x-h5', 'h5ad' or 'npz'."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or folder")
    if path.is_dir():
        if _find(path, ["matrix.mtx"]) is None:
            raise InvalidInputError(f"{path}: folder holds no matrix.mtx(.gz)")
        return "mtx"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InvalidInputError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    from ..storage.container import MAGIC

    if head.startswith(MAGIC):
        return "sinr"
    if head.startswith(HDF5_MAGIC):
        with _h5_errors(str(path)), _open_h5(path) as f:
            keys = set(f.keys())
        return "h5ad" if "X" in keys or "obs" in keys else "10x-h5"
    if head.startswith(b"PK"):
        return "npz"
    if head.lower().startswith(b"%%matrixmarket") or (head.startswith(GZIP_MAGIC) and ".mtx" in path.name):
        return "mtx"
    raise InvalidInputError(f"{path}: unknown input format (expected 10x mtx, 10x .h5, .h5ad or .npz)")


def read_matrix(path: str | os.PathLike, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """Open any supported input format as a source of validated blocks of cells. `layer` picks an
    .h5ad layer ('raw': adata.raw); pattern_as_ones reads a Matrix Market 'pattern' file's entries as 1."""
    path = Path(path)
    kind = sniff_format(path)
    if layer is not None and kind != "h5ad":
        raise InvalidInputError(f"{path}: --layer applies to .h5ad input only")
    if kind == "sinr":
        raise InvalidInputError(f"{path}: is already a .sinr file")
    if kind == "mtx":
        return MtxSource(path, pattern_as_ones=pattern_as_ones)
    if kind == "10x-h5":
        return read_10x_h5(path)
    if kind == "h5ad":
        return read_h5ad(path, layer)
    return read_npz(path)


def open_source_spec(spec: SourceSpec) -> RandomAccessSource:
    """The source a RandomAccessSource.spec() describes, opened again (in another process)."""
    if spec.kind == "scipy":
        return ScipySource(**spec.args)
    source = read_matrix(spec.args["path"], spec.args.get("layer"))
    if not isinstance(source, RandomAccessSource):
        raise InvalidInputError(f"{spec.args['path']}: cannot be read by cell range")
    return source


def as_source(source, layer: str | None = None, *, pattern_as_ones: bool = False) -> MatrixSource:
    """A path, a scipy.sparse matrix or ndarray (genes x cells), an AnnData, a CountMatrix or a
    MatrixSource, as a MatrixSource."""
    from .matrix import CountMatrix

    if isinstance(source, MatrixSource):
        return source
    if isinstance(source, CountMatrix):
        return ScipySource(source.counts, source.gene_ids, source.gene_names, source.cell_names,
                           source.feature_types)
    if isinstance(source, (str, os.PathLike)):
        return read_matrix(source, layer=layer, pattern_as_ones=pattern_as_ones)
    if sp.issparse(source) or isinstance(source, np.ndarray):
        return ScipySource(source)
    if type(source).__name__ == "AnnData":
        return anndata_source(source, layer)
    raise InvalidInputError(f"cannot encode an object of type {type(source).__name__}")
