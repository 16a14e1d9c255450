"""Reading segmented matrices (format 3.1, feature `segments`, spec §5.5): files that concat wrote
by copying the chunks of real cuts whose gene tables differ (genes stored in one input only, the
same gene at other rows, segments of fewer rows than others), read back exactly by every read
path against the inputs' own decoded matrices with their genes aligned, from a path, from bytes
and over HTTP; and files that break rules SG1-SG4 refused with CorruptFileError."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, FAST, needs
from conformance.make_vectors import Parts, drop_section, edit, pack_array, parse_file, unpack_array
from scinrcodec.cli import main as sinr_main
from scinrcodec.errors import CorruptFileError
from servers import NGINX, Nginx

SMALL = dict(chunk_cells=16, tile_nnz=24, **FAST)  # several chunks per input, several bands per chunk


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Cuts of two real fixtures, each a format-3.0 file of one segment:
    a: pbmc4k, every gene, cells 0..39;
    b: pbmc4k cells 40..79 with 120 of its genes (every gene with a count anywhere among them) in
       another order: genes a stores and b does not, and the converse, and shared genes at other rows;
    c: pbmc500 (one gene id shared with pbmc4k) cells 0..29: genes stored in c alone, fewer rows;
    z: 20 cells without a count (pbmc4k's genes): a segment of no rows;
    a_lossy, b_lossy: a and b in mode max-error."""
    folder = tmp_path_factory.mktemp("segments_in")
    pbmc = sinr.read_matrix(DATA / "pbmc4k_v2_soupx_half")
    x = sp.csr_matrix(pbmc.matrix()).astype(np.int64)
    ids, names, cells = list(pbmc.gene_ids), list(pbmc.gene_names), pbmc.cell_names(0, x.shape[1])
    rng = np.random.default_rng(7)
    expressed = np.flatnonzero(np.diff(x.indptr))
    silent = np.setdiff1d(np.arange(x.shape[0]), expressed)
    genes_b = rng.permutation(np.concatenate([expressed, silent[: 120 - expressed.size]]))
    other = sinr.read_matrix(DATA / "pbmc500_3p_lt_x_50genes")
    y = sp.csr_matrix(other.matrix()).astype(np.int64)
    cuts = {
        "a": sinr.CountMatrix(x[:, :40], ids, names, cells[:40]),
        "b": sinr.CountMatrix(x[genes_b][:, 40:], [ids[g] for g in genes_b], [names[g] for g in genes_b], cells[40:]),
        "c": sinr.CountMatrix(y[:, :30], list(other.gene_ids), list(other.gene_names), other.cell_names(0, 30)),
        "z": sinr.CountMatrix(sp.csr_matrix((x.shape[0], 20), dtype=np.int64), ids, names,
                              [f"z{j}" for j in range(20)]),
    }
    for key, matrix in cuts.items():
        sinr.encode(matrix, folder / f"{key}.sinr", **SMALL)
    for key in ("a", "b"):
        sinr.encode(cuts[key], folder / f"{key}_lossy.sinr", mode="max-error", max_error=2, **SMALL)
    return folder


def _decoded(path) -> tuple[sp.csr_matrix, list[str], list[str]]:
    with sinr.open(path) as m:
        return m.to_scipy(), m.gene_ids, m.cell_names


def _expected(inputs_paths, out_ids) -> sp.csr_matrix:
    """The inputs' decoded matrices side by side, each gene at its row of the output (by id)."""
    at = {g: i for i, g in enumerate(out_ids)}
    blocks = []
    for path in inputs_paths:
        x, ids, _ = _decoded(path)
        keep = [i for i, g in enumerate(ids) if g in at]
        assert x[np.setdiff1d(np.arange(len(ids)), keep)].nnz == 0  # what the output drops is all zero
        move = sp.csr_matrix((np.ones(len(keep)), ([at[ids[i]] for i in keep], keep)), shape=(len(out_ids), len(ids)))
        blocks.append(sp.csr_matrix(move @ x).astype(np.int64))
    return sp.csr_matrix(sp.hstack(blocks))


