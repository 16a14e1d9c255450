"""Matrix Market (a file, gzipped or not, or a 10x folder with features and barcodes). Reading: a
first pass checks every line with the native parser, chunk by chunk, and learns whether entries are
sorted by column as 10x writes them; sorted files then stream a chunk of lines at a time, others load
whole. The header's sizes are checked before anything is allocated. Writing: a file, or the 10x
triple in a folder, entries sorted by cell as 10x writes them."""
from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from .._native import mtx_parse_entries
from ..errors import InvalidInputError
from ..limits import MAX_COUNT, MAX_NAME_BYTES
from ..progress import Progress
from .matrix import CountMatrix
from .sources import (CellBlock, MatrixSource, check_shape, checked_coordinates, decode_names, one_line,
                      validated_block)

GZIP_MAGIC = b"\x1f\x8b"
MTX_CHUNK_BYTES = 1 << 22  # Matrix Market text parsed at a time
MTX_MAX_LINE = 1 << 16  # longest Matrix Market line accepted
SIDE_LINE_BYTES = 4 * (MAX_NAME_BYTES + 1) + 2  # the longest line a features or barcodes file may hold
SIDE_SLACK_BYTES = 1 << 20  # read beyond that, so that a name too long is named as one
MTX_FOLDER_FILES = frozenset(f"{stem}{suffix}" for stem in ("matrix.mtx", "features.tsv", "genes.tsv", "barcodes.tsv")
                             for suffix in ("", ".gz"))  # what a 10x folder holds: a folder output may replace only these


def is_gzip(path: Path) -> bool:
    """Whether the file starts with gzip's magic (10x writes .gz names, users rename them)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_binary(path: Path):
    """The file for binary reading, decompressed when it is gzipped (by content, not name)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def read_bytes(path: Path, limit: int) -> bytes:
    """The whole (decompressed) file, refused past `limit` bytes (a gzip bomb is not inflated whole);
    a read failure is an InvalidInputError naming it."""
    try:
        with open_binary(path) as fh:
            data = fh.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(f"{path}: unreadable ({one_line(exc)})") from exc
    if len(data) > limit:
        raise InvalidInputError(f"{path}: more than {limit:,} bytes, more than its lines of names can hold")
    return data


def text_lines(path: Path, expected: int) -> list[bytes]:
    """The lines of a (gzipped) text file of `expected` lines of names, CRLF or LF, trailing empty lines
    dropped, without the UTF-8 byte order mark an editor may have put first (pandas and scanpy drop it
    too); read only as far as that many lines can reach."""
    text = read_bytes(path, (expected + 1) * SIDE_LINE_BYTES + SIDE_SLACK_BYTES)
    text = text.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").rstrip(b"\n")
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
        if b"\0" in self._text:  # as decode_names refuses it: the .h5ad and .h5 it decodes to cannot hold one
            line = self._text.count(b"\n", 0, self._text.index(b"\0"))
            raise InvalidInputError(f"{what}: line {line + 1:,} contains a NUL character, which the .h5ad and .h5 a "
                                    ".sinr file decodes to cannot hold")
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


def is_mtx(path: Path, head: bytes) -> bool:
    """A folder holding matrix.mtx(.gz) (or one sample's PREFIXmatrix.mtx(.gz), as GEO serves them), or
    a file with the Matrix Market banner (a gzipped file: by its name, since its banner is compressed)."""
    if path.is_dir():
        return find_file(path, ["matrix.mtx"]) is not None or bool(prefixed_matrices(path))
    return head.lower().startswith(b"%%matrixmarket") or (head.startswith(GZIP_MAGIC) and ".mtx" in path.name)


