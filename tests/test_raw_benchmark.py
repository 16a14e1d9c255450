"""`python -m benchmarks.raw`: its raw-like input holds the dataset's cells unchanged at the barcodes
it names, ambient barcodes thinned from real cells, every other barcode empty, sorted barcodes."""
import numpy as np
import pytest

from conftest import DATA


def test_a_raw_like_input_holds_the_cells_unchanged_among_empty_droplets(tmp_path):
    raw = pytest.importorskip("benchmarks.raw")
    import scinrcodec as sinr

    source = sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    meta = raw.build(DATA / "pbmc4k_v2_soupx_half", 2_000, 300, tmp_path / "raw.h5")
    built = sinr.read_matrix(tmp_path / "raw.h5")
    x, cells = built.matrix().tocsc(), source.matrix().tocsc()
    names = built.cell_names(0, built.shape[1])
    assert built.shape == (source.shape[0], 2_000) and names == sorted(names) and len(set(names)) == 2_000
    at = [names.index(b) for b in meta["cell_barcodes"]]
    assert at == sorted(at) and (x[:, at] != cells).nnz == 0  # the cells, in their order, unchanged
    others = np.setdiff1d(np.arange(2_000), at)
    per_barcode = np.diff(x.indptr)[others]
    assert meta["nnz"] == x.nnz and meta["nonempty"] == np.count_nonzero(np.diff(x.indptr))
    assert 0 < np.count_nonzero(per_barcode) <= 300 and x[:, others].sum() < cells.sum() / 10
