"""The worked example of spec/sinr-format.md §9, byte for byte: the format cannot drift unnoticed."""
from __future__ import annotations

import struct

import numpy as np

import scinrcodec as sinr
from conftest import DATA

EXAMPLE = DATA / "spec_example.sinr"
EXPECTED = np.array([[0, 3, 0, 0, 1], [0, 0, 0, 0, 0], [2, 0, 0, 1, 0], [0, 0, 21, 0, 0]])
SECTIONS = {"names.gene_ids": 36, "names.gene_names": 29, "names.cell_names": 34, "order.genes": 21,
            "order.cells": 20, "baseline.genes": 15, "baseline.cells": 19, "bitmap.directory": 13,
            "blocks.lengths": 13, "blocks.words": 4, "values.histograms": 49, "values.offset_bits": 13,
            "values.offsets": 4}


def test_worked_example_decodes():
    blob = EXAMPLE.read_bytes()
    assert len(blob) == 1224
    assert blob[:20].hex(" ") == "89 53 49 4e 52 0d 0a 1a 01 00 00 00 a6 03 00 00 00 51 3d e3"
    assert struct.unpack_from("<HHI", blob, 8) == (1, 0, 934)
    with sinr.open(EXAMPLE) as m:
        assert np.array_equal(m.to_scipy().toarray(), EXPECTED)
        assert m.gene_names == ["CD3E", "EMPTY", "MS4A1", "LYZ"]
        assert m.gene_ids == ["ENSG01", "ENSG02", "ENSG03", "ENSG04"]
        assert m.cell_names == ["AAAC-1", "AAAG-1", "AACT-1", "AAGT-1", "ACGT-1"]
        assert m.header["geometry"] == {"row_starts": [0, 3], "widths": [5]}
        assert m.section_sizes() == SECTIONS
        assert m.genes.order.tolist() == [0, 2, 3, 1] and m.cells.order.tolist() == [2, 1, 0, 3, 4]
        assert m._words.tolist() == [0xFB975504] and m._offset_words.tolist() == [1]
        assert m._baseline.genes.tolist() == [17, 14, 49] and m._baseline.cells.tolist() == [0, 6, 3, -3, -6]
        assert m.get("LYZ", "AACT-1") == 21 and m.get("EMPTY", 0) == 0


def test_example_is_what_the_encoder_writes_today(tmp_path):
    """Re-encoding the example's matrix gives the same decoded content and section layout."""
    with sinr.open(EXAMPLE) as m:
        out = tmp_path / "again.sinr"
        sinr.encode(m.to_count_matrix(), out, siren=False, progress=False)
    with sinr.open(out) as again:
        assert again.section_sizes()["blocks.words"] == SECTIONS["blocks.words"]
        assert again._words.tolist() == [0xFB975504] and again._offset_words.tolist() == [1]
        assert np.array_equal(again.to_scipy().toarray(), EXPECTED)