CASES = {  # name: (inputs, join, segments)
    "outer": (["a", "b", "c"], "outer", 3),
    "inner": (["a", "b"], "inner", 2),
    "lossy": (["a_lossy", "b_lossy"], "outer", 2),
    "empty_segment": (["a", "z", "b"], "outer", 3),
}


@pytest.fixture(scope="module")
def combined(inputs):
    """Each case's segmented file and its expected matrix; "nested" combines the outer file of a
    and b (itself segmented) with c, whose segments it keeps."""
    out = {}
    for name, (keys, join, n_segments) in CASES.items():
        path = inputs / f"{name}.sinr"
        result = sinr.concat([inputs / f"{k}.sinr" for k in keys], path, join=join)
        assert result["segments"] == n_segments, result
        with sinr.open(path) as m:
            out[name] = (path, _expected([inputs / f"{k}.sinr" for k in keys], m.gene_ids))
    ab = inputs / "ab.sinr"
    sinr.concat([inputs / "a.sinr", inputs / "b.sinr"], ab, join="outer")
    path = inputs / "nested.sinr"
    assert sinr.concat([ab, inputs / "c.sinr"], path, join="outer")["segments"] == 3
    with sinr.open(path) as m:
        out["nested"] = (path, _expected([inputs / "a.sinr", inputs / "b.sinr", inputs / "c.sinr"], m.gene_ids))
    return out


def test_the_segments_differ_as_the_cuts_were_made_to(combined):
    """The premise of the other tests: genes stored in one segment only (both ways), a gene stored
    in two segments at different rows, segments of different row counts, chunks with fewer rows
    than their segment."""
    path, _ = combined["outer"]
    with sinr.open(path) as m:
        index = m.index
        assert m.n_segments == 3 and index.segmented and m.version == (3, 1)
        seg = [index.segment_genes(s) for s in range(3)]
        assert len({g.size for g in seg}) == 3
        assert set(seg[0]) - set(seg[1]) and set(seg[1]) - set(seg[0]) and set(seg[2]) - set(seg[0]) - set(seg[1])
        shared = np.intersect1d(seg[0], seg[1])
        assert any(np.flatnonzero(seg[0] == g)[0] != np.flatnonzero(seg[1] == g)[0] for g in shared)
        assert index.n_stored > m.shape[0] // 2 and np.unique(np.concatenate(seg)).size < index.n_stored
        rows = [index.chunk(c).n_rows for c in range(m.n_chunks)]
        assert any(r < np.diff(index.segment_row_starts)[index.chunk_segment[c]] for c, r in enumerate(rows))
    with sinr.open(combined["empty_segment"][0]) as m:
        assert list(np.diff(m.index.segment_row_starts) == 0) == [False, True, False]


