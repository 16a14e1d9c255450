"""The feature `cell-barcodes` (format 3.2, spec §5.7): a chunk's cell names stored as 2-bit barcodes
(section cells.barcodes), read by every reader; a reader that lacks the feature refuses the matrix as
a version it does not read. Concat copies such chunks, writing cells.names in their place where it
makes the names unique."""
from __future__ import annotations

import pytest

import scinrcodec
from scinrcodec import _native, errors
from scinrcodec.codec import stages
from scinrcodec.reader.matrix import MatrixReader
from scinrcodec.storage.barcodes import BARCODE_KEYS
from scinrcodec.storage.layout import CELL_NAME_SECTIONS
from test_cell_order_planes import VECTORS


def test_a_reader_without_the_feature_refuses_its_matrices_as_unsupported(monkeypatch):
    monkeypatch.setattr(stages, "KNOWN_FEATURES", frozenset(stages.FEATURE_MINORS) - {"cell-barcodes"})
    with pytest.raises(errors.UnsupportedVersionError, match=r"'cell-barcodes' of \.sinr format 3\.2.*upgrade"):
        scinrcodec.open(VECTORS / "v3_cell_barcodes" / "matrix.sinr")


def _layout(path) -> tuple[tuple[int, int], list[str], list[set[str]]]:
    """A file's version, its matrix's required features, and the cell name sections of its chunks."""
    with MatrixReader(path) as m:
        index = m.index
        return m.version, list(index.header["required_features"]), [
            {name for name in CELL_NAME_SECTIONS if index.chunk(c).sections.has(name)} for c in range(index.n_chunks)]


def _names_exactly(path, names: list[str]) -> None:
    """Python's reader and the C++ core (the R package's) give `names` as the file's cell names."""
    with scinrcodec.open(path) as m:
        assert list(m.obs_names) == names
        m.verify()
    assert list(_native.ContainerReader(str(path)).cell_names()) == names


def test_concat_making_names_unique_writes_cells_names_in_place_of_barcodes(tmp_path):
    """A copied chunk whose names change is given cells.names, and loses barcode_length and
    barcode_suffix: the output needs no feature but segments."""
    vector = VECTORS / "v3_cell_barcodes" / "matrix.sinr"
    with scinrcodec.open(vector) as m:
        names = list(m.obs_names)
    out = tmp_path / "twice.sinr"
    scinrcodec.concat([vector, vector], out, index_unique="-")
    assert _layout(out) == ((3, 1), ["segments"], [{"cells.names"}] * 4)
    _names_exactly(out, [f"{name}-{i}" for i in range(2) for name in names])
    with MatrixReader(out) as m:
        assert not any(key in m.index._chunk_sections(c)[1] for c in range(4) for key in BARCODE_KEYS)


