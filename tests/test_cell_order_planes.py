"""The feature `cell-order-planes` (format 3.2, spec §5.6): a chunk's cell order stored as the byte
planes of its array (section cells.order_planes), read by every reader; a reader that lacks the
feature refuses the matrix as a version it does not read, naming the feature."""
from __future__ import annotations

from pathlib import Path

import pytest

import scinrcodec
from scinrcodec import errors
from scinrcodec.codec import stages

VECTORS = Path(__file__).resolve().parent / "conformance"


def test_a_reader_without_the_feature_refuses_its_matrices_as_unsupported(monkeypatch):
    """What a 3.1 reader (whose known features are `segments` alone) says of a matrix listing the
    feature: the 'unsupported version' kind of spec §5.1.1, naming the feature and the file's version,
    not a corrupt file."""
    monkeypatch.setattr(stages, "KNOWN_FEATURES", frozenset(stages.FEATURE_MINORS) - {"cell-order-planes"})
    with pytest.raises(errors.UnsupportedVersionError, match=r"'cell-order-planes' of \.sinr format 3\.2.*upgrade"):
        scinrcodec.open(VECTORS / "v3_cell_order_planes" / "matrix.sinr")
