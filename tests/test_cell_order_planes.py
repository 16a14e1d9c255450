"""The feature `cell-order-planes` (format 3.2, spec §5.6): a chunk's cell order stored as the byte
planes of its array (section cells.order_planes), read by every reader; a reader that lacks the
feature refuses the matrix as a version it does not read, naming the feature. The writer stores a
raw matrix's cell orders so (spec §12.4) and keeps cells.order, and format 3.0, for filtered ones;
concat, subset and append list the feature exactly where a chunk of their output holds the planes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec
from conftest import DATA, thinned_copies
from scinrcodec import _native, errors
from scinrcodec.codec import stages
from scinrcodec.encoder import chunk
from scinrcodec.io.sources import ScipySource
from scinrcodec.reader.matrix import MatrixReader
from scinrcodec.storage.layout import CELL_ORDER_SECTIONS

VECTORS = Path(__file__).resolve().parent / "conformance"


def test_a_reader_without_the_feature_refuses_its_matrices_as_unsupported(monkeypatch):
    """What a 3.1 reader (whose known features are `segments` alone) says of a matrix listing the
    feature: the 'unsupported version' kind of spec §5.1.1, naming the feature and the file's version,
    not a corrupt file."""
    monkeypatch.setattr(stages, "KNOWN_FEATURES", frozenset(stages.FEATURE_MINORS) - {"cell-order-planes"})
    with pytest.raises(errors.UnsupportedVersionError, match=r"'cell-order-planes' of \.sinr format 3\.2.*upgrade"):
        scinrcodec.open(VECTORS / "v3_cell_order_planes" / "matrix.sinr")


# ---------------------------------------------------------------------------------------- the writer

FAST = dict(siren="never", progress=False)


def _raw_like(n_empty: int, seed: int) -> ScipySource:
    """A raw (unfiltered) matrix in small: pbmc4k's 80 cells among `n_empty` barcodes holding nothing, at
    random places, named like barcodes; most of a chunk's cell order is then the empty ones in index order."""
    src = scinrcodec.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    m = sp.csc_matrix(src.matrix(), dtype=np.int64)
    total = m.shape[1] + n_empty
    where = np.sort(np.random.default_rng(seed).choice(total, m.shape[1], replace=False))
    per_cell = np.bincount(where, weights=np.diff(m.indptr), minlength=total).astype(np.int64)
    x = sp.csc_matrix((m.data, m.indices, np.concatenate([[0], np.cumsum(per_cell)])), shape=(m.shape[0], total))
    return ScipySource(x, src.gene_ids, src.gene_names, [f"s{seed}-{j:06d}" for j in range(total)])


def _layout(path, sections: tuple[str, ...] = CELL_ORDER_SECTIONS) -> tuple[tuple[int, int], list[str], list[set[str]]]:
    """A file's version, its matrix's required features, and which of `sections` (by default the cell
    order's) each of its chunks holds."""
    with MatrixReader(path) as m:
        index = m.index
        return m.version, list(index.header["required_features"]), [
            {name for name in sections if index.chunk(c).sections.has(name)} for c in range(index.n_chunks)]