def sample_prefix(name: str) -> str:
    """What precedes 'matrix.mtx(.gz)' in a file's name: GEO's 'GSM1234_' (a sample's triple shares it,
    as scanpy.read_10x_mtx's prefix= reads them), '' for 10x's own names or any other name."""
    for suffix in ("matrix.mtx", "matrix.mtx.gz"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return ""


def prefixed_matrices(folder: Path) -> list[Path]:
    """The PREFIXmatrix.mtx(.gz) files of a folder (a non-empty prefix), by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and sample_prefix(p.name))


def find_file(folder: Path, stems: Sequence[str]) -> Path | None:
    """The first of folder/stem or folder/stem.gz that is a file, stems in order."""
    for stem in stems:
        for suffix in ("", ".gz"):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _folder_matrix(folder: Path) -> Path:
    """A folder's matrix.mtx(.gz), or its one sample's PREFIXmatrix.mtx(.gz)."""
    found = find_file(folder, ["matrix.mtx"])
    if found is not None:
        return found
    samples = prefixed_matrices(folder)
    if len(samples) == 1:
        return samples[0]
    if samples:
        listed = ", ".join(p.name for p in samples[:3]) + (", ..." if len(samples) > 3 else "")
        raise InvalidInputError(f"{folder}: holds the matrices of {len(samples)} samples ({listed}); encode one "
                                "file at a time")
    raise InvalidInputError(f"{folder}: no matrix.mtx or matrix.mtx.gz in this folder")


# Codes of the native parser (native/core/include/sinr/matrix_market.hpp; _native.MTX_CODES names them)
PARSE_OK, PARSE_SYNTAX, PARSE_FIELDS, PARSE_INDEX, PARSE_FRACTION, PARSE_NAN, PARSE_LARGE, PARSE_NEGATIVE = range(8)


_MTX_FIELDS = {"integer": "integer", "real": "real", "double": "real", "pattern": "pattern"}


class MtxSource(MatrixSource):
    """A Matrix Market file (genes x cells, 1-based coordinates), with 10x features.tsv /
    genes.tsv and barcodes.tsv beside it when present (GSM..._features.tsv and the like beside
    GSM..._matrix.mtx: GEO's names for one sample's triple). See the module docstring for how it is read.

    A `pattern` file lists positions without values; it is refused unless pattern_as_ones, which
    reads every listed entry as the count 1."""

    def __init__(self, path: Path, *, pattern_as_ones: bool = False) -> None:
        folder = path if path.is_dir() else path.parent
        matrix_path = _folder_matrix(path) if path.is_dir() else path
        prefix = sample_prefix(matrix_path.name)  # its features and barcodes share it
        self.path = matrix_path
        self.description = str(matrix_path)
        try:
            with open_binary(matrix_path) as fh:
                self._read_header(fh, pattern_as_ones)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{matrix_path}: unreadable Matrix Market file ({one_line(exc)})") from exc
        paths = [matrix_path]
        n_genes, n_cells = self.shape
        features = find_file(folder, [f"{prefix}features.tsv", f"{prefix}genes.tsv"])
        if features is not None:
            rows = [line.split(b"\t") for line in text_lines(features, n_genes)]
            if len(rows) != n_genes:
                raise InvalidInputError(f"{features}: {len(rows):,} lines for the {n_genes:,} genes of {matrix_path}")
            self.gene_ids = decode_names([r[0] for r in rows], f"{features} gene ids")
            self.gene_names = decode_names([r[1] if len(r) > 1 else r[0] for r in rows], f"{features} gene names")
            if rows and all(len(r) > 2 for r in rows):
                self.feature_types = decode_names([r[2] for r in rows], f"{features} feature types")
            paths.append(features)
        self._barcodes = None
        barcodes = find_file(folder, [f"{prefix}barcodes.tsv"])
        if barcodes is not None:
            lines = [line.split(b"\t", 1)[0] for line in text_lines(barcodes, n_cells)]
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
        """Names of cells start..stop-1 from barcodes.tsv, or None without one."""
        return None if self._barcodes is None else self._barcodes.slice(start, stop)

    def _entry_error(self, buf: bytes, at: int, first_line: int, code: int, field: int) -> InvalidInputError:
        number = first_line + buf.count(b"\n", 0, at) + 1
        stop = buf.find(b"\n", at)
        text = buf[at: stop if stop >= 0 else len(buf)].strip()[:80].decode("utf-8", "replace")
        which = ("row", "column", "value")[min(field, 2)]
        reason = {
            PARSE_SYNTAX: f"the {which} is not a number" if field < 2 or self.field == "real" else
                     "the value is not a whole number (the header declares an 'integer' matrix)",
            PARSE_FIELDS: f"an entry has {2 if self.field == 'pattern' else 3} fields (row, column"
                     f"{'' if self.field == 'pattern' else ', value'})",
            PARSE_INDEX: f"the {which} lies outside the {self.shape[0]:,} x {self.shape[1]:,} matrix of the header "
                    "(positions count from 1)",
            PARSE_FRACTION: "a non-integer value (counts must be whole numbers)",
            PARSE_NAN: "a NaN or infinite value",
            PARSE_LARGE: f"a value above {MAX_COUNT:,}",
            PARSE_NEGATIVE: "a negative value (counts must be >= 0)",
        }[code]
        return InvalidInputError(f"{self.description}: line {number:,} ({text!r}): {reason}")

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
        """Every entry, in file order: (genes, cells, values) as 0-based int32 arrays, a chunk of
        lines at a time, each with whether its cells kept ascending. Every line is checked."""
        n_fields = 2 if self.field == "pattern" else 3
        count, last_col, line_no, carry = 0, -1, 0, b""
        try:
            with open_binary(self.path) as fh:
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
                    if code != PARSE_OK:
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
            raise InvalidInputError(f"{self.description}: unreadable Matrix Market file ({one_line(exc)})") from exc
        if count != self.nnz:
            raise InvalidInputError(f"{self.description}: ends after {count:,} of the {self.nnz:,} entries its header "
                                    "declares")

    @property
    def streams(self) -> bool | None:
        """Whether blocks are read a chunk of lines at a time (entries sorted by cell, as 10x writes
        them) rather than from the whole matrix loaded once; None until the first block is read."""
        return self._sorted

    def _is_sorted(self) -> bool:
        """First pass: check every line; stop at the first entry whose cell comes before the last one's."""
        return all(in_order for _, _, _, in_order in self._chunks())

    def _load_whole(self) -> sp.csc_matrix:
        parts = list(zip(*((g, c, v) for g, c, v, _ in self._chunks()))) or [[np.zeros(0, np.int32)]] * 3
        genes, cells, values = (np.concatenate(p) for p in parts)
        return checked_coordinates(values, genes, cells, shape=self.shape, what=self.description)

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """Every cell in blocks: streamed when entries are sorted by cell, else from the file loaded whole."""
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


# ------------------------------------------------------------------------------------ writing

# gzip's own default: Python's (9) wrote a 6e7-nonzero matrix.mtx.gz in 9.6 minutes, 6.5x slower for
# no smaller a file (1.0 against 6.6 MB/s of its text, 3.76x against 3.77x)
GZIP_LEVEL = 6


@contextlib.contextmanager
def _gzipped(path: Path, name: str) -> Iterator[gzip.GzipFile]:
    """A gzip stream into `path` whose header records `name` (the output's own name, less .gz, as
    gzip records it) and no time: one matrix always gives the same bytes, and `gunzip -N` restores
    the output's name, not the temporary file's it was written as."""
    with open(path, "wb") as raw, gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=GZIP_LEVEL) as fh:
        yield fh


