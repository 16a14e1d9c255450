"""The C++ container reader (native/core/.../storage, the R package's reader) on format-3.0 files
(spec/sinr-format.md, version 3): real matrices written by the encoder read back
exactly through every read (whole, genes, cells, blocks, entries), and hostile files (required
features, stage ids, count sections, damaged tiles) refused with the typed error of their rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import zstandard

import scinrcodec
from conftest import DATA, DATASETS, native_setting, require
from fuzz.reseal import build, parse
from scinrcodec import _native, errors
from scinrcodec.storage.container import pack_array, pack_shuffled, unpack_shuffled

FAST3 = dict(siren="never", progress=False, format_version=3)
SMALL_SIREN = dict(steps=40, batch=512, width=16, progress=False, format_version=3)
N_BINS, N_GAP_CLASSES, N_CONTEXTS = 231, 32, 96


def _csc(parts) -> sp.csc_matrix:
    shape, indptr, indices, values = parts
    return sp.csc_matrix((values, indices, indptr), shape=shape)


def _synthetic() -> sp.csc_matrix:
    """Empty cells and genes, a chunk without nonzeros, and a block dense enough that its tiles code
    their zeros (§6.2's complement rule) and some code no position at all (every entry nonzero)."""
    rng = np.random.default_rng(3)
    m = sp.random(300, 90, density=0.05, format="lil", random_state=rng, data_rvs=lambda n: rng.integers(1, 9, n))
    m[:, 30:45] = 0  # chunk_cells 15: one chunk without nonzeros
    m[:40, 60:75] = rng.integers(1, 500, (40, 15))  # every entry nonzero
    m[100:140, 75:90] = rng.integers(0, 2, (40, 15)) * rng.integers(1, 1 << 20, (40, 15))
    m[250:, :] = 0
    return sp.csc_matrix(m, dtype=np.int64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> (path, input matrix, mode, max_error) of format-3 files of real and synthetic matrices."""
    require("torch")  # some hold SIREN bands
    folder = tmp_path_factory.mktemp("format3")
    fixtures = {name: scinrcodec.read_matrix(DATA / name).matrix().tocsc() for name in DATASETS[:4]}
    umi = sp.hstack([fixtures[name] for name in DATASETS[:4] if name != "mouse_gut_cimseq_smartseq2"]).tocsc()
    cases = {
        "lossless": (umi, dict(chunk_cells=50, tile_nnz=64, **FAST3)),
        "max_error": (umi, dict(mode="max-error", max_error=3, chunk_cells=70, **FAST3)),
        "read_counts": (fixtures["mouse_gut_cimseq_smartseq2"], dict(chunk_cells=17, tile_nnz=16, **FAST3)),
        "synthetic": (_synthetic(), dict(chunk_cells=15, tile_nnz=32, **FAST3)),
        "siren": (umi, dict(siren="force", chunk_cells=80, **SMALL_SIREN)),
        "inr_only": (umi, dict(mode="inr-only", chunk_cells=80, **SMALL_SIREN)),
    }
    out = {}
    for name, (matrix, options) in cases.items():
        path = folder / f"{name}.sinr"
        scinrcodec.encode(matrix, path, **options)
        out[name] = (path, sp.csc_matrix(matrix, dtype=np.int64), options.get("mode", "lossless"),
                     options.get("max_error", 0))
    return out


def _check_reads(r, whole: sp.csc_matrix) -> None:
    """Every partial read of r equals the same part of its whole matrix."""
    n_genes, n_cells = whole.shape
    rng = np.random.default_rng(5)
    genes = np.concatenate([rng.integers(0, n_genes, 6), [0, n_genes - 1, 0]]).tolist()
    cells = np.concatenate([rng.integers(0, n_cells, 6), [0, n_cells - 1, n_cells - 1]]).tolist()
    dense_rows, dense_cols = whole[genes].toarray(), whole[:, cells].toarray()
    assert np.array_equal(_csc(r.genes(genes)).toarray(), dense_rows)
    assert np.array_equal(_csc(r.cells(cells)).toarray(), dense_cols)
    shape, indptr, positions, values = r.cells_by_gene(cells)  # the same read, in compressed rows
    by_gene = sp.csr_matrix((values, positions, indptr), shape=shape[::-1])
    assert by_gene.has_sorted_indices and np.array_equal(by_gene.toarray(), dense_cols)
    assert np.array_equal(_csc(r.block(genes, cells)).toarray(), whole[genes][:, cells].toarray())
    rows, cols = whole.nonzero()
    picks = rng.integers(0, rows.size, 150) if rows.size else []
    for i, j in [(rows[k], cols[k]) for k in picks] + list(zip(genes, cells)):
        assert r.entry(int(i), int(j)) == whole[i, j]


@pytest.mark.parametrize("name", ["lossless", "max_error", "read_counts", "synthetic", "siren", "inr_only"])
def test_format3_file_reads_back(files, name):
    path, matrix, mode, max_error = files[name]
    r = _native.ContainerReader(str(path))
    assert (r.shape, r.nnz, r.mode, r.max_error) == (matrix.shape, matrix.nnz, mode, max_error)
    whole = _csc(r.whole(1))
    whole.check_format(full_check=True)
    assert (_csc(r.whole(3)) != whole).nnz == 0
    pattern = sp.csc_matrix((np.ones(matrix.nnz), matrix.indices, matrix.indptr), shape=matrix.shape)
    assert (sp.csc_matrix((np.ones(whole.nnz), whole.indices, whole.indptr), shape=whole.shape) != pattern).nnz == 0
    if mode == "lossless":
        assert (whole != matrix).nnz == 0
    elif mode == "max-error":
        assert abs(whole - matrix).max() <= max_error
    _check_reads(r, whole.astype(np.int64))


@pytest.mark.parametrize("run_entries, keep_bytes", [(1, 0), (100, 800), (1 << 16, 1 << 40)])
@pytest.mark.parametrize("name", ["lossless", "read_counts", "synthetic"])
def test_cell_ranges_read_back(files, name, run_entries, keep_bytes):
    """Reads of consecutive ranges of cells, as block processing makes them (parts of a chunk, each
    needing most of its tiles, which the reader then decodes once and keeps), in order, backwards,
    and mixed with reads of a few cells and of other chunks, equal the whole matrix's columns; a
    chunk decoded whole is decoded in runs of one tile, of a few, or of all, and keeps none, some
    or all of the cells after the wanted ones."""
    path, _, _, _ = files[name]
    r = _native.ContainerReader(str(path))
    r._set_run_entries(run_entries)
    r.set_keep_bytes(keep_bytes)
    whole = _csc(r.whole(1)).astype(np.int64)
    n_cells = whole.shape[1]
    chunk = int(np.diff(r.chunk_starts).max())
    for size in (1, 7, chunk - 1, chunk + 3):
        ranges = [list(range(a, min(a + size, n_cells))) for a in range(0, n_cells, size)]
        for cells in ranges + ranges[::-1]:
            assert (_csc(r.cells(cells)) != whole[:, cells]).nnz == 0, (size, cells[0])
    rng = np.random.default_rng(7)
    for _ in range(20):
        a = int(rng.integers(0, n_cells))
        picks = [list(range(a, min(a + chunk // 2, n_cells))), rng.integers(0, n_cells, 3).tolist(),
                 rng.permutation(n_cells)[: chunk + 5].tolist() + [a, a]]
        for cells in picks:
            assert (_csc(r.cells(cells)) != whole[:, cells]).nnz == 0


def test_cells_drawn_at_random_decode_their_tiles_once(files):
    """Cells that are not a run of consecutive ones (drawn at random, as a sample is) decode, in each
    chunk, only the tiles that hold them, each once, however many of the chunk's tiles that is; a
    run of consecutive cells (block processing) decodes its chunk whole and keeps the cells after
    it, which the next run then reads without decoding a tile."""
    path, _, _, _ = files["lossless"]
    chunk = scinrcodec.open(path).index.chunk(1)
    first, n_cells, n_tiles = chunk.first_cell, chunk.n_cells, chunk.geometry.n_tiles
    r = _native.ContainerReader(str(path))
    whole = _csc(r.whole(1))

    def tiles_decoded(cells: list[int]) -> int:
        before = _native.tile_lane_counts()
        assert (_csc(r.cells(cells)) != whole[:, cells]).nnz == 0
        after = _native.tile_lane_counts()
        return (after[0] - before[0]) + (after[1] - before[1])

    # the lanes (which count the tiles they decode) on every batch, however small
    with native_setting(_native.set_tile_lanes, "portable"), native_setting(_native.set_packed_nnz_per_row, 0):
        scattered = list(range(first + n_cells - 1, first, -2))  # every other cell: most of the chunk's tiles
        assert n_tiles // 2 < tiles_decoded(scattered) <= n_tiles
        half = first + n_cells // 2
        assert tiles_decoded(list(range(first, half))) >= n_tiles
        assert tiles_decoded(list(range(half, first + n_cells))) == 0


def test_a_cell_first_in_its_chunk_reads_the_chunk_beside_its_header(files, tmp_path):
    """A cell read first in its chunk with threads to spare reads the chunk's block on a thread of its
    own while this one loads the header: every cell comes back exact, a damaged band of the chunk
    fails the read by name (the bytes read beside the header are checked as any others), and a file
    cut short after it was opened fails it with FileChangedError, whichever thread's read meets the end."""
    path, _, _, _ = files["lossless"]
    index = scinrcodec.open(path).index
    whole = _csc(_native.ContainerReader(str(path)).whole(1))
    r = _native.ContainerReader(str(path))
    r.set_threads(2)
    for j in [*index.chunk_starts[:-1].tolist(), whole.shape[1] - 1]:  # each first in its chunk, then the last
        assert (_csc(r.cells([j])) != whole[:, [j]]).nnz == 0
    chunk = index.chunk(1)
    band = int(np.flatnonzero(np.diff(chunk.geometry.tile_starts))[-1])
    offset, length = index.band_ranges(chunk, np.array([band]))
    blob = bytearray(path.read_bytes())
    blob[int(offset[0] + length[0] // 2)] ^= 0x20
    damaged = tmp_path / "damaged.sinr"
    damaged.write_bytes(bytes(blob))
    r = _native.ContainerReader(str(damaged))
    r.set_threads(2)
    assert (_csc(r.cells([0])) != whole[:, [0]]).nnz == 0  # chunk 0 is intact
    with pytest.raises(errors.CorruptFileError, match=f"chunk 1: checksum mismatch in the tiles of band {band} "):
        r.cells([chunk.first_cell])
    cut = tmp_path / "cut.sinr"
    cut.write_bytes(path.read_bytes())
    r = _native.ContainerReader(str(cut))
    r.set_threads(2)
    last = index.chunk(index.n_chunks - 1)
    with open(cut, "r+b") as f:
        f.truncate(int(last.data_ref.offset) + 8)  # inside the last chunk's tile data
    with pytest.raises(errors.FileChangedError):
        r.cells([last.first_cell])


def _bytes_read() -> int:
    """What this process has read from files so far (Linux's /proc/self/io)."""
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts the bytes read with Linux's /proc/self/io")
@pytest.mark.parametrize("threads", [1, 2])
def test_a_second_cell_of_the_chunk_read_last_reads_no_tile_data(files, threads):
    """The thread's buffer keeps the checked tile data of the chunk it read last: another cell of
    that chunk reads nothing, a cell of another chunk (or of the same chunk through another reader)
    reads that chunk's tile data; every cell exact."""
    path, _, _, _ = files["lossless"]
    index = scinrcodec.open(path).index
    whole = _csc(_native.ContainerReader(str(path)).whole(1))
    first, second = index.chunk(0), index.chunk(1)
    r = _native.ContainerReader(str(path))
    r.set_threads(threads)
    for j in (first.first_cell, first.first_cell + 1):  # loads the chunk, then reads its tile data once
        assert (_csc(r.cells([j])) != whole[:, [j]]).nnz == 0
    before = _bytes_read()
    assert (_csc(r.cells([first.first_cell + 2])) != whole[:, [first.first_cell + 2]]).nnz == 0
    assert _bytes_read() - before < first.data_ref.length // 4
    for reader, j, chunk in ((r, second.first_cell, second), (_native.ContainerReader(str(path)), 2, first)):
        reader.set_threads(threads)
        before = _bytes_read()
        assert (_csc(reader.cells([j])) != whole[:, [j]]).nnz == 0
        assert _bytes_read() - before >= chunk.data_ref.length


def _edit(path: Path, tmp_path: Path, edit) -> Path:
    """The file with `edit(parts)` applied to its parsed parts (tests/fuzz/reseal.py), every checksum
    recomputed, so that the edit reaches the rule it breaks."""
    parts = parse(path.read_bytes())
    edit(parts)
    out = tmp_path / "edited.sinr"
    out.write_bytes(build(parts))
    return out


def _read_all(path: Path) -> None:
    r = _native.ContainerReader(str(path))
    r.whole(2)
    r.gene_ids(), r.gene_names(), r.feature_types(), r.cell_names()


def _counts(chunk, name: str) -> np.ndarray:
    """A format-3 count section's items (a zstd shuffled array, spec §3.3)."""
    count = {"gaps.counts": N_GAP_CLASSES, "values.counts": N_CONTEXTS}[name] * N_BINS
    return unpack_shuffled(chunk.sections[name], "u8", count, what=name)


def _set_counts(chunk, name: str, counts: np.ndarray) -> None:
    chunk.sections[name] = pack_shuffled(counts, "u8")


def _plain_gap_counts(parts) -> None:
    """gaps.counts as format 2 stores arrays (items back to back, the right length): read as byte
    planes, its items are not counts."""
    chunk = _busiest_chunk(parts)
    chunk.sections["gaps.counts"] = pack_array(_counts(chunk, "gaps.counts"), "u8")


def _value_count_planes_dropped(parts) -> None:
    """values.counts without its four high byte planes (all zero): the content is half as long."""
    chunk = _busiest_chunk(parts)
    chunk.sections["values.counts"] = pack_shuffled(_counts(chunk, "values.counts").astype(np.uint32), "u4")


def _busiest_chunk(parts):
    return max(parts.matrices[0].chunks, key=lambda c: c.index_row[5])


def _move_gap_count(parts) -> None:
    """One coded gap moved to another density class: every item still fine, rule G2 broken."""
    chunk = _busiest_chunk(parts)
    counts = _counts(chunk, "gaps.counts").reshape(N_GAP_CLASSES, N_BINS).copy()
    used = np.flatnonzero(counts.sum(axis=1))
    counts[used[0], np.flatnonzero(counts[used[0]])[0]] -= 1
    counts[(used[0] + 1) % N_GAP_CLASSES, 0] += 1
    _set_counts(chunk, "gaps.counts", counts.ravel())


def _huge_gap_count(parts) -> None:
    chunk = _busiest_chunk(parts)
    counts = _counts(chunk, "gaps.counts").copy()
    counts[-1] = 1 << 40
    _set_counts(chunk, "gaps.counts", counts)


def _value_count_off(parts) -> None:
    chunk = _busiest_chunk(parts)
    counts = _counts(chunk, "values.counts").copy()
    counts[np.argmax(counts)] += 1
    _set_counts(chunk, "values.counts", counts)


def _format2_value_counts(parts) -> None:
    chunk = _busiest_chunk(parts)
    _set_counts(chunk, "values.counts", _counts(chunk, "values.counts")[: 48 * N_BINS])


def _matrix_key(key, value):
    def edit(parts) -> None:
        if value is None:
            del parts.matrices[0].header[key]
        else:
            parts.matrices[0].header[key] = value
    return edit


def _stage(old: str, new: str):
    def edit(parts) -> None:
        for stage in parts.matrices[0].header["stages"]:
            if stage["id"] == old:
                stage["id"] = new
    return edit


def _drop_section(name: str):
    def edit(parts) -> None:
        del _busiest_chunk(parts).sections[name]
    return edit


def _feature_and_bad_fields(parts) -> None:
    """A later feature with the stages and shape it might change: refused for the feature."""
    for key, value in (("required_features", ["latent-predictor"]), ("stages", "nonsense"), ("shape", None)):
        _matrix_key(key, value)(parts)


HOSTILE = {
    # §5.1.1: R2 is checked before every other rule of the matrix map but its name
    "latent_predictor": (_matrix_key("required_features", ["latent-predictor"]), errors.UnsupportedVersionError,
                         "requires the feature 'latent-predictor' of .sinr format 3.0"),
    "feature_and_bad_fields": (_feature_and_bad_fields, errors.UnsupportedVersionError, "'latent-predictor'"),
    "features_missing": (_matrix_key("required_features", None), errors.CorruptFileError, "'required_features'"),
    "features_not_a_list": (_matrix_key("required_features", "latent-predictor"), errors.CorruptFileError,
                            "'required_features'"),
    "feature_not_a_str": (_matrix_key("required_features", [3]), errors.CorruptFileError, "'required_features'"),
    "feature_twice": (_matrix_key("required_features", ["a", "a"]), errors.CorruptFileError, "'required_features'"),
    # §5.2, R3
    "format2_position_stage": (_stage("gap-bin-positions", "golomb-rans-positions"), errors.CorruptFileError,
                               "do not match mode 'lossless'"),
    "format2_value_stage": (_stage("fine-context-values", "context-rans-values"), errors.CorruptFileError,
                            "do not match mode 'lossless'"),
    "unknown_stage": (_stage("fine-context-values", "latent-values"), errors.CorruptFileError,
                      "unknown stage 'latent-values'"),
    # §6.4, §9.3: K5, G1-G3
    "gap_counts_missing": (_drop_section("gaps.counts"), errors.CorruptFileError, "missing section(s) ['gaps.counts']"),
    "gap_count_huge": (_huge_gap_count, errors.CorruptFileError, "gap counts are not all below 2**40"),
    "gap_counts_moved": (_move_gap_count, errors.CorruptFileError,
                         "gap counts do not add up to the coded positions of its tiles"),
    "value_counts_off": (_value_count_off, errors.CorruptFileError, "value counts do not add up"),
    "value_counts_48_contexts": (_format2_value_counts, errors.CorruptFileError, "section 'values.counts'"),
    "value_count_planes_dropped": (_value_count_planes_dropped, errors.CorruptFileError,
                                   "section 'values.counts' holds 88704 bytes, expected 177408"),
    "gap_counts_not_shuffled": (_plain_gap_counts, errors.CorruptFileError, "gap counts"),  # G1 or G2
    "value_counts_missing": (_drop_section("values.counts"), errors.CorruptFileError, "value tables contradict mode"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_format3_file_is_refused_by_its_rule(files, tmp_path, case):
    edit, error, message = HOSTILE[case]
    parts = parse(files["lossless"][0].read_bytes())
    assert parts.version == (3, 0) and parts.matrices[0].header["required_features"] == []  # a 3.0 writer's
    path = _edit(files["lossless"][0], tmp_path, edit)
    with pytest.raises(error) as caught:
        _read_all(path)
    assert type(caught.value) is error and message in str(caught.value), str(caught.value)


def test_required_feature_refuses_before_any_chunk(files, tmp_path):
    """R2 refuses at open: no chunk of the matrix is read (their sections may be anything)."""
    def edit(parts) -> None:
        _matrix_key("required_features", ["latent-predictor", "segments"])(parts)
        for chunk in parts.matrices[0].chunks:
            chunk.sections.pop("gaps.counts")
    with pytest.raises(errors.UnsupportedVersionError, match="'latent-predictor' of .sinr format 3.0"):
        _native.ContainerReader(str(_edit(files["lossless"][0], tmp_path, edit)))


def test_format2_content_under_major3_breaks_r1(tmp_path):
    """A format-2.1 file whose preamble says 3.0 has no required_features (R1); a format-2 file with
    a gaps.counts section has an unknown section."""
    base = Path(__file__).resolve().parent / "conformance" / "bands_and_tiles" / "matrix.sinr"

    def as_major3(parts) -> None:
        parts.version = (3, 0)
    with pytest.raises(errors.CorruptFileError, match="'required_features'"):
        _read_all(_edit(base, tmp_path, as_major3))

    def with_gap_counts(parts) -> None:
        _busiest_chunk(parts).sections["gaps.counts"] = pack_array(np.zeros(N_GAP_CLASSES * N_BINS), "u8")
    with pytest.raises(errors.CorruptFileError, match=r"unknown section\(s\) \['gaps.counts'\]"):
        _read_all(_edit(base, tmp_path, with_gap_counts))


def test_newer_minor_and_unsupported_major(files, tmp_path):
    """A newer minor of format 3 is read (its unknown sections and keys ignored, §11.2); major 4 is
    refused, naming the majors this reader reads."""
    path, matrix, _, _ = files["synthetic"]

    def newer(parts) -> None:
        parts.version = (3, 7)
        parts.matrices[0].header["a_later_key"] = 1
        _busiest_chunk(parts).sections["later.section"] = b"x"
    r = _native.ContainerReader(str(_edit(path, tmp_path, newer)))
    assert r.version == (3, 7) and (_csc(r.whole(1)) != matrix).nnz == 0

    def major4(parts) -> None:
        parts.version = (4, 0)
    with pytest.raises(errors.UnsupportedVersionError, match=r"format 4\.0 is not supported \(this reader reads "
                                                             r"2\.x and 3\.x\)"):
        _native.ContainerReader(str(_edit(path, tmp_path, major4)))


def _tile_lengths(chunk) -> np.ndarray:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(chunk.sections["tiles.bytes"])
    return np.frombuffer(raw, "<u4").astype(np.int64).copy()


def _damage(parts, rng, trial: int) -> None:
    """One tile of a random chunk with nonzeros damaged: bits flipped in its stream, or (every third
    trial) its end moved one byte into or out of the next tile."""
    chunks = [c for c in parts.matrices[0].chunks if len(c.sections["tiles.data"])]
    chunk = chunks[rng.integers(0, len(chunks))]
    lengths = _tile_lengths(chunk)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    data = bytearray(chunk.sections["tiles.data"])
    if trial % 3 == 0 and lengths.size > 1:
        t = int(rng.choice(np.flatnonzero(lengths[:-1] + lengths[1:] > 0)))
        shift = 1 if lengths[t + 1] > 0 and (lengths[t] == 0 or trial % 2) else -1
        lengths[t] += shift
        lengths[t + 1] -= shift
        chunk.sections["tiles.bytes"] = pack_array(lengths, "u4")
    else:
        t = int(rng.choice(np.flatnonzero(lengths)))
        for at in rng.integers(starts[t], starts[t + 1], rng.integers(1, 3)):
            data[at] ^= 1 << int(rng.integers(0, 8))
    chunk.sections["tiles.data"] = bytes(data)


@pytest.mark.parametrize("name", ["lossless", "synthetic", "siren"])
def test_damaged_tiles_are_refused_never_crash(files, tmp_path, name):
    """Bytes flipped in tiles and tiles cut short or stretched, band CRCs recomputed so that the
    damage reaches the decoder: a whole read refuses every such file (rules T1-T9, or the content
    checksum W1 for a flipped raw bit, which no tile rule sees); partial reads, which stop early and
    so cannot apply T7-T9 (§6.7), return or refuse, and nothing crashes."""
    path, matrix, _, _ = files[name]
    blob = path.read_bytes()
    n_genes, n_cells = matrix.shape
    rng = np.random.default_rng(11)
    for trial in range(45):
        parts = parse(blob)
        _damage(parts, rng, trial)
        damaged = tmp_path / "damaged.sinr"
        damaged.write_bytes(build(parts))
        with pytest.raises(errors.CorruptFileError):
            _native.ContainerReader(str(damaged)).whole(2)
        i, j = (int(x) for x in rng.integers(0, (n_genes, n_cells)))
        for read in (lambda r: r.genes([i, n_genes - 1]), lambda r: r.cells([j, 0]), lambda r: r.entry(i, j),
                     lambda r: r.block([i, 0], [j, n_cells - 1])):
            reader = _native.ContainerReader(str(damaged))
            reader.set_threads(1 + trial % 2)  # reads of several chunks on threads too
            try:
                read(reader)
            except errors.CorruptFileError:
                pass


def test_header_bytes_flipped_never_crash(files, tmp_path):
    """Random flips anywhere in a format-3 file, checksums resealed: a typed error or a matrix."""
    from fuzz.reseal import reseal
    blob = files["synthetic"][0].read_bytes()
    rng = np.random.default_rng(13)
    for _ in range(200):
        damaged = bytearray(blob)
        for at in rng.integers(0, len(damaged), rng.integers(1, 4)):
            damaged[at] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / "flipped.sinr"
        path.write_bytes(reseal(bytes(damaged)))
        try:
            _read_all(path)
        except errors.SinrError:
            pass


def test_cells_decoded_on_threads_read_back(tmp_path):
    """A cell whose tiles hold at least PARALLEL_MIN_ENTRIES nonzeros is decoded on several
    threads, and gives what one thread gives: every cell of a dense matrix, read singly."""
    rng = np.random.default_rng(11)
    matrix = sp.csc_matrix(rng.poisson(1.5, (2000, 120)), dtype=np.int64)
    path = tmp_path / "dense.sinr"
    scinrcodec.encode(matrix, path, siren="never", chunk_cells=120, tile_nnz=4096, progress=False)
    chunk = scinrcodec.open(path).index.chunk(0)
    tiles = chunk.geometry.tile_starts[:-1]  # cell 0's: the first tile of each band
    assert chunk.tile_k[tiles].sum() >= _native.PARALLEL_MIN_ENTRIES and 2 * tiles.size < chunk.geometry.n_tiles
    readers = [_native.ContainerReader(str(path)) for _ in range(2)]
    readers[1].set_threads(3)
    for j in range(matrix.shape[1]):
        for r in readers:
            assert (_csc(r.cells([j])) != matrix[:, [j]]).nnz == 0, j