def _reads_exactly(path, expected: sp.spmatrix) -> None:
    """Python's reader and the C++ core (the R package's) read `path` as `expected`."""
    expected = sp.csc_matrix(expected, dtype=np.int64)
    with scinrcodec.open(path) as m:
        assert (sp.csc_matrix(m.to_scipy(layout="csc"), dtype=np.int64) != expected).nnz == 0
        m.verify()
    shape, indptr, indices, values = _native.ContainerReader(str(path)).whole(2)
    assert (sp.csc_matrix((values, indices, indptr), shape=shape) != expected).nnz == 0


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two raw-like files (different barcodes) and the matrices they hold."""
    folder = tmp_path_factory.mktemp("planes")
    out = {}
    for seed in (1, 2):
        source = _raw_like(8000, seed)
        path = folder / f"raw{seed}.sinr"
        scinrcodec.encode(source, path, **FAST)
        out[seed] = (path, source)
    return out


def test_a_raw_matrix_stores_its_cell_orders_as_planes_in_a_smaller_file(raw, tmp_path, monkeypatch):
    path, source = raw[1]
    assert _layout(path) == ((3, 2), ["cell-order-planes"], [{"cells.order_planes"}])
    _reads_exactly(path, source.matrix())
    monkeypatch.setattr(chunk, "PLANES_AT_MOST", 0.0)  # the writer before the feature: cells.order always
    monkeypatch.setattr(chunk, "PLANES_SAVE_SHARE", float("inf"))
    before = tmp_path / "before.sinr"
    scinrcodec.encode(source, before, **FAST)
    assert _layout(before) == ((3, 0), [], [{"cells.order"}])
    assert path.stat().st_size < 0.5 * before.stat().st_size  # 8,268 bytes and 25,946 (cell orders 770 and 18,463)


def test_a_filtered_matrix_keeps_cells_order_and_format_3_0(tmp_path):
    """Its cell orders are a shuffle, which byte planes shrink by a fifth at most: not worth a file
    that 3.0 and 3.1 readers could not read (its bytes are those of the conformance vectors)."""
    path = tmp_path / "filtered.sinr"
    scinrcodec.encode(DATA / "frozen_pbmc_donor_a_v1", path, chunk_cells=2048, **FAST)
    version, features, orders = _layout(path)
    assert version == (3, 0) and features == [] and orders == [{"cells.order"}] * len(orders)


def test_cells_of_few_nonzeros_store_a_shuffled_order_as_planes_where_they_save_a_share(tmp_path, monkeypatch):
    """The real 50-gene cut's 80 cells in 200 copies, each binomially thinned, one chunk of 16,000
    cells of about 8 nonzeros, coded by depth: its order, a shuffle, is a large part of the chunk, and
    the planes (about 0.8x the array) save more than 2% of it and 4 KiB (chunk.PLANES_SAVE_SHARE):
    stored so, the file smaller."""
    monkeypatch.setattr(chunk, "ORDER_TRIAL_SHARE", float("inf"))  # by depth: a shuffled order
    counts = thinned_copies(scinrcodec.read_matrix(DATA / "pbmc500_3p_lt_x_50genes").matrix(), 200)
    path = tmp_path / "shallow.sinr"
    scinrcodec.encode(counts, path, chunk_cells=16_000, **FAST)
    assert _layout(path) == ((3, 2), ["cell-order-planes"], [{"cells.order_planes"}])
    _reads_exactly(path, counts)
    monkeypatch.setattr(chunk, "PLANES_SAVE_SHARE", float("inf"))  # the rule before: at most half the array
    scinrcodec.encode(counts, tmp_path / "before.sinr", chunk_cells=16_000, **FAST)
    assert _layout(tmp_path / "before.sinr") == ((3, 0), [], [{"cells.order"}])
    assert path.stat().st_size < (tmp_path / "before.sinr").stat().st_size - 4096


def test_concat_lists_the_feature_where_a_copied_chunk_holds_planes(raw, tmp_path):
    path, source = raw[1]
    filtered = tmp_path / "filtered.sinr"
    cells = scinrcodec.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", filtered, **FAST)
    out = tmp_path / "both.sinr"
    assert scinrcodec.concat([filtered, path], out, index_unique="-")["copied_chunks"] == 2
    assert _layout(out) == ((3, 2), ["cell-order-planes", "segments"], [{"cells.order"}, {"cells.order_planes"}])
    _reads_exactly(out, sp.hstack([cells.matrix(), source.matrix()]))
    alone = tmp_path / "filtered_twice.sinr"
    scinrcodec.concat([filtered, filtered], alone, index_unique="-")
    assert _layout(alone)[:2] == ((3, 1), ["segments"])


def test_subset_of_a_raw_matrix_codes_its_cells_again(raw, tmp_path):
    path, source = raw[2]
    keep = np.arange(0, source.shape[1], 2)
    out = tmp_path / "half.sinr"
    scinrcodec.subset(path, out, cells=keep)
    assert _layout(out) == ((3, 2), ["cell-order-planes"], [{"cells.order_planes"}])
    _reads_exactly(out, sp.csc_matrix(source.matrix())[:, keep])


def test_append_raises_the_version_of_a_file_whose_new_chunks_hold_planes(raw, tmp_path):
    """A 3.0 file gaining raw cells becomes 3.2 (its preamble written again, under the footer's CRC);
    a 3.2 file gaining filtered cells keeps the feature its old chunks need."""
    raw_path, source = raw[1]
    filtered = tmp_path / "filtered.sinr"
    cells = scinrcodec.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", filtered, chunk_cells=4096, **FAST)  # 4,096 a chunk appended
    assert _layout(filtered)[:2] == ((3, 0), [])
    scinrcodec.append(filtered, source)
    version, features, orders = _layout(filtered)
    assert (version, features) == ((3, 2), ["cell-order-planes"])
    assert orders == [{"cells.order"}] + [{"cells.order_planes"}] * (len(orders) - 1) and len(orders) > 1
    _reads_exactly(filtered, sp.hstack([cells.matrix(), source.matrix()]))
    grown = tmp_path / "raw.sinr"
    grown.write_bytes(raw_path.read_bytes())
    more = ScipySource(sp.csc_matrix(cells.matrix()), cells.gene_ids, cells.gene_names,
                       [f"late-{j}" for j in range(cells.shape[1])])
    scinrcodec.append(grown, more)
    assert _layout(grown) == ((3, 2), ["cell-order-planes"], [{"cells.order_planes"}, {"cells.order"}])
    _reads_exactly(grown, sp.hstack([source.matrix(), cells.matrix()]))


@pytest.mark.parametrize("listed", [["future-feature"], 5, ["cell-order-planes"]])
def test_append_to_a_version_2_file_ignores_its_required_features_key(raw, tmp_path, listed):
    """A version 2 matrix may carry a `required_features` key, which its readers ignore (spec §5.1.1):
    append (which keeps the file's matrix map) had read it for the preamble's minor version, failing
    with a KeyError or TypeError or declaring the file 2.2 or 2.1 (for `segments`)."""
    from conformance.make_vectors import edit

    _, source = raw[1]
    path = tmp_path / "v2.sinr"
    cells = scinrcodec.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    scinrcodec.encode(DATA / "pbmc4k_v2_soupx_half", path, format_version=2, **FAST)
    path.write_bytes(edit(path.read_bytes(), lambda parts: parts.matrix.update(required_features=listed)))
    scinrcodec.append(path, source)
    with MatrixReader(path) as m:
        assert m.version == (2, 0)
    _reads_exactly(path, sp.hstack([cells.matrix(), source.matrix()]))


@pytest.mark.parametrize("vector", ["bands_and_tiles", "v3_bands_and_tiles"])
def test_a_chunk_without_cells_order_in_a_matrix_without_the_feature_misses_that_section(vector, tmp_path):
    """A version 2 file, or a matrix that does not list `cell-order-planes`, keeps its cell order in
    cells.order alone, which K5 requires: each reader names that section missing, not 'neither of
    cells.order and cells.order_planes', a section such a file cannot hold (and the reference
    decoder rule K5, not CP1, a rule of version 3 matrices with the feature)."""
    from conformance.make_vectors import drop_section, edit
    from conftest import reference_decoder

    blob = edit((VECTORS / vector / "matrix.sinr").read_bytes(),
                lambda parts: drop_section(parts.chunks[1].sections, "cells.order"))
    path = tmp_path / "no_order.sinr"
    path.write_bytes(blob)
    missing = r"chunk 1: missing section\(s\) \['cells.order'\]$"
    with pytest.raises(errors.CorruptFileError, match=missing), scinrcodec.open(path) as m:
        m.to_scipy()
    with pytest.raises(errors.CorruptFileError, match=missing):
        _native.ContainerReader(str(path)).whole(1)
    decoder = reference_decoder()
    with pytest.raises(decoder.SpecViolation, match="missing section 'cells.order'") as refused:
        decoder.open_sinr(blob).decode(strict=True)
    assert refused.value.check_id == "K5"
