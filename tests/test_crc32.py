"""CRC-32: the native core's (512- or 128-bit PCLMULQDQ folding, or slicing by 8) is zlib's on every
input, and the band checks of a read from disk (every band of a chunk in one read, its bytes then decoded without
a second read) catch a damaged band and return exactly what the file holds."""
from __future__ import annotations

import os
import shutil
import time
import zlib

import numpy as np
import pytest

import scinrcodec as sinr
from scinrcodec import _native
from scinrcodec.storage.container import crc32, crc32_ranges


@pytest.fixture(params=["vpclmulqdq", "pclmul", "portable"])
def crc_path(request):
    """Each path this machine has, as the widest allowed (512-bit folding where the CPU has AVX-512
    and VPCLMULQDQ, else 128-bit folding where it has PCLMULQDQ, else the portable slicing)."""
    previous = _native.set_crc32_path(request.param)
    yield _native.crc32_path()
    _native.set_crc32_path(previous)


def test_crc32_path_names_are_checked():
    with pytest.raises(ValueError, match="'portable', 'pclmul' or 'vpclmulqdq'"):
        _native.set_crc32_path("avx")
    assert _native.crc32_path() in ("vpclmulqdq", "pclmul", "portable")


def test_crc32_is_zlibs_for_every_length_and_alignment(crc_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 1 << 13, dtype=np.uint8).tobytes()
    lengths = list(range(0, 600)) + [1023, 1024, 1025, 4096, 4097, 8000, 8191]  # every 512-bit fold and tail
    for length in lengths:
        for align in (0, 1, 5, 8, 15):
            piece = data[align: align + length]
            assert _native.crc32(piece) == zlib.crc32(piece), (crc_path, length, align)
            half = len(piece) // 3
            assert _native.crc32(piece[half:], _native.crc32(piece[:half])) == zlib.crc32(piece)
    for special in (b"", b"\0" * 1000, b"\xff" * 1000, b"123456789"):
        assert crc32(special) == zlib.crc32(special)
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


def test_crc32_takes_any_contiguous_buffer():
    data = np.arange(1000, dtype=np.int32)
    expected = zlib.crc32(data.tobytes())
    assert crc32(data) == crc32(memoryview(data.tobytes())) == crc32(bytearray(data.tobytes())) == expected
    with pytest.raises(ValueError, match="not C-contiguous"):
        crc32(data[::2])


def test_crc32_ranges(crc_path):
    rng = np.random.default_rng(1)
    buffer = rng.integers(0, 256, 5000, dtype=np.uint8)
    offsets = np.array([0, 7, 100, 4999, 5000, 300], np.int64)
    lengths = np.array([0, 93, 4000, 1, 0, 2000], np.int64)
    expected = [zlib.crc32(buffer[a: a + n].tobytes()) for a, n in zip(offsets, lengths)]
    assert crc32_ranges(buffer, offsets, lengths).tolist() == expected
    assert crc32_ranges(buffer.tobytes(), offsets, lengths).tolist() == expected
    for bad_offset, bad_length in ((4990, 11), (-1, 1), (5001, 0), (0, -1)):
        with pytest.raises(ValueError, match="outside the buffer"):
            crc32_ranges(buffer, np.array([bad_offset]), np.array([bad_length]))


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory, pbmc):
    path = tmp_path_factory.mktemp("crc") / "pbmc.sinr"
    sinr.encode(pbmc, path, siren="never", chunk_cells=16, tile_nnz=32, progress=False)
    return path, pbmc.matrix().tocsc()


def test_reads_from_disk_check_bands_once_and_decode_what_they_read(on_disk):
    path, truth = on_disk
    m = sinr.open(path)
    index = m.index
    assert index.n_chunks >= 4
    for j in (0, 1, 15, 16, 40, truth.shape[1] - 1):  # cold chunks, then the same chunk warm (the core's reader)
        assert np.array_equal(m.cell(j), truth[:, j].toarray().ravel())
    genes = np.arange(truth.shape[0])[::-1]  # every gene in another order: this package's reader, every band
    assert (m[genes, [0, 1]] != truth[genes][:, [0, 1]]).nnz == 0
    chunk = index.chunk(0)
    assert chunk.band_verified.all()
    cells = np.random.default_rng(2).choice(truth.shape[1], 50, replace=False)
    assert (m[:, cells] != truth[:, cells]).nnz == 0  # many chunks, some checked before, some not
    assert (sinr.open(path)[:, cells] != truth[:, cells]).nnz == 0  # every chunk unchecked


