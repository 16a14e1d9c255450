"""Regenerate tests/data/spec_example.sinr, the worked example of spec/sinr-format.md §13.

    .venv/bin/python tests/make_spec_example.py

The output depends only on the matrix below, the encoder options and the zstd library (the
example's zstd frames are what libzstd writes at level 19); running the script twice gives the
same bytes. After regenerating, update every number that §13 of the spec and tests/test_spec.py
quote (the test names the ones that changed).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

EXAMPLE = Path(__file__).parent / "data" / "spec_example.sinr"

COUNTS = np.array([[0, 3, 0, 0, 1],
                   [0, 0, 0, 0, 0],
                   [2, 0, 0, 1, 0],
                   [0, 0, 21, 0, 0]])
GENE_IDS = ["ENSG01", "ENSG02", "ENSG03", "ENSG04"]
GENE_NAMES = ["CD3E", "EMPTY", "MS4A1", "LYZ"]
CELL_NAMES = ["AAAC-1", "AAAG-1", "AACT-1", "AAGT-1", "ACGT-1"]
OPTIONS = dict(format_version=2, siren="never", jobs=1, chunk_cells=4096, tile_nnz=256)  # as when it was made


def source():
    from scinrcodec.io.sources import ScipySource

    return ScipySource(sp.csc_matrix(COUNTS), GENE_IDS, GENE_NAMES, CELL_NAMES)


def write(path: Path) -> int:
    """Encode the example matrix to `path` (overwriting it); return the file's size."""
    import scinrcodec

    return scinrcodec.encode(source(), path, force=True, **OPTIONS)["bytes"]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    size = write(EXAMPLE)
    print(f"wrote {EXAMPLE} ({size} bytes)")
