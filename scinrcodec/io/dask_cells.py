"""A dask array of cells x genes (AnnData's orientation: the X of a lazy AnnData, read_lazy's or
one a user built) as a genes x cells source, computed one block of rows at a time, so that a lazy
AnnData (a subset of one, say) is encoded without being loaded whole. dask is imported by whoever
built the array; this module only looks at it."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .sources import (CellBlock, MatrixSource, check_names, check_shape, checked_sparse, sparse_values,
                      validated_block)


def is_dask_array(x) -> bool:
    """Whether x is a dask array, or a subclass of one (AnnData's view of one), without importing dask."""
    return any(c.__module__ == "dask.array.core" and c.__name__ == "Array" for c in type(x).__mro__)


# the graph layer of a lazy .sinr matrix (reader.lazy.dask_matrix): its blocks' tasks and, under
# MATRIX_KEY + the same token, the node of the open matrix, whose `path` is its local file or None
CELLS_LAYER, MATRIX_KEY = "sinr-cells-", "sinr-matrix-"


def read_files(x) -> tuple[str, ...]:
    """The local .sinr files a dask array reads: those of the lazy matrices it was computed from
    (an output must not replace one of them)."""
    graph = x.__dask_graph__()
    files = []
    for name, layer in getattr(graph, "layers", {}).items():
        if isinstance(name, str) and name.startswith(CELLS_LAYER):
            path = getattr(layer.get(MATRIX_KEY + name[len(CELLS_LAYER):]), "path", None)
            if path is not None:
                files.append(path)
    return tuple(files)


def holds_counts(x, whole_counts) -> bool:
    """Whether every block of the dask array holds only counts (`whole_counts` of its values, and
    no repeated coordinate): one pass over the blocks, in parallel, one block in memory per worker."""
    if x.ndim != 2 or np.dtype(x.dtype).kind not in "iuf":
        return False

    def block_counts(block) -> np.ndarray:
        if sp.issparse(block):
            m = sp.csr_matrix(block)
            canonical = m.has_canonical_format or m.sorted_indices().has_canonical_format
            return np.array([[canonical and whole_counts(m.data)]])
        return np.array([[whole_counts(np.asarray(block))]])

    flags = x.map_blocks(block_counts, chunks=(1, 1), dtype=bool, meta=np.empty((0, 0), dtype=bool))
    return bool(flags.all().compute())


class DaskCellsSource(MatrixSource):
    """A dask array, cells x genes, as a genes x cells source: each of its blocks of rows computed
    once, then cut into the blocks the encoder asks for."""

    def __init__(self, x, gene_ids=None, gene_names=None, cell_names=None, feature_types=None, *,
                 description: str = "input") -> None:
        self.description = description
        if x.ndim != 2:
            raise InvalidInputError(f"{description}: expected a 2-D matrix, got {x.ndim} dimensions")
        self.shape = check_shape(x.shape[::-1], description)
        n_genes, n_cells = self.shape
        self._x = x
        self.gene_ids = check_names(gene_ids, n_genes, f"{description} gene ids")
        self.gene_names = check_names(gene_names, n_genes, f"{description} gene names")
        self.feature_types = check_names(feature_types, n_genes, f"{description} feature types")
        self._cell_names = check_names(cell_names, n_cells, f"{description} cell names")
        self.paths = read_files(x)

    def cell_names(self, start: int, stop: int) -> list[str] | None:
        """Names of cells start..stop-1, or None without names."""
        return None if self._cell_names is None else self._cell_names[start:stop]

    def blocks(self, cells_per_block: int) -> Iterator[CellBlock]:
        """The cells in order, in blocks of cells_per_block (the last may be smaller), as any source
        gives them, so that the file's chunks do not depend on the array's row blocks: each row block
        computed once (all its columns) and checked as an in-memory matrix is; the cells left over
        at its end go with the next one."""
        pending, first, start = None, 0, 0
        for rows in self._x.chunks[0]:
            # cells x genes, scipy sparse or dense; unoptimised, so that a block's tasks keep their keys
            # (fused into each row block's culled graph, a node shared by the blocks took another task
            # under the same key in every compute: dask.distributed warns that this can deadlock)
            part = self._x[start: start + rows].compute(optimize_graph=False)
            start += rows
            if not sp.issparse(part):
                part = sp.csr_matrix(sparse_values(np.asarray(part), self.description))
            csc = checked_sparse(part.T, self.description)  # genes x cells
            pending = csc if pending is None else sp.hstack([pending, csc], format="csc")
            while pending.shape[1] >= cells_per_block:
                yield self._block(first, pending[:, :cells_per_block])
                pending, first = pending[:, cells_per_block:], first + cells_per_block
        if pending is not None and pending.shape[1]:
            yield self._block(first, pending)

    def _block(self, first: int, csc: sp.csc_matrix) -> CellBlock:
        return validated_block(first, csc.indptr, csc.indices, csc.data, self.shape[0], self.description)