def _every_read(m, expected: sp.csr_matrix) -> None:
    """Every read path of an open matrix against the expected genes x cells matrix, exactly."""
    dense = expected.toarray()
    n_genes, n_cells = dense.shape
    assert m.shape == dense.shape and m.nnz == expected.nnz
    for layout in ("csr", "csc"):
        got = m.to_scipy(layout=layout)
        assert got.dtype == np.int64 and (got != expected).nnz == 0, layout
    csr = m.to_scipy()
    assert csr.has_sorted_indices  # a gene's cells from several segments in cell order
    assert np.array_equal(csr.indptr, expected.indptr) and np.array_equal(csr.indices, expected.indices)
    for i in range(n_genes):
        assert np.array_equal(m.gene(i), dense[i]), i
    for j in range(n_cells):
        assert np.array_equal(m.cell(j), dense[:, j]), j
    rng = np.random.default_rng(3)
    nonzero = np.argwhere(dense)
    for i, j in [*nonzero[rng.choice(len(nonzero), 60)], *rng.integers(0, [n_genes, n_cells], (60, 2))]:
        assert m[int(i), int(j)] == dense[i, j] == m.get(int(i), int(j)), (i, j)
    names, cells = m.gene_ids, m.cell_names
    assert m.get(names[int(nonzero[0, 0])], cells[int(nonzero[0, 1])]) == dense[tuple(nonzero[0])]
    picks = [
        (slice(None), slice(None)), (slice(None), slice(10, 70, 3)), (slice(5, None, 2), slice(None)),
        ([int(i) for i in rng.integers(0, n_genes, 40)], [int(j) for j in rng.integers(0, n_cells, 30)]),  # repeats
        (rng.permutation(n_genes)[:50], rng.permutation(n_cells)[:45]),  # each once, any order
        ([names[int(i)] for i in rng.permutation(n_genes)[:20]], [cells[int(j)] for j in range(0, n_cells, 4)]),
        (np.diff(expected.indptr) > 0, slice(None)), ([7], list(range(n_cells))),
    ]
    for genes, cols in picks:
        rows = genes if not (isinstance(genes, list) and genes and isinstance(genes[0], str)) else \
            [names.index(g) for g in genes]
        columns = cols if not (isinstance(cols, list) and cols and isinstance(cols[0], str)) else \
            [cells.index(c) for c in cols]
        want = dense[rows][:, columns]
        assert np.array_equal(m[genes, cols].toarray(), want)
        assert np.array_equal(m.T[cols, genes].toarray(), want.T)
    bounds = m.chunk_bounds()
    assert np.array_equal(m.cells_block(0, n_cells).toarray(), dense.T)
    assert np.array_equal(m.cells_block(5, n_cells - 7).toarray(), dense[:, 5: n_cells - 7].T)
    order = rng.permutation(bounds.size - 1)
    block = m.chunks_block(order.tolist(), np.int32)
    cols = np.concatenate([np.arange(bounds[c], bounds[c + 1]) for c in order])
    assert block.dtype == np.int32 and np.array_equal(block.toarray(), dense[:, cols].T)
    seen = np.zeros(n_cells, bool)
    for batch in m.iter_cells(batch_size=13, seed=1, dtype=np.int64, obs=False):
        assert np.array_equal(batch.X.toarray(), dense[:, batch.cells].T)
        seen[batch.cells] = True
    assert seen.all()
    assert m.verify()["nnz"] == expected.nnz


@pytest.mark.parametrize("case", [*CASES, "nested"])
def test_every_read_is_exact_from_a_path_and_from_bytes(combined, case):
    path, expected = combined[case]
    with sinr.open(path) as m:
        _every_read(m, expected)
    with sinr.open(path.read_bytes(), jobs=1) as m:  # one thread; the entries by this package's decoder
        _every_read(m, expected)


def test_lazy_and_anndata_reads(combined):
    pytest.importorskip("dask")
    path, expected = combined["outer"]
    with sinr.open(path) as m:
        lazy = m.to_anndata(lazy=True, dtype=np.int64)
        assert np.array_equal(lazy.X.compute().toarray(), expected.T.toarray())
        assert np.array_equal(m.to_anndata(dtype=np.int64).X.toarray(), expected.T.toarray())


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
@needs("fsspec")
def test_reads_over_http_are_exact(combined):
    path, expected = combined["nested"]
    with Nginx(path.parent) as server, sinr.open(f"{server.url}/{path.name}") as m:
        _every_read(m, expected)


def test_info_says_how_many_segments(combined, capsys):
    path, _ = combined["outer"]
    assert sinr_main(["info", str(path)]) == 0
    assert "in 3 segments" in capsys.readouterr().out


# ------------------------------------------------------------------------------ corrupt files

def _segment_table(parts: Parts) -> np.ndarray:
    return unpack_array(parts.section("segments.index"), "u8").astype(np.int64).reshape(-1, 2)


def _set_segment_table(parts: Parts, table) -> None:
    parts.set_section("segments.index", pack_array(np.asarray(table, np.uint64).ravel(), "u8"))


def _open_and_read(blob: bytes) -> None:
    """Open and decode everything through the paths that check the rules at their times."""
    with sinr.open(blob) as m:
        m.to_scipy()
        m.to_scipy(layout="csc")
        m.verify()


def _swap_rows(parts: Parts) -> None:
    """genes.order with the first two rows of segment 1 holding one gene (SG3)."""
    start = int(_segment_table(parts)[0, 1])
    order = unpack_array(parts.section("genes.order"), "u4").copy()
    order[start + 1] = order[start]
    parts.set_section("genes.order", pack_array(order, "u4"))


