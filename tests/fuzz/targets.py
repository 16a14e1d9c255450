"""What the fuzzers run on each input, shared with the tests that replay their findings.

The first input byte chooses how the rest is used: as a file as is (checksums and all), or, for
the reader, as a file whose checksums are recomputed first (reseal.py), so that mutations reach
the cross-field checks and the compiled tile decoder behind them.
"""
from __future__ import annotations

import gc
import types

from fuzz.reseal import reseal
from scinrcodec.errors import SinrError
from scinrcodec.wholefile.matrix import SinrMatrix
from scinrcodec.report import describe


def exercise_reader(data: bytes) -> None:
    """Open, describe, read entries, genes, cells, a block and everything, then verify."""
    if not data:
        return
    blob = reseal(data[1:]) if data[0] & 1 else data[1:]
    try:
        matrix = SinrMatrix(blob)
        describe(matrix)
        _ = matrix.gene_names, matrix.gene_ids, matrix.cell_names, matrix.feature_types
        n_genes, n_cells = matrix.shape
        if n_genes and n_cells:
            matrix[0, 0]
            matrix[n_genes - 1, n_cells - 1]
            matrix.gene(0)
            matrix.cell(n_cells - 1)
            matrix[: min(n_genes, 5), : min(n_cells, 5)]
        matrix.to_scipy()
        matrix.verify()
    except SinrError:
        pass


def instrument_package() -> None:
    """Let coverage guide scinrcodec's own functions only: instrumenting everything loaded (numpy,
    scipy, h5py, anndata) takes minutes before the first run. Call after replaying the corpus once,
    so that every module an input reaches is imported."""
    import atheris

    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith("scinrcodec"):
            atheris.instrument_func(obj)
