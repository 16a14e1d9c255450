"""The feature `cell-barcodes` (format 3.2, spec §5.7): a chunk's cell names stored as 2-bit barcodes
(section cells.barcodes), read by every reader; a reader that lacks the feature refuses the matrix as
a version it does not read. The writer stores a raw matrix's sorted barcodes so (spec §12.4) and keeps
cells.names, and format 3.0, for filtered matrices and for names that are not bases and one suffix;
concat, subset and append list the feature exactly where a chunk of their output holds the barcodes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec
from conftest import DATA
from scinrcodec import _native, errors
from scinrcodec.cli import main
from scinrcodec.codec import stages
from scinrcodec.encoder import chunk
from scinrcodec.io.sources import ScipySource
from scinrcodec.reader.index import SectionReader
from scinrcodec.reader.matrix import MatrixReader
from scinrcodec.storage.barcodes import BARCODE_KEYS, barcode_deltas, barcode_names
from scinrcodec.storage.layout import CELL_NAME_SECTIONS
from test_cell_order_planes import FAST, VECTORS, _raw_like, _reads_exactly
from test_cell_order_planes import _layout as _sections_layout


def test_a_reader_without_the_feature_refuses_its_matrices_as_unsupported(monkeypatch):
    monkeypatch.setattr(stages, "KNOWN_FEATURES", frozenset(stages.FEATURE_MINORS) - {"cell-barcodes"})
    with pytest.raises(errors.UnsupportedVersionError, match=r"'cell-barcodes' of \.sinr format 3\.2.*upgrade"):
        scinrcodec.open(VECTORS / "v3_cell_barcodes" / "matrix.sinr")


@pytest.mark.parametrize("names", [["AAAC-1", "AAAG-1", "TTTT-1"], ["T" * 32], ["ACGT", "CCCC"], ["ACGN-1", "TTTN-1"],
                                   ["A" * 33]])
def test_names_of_bases_and_one_suffix_code_and_decode_exactly(names):
    """Up to 32 bases, the rest of a name (an N, a 33rd base) its suffix."""
    coded = barcode_deltas(names)
    assert coded is not None and barcode_names(coded[2], coded[0], coded[1], "t") == names


def test_a_suffix_of_any_utf_8_decodes_exactly():
    """The writer codes ASCII suffixes only; the spec allows any UTF-8 without line ends."""
    assert barcode_names(np.array([1, 1, 2**64 - 2], np.uint64), 3, "-é", "t") == ["AAC-é", "AAG-é", "AAA-é"]


@pytest.mark.parametrize("names", [["aaac-1", "aaag-1"], ["AANC-1", "AAAC-1"], ["AAC-1", "AAAC-1"],
                                   ["AAAC-1", "AAAC-2"], ["AAAC-é", "AAAG-é"], ["A-1", "C-1G", "-1"],
                                   ["AAAC-1\r", "AAAG-1\r"], ["NACG-1"], []])
def test_names_that_are_not_bases_and_one_ascii_suffix_keep_cells_names(names):
    """Lowercase, N, mixed lengths, mixed suffixes, non-ASCII, names whose bytes would align only
    together, a CR, no base, no name."""
    assert barcode_deltas(names) is None


def _barcoded(source: ScipySource, seed: int) -> tuple[ScipySource, list[str]]:
    """`source` with its cells named as Cell Ranger's raw matrices name them: distinct 16-base
    barcodes, sorted, and the suffix '-1'; and those names."""
    n = source.shape[1]
    codes = np.sort(np.random.default_rng(seed).choice(4**16, n, replace=False))
    names = ["".join("ACGT"[(int(c) >> (2 * (15 - j))) & 3] for j in range(16)) + "-1" for c in codes]
    return ScipySource(source.matrix(), source.gene_ids, source.gene_names, names), names


def _layout(path) -> tuple[tuple[int, int], list[str], list[set[str]]]:
    """A file's version, its matrix's required features, and the cell name sections of its chunks."""
    return _sections_layout(path, CELL_NAME_SECTIONS)


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


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A raw-like file named by barcodes, the matrix it holds and its names."""
    source, names = _barcoded(_raw_like(8000, 3), 3)
    path = tmp_path_factory.mktemp("barcodes") / "raw.sinr"
    scinrcodec.encode(source, path, **FAST)
    return path, source, names