def _rows_beyond_segment(parts: Parts) -> None:
    """The last chunk (of segment 2, the fewest rows) claims one row more than its segment has (SG4):
    n_rows stays within the matrix's stored rows, and its bands are rebuilt to cover them."""
    limit = int(_segment_table(parts)[-1, 1])
    chunk = parts.chunks[-1]
    rows = unpack_array(dict(chunk.sections)["bands.rows"], "u4").copy()
    rows[-1] = limit + 1
    chunk.header["n_rows"] = limit + 1
    for entry in chunk.sections:
        if entry[0] == "bands.rows":
            entry[1] = pack_array(rows, "u4")


def _without_feature(keep_key: bool):
    def change(parts: Parts) -> None:
        parts.matrix["required_features"] = []
        if not keep_key:
            del parts.matrix["n_segments"]
    return change


HOSTILE = {  # name: (change, message fragment)
    "n_segments_zero": (lambda p: p.matrix.update(n_segments=0), "field 'n_segments'"),
    "n_segments_beyond_chunks": (lambda p: p.matrix.update(n_segments=p.matrix["n_chunks"] + 1), "field 'n_segments'"),
    "n_segments_missing": (lambda p: p.matrix.pop("n_segments"), "field 'n_segments'"),
    "n_segments_not_int": (lambda p: p.matrix.update(n_segments="3"), "field 'n_segments'"),
    "stored_beyond_segments_genes": (lambda p: p.matrix.update(n_stored_genes=3 * p.matrix["shape"][0] + 1),
                                     "field 'n_stored_genes'"),
    "index_missing": (lambda p: drop_section(p.sections, "segments.index"), "'segments.index' must be present"),
    "index_without_feature": (_without_feature(keep_key=False), "'segments.index' must be present"),
    "n_segments_without_feature": (_without_feature(keep_key=True), "'n_segments' without the feature"),
    "index_short": (lambda p: _set_segment_table(p, _segment_table(p).ravel()[:-1]), "segments.index"),
    "segment_without_chunks": (lambda p: _set_segment_table(p, _segment_table(p) @ [[1, 0], [0, 1]] + [
        [_segment_table(p)[1, 0], 0], [-_segment_table(p)[1, 0], 0], [0, 0]]), "at least one chunk"),
    "chunks_do_not_add_up": (lambda p: _set_segment_table(p, _segment_table(p) + [[1, 0], [0, 0], [0, 0]]),
                             "at least one chunk"),
    "rows_beyond_genes": (lambda p: _set_segment_table(p, _segment_table(p) + [[0, p.matrix["shape"][0]], [0, 0],
                                                                               [0, 0]]), "segment's rows"),
    "rows_do_not_add_up": (lambda p: _set_segment_table(p, _segment_table(p) + [[0, 0], [0, 1], [0, 0]]),
                           "segment's rows"),
    "gene_twice_in_a_segment": (_swap_rows, "not part of a permutation within a segment"),
    "gene_beyond_genes": (lambda p: p.set_section("genes.order", pack_array(np.minimum(
        unpack_array(p.section("genes.order"), "u4") + 1_000_000, 2**32 - 1), "u4")), "not part of a permutation"),
    "chunk_rows_beyond_segment": (_rows_beyond_segment, "more than its segment 2 stores"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_files_breaking_the_segment_rules_are_refused(combined, case):
    change, fragment = HOSTILE[case]
    blob = edit(combined["outer"][0].read_bytes(), change)
    with pytest.raises(CorruptFileError, match=fragment) as caught:
        _open_and_read(blob)
    assert "\n" not in str(caught.value)


def test_a_file_without_the_feature_refuses_a_segment_index(inputs):
    def add(parts: Parts) -> None:
        parts.sections.append(["segments.index", pack_array(np.array([parts.matrix["n_chunks"], parts.matrix[
            "n_stored_genes"]], np.uint64), "u8")])

    with pytest.raises(CorruptFileError, match="'segments.index' must be present if and only if"):
        _open_and_read(edit((inputs / "a.sinr").read_bytes(), add))


def test_the_rule_cases_change_only_what_they_say(combined):
    """The unchanged rebuild of the file reads back, so each case above fails for its own change."""
    blob = edit(combined["outer"][0].read_bytes(), lambda parts: None)
    _open_and_read(blob)
    assert parse_file(blob).matrix["n_segments"] == 3
