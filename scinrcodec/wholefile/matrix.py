"""SinrMatrix, the open .sinr file users get from scinrcodec.open: the reader's MatrixReader (every
read of the matrix) and what needs whole-file storage above the reader, the file's AnnData and
batches of cells with their obs. Defined here, above the reader, so that the reader never
imports the layer built on it."""
from __future__ import annotations

import numpy as np

from ..reader.matrix import MatrixReader, fits_in_memory


class SinrMatrix(MatrixReader):
    """An open .sinr matrix (see MatrixReader for every read). Thread-safe, as MatrixReader is."""

    @property
    def obs_names(self):
        """The cells' names as a pandas Index, as to_anndata's obs_names: named as the AnnData
        written named them (a whole-AnnData file)."""
        return self._named_index(super().obs_names, "obs")

    @property
    def var_names(self):
        """The genes' names as a pandas Index, as to_anndata's var_names (gene names, else ids),
        named as obs_names is (raw.X's unnamed: raw.var's index name is in its stored frame)."""
        return self._named_index(super().var_names, "var")

    def _named_index(self, index, part: str):
        contents = self.contents
        entry = contents.names_in.get(part) if contents is not None and contents.object == "anndata" else None
        if entry is not None and (part == "obs" or entry.get("matrix") == self.name):  # raw/X's var is raw.var
            index.name = entry.get("index_name")
        return index

    @fits_in_memory("building an AnnData")
    def to_anndata(self, *, lazy: bool = False, feature_type: str | None = None, dtype=None):
        """Cells x genes AnnData with names, as scanpy expects. A file that stores a whole AnnData
        gives it back whole, every part as it was and X in its own dtype (whichever matrix was
        opened; a lossy one of a narrow type widened: io.dtypes.widened); a file of one matrix gives
        X as float32 (dtype= chooses: io.dtypes states the policy). lazy=True gives X as a dask array
        of this matrix's chunks, decoded on demand, with the other parts loaded
        (scinrcodec.wholefile.lazy). feature_type keeps the features of one type ('Antibody
        Capture') of a multi-modal file."""
        from .restore import to_anndata  # anndata and pandas load only when an AnnData is asked for

        return to_anndata(self, lazy=lazy, feature_type=feature_type, dtype=dtype)

    def iter_cells(self, batch_size: int = 256, *, shuffle: bool = True, seed: int | None = None, buffer: int = 4,
                   dtype=np.float32, obs: bool = True, drop_last: bool = False, jobs: int | None = None,
                   shard: tuple[int, int] | None = None):
        """One epoch of batches of cells for training: CellBatch(X, obs, cells), X a cells x genes
        CSR. Chunks are decoded whole, `buffer` at a time (the next buffer decodes meanwhile), and
        with shuffle their cells are shuffled together (block shuffle): every cell comes exactly
        once, in an order fixed by `seed`. Only the last batch may be smaller (or left out with
        drop_last). torch is not needed: wrap the batches in a torch IterableDataset to use one;
        with a DataLoader of several workers, worker k of n takes shard=(k, n) (the same seed in
        each): the shards split the epoch's cells into runs of sizes within one cell of each other,
        so together they give every cell once, and each decodes only the chunks of its run."""
        from .batches import iter_cells

        return iter_cells(self, batch_size, shuffle=shuffle, seed=seed, buffer=buffer, dtype=dtype, obs=obs,
                          drop_last=drop_last, jobs=jobs, shard=shard)


def open(source, *, matrix: str | None = None, jobs: int | None = None,  # noqa: A001
         storage_options: dict | None = None) -> SinrMatrix:
    """Open a .sinr file: a path, a URL (s3://, gs://, http(s)://, any fsspec URL, with fsspec's
    storage_options), bytes, or a seekable binary file object. Only the footer and the chunk index
    are read (from a URL: usually one round trip of two requests); everything else is read and
    checked when first needed."""
    return SinrMatrix(source, matrix=matrix, jobs=jobs, storage_options=storage_options)