def test_a_damaged_band_fails_the_cell_read_that_checks_it(tmp_path, on_disk):
    path, _ = on_disk
    index = sinr.open(path).index
    chunk = index.chunk(1)
    band = int(np.flatnonzero(np.diff(chunk.geometry.tile_starts))[-1])  # the last band holding tiles
    offset, length = index.band_ranges(chunk, np.array([band]))
    blob = bytearray(path.read_bytes())
    blob[int(offset[0] + length[0] // 2)] ^= 0x40
    damaged = tmp_path / "damaged.sinr"
    damaged.write_bytes(bytes(blob))
    m = sinr.open(damaged)
    m.cell(0)  # chunk 0 is intact
    with pytest.raises(sinr.CorruptFileError, match=f"chunk 1: checksum mismatch in the tiles of band {band} "):
        m.cell(chunk.first_cell)
    with pytest.raises(sinr.CorruptFileError, match="checksum mismatch"):
        sinr.open(damaged)[:, [0, chunk.first_cell + 1]]


def test_entries_from_disk_check_their_band_and_decode_its_bytes(on_disk):
    """m[i, j] on a band not checked yet decodes from the band's bytes read for its CRC; later
    entries of the band read their tile alone; indices of every kind give the same value."""
    path, truth = on_disk
    dense = truth.toarray()
    m = sinr.open(path)
    rng = np.random.default_rng(4)
    for i, j in zip(rng.integers(0, truth.shape[0], 400).tolist(), rng.integers(0, truth.shape[1], 400).tolist()):
        assert m[i, j] == dense[i, j]
        assert m[i - truth.shape[0], np.int64(j)] == m.get(i, j) == dense[i, j]
    with pytest.raises(sinr.SinrIndexError):
        m[truth.shape[0], 0]


def test_entries_of_a_local_file_take_the_core_reader_and_agree_with_the_python_path(on_disk, tmp_path):
    """m[i, j] of a local file is one call into the core's container reader (on a duplicate of the
    open descriptor); bytes keep this package's path; both give every entry the truth gives, and
    close() releases the duplicate with the file's own descriptor."""
    path, truth = on_disk
    dense = truth.toarray()
    local, held = sinr.open(path), sinr.open(path.read_bytes())
    rng = np.random.default_rng(9)
    pairs = list(zip(rng.integers(0, truth.shape[0], 300).tolist(), rng.integers(0, truth.shape[1], 300).tolist()))
    for i, j in pairs:
        assert local[i, j] == held[i, j] == local._decoded_entry(i, j) == dense[i, j]
    assert type(local._entry_of.__self__).__name__ == "ContainerReader"
    assert held._entry_of == held._decoded_entry
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    local.close()
    if fds is not None:
        assert len(set(os.listdir("/proc/self/fd"))) == len(fds) - 2  # the file's descriptor and the core's
    assert [local[i, j] for i, j in pairs[:20]] == [dense[i, j] for i, j in pairs[:20]]  # opened again


def test_cells_of_a_local_file_take_the_core_reader_and_agree_with_the_python_path(on_disk, monkeypatch):
    """m[:, cells] (every gene) of a local file is one call into the core's container reader, which
    decodes, chunk by chunk, only the tiles holding the cells; bytes keep this package's path. Both
    give the truth's columns as int64 CSR with sorted indices, for cells in any order, repeated, in
    one chunk or all, and a cell-major view the same."""
    path, truth = on_disk
    local, held = sinr.open(path), sinr.open(path.read_bytes())
    n_cells = truth.shape[1]
    rng = np.random.default_rng(11)
    sets = [rng.permutation(n_cells)[: n_cells // 3], rng.integers(0, n_cells, 40), np.array([5, 5, 0, n_cells - 1]),
            np.arange(16), np.arange(n_cells)[::-1]]

    def python_path(*args, **kwargs):
        raise AssertionError("a local file's m[:, cells] took the Python decoder")

    import scinrcodec.reader.matrix as matrix_module
    for cells in sets:
        expected = truth[:, cells].tocsr()
        from_bytes = held[:, cells.tolist()]
        with monkeypatch.context() as patched:
            patched.setattr(matrix_module, "decode_batch", python_path)
            got, view = local[:, cells], local.T[cells, :]
        for result in (got, from_bytes, view.T.tocsr()):
            assert result.format == "csr" and result.dtype == np.int64 and result.shape == expected.shape
            assert result.has_sorted_indices and (result != expected).nnz == 0
        # the view's rows are the core's columns as they come (no transposition): canonical CSR too
        assert view.format == "csr" and view.dtype == np.int64 and view.has_sorted_indices
        assert (view != expected.T).nnz == 0


def test_an_entry_after_the_file_changed_in_place_is_a_file_changed_error(on_disk, tmp_path):
    path, truth = on_disk
    live = tmp_path / "live.sinr"
    shutil.copyfile(path, live)
    m = sinr.open(live)
    assert m[3, 5] == truth[3, 5]
    with open(live, "r+b") as f:  # the same bytes written again: a new modification time
        f.write(path.read_bytes()[:64])
    os.utime(live, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(sinr.FileChangedError, match="changed while open"):
        m[3, 5]


def test_a_damaged_band_fails_the_entry_that_checks_it(tmp_path, on_disk):
    path, truth = on_disk
    index = sinr.open(path).index
    chunk = index.chunk(2)
    band = int(np.flatnonzero(np.diff(chunk.geometry.tile_starts))[0])
    offset, length = index.band_ranges(chunk, np.array([band]))
    blob = bytearray(path.read_bytes())
    blob[int(offset[0])] ^= 0x01
    damaged = tmp_path / "damaged.sinr"
    damaged.write_bytes(bytes(blob))
    row = int(chunk.geometry.row_starts[band])
    gene = int(index.row_genes(np.array([row]))[0])
    with pytest.raises(sinr.CorruptFileError, match=f"chunk 2: checksum mismatch in the tiles of band {band} "):
        sinr.open(damaged)[gene, chunk.first_cell]


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_a_damaged_band_fails_the_gene_read_that_checks_it(tmp_path, on_disk, source):
    """A gene read checks the bands it decodes in one batch (their bytes are its tiles'): a damaged
    one of chunk 2 fails it by name, whichever chunks' bands were checked before."""
    path, truth = on_disk
    index = sinr.open(path).index
    chunk = index.chunk(2)
    band = int(np.flatnonzero(np.diff(chunk.geometry.tile_starts))[-1])
    offset, length = index.band_ranges(chunk, np.array([band]))
    blob = bytearray(path.read_bytes())
    blob[int(offset[0] + length[0] - 1)] ^= 0x10
    damaged = tmp_path / "damaged.sinr"
    damaged.write_bytes(bytes(blob))
    gene = int(index.row_genes(np.array([int(chunk.geometry.row_starts[band])]))[0])
    m = sinr.open(damaged if source == "path" else bytes(blob))
    m[gene, 0]  # chunk 0's band: checked, intact
    with pytest.raises(sinr.CorruptFileError, match=f"chunk 2: checksum mismatch in the tiles of band {band} "):
        m.gene(gene)
    other = int(index.row_genes(np.array([int(chunk.geometry.row_starts[0])]))[0])
    assert np.array_equal(m.gene(other), truth[other].toarray().ravel())  # other bands still read


@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_gene_and_cell_reads_after_the_file_changed_in_place_are_file_changed_errors(on_disk, tmp_path, change):
    """A gather (one descriptor for all its runs, the file checked after the last) still notices a
    file rewritten in place or cut short since it was opened."""
    path, truth = on_disk
    live = tmp_path / "live.sinr"
    shutil.copyfile(path, live)
    m = sinr.open(live)
    assert np.array_equal(np.asarray(m.gene(3)).ravel(), truth[3].toarray().ravel())
    with open(live, "r+b") as f:
        if change == "truncated":
            f.truncate(live.stat().st_size - 1)
        else:
            f.write(path.read_bytes()[:64])
    os.utime(live, ns=(time.time_ns(), time.time_ns() + 10**9))
    for read in (lambda: m.gene(4), lambda: m.cell(7)):
        with pytest.raises(sinr.FileChangedError, match="changed while open"):
            read()
