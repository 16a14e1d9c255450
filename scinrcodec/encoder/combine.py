"""Combining and cutting .sinr matrices: the cells of several files, or some cells and genes of
one, streamed into a new matrix a block of cells at a time.

A Piece is the cells of one input matrix that go to the output, in output order, with a map from
output genes to the input's genes. PiecesSource reads pieces as the encoder reads any source:
each block decodes only the chunks holding its cells, so memory holds one block (about one chunk)
per job. Files of format 3 that keep every gene they store are not coded again at all: each becomes
a segment of the output (encoder.segments). Otherwise, when the output's genes are the first
input's, with its own names, and the output is of its format version, that input's chunks are
copied byte for byte and only the other cells are encoded (append.extend_into).
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..io.sources import CellBlock, MatrixSource, check_names
from ..model.baseline import accumulate_gene_stats
from ..reader.matrix import MatrixReader
from ..reader.selection import unique_sorted


TILE_READ_CHUNKS = 8  # a remote file's few-gene blocks are read this many chunks at a time (memory: a few genes' nonzeros)


@dataclass
class Piece:
    """Cells of `matrix` for the output: `cells` (original indices in output order; None for all,
    in order), and for each output gene the input's gene index, or -1 where it has none."""

    matrix: MatrixReader
    cells: np.ndarray | None
    genes: np.ndarray

    @property
    def n_cells(self) -> int:
        return self.matrix.shape[1] if self.cells is None else int(self.cells.size)

    @property
    def _reads_tiles(self) -> bool:
        """Whether blocks read their genes tile by tile (a few genes, each stored), not whole chunks."""
        return self.genes.size <= self.matrix.shape[0] // 4 and bool((self.genes >= 0).all())

    def _chunks(self, start: int, stop: int) -> np.ndarray:
        """The ids of the chunks holding its cells start..stop-1, ascending."""
        bounds = self.matrix.chunk_bounds()
        if self.cells is None:
            first, last = np.searchsorted(bounds, [start, stop - 1], side="right") - 1
            return np.arange(first, last + 1)
        return unique_sorted(np.searchsorted(bounds, self.cells[start:stop], side="right") - 1)

    def blocks(self, spans: list[tuple[int, int]]) -> Iterator[sp.csr_matrix]:
        """block(start, stop) of each span (start, stop) of its cells, in order, with a remote file's
        bytes fetched ahead: the chunks that blocks decode whole a window at a time
        (ByteSource.ready_in_order), and a few genes' tiles for several blocks at once (consecutive
        spans over up to TILE_READ_CHUNKS chunks read as one block and cut), not a round trip or two
        per block."""
        if self._reads_tiles:
            remote = self.matrix.byte_source.batched
            group: list[tuple[int, int]] = []
            for k, span in enumerate(spans):
                group.append(span)
                last = k + 1 == len(spans)
                if remote and not last and self._chunks(group[0][0], spans[k + 1][1]).size <= TILE_READ_CHUNKS:
                    continue
                x = self.block(group[0][0], group[-1][1])
                for a, b in group:
                    yield x[a - group[0][0]: b - group[0][0]]
                group = []
            return
        needs = [self._chunks(a, b) for a, b in spans]
        order = list(dict.fromkeys(c for chunks in needs for c in chunks.tolist()))  # by first need
        position = {c: k for k, c in enumerate(order)}
        m = self.matrix
        ready = m.byte_source.ready_in_order(m.index.block_ranges(order))
        done = -1
        for (start, stop), chunks in zip(spans, needs):
            last = max((position[c] for c in chunks.tolist()), default=-1)
            while done < last:
                done = next(ready)
            yield self.block(start, stop)

    def block(self, start: int, stop: int) -> sp.csr_matrix:
        """Its cells start..stop-1, cells x output genes CSR, indices sorted. A few genes are read
        tile by tile (only their bands decode); otherwise the chunks holding the cells decode whole."""
        m = self.matrix
        if self._reads_tiles:
            cells = np.arange(start, stop) if self.cells is None else self.cells[start:stop]
            out = sp.csr_matrix(m[self.genes, cells].T)
            out.sort_indices()
            return out
        if self.cells is None:
            x = m.cells_block(start, stop)
        else:  # a chunk at a time, its cells taken: a few cells of every chunk do not hold every chunk at once
            wanted = self.cells[start:stop]
            bounds = m.chunk_bounds()
            chunk_of = np.searchsorted(bounds, wanted, side="right") - 1
            order = np.argsort(chunk_of, kind="stable")
            groups = np.split(order, np.flatnonzero(np.diff(chunk_of[order])) + 1)
            rows = [m.chunks_block([chunk_of[g[0]]])[wanted[g] - bounds[chunk_of[g[0]]]] for g in groups]
            x = sp.vstack(rows, format="csr")[np.argsort(order)]
        n_out = self.genes.size
        if self.genes.size == m.shape[0] and np.array_equal(self.genes, np.arange(n_out)):
            return x
        return self.remapped(x)

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """For each of the input's genes, its output gene, or -1 where the output has none."""
        column = np.full(self.matrix.shape[0], -1, np.int64)
        present = np.flatnonzero(self.genes >= 0)
        column[self.genes[present]] = present
        return column

    def remapped(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """x (cells x the input's genes) with its columns moved to the output's genes (those the
        output lacks dropped), indices sorted: mapped in place and each cell's run sorted."""
        indices, data, indptr = self.columns[x.indices], x.data, x.indptr
        keep = indices >= 0
        if not keep.all():
            indptr = np.concatenate([[0], np.cumsum(keep)])[indptr]  # the kept entries before each cell's start
            indices, data = indices[keep], data[keep]
        out = sp.csr_matrix((data, indices, indptr), shape=(x.shape[0], self.genes.size))
        out.has_sorted_indices = False
        out.sort_indices()
        return out


class PiecesSource(MatrixSource):
    """The cells of several pieces, one after another, as a genes x cells source."""

    def __init__(self, pieces: list[Piece], gene_ids, gene_names, feature_types, cell_names, *,
                 description: str) -> None:
        self.pieces = pieces
        n_genes = pieces[0].genes.size
        self.shape = (n_genes, sum(p.n_cells for p in pieces))
        self.description = description
        self.gene_ids = check_names(gene_ids, n_genes, f"{description} gene ids")
        self.gene_names = check_names(gene_names, n_genes, f"{description} gene names")
        self.feature_types = check_names(feature_types, n_genes, f"{description} feature types")
        self._cell_names = check_names(cell_names, self.shape[1], f"{description} cell names")
        self.paths = tuple(p.matrix.source for p in pieces)

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """The new names of cells start..stop-1, or None when the inputs have none."""
        return None if self._cell_names is None else self._cell_names[start:stop]

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """Blocks of up to cells_per_block cells; a block never spans two pieces."""
        offset = 0
        for piece in self.pieces:
            spans = [(a, min(a + cells_per_block, piece.n_cells)) for a in range(0, piece.n_cells, cells_per_block)]
            for (start, stop), x in zip(spans, piece.blocks(spans)):
                # a block's dtypes (io.sources.CellBlock): decoded values are at most MAX_COUNT
                yield CellBlock(offset + start, x.indptr.astype(np.int64), x.indices.astype(np.int32, copy=False),
                                x.data.astype(np.int32, copy=False))
            offset += piece.n_cells

    def fresh_gene_statistics(self, known: np.ndarray, cells_per_block: int) -> tuple[np.ndarray, np.ndarray]:
        """Pass 1's figures (driver.gene_statistics: nonzeros and deviation per output gene) of the
        genes not in `known`, zero for those of `known`, without decoding every cell when few cells
        hold such genes: only genes an input stores can have a nonzero in it, so those are read
        first (tile by tile), then the cells that hold them. A piece where more than one cell in
        eight does is read block by block, as pass 1 reads it. Pieces of whole files (concat)."""
        n_out = self.shape[0]
        gene_nnz, deviation = np.zeros(n_out, np.int64), np.zeros(n_out, np.float64)
        wanted = np.ones(n_out, bool)
        wanted[known] = False
        for piece in self.pieces:
            if piece.cells is not None:
                raise InvalidInputError("fresh_gene_statistics takes pieces of whole files")
            column = piece.columns
            genes = column[piece.matrix.index.genes()[0]]  # every segment's stored genes
            genes = genes[genes >= 0]
            genes = unique_sorted(genes[wanted[genes]])
            if not genes.size:
                continue
            cells = unique_sorted(sp.csr_matrix(piece.matrix[piece.genes[genes], :]).indices)
            if cells.size * 8 > piece.n_cells:
                blocks = (piece.block(a, min(a + cells_per_block, piece.n_cells))
                          for a in range(0, piece.n_cells, cells_per_block))
            else:
                blocks = (piece.remapped(sp.csr_matrix(piece.matrix[:, cells[a:a + cells_per_block]].T))
                          for a in range(0, cells.size, cells_per_block))
            nnz, dev = np.zeros(n_out, np.int64), np.zeros(n_out, np.float64)
            for x in blocks:
                accumulate_gene_stats(x.indptr, x.indices.astype(np.int32, copy=False), x.data, nnz, dev)
            gene_nnz[genes] += nnz[genes]
            deviation[genes] += dev[genes]
        return gene_nnz, deviation


# ------------------------------------------------------------------------------------- genes

def gene_keys(m: MatrixReader, by_ids: bool) -> list[str]:
    """What aligns a file's genes with another's: gene ids (by_ids), else gene names; each once."""
    keys = m.gene_ids if by_ids else m.gene_names
    if keys is None:
        raise InvalidInputError(f"{m.source}: holds no gene ids or names to align its genes with another file's")
    if len(set(keys)) != len(keys):
        twice = next(k for k, n in Counter(keys).items() if n > 1)
        raise InvalidInputError(f"{m.source}: gene {twice!r} appears twice, so genes cannot be aligned by "
                                f"{'id' if by_ids else 'name'}")
    return keys


def aligned_by_ids(matrices: list[MatrixReader]) -> bool:
    """Whether files' genes are aligned by id (every file holds ids of its own) or by name (one does
    not: its ids would be compared with another's names). Ids that are the genes' names (10x files
    without Ensembl ids repeat the symbol in the id column) are names: aligned by id with a file of
    Ensembl ids, every gene had been told apart from itself (CD3E twice in an outer join)."""
    return all(m.gene_ids is not None and not _ids_are_names(m) for m in matrices)


def _ids_are_names(m: MatrixReader) -> bool:
    return m.gene_ids is not None and m.gene_ids == m.gene_names


def joined_genes(matrices: list[MatrixReader], join: str) -> tuple[list[str], list[np.ndarray]]:
    """The output's gene keys (ids, or names where a file has no ids; inner: the first file's genes
    that every file holds, in its order; outer: every gene, the first file's first, then each new
    one as it first appears) and, per file, the map from output genes to its own."""
    if join not in ("inner", "outer"):
        raise InvalidInputError(f"join must be 'inner' or 'outer', not {join!r}")
    by_ids = aligned_by_ids(matrices)
    keys = [gene_keys(m, by_ids) for m in matrices]
    if join == "inner":
        common = set(keys[0]).intersection(*map(set, keys[1:]))
        out = [k for k in keys[0] if k in common]
    else:
        out = list(dict.fromkeys(k for ks in keys for k in ks))
    maps = []
    for ks in keys:
        position = {k: i for i, k in enumerate(ks)}
        maps.append(np.array([position.get(k, -1) for k in out], dtype=np.int64))
    return out, maps


def gene_fields(matrices: list[MatrixReader], maps: list[np.ndarray]) -> dict[str, list[str] | None]:
    """gene_ids, gene_names and feature_types of the output genes: each from the first file that
    holds the gene and has such a list, ids from files whose ids are not their names first (None
    where a gene has it from no file)."""
    out = {}
    for field in ("gene_ids", "gene_names", "feature_types"):
        # a gene's id from a file whose ids are ids before one whose ids are its names
        order = sorted(range(len(matrices)), key=lambda i: field == "gene_ids" and _ids_are_names(matrices[i]))
        lists = [getattr(matrices[i], field) for i in order]
        values = np.full(maps[0].size, None, dtype=object)
        missing = np.ones(maps[0].size, bool)
        for names, genes in zip(lists, [maps[i] for i in order]):
            take = missing & (genes >= 0)
            if names is not None and take.any():
                values[take] = np.asarray(names, dtype=object)[genes[take]]
                missing &= ~take
        out[field] = None if missing.any() else values.tolist()
    return out


# ------------------------------------------------------------------------------------- cells

def unique_cell_names(names: list[list[str]], keys: list[str] | None, index_unique: str | None,
                      what: list[str]) -> list[str]:
    """Every file's cell names, one after another; with index_unique each gets it and its file's
    key appended (anndata's concat), and names that still repeat are refused."""
    combined = names if index_unique is None else [[f"{n}{index_unique}{key}" for n in ns]
                                                   for ns, key in zip(names, keys)]
    out = [n for ns in combined for n in ns]
    if len(set(out)) != len(out):
        raise repeated_cell(names, index_unique, what)
    return out


def repeated_cell(names: Sequence[Sequence[str]], index_unique: str | None, what: Sequence) -> InvalidInputError:
    """The refusal of a combined file whose cell names repeat (`names`: each file's own). A name one file holds
    twice (a raw matrix merged from lanes) is that file's to fix: index_unique appends one key to all of a file's
    cells, so it is suggested only for a name that several files share."""
    for source, own in zip(what, names):
        twice = next((n for n, c in Counter(own).items() if c > 1), None)
        if twice is not None:
            return InvalidInputError(f"{source}: cell {twice!r} is named more than once in this file; combined "
                                     "files must name each cell once, and index_unique, which appends the file's key "
                                     "to all its cells, cannot tell these apart (make the names unique first, as "
                                     "AnnData's obs_names_make_unique does)")
    if index_unique is not None:
        return InvalidInputError("cell names repeat even with each file's key appended; give the files other keys")
    twice = next(n for n, c in Counter(n for own in names for n in own).items() if c > 1)
    where = [str(source) for source, own in zip(what, names) if twice in own]
    return InvalidInputError(f"cell {twice!r} is named twice ({' and '.join(where[:2])}); pass index_unique='-' (--index-unique -) to "
                             "append each file's key to its cell names")