def _write_tsv_gz(path: Path, rows: list[str]) -> None:
    with _gzipped(path, path.name) as fh, io.TextIOWrapper(fh, encoding="utf-8") as text:
        text.writelines(f"{r}\n" for r in rows)


MTX_BLOCK_NNZ = 1 << 21  # entries formatted at a time (about 30 MB of text)
MTX_VALUES = np.dtype(np.int32)  # values as text need no wider type than the one every count fits (MAX_COUNT)


def write_mtx_file(path: Path, counts: sp.spmatrix, *, gz: bool, progress: Progress,
                   name: str | None = None) -> None:
    """Entries sorted by cell, then gene, as 10x writes them (so the reader streams them back); gzipped
    with `name` (default path's) in the header. Formatted by scipy a block of cells at a time: the
    whole matrix as coordinates had taken 1.2 GB more than its CSC at 6e7 nonzeros. Each block's
    entries are counted on `progress` once written."""
    import scipy.io  # here, not at import: 15 ms that every reader of the formats table paid

    csc = sp.csc_matrix(counts)
    with (_gzipped(path, name or path.name) if gz else open(path, "wb")) as fh:
        # written here, not by scipy, which writes a matrix of no entries as 'real', an empty one as 'symmetric'
        fh.write(f"%%MatrixMarket matrix coordinate integer general\n{csc.shape[0]} {csc.shape[1]} {csc.nnz}\n"
                 .encode())
        starts = np.searchsorted(csc.indptr, np.arange(0, csc.nnz, MTX_BLOCK_NNZ), side="right") - 1
        bounds = np.unique(np.concatenate([starts, [csc.shape[1]]])).tolist()
        for first, end in zip(bounds[:-1], bounds[1:]):
            block = csc[:, first:end].tocoo()
            text = io.BytesIO()
            scipy.io.mmwrite(text, sp.coo_matrix((block.data, (block.row, block.col + first)), shape=csc.shape),
                             field="integer", symmetry="general")
            fh.write(_body(text.getvalue()))
            progress.update(block.nnz)


def _body(text: bytes) -> bytes:
    """A Matrix Market file's entries: what follows its comment lines (each starting with %) and its
    size line."""
    at = 0
    while text.startswith(b"%", at):
        at = text.index(b"\n", at) + 1
    return text[text.index(b"\n", at) + 1:]


def write_mtx_folder(folder: Path, m: CountMatrix, progress: Progress) -> None:
    """The 10x triple: matrix.mtx.gz, features.tsv.gz (id, name, type) and barcodes.tsv.gz. A name
    with a tab is refused: the TSV files would read back as other names (.sinr names may hold one).
    The matrix's entries are counted on `progress` as write_mtx_file counts them."""
    ids, names, types = m.filled_gene_ids(), m.filled_gene_names(), m.filled_feature_types()
    for what, values in (("gene id", ids), ("gene name", names), ("feature type", types),
                         ("cell name", m.filled_cell_names())):
        tabbed = next((v for v in values if "\t" in v), None)
        if tabbed is not None:
            raise InvalidInputError(f"{what} {tabbed!r} holds a tab, which a 10x folder's TSV files cannot hold; "
                                    "decode to .h5ad or .h5 instead")
    write_mtx_file(folder / "matrix.mtx.gz", m.counts, gz=True, progress=progress)
    _write_tsv_gz(folder / "features.tsv.gz", [f"{a}\t{b}\t{c}" for a, b, c in zip(ids, names, types)])
    _write_tsv_gz(folder / "barcodes.tsv.gz", m.filled_cell_names())
