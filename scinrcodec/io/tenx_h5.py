"""10x Genomics HDF5 input (Cell Ranger v3 `matrix/` group, or v2 with one genome group): cells as
slices of its CSC arrays, gene ids, names and feature types read when the source opens."""
from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError
from .hdf5 import CompressedH5Source, checked_dataset, h5_errors, open_h5, string_dataset
from .sources import SourceSpec, check_shape


def read_10x_h5(path: Path) -> CompressedH5Source:
    """Cell Ranger HDF5: the v3 `matrix/` group, or v2 with one genome group."""
    import h5py

    what = str(path)
    with h5_errors(what), open_h5(path) as f:
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
        shape = checked_dataset(g, "shape", what, "iu")
        if shape.shape != (2,):
            raise InvalidInputError(f"{path}: {shape.name} holds {shape.shape[0]:,} numbers, not 2")
        shape = check_shape(shape[:], what)
        gene_ids = string_dataset(features, ids, shape[0], what)
        gene_names = string_dataset(features, names, shape[0], what)
        feature_types = (string_dataset(features, types, shape[0], what)
                         if types is not None and types in features else None)
        barcodes = f"{group}/barcodes" if "barcodes" in g else None
        return CompressedH5Source(f, path, group, shape, cell_names=barcodes, gene_ids=gene_ids,
                                  gene_names=gene_names, feature_types=feature_types,
                                  spec=SourceSpec("path", dict(path=str(path))), description=what)
