"""Format 3.0 files from the writer (issue 14; spec/sinr-format.md, version 3.0).

Every file is read here without the package's reader, from the container's bytes: the preamble,
the matrix map (required features, spec §5.1.1; stage ids, §5.2), each chunk's sections (§5.4.3,
§6.4) and every tile. Tiles of bands without a SIREN are decoded by the native whole-tile decoder
(`_native.tile3_decode_tiles`, baseline contexts of §6.5); tiles of SIREN bands by the spec's
independent implementation (spec/tiles3.py) with the contexts §7.2 gives the band's stored
network. Then each tile's stream must be exactly what spec/tiles3.py's encoder writes for its
decoded positions, values and contexts under the chunk's own count sections, those sections must
be exactly spec/tiles3.py's counts of the decoded tiles, and the decoded matrix must be the input (its
quantised values in mode max-error; its positions in mode inr-only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec
from conftest import DATA, SMALL_SIREN, sinr_cli, thinned_copies
from format3_tiles import t3
from scinrcodec import _native
from scinrcodec.codec.tile import OK
from scinrcodec.errors import InvalidInputError
from scinrcodec.io.sources import ScipySource
from scinrcodec.model.quantise import dequantise_values
from scinrcodec.model.siren import PatchSiren, siren_outputs
from scinrcodec.storage.container import (PREAMBLE, TRAILER, parse_section_table, unpack_array, unpack_header,
                                          unpack_map, unpack_shuffled)
from scinrcodec.storage.layout import CHUNK_INDEX_FIELDS
from scinrcodec.wholefile.encode import encode_whole

SHARED = DATA.parents[2] / "shared" / "data"
FAST = dict(siren="never", progress=False)
SMALL_TILES = dict(tile_nnz=32, chunk_cells=40)  # many tiles, several chunks, every kind of tile


# ------------------------------------------------------------------------------------- reading

@dataclass
class Chunk:
    first_cell: int
    header: dict
    sections: dict[str, bytes]


@dataclass
class File:
    version: tuple[int, int]
    matrix: dict
    gene_order: np.ndarray
    gene_terms: np.ndarray
    chunks: list[Chunk]


def read_file(path) -> File:
    """The container's parts (spec §2-§5), read from the bytes with the container's primitives."""
    blob = path.read_bytes()
    _, major, minor, _ = PREAMBLE.unpack(blob[: PREAMBLE.size])
    length = TRAILER.unpack(blob[-TRAILER.size:])[0]
    footer_at = len(blob) - TRAILER.size - length
    footer = unpack_header(blob[footer_at: footer_at + length], 1 << 30, what="footer")
    (matrix,) = footer["matrices"]
    sections = parse_section_table(matrix["sections"], low=PREAMBLE.size, high=footer_at, what="matrix")

    def array(name: str, dtype: str, count: int) -> np.ndarray:
        ref = sections[name]
        return unpack_array(blob[ref.offset: ref.offset + ref.length], dtype, count, what=name)

    n_stored = matrix["n_stored_genes"]
    index = array("chunks.index", "u8", matrix["n_chunks"] * len(CHUNK_INDEX_FIELDS)).reshape(-1, 6).astype(np.int64)
    chunks, first = [], 0
    for offset, header_length, _, block_length, n_cells, _ in index.tolist():
        header = unpack_header(blob[offset: offset + header_length], 1 << 30, what="chunk header")
        body = offset + header_length
        table = parse_section_table(header["sections"], low=body, high=offset + block_length, what="chunk", base=body)
        chunks.append(Chunk(first, header, {name: blob[r.offset: r.offset + r.length] for name, r in table.items()}))
        first += n_cells
    return File((major, minor), matrix, array("genes.order", "u4", n_stored).astype(np.int64),
                array("genes.baseline", "i2", n_stored).astype(np.int64), chunks)


@dataclass
class Tile:
    band: int
    row0: int
    col0: int
    h: int
    w: int
    k: int
    stream: bytes


def chunk_tiles(chunk: Chunk) -> list[Tile]:
    """A chunk's tiles from its geometry and tile directory (spec §5.4.5)."""
    s, n_cells = chunk.sections, chunk.header["n_cells"]
    n_bands = chunk.header["n_bands"]
    rows = unpack_array(s["bands.rows"], "u4", n_bands + 1, what="bands.rows").astype(np.int64)
    widths = unpack_array(s["bands.widths"], "u4", n_bands, what="bands.widths").astype(np.int64)
    n_tiles = int((-(-n_cells // widths)).sum()) if n_bands else 0
    k = unpack_array(s["tiles.nnz"], "u4", n_tiles, what="tiles.nnz").astype(np.int64)
    lengths = unpack_array(s["tiles.bytes"], "u4", n_tiles, what="tiles.bytes").astype(np.int64)
    ends = np.cumsum(lengths)
    data = s["tiles.data"]
    assert len(data) == int(ends[-1] if n_tiles else 0)
    tiles = []
    for b in range(n_bands):
        for col0 in range(0, n_cells, int(widths[b])):
            t = len(tiles)
            tiles.append(Tile(b, int(rows[b]), col0, int(rows[b + 1] - rows[b]), min(int(widths[b]), n_cells - col0),
                              int(k[t]), data[ends[t] - lengths[t]: ends[t]]))
    return tiles


def band_sirens(chunk: Chunk) -> dict[int, PatchSiren]:
    """The chunk's SIRENs by band (spec §7.1)."""
    if "siren.meta" not in chunk.sections:
        return {}
    entries = unpack_map(chunk.sections["siren.meta"], what="siren.meta")["bands"]
    counts = [PatchSiren.parameter_count(meta) for _, meta in entries]
    weights = unpack_array(chunk.sections["siren.weights"], "i2", sum(counts), what="siren.weights").astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {band: PatchSiren.from_meta(meta, weights[a:b]) for (band, meta), a, b in zip(entries, bounds, bounds[1:])}


def siren_context_of(siren: PatchSiren, tile: Tile, n_cells: int):
    """§7.2 for the nonzeros of a tile of a SIREN band, from spec/tiles3.py's siren_context."""
    table, params = siren.packed()
    p = np.arange(tile.h * tile.w)
    outputs = siren_outputs(table, params, p // tile.w, tile.col0 + p % tile.w, tile.h, n_cells)
    norm = siren.normalisation
    contexts = [t3.siren_context(int(y), norm.kind, norm.offset, norm.scale) for y in outputs]
    return contexts.__getitem__


def decode_file(path, mode: str) -> tuple[File, sp.csc_matrix | tuple]:
    """Every tile of every chunk decoded, checked against spec/tiles3.py's encoder and counts (see the
    module docstring); returns the file and its decoded matrix (genes, cells, u) in original order."""
    f = read_file(path)
    inr_only = mode == "inr-only"
    genes, cells, us = [], [], []
    for chunk in f.chunks:
        s, n_cells = chunk.sections, chunk.header["n_cells"]
        assert "gaps.counts" in s and ("values.counts" in s) != inr_only  # §6.4, rule G3
        gaps = unpack_shuffled(s["gaps.counts"], "u8", 32 * 231, what="gaps.counts").reshape(32, 231)  # byte planes
        values = None if inr_only else unpack_shuffled(s["values.counts"], "u8", 96 * 231,
                                                       what="values.counts").reshape(96, 231)
        cell_terms = unpack_array(s["cells.baseline"], "i2", n_cells, what="cells.baseline").astype(np.int32)
        cell_order = (unpack_shuffled(s["cells.order_planes"], "u4", n_cells, what="cells.order_planes")  # §5.6
                      if "cells.order_planes" in s else unpack_array(s["cells.order"], "u4", n_cells,
                                                                     what="cells.order")).astype(np.int64)
        tiles = chunk_tiles(chunk)
        sirens = band_sirens(chunk)
        t3.check_gap_counts(gaps, [(t.h * t.w, t.k) for t in tiles])  # G1, G2
        if values is not None:
            t3.check_value_counts(values, chunk.header["nnz"])  # G3
        # the native whole-tile decoder, every tile whose contexts are the baseline's (or not needed)
        native = [t for t in tiles if inr_only or t.band not in sirens]
        k = np.array([t.k for t in native], np.int64)
        out_start = np.cumsum(k) - k
        positions, u = np.full(k.sum(), -1, np.int64), np.full(k.sum(), -1, np.int64)
        status = np.full(len(native), -1, np.int64)
        length = np.array([len(t.stream) for t in native], np.int64)
        buf = np.frombuffer(b"".join(t.stream for t in native), np.uint8).copy()
        _native.tile3_decode_tiles(buf, np.cumsum(length) - length, length,
                                   *(np.array([getattr(t, a) for t in native], np.int64) for a in ("h", "w", "k", "row0",
                                                                                                    "col0")),
                                   out_start, f.gene_terms, cell_terms, gaps, values, positions, u, status)
        assert (status == OK).all(), status
        decoded = {id(t): (positions[a: a + t.k].tolist(), None if inr_only else u[a: a + t.k].tolist())
                   for t, a in zip(native, out_start)}
        gap_tables = t3.tables_from_counts(gaps, t3.N_GAP_CLASSES)
        value_tables = None if inr_only else t3.tables_from_counts(values, t3.N_CONTEXTS)
        inputs = []
        for t in tiles:
            if id(t) in decoded:
                def context_of(p, t=t):
                    return t3.baseline_context(int(f.gene_terms[t.row0 + p // t.w]), int(cell_terms[t.col0 + p % t.w]))
                tile_positions, tile_u = decoded[id(t)]
            else:  # a SIREN band: spec/tiles3.py's decoder, with the contexts of the stored network
                context_of = siren_context_of(sirens[t.band], t, n_cells)
                d = t3.decode_tile(t.stream, t.h * t.w, t.k, context_of, gap_tables, value_tables)
                tile_positions, tile_u = d.positions, d.u
            tile_input = t3.TileInput(t.h * t.w, tile_positions, [] if inr_only else tile_u,
                                      [] if inr_only else [context_of(p) for p in tile_positions])
            assert t3.encode_tile(t.h * t.w, *(getattr(tile_input, a) for a in ("positions", "u", "contexts")),
                                  gap_tables, value_tables).stream == t.stream
            inputs.append(tile_input)
            p = np.asarray(tile_positions, np.int64)
            genes.append(f.gene_order[t.row0 + p // t.w])
            cells.append(chunk.first_cell + cell_order[t.col0 + p % t.w])
            us.append(np.asarray(tile_u if not inr_only else np.zeros(t.k), np.int64))
        counted = t3.chunk_counts(inputs, inr_only)  # §6.4: exactly the counts of the tiles
        assert np.array_equal(counted[0], gaps)
        assert inr_only or np.array_equal(counted[1], values)
    return f, (np.concatenate(genes), np.concatenate(cells), np.concatenate(us))


def assert_same_matrix(decoded, counts: sp.spmatrix, mode: str, max_error: int) -> None:
    genes, cells, u = decoded
    expected = sp.coo_matrix(counts)
    got = sp.coo_matrix((np.ones(genes.size) if mode == "inr-only" else u + 1, (genes, cells)), shape=counts.shape)
    if mode == "inr-only":
        assert ((got != 0) != (expected != 0)).nnz == 0
        return
    want = expected.copy()
    if max_error:
        quantised = (want.data - 1 + max_error) // (2 * max_error + 1)
        want.data = dequantise_values(quantised, max_error)
        got.data = dequantise_values(u, max_error)
    assert genes.size == expected.nnz
    assert (got.tocsr() != want.tocsr()).nnz == 0


def stage_ids(f: File) -> list[str]:
    return [s["id"] for s in f.matrix["stages"]]


def assert_gene_sorted_bands(f: File) -> None:
    """Format 3's writer rule: within each band, rows in increasing original gene index."""
    for chunk in f.chunks:
        rows = unpack_array(chunk.sections["bands.rows"], "u4", chunk.header["n_bands"] + 1, what="rows")
        for a, b in zip(rows[:-1].astype(np.int64), rows[1:].astype(np.int64)):
            assert (np.diff(f.gene_order[a:b]) > 0).all()


# ------------------------------------------------------------------------------------- inputs

def fixture(name: str) -> ScipySource:
    m = scinrcodec.read_matrix(DATA / name)
    return ScipySource(m.matrix(), m.gene_ids, m.gene_names, m.cell_names(0, m.shape[1]))


@pytest.fixture(scope="module")
def visium_cut() -> ScipySource:
    """The first 600 spots of the shared Visium dataset, every gene (1,069,459 nonzeros in all)."""
    path = SHARED / "visium_spaceranger3"
    if not path.exists():
        pytest.skip("the shared datasets are not here")
    m = scinrcodec.read_matrix(path)
    block = next(m.blocks(600))
    counts = sp.csc_matrix((block.values, block.genes, block.indptr), shape=(m.shape[0], block.n_cells))
    return ScipySource(counts, m.gene_ids, m.gene_names, m.cell_names(0, block.n_cells))


CASES = [  # (fixture, options): lossless, max-error and inr-only, with and without SIRENs
    ("pbmc500_3p_lt_x_50genes", dict(**FAST)),
    ("pbmc4k_v2_soupx_half", dict(**FAST, **SMALL_TILES)),
    ("mouse_gut_cimseq_smartseq2", dict(**FAST, **SMALL_TILES, mode="max-error", max_error=3)),
    ("frozen_pbmc_donor_a_v1", dict(**FAST, chunk_cells=50, tile_nnz=16)),
    ("pbmc500_3p_lt_x_50genes", dict(SMALL_SIREN, siren="force", chunk_cells=300)),
    ("pbmc500_3p_lt_x_50genes", dict(SMALL_SIREN, siren="force", normalisation="minmax")),  # §7.2's EDGE3
    ("mouse_gut_cimseq_smartseq2", dict(SMALL_SIREN, siren="force", mode="max-error", max_error=2)),
    ("pbmc4k_v2_soupx_half", dict(SMALL_SIREN, mode="inr-only", chunk_cells=40)),
]


def encode3(source, path, **options):
    scinrcodec.encode(source, path, format_version=3, jobs=1, **options)


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{o.get('mode', 'lossless')}-{o['siren']}-{o.get('normalisation', 'log')}"
                                                      for n, o in CASES])
def test_every_tile_decodes_to_the_input(tmp_path, name, options):
    if options["siren"] != "never":
        pytest.importorskip("torch")
    source = fixture(name)
    path = tmp_path / "m.sinr"
    encode3(source, path, **options)
    mode, max_error = options.get("mode", "lossless"), options.get("max_error", 0)
    f, decoded = decode_file(path, mode)
    assert f.version == (3, 0)
    assert f.matrix["required_features"] == []
    assert stage_ids(f) == t3.stage_ids(mode)
    assert_gene_sorted_bands(f)
    assert_same_matrix(decoded, source.matrix(), mode, max_error)
    with_siren = sum("siren.meta" in c.sections for c in f.chunks)
    assert with_siren == (len(f.chunks) if options["siren"] == "force" or mode == "inr-only" else 0)


def test_a_cut_of_a_shared_dataset(tmp_path, visium_cut):
    path = tmp_path / "v.sinr"
    encode3(visium_cut, path, **FAST, chunk_cells=200)
    f, decoded = decode_file(path, "lossless")
    assert f.version == (3, 0) and len(f.chunks) == 3
    assert_gene_sorted_bands(f)
    assert_same_matrix(decoded, visium_cut.matrix(), "lossless", 0)
    smaller = tmp_path / "v2.sinr"
    scinrcodec.encode(visium_cut, smaller, format_version=2, jobs=1, **FAST, chunk_cells=200)
    assert path.stat().st_size < smaller.stat().st_size


def test_cells_of_few_nonzeros_keep_their_own_order_where_it_codes_smaller(tmp_path, monkeypatch):
    """The real 50-gene cut's 80 cells, 100 copies each binomially thinned (8,000 cells of about 8
    nonzeros): chunks of 4,096 cells, whose order by depth costs log2(n!) bits, about 15% of a chunk
    (encoder.chunk.ORDER_TRIAL_SHARE), are coded again in the cells' own order, which codes smaller;
    every value exact by the independent decode, the same bytes on one thread and on two."""
    from scinrcodec.encoder import chunk

    counts = thinned_copies(fixture("pbmc500_3p_lt_x_50genes").matrix(), 100)
    for jobs in (1, 2):
        scinrcodec.encode(counts, tmp_path / f"{jobs}.sinr", format_version=3, jobs=jobs, chunk_cells=4096, **FAST)
    path = tmp_path / "1.sinr"
    assert path.read_bytes() == (tmp_path / "2.sinr").read_bytes()
    f, decoded = decode_file(path, "lossless")
    assert_same_matrix(decoded, counts, "lossless", 0)
    assert len(f.chunks) == 2 and f.version == (3, 2)  # identity orders as byte planes (§5.6)
    for c in f.chunks:
        n = c.header["n_cells"]
        order = unpack_shuffled(c.sections["cells.order_planes"], "u4", n, what="cells.order_planes")
        assert (order == np.arange(n)).all()
    monkeypatch.setattr(chunk, "ORDER_TRIAL_SHARE", float("inf"))  # by depth only, as before
    scinrcodec.encode(counts, tmp_path / "depth.sinr", format_version=3, jobs=1, chunk_cells=4096, **FAST)
    assert path.stat().st_size < 0.9 * (tmp_path / "depth.sinr").stat().st_size


def test_a_chunk_is_coded_once_where_its_order_costs_little(tmp_path, monkeypatch):
    """The real visium cut's 80 spots (40 nonzeros each) in 60 copies, one chunk of 4,800 spots: the
    order's bound (log2(4800!) bits, 6.5 kB) passes 4 KiB but is about 5% of the chunk, under the
    trial's tenth, so the chunk is coded once, by depth (a raw Cell Ranger matrix's chunks, 3%, would
    have taken half again as long to encode for nothing)."""
    from scinrcodec.encoder import chunk

    calls, code = [], chunk.code_chunk

    def counted(block, *rest):
        calls.append(chunk.order_bound(block))
        return code(block, *rest)
    monkeypatch.setattr(chunk, "code_chunk", counted)
    counts = sp.hstack([fixture("visium_spaceranger3").matrix()] * 60, format="csc")
    scinrcodec.encode(counts, tmp_path / "v.sinr", format_version=3, jobs=1, chunk_cells=4800, **FAST)
    assert len(calls) == 1 and calls[0] > chunk.ORDER_TRIAL_AT_LEAST
    assert calls[0] < chunk.ORDER_TRIAL_SHARE * (tmp_path / "v.sinr").stat().st_size


@pytest.mark.parametrize("options", [dict(FAST), dict(SMALL_SIREN, siren="force")], ids=["baseline", "siren"])
def test_jobs_give_identical_bytes(tmp_path, options):
    if options["siren"] != "never":
        pytest.importorskip("torch")
    source = fixture("pbmc4k_v2_soupx_half")
    for jobs in (1, 2):
        scinrcodec.encode(source, tmp_path / f"{jobs}.sinr", format_version=3, jobs=jobs, chunk_cells=20, **options)
    assert (tmp_path / "1.sinr").read_bytes() == (tmp_path / "2.sinr").read_bytes()


def test_a_dask_cluster_gives_identical_bytes(tmp_path):
    distributed = pytest.importorskip("distributed")
    source = fixture("pbmc4k_v2_soupx_half")
    encode3(source, tmp_path / "local.sinr", chunk_cells=20, **FAST)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        scinrcodec.encode(source, tmp_path / "dask.sinr", format_version=3, chunk_cells=20, client=client, **FAST)
    assert (tmp_path / "local.sinr").read_bytes() == (tmp_path / "dask.sinr").read_bytes()


def test_format_2_is_written_when_asked(tmp_path):
    source = fixture("pbmc4k_v2_soupx_half")
    path = tmp_path / "m.sinr"
    scinrcodec.encode(source, path, format_version=2, jobs=1, **FAST, **SMALL_TILES)
    f = read_file(path)
    assert f.version == (2, 0) and "required_features" not in f.matrix
    assert stage_ids(f) == ["reorder-detection-depth", "row-bands", "golomb-rans-positions", "value-quantiser",
                            "context-rans-values", "siren-predictor"]
    assert all("gaps.counts" not in c.sections for c in f.chunks)
    with scinrcodec.open(path) as m:
        assert (m.to_scipy(layout="csc") != source.matrix()).nnz == 0


def test_cli_option_and_whole_files(tmp_path):
    mtx, h5 = DATA / "pbmc500_3p_lt_x_50genes", DATA / "pbmc500_cellranger.h5"
    for version in (2, 3):
        out = tmp_path / f"cli{version}.sinr"
        result = sinr_cli("encode", mtx, out, "--no-siren", "--format-version", str(version))
        assert result.returncode == 0, result.stderr
        assert PREAMBLE.unpack(out.read_bytes()[: PREAMBLE.size])[1:3] == (version, 0)
        whole = tmp_path / f"whole{version}.sinr"
        encode_whole(h5, whole, format_version=version, **FAST)
        assert read_file_version(whole) == (version, 0 if version == 3 else 1)  # format 2 has §14 from 2.1
    assert sinr_cli("encode", mtx, tmp_path / "x.sinr", "--format-version", "4").returncode == 1
    with pytest.raises(InvalidInputError, match="format_version"):
        scinrcodec.encode(mtx, tmp_path / "y.sinr", format_version=1)


def read_file_version(path) -> tuple[int, int]:
    return tuple(PREAMBLE.unpack(path.read_bytes()[: PREAMBLE.size])[1:3])


def test_append_keeps_the_files_version(tmp_path):
    """An append writes its new chunks in the format of the file it extends (here format 2, which
    the reader reads today; format 3 is checked once the reader reads it, below)."""
    m = fixture("pbmc4k_v2_soupx_half")
    counts = m.matrix()
    names = m.cell_names(0, counts.shape[1])
    path = tmp_path / "a.sinr"
    scinrcodec.encode(ScipySource(counts[:, :50], m.gene_ids, m.gene_names, names[:50]), path, format_version=2,
                      chunk_cells=16, **FAST)
    scinrcodec.append(path, ScipySource(counts[:, 50:], m.gene_ids, m.gene_names, names[50:]))
    assert read_file_version(path) == (2, 0)
    with scinrcodec.open(path) as opened:
        assert (opened.to_scipy(layout="csc") != counts).nnz == 0


def test_concat_and_subset_write_the_chosen_version(tmp_path):
    """Inputs of format 2 re-encoded into format 3 (no chunk is copied across versions), and the
    first input's chunks copied when the output keeps its version."""
    m = fixture("pbmc4k_v2_soupx_half")
    counts = m.matrix()
    names = m.cell_names(0, counts.shape[1])
    a, b = tmp_path / "a.sinr", tmp_path / "b.sinr"
    scinrcodec.encode(ScipySource(counts[:, :40], m.gene_ids, m.gene_names, names[:40]), a, format_version=2,
                      chunk_cells=16, **FAST)
    scinrcodec.encode(ScipySource(counts[:, 40:], m.gene_ids, m.gene_names, names[40:]), b, format_version=2,
                      chunk_cells=16, **FAST)
    three = scinrcodec.concat([a, b], tmp_path / "c3.sinr", format_version=3)
    two = scinrcodec.concat([a, b], tmp_path / "c2.sinr", format_version=2)
    assert three["copied_chunks"] == 0 and two["copied_chunks"] == 3
    assert read_file_version(tmp_path / "c2.sinr") == (2, 0)
    f, decoded = decode_file(tmp_path / "c3.sinr", "lossless")
    assert f.version == (3, 0)
    assert_same_matrix(decoded, counts, "lossless", 0)
    scinrcodec.subset(a, tmp_path / "s3.sinr", cells=slice(5, 30), format_version=3)
    f, decoded = decode_file(tmp_path / "s3.sinr", "lossless")
    assert f.version == (3, 0)
    assert_same_matrix(decoded, counts[:, 5:30], "lossless", 0)


def test_format_3_files_append_and_read_back(tmp_path):
    m = fixture("pbmc4k_v2_soupx_half")
    counts = m.matrix()
    names = m.cell_names(0, counts.shape[1])
    path = tmp_path / "a.sinr"
    first = counts[:, :50].tolil()
    first[100:, :] = 0  # the appended cells express genes the file has never stored
    first = sp.csc_matrix(first)
    encode3(ScipySource(first, m.gene_ids, m.gene_names, names[:50]), path, chunk_cells=16, **FAST)
    scinrcodec.append(path, ScipySource(counts[:, 50:], m.gene_ids, m.gene_names, names[50:]))
    f, decoded = decode_file(path, "lossless")
    assert f.version == (3, 0)
    assert_gene_sorted_bands(f)
    assert_same_matrix(decoded, sp.hstack([first, counts[:, 50:]]).tocsc(), "lossless", 0)
    with scinrcodec.open(path) as back:
        assert (back.to_scipy() != sp.hstack([first, counts[:, 50:]]).tocsr()).nnz == 0