def test_a_raw_matrix_stores_its_barcodes_in_a_smaller_file(raw, tmp_path, monkeypatch, capsys):
    path, source, names = raw
    assert _layout(path) == ((3, 2), ["cell-barcodes", "cell-order-planes"], [{"cells.barcodes"}])
    _reads_exactly(path, source.matrix())
    _names_exactly(path, names)
    cell = int(np.flatnonzero(np.diff(sp.csc_matrix(source.matrix()).indptr))[-1])
    gene = int(sp.csc_matrix(source.matrix())[:, cell].indices[0])
    assert main(["get", str(path), f"#{gene}", names[cell]]) == 0
    assert capsys.readouterr().out.strip() == str(int(source.matrix().tocsc()[gene, cell]))
    monkeypatch.setattr(chunk, "BARCODES_SAVE_AT_LEAST", 2**40)  # the writer before the feature
    before = tmp_path / "before.sinr"
    scinrcodec.encode(source, before, **FAST)
    assert _layout(before) == ((3, 2), ["cell-order-planes"], [{"cells.names"}])
    assert path.stat().st_size < before.stat().st_size - 2500  # 29,951 bytes and 33,030


def test_a_filtered_matrix_keeps_cells_names_and_format_3_0(tmp_path):
    """Its barcodes fit but save a fraction of a percent of its chunks: not worth a file that 3.0
    and 3.1 readers could not read (its bytes are those of the conformance vectors)."""
    path = tmp_path / "filtered.sinr"
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", path, chunk_cells=64, **FAST)
    version, features, sections = _layout(path)
    assert version == (3, 0) and features == [] and sections == [{"cells.names"}] * len(sections)


def test_names_that_do_not_fit_are_stored_as_cells_names(tmp_path):
    source = _raw_like(8000, 4)  # names 's4-000000', ...
    path = tmp_path / "named.sinr"
    scinrcodec.encode(source, path, **FAST)
    assert _layout(path) == ((3, 2), ["cell-order-planes"], [{"cells.names"}])


def test_subset_by_barcode_codes_its_cells_again(raw, tmp_path):
    path, source, names = raw
    keep = names[::2]
    out = tmp_path / "half.sinr"
    scinrcodec.subset(path, out, cells=keep)
    assert _layout(out)[1] == ["cell-barcodes", "cell-order-planes"]
    _reads_exactly(out, sp.csc_matrix(source.matrix())[:, ::2])
    _names_exactly(out, keep)


def _filtered(tmp_path) -> tuple:
    """pbmc4k's 80 filtered cells encoded (cells.names, format 3.0), and their source."""
    path = tmp_path / "filtered.sinr"
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", path, **FAST)
    cells = scinrcodec.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    return path, cells, list(cells.cell_names(0, cells.shape[1]))


def test_concat_lists_the_feature_where_a_chunk_holds_barcodes(raw, tmp_path):
    """Copied chunks keep their barcodes."""
    path, source, names = raw
    filtered, cells, filtered_names = _filtered(tmp_path)
    out = tmp_path / "both.sinr"
    assert scinrcodec.concat([filtered, path], out)["copied_chunks"] == 2
    assert _layout(out) == ((3, 2), ["cell-barcodes", "cell-order-planes", "segments"],
                            [{"cells.names"}, {"cells.barcodes"}])
    _reads_exactly(out, sp.hstack([cells.matrix(), source.matrix()]))
    _names_exactly(out, filtered_names + names)


def test_append_lists_the_feature_of_its_new_chunks(raw, tmp_path):
    _, source, names = raw
    filtered, cells, filtered_names = _filtered(tmp_path)
    scinrcodec.append(filtered, source)
    version, features, sections = _layout(filtered)
    assert (version, features) == ((3, 2), ["cell-barcodes"])  # the new chunks' cell orders stay cells.order
    assert sections == [{"cells.names"}] + [{"cells.barcodes"}] * (len(sections) - 1) and len(sections) > 1
    _reads_exactly(filtered, sp.hstack([cells.matrix(), source.matrix()]))
    _names_exactly(filtered, filtered_names + names)


@pytest.mark.parametrize("budget", [2**40, chunk.BARCODES_SAVE_AT_LEAST])
def test_verify_decodes_each_chunks_names_once(raw, tmp_path, monkeypatch, budget):
    """As cells.names or as barcodes, a chunk's names are decoded once, where verify checks them as
    names (rule CB3), not also as one section among the others (737,280 names take 15% of a raw
    file's verify)."""
    path, source, _ = raw
    monkeypatch.setattr(chunk, "BARCODES_SAVE_AT_LEAST", budget)  # 2**40: the names as cells.names
    out = tmp_path / "raw.sinr"
    scinrcodec.encode(source, out, **FAST)
    decoded = []
    get = SectionReader.get
    monkeypatch.setattr(SectionReader, "get", lambda self, name, **kw: (decoded.append(name), get(self, name, **kw))[1])
    with scinrcodec.open(out) as m:
        m.verify()
        n_chunks = m.index.n_chunks
    held = sorted(name for sections in _layout(out)[2] for name in sections)
    assert len(held) == n_chunks and sorted(name for name in decoded if name in CELL_NAME_SECTIONS) == held
