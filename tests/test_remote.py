"""Reading .sinr files by URL against real servers on 127.0.0.1: nginx (HTTP ranges) and moto's
S3 server. Every read path is compared with the local file; requests are counted by nginx's
access log and by the source's own counters; every failure is one typed error naming the URL."""
from __future__ import annotations

import asyncio
import importlib
import json

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from scinrcodec.cli import main as sinr_main
from scinrcodec.errors import (FormatError, RangeNotSupportedError, RemoteAccessError, RemoteChangedError,
                               RemoteConnectionError, RemoteError, RemoteNotFoundError)
from scinrcodec.io.matrix import CountMatrix
from scinrcodec.reader.lazy import MatrixRef
from servers import NGINX, DelayProxy, MotoS3, Nginx, free_port

from conftest import FAST, assert_one_error_line, sinr_cli

pytest.importorskip("fsspec", reason="remote reading needs the remote extra: pip install 'scinrcodec[remote]'")
pytest.importorskip("aiohttp", reason="remote reading needs the remote extra: pip install 'scinrcodec[remote]'")
from scinrcodec.reader import index  # noqa: E402
from scinrcodec.storage import remote  # noqa: E402

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run "
                                                       "installs it)")
GENE, CELL, ENTRY = 8, 50, (3, 40)  # a gene with counts in every chunk, a nonzero entry


@pytest.fixture(scope="module")
def files(tmp_path_factory, matrices):
    """A folder served to the tests: a real cut in chunks of 16 cells (5 chunks), and another file."""
    root = tmp_path_factory.mktemp("served")
    sinr.encode(matrices["pbmc4k_v2_soupx_half"], root / "pbmc.sinr", chunk_cells=16, **FAST)
    sinr.encode(matrices["visium_spaceranger3"], root / "other.sinr", chunk_cells=16, **FAST)
    return root


@pytest.fixture(scope="module")
def nginx(files):
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
    with Nginx(files) as server:
        yield server


@pytest.fixture(autouse=True)
def suffix_within_the_files(monkeypatch):
    """The suffix read at open scaled to these 10 kB files (SUFFIX_BYTES, 64 KiB, would take each
    whole), so that the reads after opening have something to fetch."""
    monkeypatch.setattr(remote, "SUFFIX_BYTES", 2048)


@pytest.fixture
def small_reads(monkeypatch):
    """The planner's sizes scaled to a 10 kB file, so that its reads need several ranges."""
    monkeypatch.setattr(remote, "SUFFIX_BYTES", 512)
    monkeypatch.setattr(remote, "MERGE_GAP", 0)
    # a chunk's sections (their last byte 674..707 past the header in pbmc.sinr), not its first band's
    # tiles (which end 909..956 past it)
    monkeypatch.setattr(index, "SECTIONS_GUESS_BASE", 800)
    monkeypatch.setattr(index, "SECTIONS_GUESS_PER_CELL", 0)


@pytest.fixture
def remote_sources(monkeypatch) -> list:
    """Every RemoteSource made while the test runs, in order: each input's round trips counted."""
    sources = []
    made = remote.RemoteSource.__init__

    def recorded(self, *args, **kwargs):
        made(self, *args, **kwargs)
        sources.append(self)

    monkeypatch.setattr(remote.RemoteSource, "__init__", recorded)
    return sources


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_SECONDS", (0.01,))


def _reads(m):
    """Every kind of read, for comparing a remote file with the local one."""
    return {"entry": m.get(*ENTRY), "gene": m.gene(GENE), "cell": m.cell(CELL), "sub": m[[1, 9, 60], 3:70].toarray(),
            "gene row": m[GENE, :].toarray(), "gene rows": m.T[:, [GENE, 1, 9]].toarray(),
            "names": m.cell_names[:5], "by name": m.get(m.gene_names[GENE], m.cell_names[CELL]),
            "all": m.to_scipy().toarray(), "csc": m.to_scipy(layout="csc").toarray(), "block": m.cells_block(10, 40)
            .toarray()}


def _assert_same(remote_reads, local_reads):
    for key, value in local_reads.items():
        assert np.array_equal(np.asarray(remote_reads[key]), np.asarray(value)), key


@needs_nginx
def test_http_reads_are_exact(nginx, files, small_reads):
    with sinr.open(files / "pbmc.sinr") as local, sinr.open(f"{nginx.url}/pbmc.sinr") as m:
        _assert_same(_reads(m), _reads(local))
    assert all(line.split()[2] == "206" for line in nginx.requests())


@needs_nginx
def test_an_option_the_filesystem_does_not_take_is_named(nginx):
    """fsspec hands options it does not know to its HTTP client, which refused them at each request:
    'request failed (TypeError: ...)' is now the option named, as the user's error it is."""
    with pytest.raises(sinr.InvalidInputError, match="storage option 'foo' is not one http:// takes"):
        sinr.open(f"{nginx.url}/pbmc.sinr", storage_options={"foo": 1})


@needs_nginx
def test_http_round_trips_are_few_and_counted(nginx, files, small_reads):
    """open, one entry, one gene, one cell, genes over every cell: each in a few batches of
    concurrent ranged requests, as nginx's access log counts them; warm reads send none."""
    url = f"{nginx.url}/pbmc.sinr"
    before = nginx.settled_count()
    m = sinr.open(url)
    sources = [m.byte_source]
    assert m.byte_source.round_trips == 3  # preamble + suffix; the footer (past this small suffix); the chunk index
    opened = m.byte_source.round_trips
    m.get(*ENTRY)
    assert m.byte_source.round_trips - opened == 2  # the chunk (header and sections) with the gene tables; the band
    for read in (lambda m: m.gene(GENE), lambda m: m.cell(CELL), lambda m: m[GENE, :], lambda m: m[[GENE, 1, 9], :]):
        m = sinr.open(url)
        sources.append(m.byte_source)
        opened = m.byte_source.round_trips
        read(m)
        assert m.byte_source.round_trips - opened == 2  # every chunk (headers and sections), gene tables; the tiles
        requests = m.byte_source.requests
        read(m)
        assert m.byte_source.requests == requests  # warm: no request
    m = sinr.open(url)
    sources.append(m.byte_source)
    opened = m.byte_source.round_trips
    m.gene(sinr.open(files / "pbmc.sinr").gene_names[GENE])
    assert m.byte_source.round_trips - opened == 3  # the genes' names and ids at once; as above
    sent = sum(source.requests for source in sources)
    assert len(nginx.requests(at_least=before + sent)) - before == sent


@needs_nginx
def test_http_verify_and_concat_fetch_the_chunks_a_window_at_a_time(nginx, files, small_reads, remote_sources,
                                                                    tmp_path):
    """Work on chunk after chunk (verify's checks, concat's copies) fetches the chunks' blocks a
    window at a time, not one round trip each (5 chunks: verify took 14 round trips, each input of
    a concat 12)."""
    url = f"{nginx.url}/pbmc.sinr"
    m = sinr.open(url)
    opened = m.byte_source.round_trips
    m.verify()
    assert m.byte_source.round_trips - opened == 2  # every matrix section at once (one each, 5 before), the blocks
    sinr.concat([url, url], tmp_path / "twice.sinr", index_unique="-")
    assert [s.round_trips for s in remote_sources[1:]] == [8, 8]  # (after verify's) open 3, cell names 2, gene ids 1, the blocks 1, ...
    with sinr.open(files / "pbmc.sinr") as local, sinr.open(tmp_path / "twice.sinr") as both:
        assert (both.to_scipy()[:, :local.shape[1]] != local.to_scipy()).nnz == 0


@needs_nginx
def test_http_subset_fetches_the_chunks_a_window_at_a_time(nginx, files, small_reads, remote_sources, tmp_path):
    """A subset from a URL that decodes whole chunks, a block of cells after another, fetches them a
    window at a time (every cell in reverse, five blocks of a chunk each: 12 round trips, one per
    block, before; 8 now: open 3, cell names 2, gene ids 1, the chunks 1, what the checks ask 1); one
    of a few genes, read tile by tile, reads several blocks at once (16 round trips before, 8 now)."""
    with sinr.open(files / "pbmc.sinr") as local:
        cells = np.arange(local.shape[1])[::-1]
        expected = local[:, cells]
    sinr.subset(f"{nginx.url}/pbmc.sinr", tmp_path / "reversed.sinr", cells=cells)
    assert [s.round_trips for s in remote_sources] == [8]
    with sinr.open(tmp_path / "reversed.sinr") as cut:
        assert (cut.to_scipy() != expected).nnz == 0
    genes = [GENE, 3, 0, 20]  # a few genes, read tile by tile: blocks over up to 8 chunks read at once (16 before)
    sinr.subset(f"{nginx.url}/pbmc.sinr", tmp_path / "few.sinr", cells=cells, genes=genes)
    assert [s.round_trips for s in remote_sources] == [8, 8]
    with sinr.open(tmp_path / "few.sinr") as cut:
        assert (cut.to_scipy() != expected[genes]).nnz == 0


@needs_nginx
def test_http_bytes_already_fetched_are_not_fetched_again(nginx, files):
    """Ranges within MERGE_GAP of each other are fetched as one, but never across bytes the cache
    holds: those had been fetched again (10 kB of cell names re-read by a cell read)."""
    m = sinr.open(f"{nginx.url}/pbmc.sinr")
    source = m.byte_source
    source.read(3000, 100)
    before = (source.requests, source.bytes_fetched)
    source.prefetch([(2900, 100), (3100, 100)])
    assert (source.requests - before[0], source.bytes_fetched - before[1]) == (2, 200)
    assert bytes(source.read(2900, 300)) == (files / "pbmc.sinr").read_bytes()[2900:3200]
    assert source.requests - before[0] == 2


@needs_nginx
def test_http_whole_anndata_parts_come_in_one_round_trip(nginx, files):
    """read_lazy of a whole-AnnData file fetches every stored part and the genes' names in one
    batch, not one round trip each as anndata asks for them."""
    a = sinr.read_sinr(files / "pbmc.sinr")
    a.obsm["X_pca"] = np.ones((a.n_obs, 3))
    a.uns["study"] = {"name": "pbmc"}
    sinr.write_sinr(a, files / "whole.sinr", **FAST)
    m = sinr.open(f"{nginx.url}/whole.sinr")
    opened = m.byte_source.round_trips
    lazy = m.to_anndata(lazy=True)  # what read_lazy(url) gives
    assert m.byte_source.round_trips - opened == 4  # contents; every part and the names; cell names: headers, names
    assert lazy.uns["study"]["name"] == "pbmc" and np.array_equal(lazy.obsm["X_pca"], a.obsm["X_pca"])


@needs_nginx
def test_http_sections_beyond_the_guess(nginx, files, small_reads, monkeypatch):
    """Chunk sections that the guess read with the headers does not cover cost one more round trip."""
    monkeypatch.setattr(index, "SECTIONS_GUESS_BASE", 0)
    with sinr.open(files / "pbmc.sinr") as local, sinr.open(f"{nginx.url}/pbmc.sinr") as m:
        opened = m.byte_source.round_trips
        assert np.array_equal(m.gene(GENE), local.gene(GENE))
        assert m.byte_source.round_trips - opened == 3  # headers; their sections; the tiles


def _ranges(server: Nginx, since: int, count: int) -> list[str]:
    """The Range headers of the `count` requests nginx logged after the first `since` (and of any more it
    logged meanwhile, which the test then sees)."""
    return [line.split('"')[1] for line in server.requests(at_least=since + count)[since:]]


def _layout(path) -> tuple[int, int, int]:
    """(file size, where the footer starts, where the chunk index starts) of a local .sinr file."""
    with sinr.open(path) as m:
        return m.file_size, m.body_end, m.index.sections.table["chunks.index"].offset


@needs_nginx
def test_http_open_fetches_what_it_needs(nginx, files):
    """Opening asks for the preamble and a small suffix, together: the trailer, the footer and the
    chunk index (which writers put just before the footer), nothing more."""
    size, footer, chunk_index = _layout(files / "pbmc.sinr")
    assert size - chunk_index < remote.SUFFIX_BYTES < size
    before = nginx.settled_count()
    with sinr.open(f"{nginx.url}/pbmc.sinr") as m:
        assert (m.byte_source.round_trips, m.byte_source.requests) == (1, 2)
        assert m.byte_source.bytes_fetched == 16 + remote.SUFFIX_BYTES
    assert sorted(_ranges(nginx, before, 2)) == ["bytes=-2048", "bytes=0-15"]


@needs_nginx
@pytest.mark.parametrize("reach", ["footer", "chunk index"])
def test_http_open_past_the_suffix(nginx, files, monkeypatch, reach):
    """A footer longer than the suffix read at open costs exactly one more request, of the bytes
    missing; so does a chunk index reaching further back; reads after it are exact."""
    size, footer, chunk_index = _layout(files / "pbmc.sinr")
    suffix = (size - footer) // 2 if reach == "footer" else (size - chunk_index + size - footer) // 2
    monkeypatch.setattr(remote, "SUFFIX_BYTES", suffix)
    before = nginx.settled_count()
    with sinr.open(f"{nginx.url}/pbmc.sinr") as m, sinr.open(files / "pbmc.sinr") as local:
        expected = [f"bytes=-{suffix}", "bytes=0-15"]
        if reach == "footer":
            expected += [f"bytes={footer}-{size - suffix - 1}", f"bytes={chunk_index}-{footer - 1}"]
        else:
            expected += [f"bytes={chunk_index}-{size - suffix - 1}"]
        ranges = _ranges(nginx, before, len(expected))
        assert sorted(ranges[:2]) + ranges[2:] == expected
        assert m.byte_source.round_trips == len(expected) - 1
        assert m.byte_source.bytes_fetched == 16 + size - chunk_index
        _assert_same(_reads(m), _reads(local))


@needs_nginx
def test_http_file_smaller_than_the_suffix(nginx, files):
    """A file shorter than the suffix comes whole with the preamble, in one round trip: every read
    after opening is exact and sends nothing."""
    x = sp.csr_matrix(np.array([[0, 3, 0, 1], [2, 0, 0, 0], [0, 0, 7, 1]]))
    sinr.encode(CountMatrix(x, gene_names=["a", "b", "c"]), files / "tiny.sinr", **FAST)
    size = (files / "tiny.sinr").stat().st_size
    assert size < remote.SUFFIX_BYTES
    before = nginx.settled_count()
    with sinr.open(f"{nginx.url}/tiny.sinr") as m:
        assert (m.byte_source.round_trips, m.byte_source.requests, m.byte_source.bytes_fetched) == (1, 2, size + 16)
        assert np.array_equal(m.to_scipy().toarray(), x.toarray())
        assert np.array_equal(m.to_scipy(layout="csc").toarray(), x.toarray())
        assert (m.get("c", 2), list(m.gene("a")), list(m.cell(3))) == (7, [0, 3, 0, 1], [1, 0, 1])
        assert m.byte_source.requests == 2
    assert sorted(_ranges(nginx, before, 2)) == [f"bytes=-{remote.SUFFIX_BYTES}", "bytes=0-15"]


@needs_nginx
@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_http_whole_matrix_in_one_concurrent_batch(files, layout):
    """The whole matrix: every chunk's block requested at once (one request each, all in flight
    together, once the gene tables are in), decoded as they
    arrive; exact, and the CSR's second pass over the chunks sends nothing."""
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.to_scipy(layout=layout)
        n_chunks = local.index.n_chunks
    with Nginx(files) as server, DelayProxy(server.port, delay=0.1) as proxy:
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        m.index.genes()  # the gene tables and names, which every decode checks first (a read's first round trip)
        opened, proxy.requests, proxy.most_active = m.byte_source.round_trips, 0, 0
        assert (m.to_scipy(layout=layout) != expected).nnz == 0
        assert m.byte_source.round_trips - opened == 1
        assert proxy.requests == n_chunks and proxy.most_active == n_chunks


@needs_nginx
def test_http_whole_matrix_bounded(files, monkeypatch):
    """A whole read keeps at most CONCURRENCY requests in flight, and fetches no further than
    STREAM_AHEAD_BYTES beyond the chunks the decoders have taken: with one byte, one chunk at a time."""
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.to_scipy(layout="csc")
        n_chunks = local.index.n_chunks
    with Nginx(files) as server, DelayProxy(server.port, delay=0.05) as proxy:
        for setting, value, most in (("CONCURRENCY", 2, 2), ("STREAM_AHEAD_BYTES", 1, 1)):
            with monkeypatch.context() as patch:
                patch.setattr(remote, setting, value)
                m = sinr.open(f"{proxy.url}/pbmc.sinr")
                m.index.genes()
                proxy.requests, proxy.most_active = 0, 0
                assert (m.to_scipy(layout="csc") != expected).nnz == 0
                assert (proxy.requests, proxy.most_active) == (n_chunks, most)


@needs_nginx
@pytest.mark.parametrize("failure", [ValueError("a bug in a transfer"), asyncio.CancelledError()],
                         ids=["exception", "cancelled"])
def test_http_whole_read_whose_transfers_break_fails_typed(nginx, files, monkeypatch, failure):
    """A whole read's transfer that fails with an error no request check knows (a bug, an event
    loop cancelling its tasks) ends the read at once with a RemoteError naming the file, never an
    untyped exception or a wait for a range that will not come."""
    m = sinr.open(f"{nginx.url}/pbmc.sinr")
    m.index.genes()
    source = m.byte_source
    original = source._get

    async def broken(start, end, **kwargs):
        if end is not None and end - start > 1000:  # the chunk blocks, not the tables
            raise failure
        return await original(start, end, **kwargs)

    monkeypatch.setattr(source, "_get", broken)
    with pytest.raises(RemoteError, match=r"pbmc\.sinr: (request failed \(ValueError: a bug|the transfer stopped)"):
        m.to_scipy(layout="csc")


@needs_nginx
def test_http_errors(nginx, files, small_reads, fast_retries):
    with pytest.raises(RemoteNotFoundError, match="missing.sinr"):
        sinr.open(f"{nginx.url}/missing.sinr")
    with pytest.raises(RemoteAccessError, match=r"/private/pbmc.sinr: access denied \(HTTP 403"):
        sinr.open(f"{nginx.url}/private/pbmc.sinr")
    with pytest.raises(RangeNotSupportedError, match="norange"):
        sinr.open(f"{nginx.url}/norange/pbmc.sinr")
    # a folder's page (HTTP 200 to a Range request) is not a .sinr file; it had been called a server that
    # ignores byte ranges
    with pytest.raises(FormatError, match="/listing/: not a .sinr file .*a whole text/html document"):
        sinr.open(f"{nginx.url}/listing/")
    (files / "empty.sinr").write_bytes(b"")
    with pytest.raises(FormatError, match="empty.sinr: not a .sinr file"):
        sinr.open(f"{nginx.url}/empty.sinr")
    with sinr.open(nginx.url.replace("http://", "HTTP://") + "/pbmc.sinr") as m:  # a scheme is case-insensitive
        assert m.shape == sinr.open(files / "pbmc.sinr").shape


@needs_nginx
def test_a_password_in_a_url_is_never_shown(nginx, files):
    """https://user:PASSWORD@host/...: the password had been printed in every error and by `sinr
    info`; it shows as ****, while the file still opens, and opens again in another process."""
    url = nginx.url.replace("http://", "http://alice:s3cret@")
    with pytest.raises(RemoteNotFoundError) as err:
        sinr.open(f"{url}/missing.sinr")
    assert "alice:****@" in str(err.value) and "s3cret" not in str(err.value)
    with sinr.open(f"{url}/pbmc.sinr") as m, sinr.open(files / "pbmc.sinr") as local:
        assert "s3cret" not in m.source + repr(m) and "alice:****@" in m.source
        travelled = pickle.loads(pickle.dumps(m))  # the real URL travels
        assert (travelled.to_scipy() != local.to_scipy()).nnz == 0
    result = sinr_cli("info", f"{url}/pbmc.sinr")
    assert result.returncode == 0 and "alice:****@" in result.stdout and "s3cret" not in result.stdout + result.stderr
    assert_one_error_line(sinr_cli("info", f"{url}/missing.sinr"), "alice:****@")


@needs_nginx
def test_an_interrupted_remote_command_says_one_line(files):
    """Ctrl-C or SIGTERM while a command waits on a stalled server: 'sinr: interrupted' and 130, and
    nothing after it (its requests, left pending on fsspec's loop, had been reported at exit as
    'Task was destroyed but it is pending!' with the task's repr)."""
    with Nginx(files) as server, DelayProxy(server.port) as proxy:
        proxy.stall = 1000
        for sig in (signal.SIGINT, signal.SIGTERM):
            before = proxy.requests
            proc = subprocess.Popen([sys.executable, "-m", "scinrcodec", "get", f"{proxy.url}/pbmc.sinr", "#3", "#40"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
            deadline = time.monotonic() + 60
            while proxy.requests == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the request is in flight, stalled
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130 and err == "sinr: interrupted\n", (sig, proc.returncode, err)


@needs_nginx
def test_http_object_replaced_while_open(nginx, files, small_reads):
    shutil.copy(files / "pbmc.sinr", files / "replaced.sinr")
    m = sinr.open(f"{nginx.url}/replaced.sinr")
    m.get(*ENTRY)
    shutil.copy(files / "other.sinr", files / "new.sinr")
    os.replace(files / "new.sinr", files / "replaced.sinr")
    with pytest.raises(RemoteChangedError, match="replaced.sinr.*replaced while open"):
        m.gene(GENE)


@needs_nginx
def test_http_threads_never_fetch_the_same_bytes_twice(files, small_reads):
    """Threads reading genes of one fresh open file at once (dask's, a loader's) share what another
    is fetching: the bytes fetched are those one thread reading the genes in turn fetches (four threads
    had fetched the chunk headers and gene tables four times)."""
    genes = [GENE, 1, 9, 30]
    with Nginx(files) as server, DelayProxy(server.port, delay=0.05) as proxy, sinr.open(files / "pbmc.sinr") as local:
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        opened = m.byte_source.bytes_fetched
        for gene in genes:
            assert np.array_equal(m.gene(gene), local.gene(gene))
        alone = m.byte_source.bytes_fetched - opened
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        opened = m.byte_source.bytes_fetched
        with ThreadPoolExecutor(len(genes)) as pool:
            together = list(pool.map(m.gene, genes))
        assert all(np.array_equal(g, local.gene(gene)) for g, gene in zip(together, genes))
        assert m.byte_source.bytes_fetched - opened == alone > 0


@needs_nginx
def test_http_a_batch_larger_than_the_cache_keeps_itself(nginx, files, small_reads, monkeypatch):
    """A prefetch of more than CACHE_BYTES keeps all its ranges until they are read (each range is
    cached as it arrives; none of its batch is evicted for another), so the reads after it send
    nothing: storing range by range had evicted the batch's own first ranges."""
    m = sinr.open(f"{nginx.url}/pbmc.sinr")
    source = m.byte_source
    monkeypatch.setattr(remote, "CACHE_BYTES", 1000)
    ranges = [(16 + 600 * k, 300) for k in range(10)]  # 3,000 bytes, apart (MERGE_GAP is 0 here)
    before = source.requests
    source.prefetch(ranges)
    buffer, at = source.gather(np.array([o for o, _ in ranges]), np.array([n for _, n in ranges]))
    assert source.requests - before == len(ranges)
    data = (files / "pbmc.sinr").read_bytes()
    assert all(bytes(buffer[a: a + n]) == data[o: o + n] for a, (o, n) in zip(at.tolist(), ranges))


@needs_nginx
def test_http_server_refusing_suffix_ranges(files):
    """A server that answers a suffix range ('bytes=-N') with 416 is read by size: the first bytes
    give it, then the tail comes as an ordinary range (an empty object is still said to be one)."""
    with Nginx(files) as server, DelayProxy(server.port) as proxy, sinr.open(files / "pbmc.sinr") as local:
        proxy.no_suffix = True
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        assert m.byte_source.round_trips == 3  # the batch refused; the first bytes; the tail
        _assert_same(_reads(m), _reads(local))
        (files / "empty.sinr").write_bytes(b"")
        with pytest.raises(FormatError, match="empty.sinr: not a .sinr file .the object is empty"):
            sinr.open(f"{proxy.url}/empty.sinr")


@needs_nginx
def test_http_connection_drops(files, small_reads, fast_retries):
    """A response cut mid-body is retried; a server gone for good is RemoteConnectionError."""
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.gene(GENE)
    with Nginx(files) as server, DelayProxy(server.port) as proxy:
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        proxy.drop = 2
        assert np.array_equal(m.gene(GENE), expected)
        assert proxy.drop == 0
        server.stop()
        with pytest.raises(RemoteConnectionError, match="pbmc.sinr"):
            m.cell(CELL)


@needs_nginx
def test_http_stalled_responses_time_out(files, small_reads, fast_retries, monkeypatch):
    """A server that stops sending mid-body is a stalled request, retried after HTTP_STALL_SECONDS;
    one that stalls every time is RemoteConnectionError within the tries, not a read that waits for
    aiohttp's 300 s each time."""
    monkeypatch.setattr(remote, "HTTP_STALL_SECONDS", 0.5)
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.gene(GENE)
    with Nginx(files) as server, DelayProxy(server.port) as proxy:
        m = sinr.open(f"{proxy.url}/pbmc.sinr")
        proxy.stall = 2
        assert np.array_equal(m.gene(GENE), expected) and proxy.stall == 0
        proxy.stall = 100
        started = time.perf_counter()
        with pytest.raises(RemoteConnectionError, match="pbmc.sinr.*after 4 tries"):
            m.cell(CELL)
        assert time.perf_counter() - started < 30


@needs_nginx
def test_cli_reads_urls(nginx, files, tmp_path, capsys):
    url = f"{nginx.url}/pbmc.sinr"
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.get(*ENTRY)
        assert sinr_main(["get", url, f"#{ENTRY[0]}", f"#{ENTRY[1]}"]) == 0
        assert capsys.readouterr().out.strip() == str(expected)
        assert sinr_main(["info", url]) == 0
        assert "150" in capsys.readouterr().out
        assert sinr_main(["decode", url, str(tmp_path / "out.npz")]) == 0
        import scipy.sparse as sp
        assert (sp.load_npz(tmp_path / "out.npz") != local.to_scipy()).nnz == 0
    for name, what in (("missing.sinr", "no such object"), ("private/pbmc.sinr", "access denied (HTTP 403")):
        assert sinr_main(["info", f"{nginx.url}/{name}"]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"sinr: error: {nginx.url}/{name}: {what}"), lines


@needs_nginx
def test_lazy_and_batches_over_http(nginx, files):
    pytest.importorskip("dask")
    url = f"{nginx.url}/pbmc.sinr"
    with sinr.open(files / "pbmc.sinr") as local:
        expected = local.to_scipy().T.toarray()
        lazy = sinr.read_lazy(url)
        assert np.array_equal(lazy.X.compute().toarray(), expected)
        with sinr.open(url) as m:  # a block sent to a dask.distributed worker opens the URL there
            ref = pickle.loads(pickle.dumps(MatrixRef(m)))
        assert ref.matrix.source == url
        assert np.array_equal(ref.matrix.cells_block(16, 32, np.int64).toarray(), expected[16:32])
        with sinr.open(url) as m:
            batches = list(m.iter_cells(batch_size=32, seed=1, dtype=np.int64))
        cells = np.concatenate([b.cells for b in batches])
        assert sorted(cells.tolist()) == list(range(local.shape[1]))
        for batch in batches:
            assert np.array_equal(batch.X.toarray(), expected[batch.cells])


FORKED_READ = """
import os, signal, sys
import numpy as np
import scinrcodec as sinr
from scinrcodec.storage import remote
remote.SUFFIX_BYTES = 2048  # as in the tests above: not the whole file at open, so that reads have something to fetch
url, path = sys.argv[1:]
local = sinr.open(path)
m = sinr.open(url)
m.cell(1)  # the parent's requests run on fsspec's event loop, a thread of the parent's


def forked(read):
    pid = os.fork()
    if pid == 0:  # a torch DataLoader worker (fork is its default start), a fork Pool's worker
        signal.alarm(30)  # a child that waits forever ends (SIGALRM: -14)
        os._exit(0 if read() else 3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


print(forked(lambda: np.array_equal(m.cell(70), local.cell(70)) and np.array_equal(m.gene(8), local.gene(8))))
with m.byte_source._lock:  # a parent's thread amid a fetch as the fork happens
    print(forked(lambda: np.array_equal(m.cell(20), local.cell(20))))
"""


@needs_nginx
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_http_a_forked_child_reads(nginx, files):
    """A child forked after its parent opened a URL fetches on an event loop and under a lock of its
    own: it had waited forever on the parent's loop, which has no thread in the child (torch's
    DataLoader workers over a file opened by URL), or on the parent's lock, held as it forked."""
    run = subprocess.run([sys.executable, "-c", FORKED_READ, f"{nginx.url}/pbmc.sinr", str(files / "pbmc.sinr")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.split() == ["0", "0"], run.stdout + run.stderr


def test_s3_reads_and_errors(files, small_reads, monkeypatch, capsys):
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="S3 reading needs the remote extra: pip install 'scinrcodec[remote]'")
    with MotoS3() as s3:
        s3.client.create_bucket(Bucket="atlas")
        s3.client.put_object(Bucket="atlas", Key="pbmc.sinr", Body=(files / "pbmc.sinr").read_bytes())
        with sinr.open(files / "pbmc.sinr") as local:
            expected = _reads(local)
            m = sinr.open("s3://atlas/pbmc.sinr", storage_options=s3.options)
            assert m.byte_source.round_trips == 3
            opened = m.byte_source.round_trips
            m.gene(GENE)
            assert m.byte_source.round_trips - opened == 2
            _assert_same(_reads(m), expected)
            m = sinr.open("s3://atlas/pbmc.sinr", storage_options=s3.options)
            opened = (m.byte_source.round_trips, m.byte_source.requests)
            assert np.array_equal(m.to_scipy(layout="csc").toarray(), expected["csc"])
            assert (m.byte_source.round_trips - opened[0], m.byte_source.requests - opened[1]) == (
                2, 1 + local.index.n_chunks)  # the gene tables (past this small suffix); every chunk at once
            lazy = sinr.read_lazy("s3://atlas/pbmc.sinr", storage_options=s3.options)
            assert lazy.shape == local.shape[::-1]
        for key, value in (("AWS_ENDPOINT_URL", s3.endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                           ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(key, value)  # the CLI reaches S3 as boto3 does: here by the environment
        assert sinr_main(["get", "s3://atlas/pbmc.sinr", f"#{ENTRY[0]}", f"#{ENTRY[1]}"]) == 0
        assert capsys.readouterr().out.strip() == str(expected["entry"])
        assert sinr_main(["info", "s3://atlas/gone.sinr"]) == 1
        assert capsys.readouterr().err.strip() == "sinr: error: s3://atlas/gone.sinr: no such object"
        with pytest.raises(RemoteNotFoundError, match="s3://atlas/missing.sinr"):
            sinr.open("s3://atlas/missing.sinr", storage_options=s3.options)
        with pytest.raises(RemoteNotFoundError, match="s3://nobucket/pbmc.sinr"):
            sinr.open("s3://nobucket/pbmc.sinr", storage_options=s3.options)
        m = sinr.open("s3://atlas/pbmc.sinr", storage_options=s3.options)
        s3.client.put_object(Bucket="atlas", Key="pbmc.sinr", Body=(files / "other.sinr").read_bytes())
        with pytest.raises(RemoteChangedError, match="s3://atlas/pbmc.sinr"):
            m.cell(CELL)


def test_s3_failures_are_tried_as_often_as_http_ones(files, small_reads, fast_retries):
    """Only this reader retries an S3 request (RETRIES + 1 tries): botocore's own attempts (5 a
    request, with backoff) inside each of ours had made an endpoint answering 500 take 40 requests
    and 36 s to report; a user's own botocore retries setting still applies."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="S3 reading needs the remote extra: pip install 'scinrcodec[remote]'")
    with MotoS3() as s3:
        s3.client.create_bucket(Bucket="atlas")
        s3.client.put_object(Bucket="atlas", Key="pbmc.sinr", Body=(files / "pbmc.sinr").read_bytes())
        port = int(s3.endpoint.rsplit(":", 1)[1])
        with DelayProxy(port) as proxy, sinr.open(files / "pbmc.sinr") as local:
            options = {**s3.options, "endpoint_url": proxy.url}
            requests = []
            for fail in (0, 1):  # a gene read, then the same with its first request failing once
                m = sinr.open("s3://atlas/pbmc.sinr", storage_options=options)
                proxy.fail, before = fail, proxy.requests
                assert np.array_equal(m.gene(GENE), local.gene(GENE))
                requests.append(proxy.requests - before)
            assert requests[1] == requests[0] + 1
            proxy.fail, before = 1000, proxy.requests
            with pytest.raises(RemoteConnectionError, match="after 4 tries"):
                m.cell(CELL)
            assert proxy.requests - before == 4 * 1  # one range, four tries
            proxy.fail, before = 1000, proxy.requests
            own = {**options, "config_kwargs": {"retries": {"total_max_attempts": 2}}}
            with pytest.raises(RemoteConnectionError, match="after 4 tries"):
                sinr.open("s3://atlas/pbmc.sinr", storage_options=own)
            assert (proxy.requests - before) % 2 == 0 and proxy.requests - before > 8


def test_s3_access_denied(files, small_reads, monkeypatch):
    """moto enforcing IAM: a user allowed one object is refused another, a wrong secret is refused,
    and a policy withdrawn while a file is open refuses its next read; each is RemoteAccessError,
    one line naming the URL, from the library and from the CLI."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="S3 reading needs the remote extra: pip install 'scinrcodec[remote]'")
    with MotoS3() as s3:
        s3.client.create_bucket(Bucket="atlas")
        for key in ("pbmc.sinr", "secret.sinr"):
            s3.client.put_object(Bucket="atlas", Key=key, Body=(files / "pbmc.sinr").read_bytes())
        admin = s3.user("admin", {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                                          "Resource": "*"}]})
        reader = s3.user("reader", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::atlas/pbmc.sinr"}]})
        s3.enforce_auth(True)
        with sinr.open(files / "pbmc.sinr") as local:
            expected = local.get(*ENTRY)
        m = sinr.open("s3://atlas/pbmc.sinr", storage_options=reader)  # allowed: auth is checked, not refused
        assert m.get(*ENTRY) == expected
        denied = [("s3://atlas/secret.sinr", reader, "Access Denied"),
                  ("s3://atlas/pbmc.sinr", {**reader, "secret": "wrong"}, "signature"),
                  ("s3://atlas/pbmc.sinr", s3.options, "Access Key Id")]  # a key moto does not know
        for url, options, why in denied:
            with pytest.raises(RemoteAccessError) as caught:
                sinr.open(url, storage_options=options)
            message = str(caught.value)
            assert message.startswith(f"{url}: access denied (") and why in message, message
            assert "\n" not in message and "Traceback" not in message and "botocore" not in message
        s3.iam(admin).delete_user_policy(UserName="reader", PolicyName="reader-policy")
        with pytest.raises(RemoteAccessError, match=r"^s3://atlas/pbmc\.sinr: access denied \(.*Access Denied"):
            m.cell(CELL)  # the chunks it needs were not fetched before the policy went
        for key, value in (("AWS_ENDPOINT_URL", s3.endpoint), ("AWS_ACCESS_KEY_ID", reader["key"]),
                           ("AWS_SECRET_ACCESS_KEY", reader["secret"]), ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(key, value)  # the CLI, in its own process, signs as the reader
        result = sinr_cli("info", "s3://atlas/secret.sinr", timeout=60)
        assert_one_error_line(result, "s3://atlas/secret.sinr: access denied (PermissionError: Access Denied)")


def test_cli_storage_options(files, small_reads, monkeypatch):
    """`--storage-option KEY=VALUE` (repeatable, VALUE as JSON where it parses) reaches fsspec: the
    CLI reads S3 with the endpoint and keys given on its command line, none in the environment;
    on a local path the option is one clear error line."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="S3 reading needs the remote extra: pip install 'scinrcodec[remote]'")
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    with MotoS3() as s3:
        s3.client.create_bucket(Bucket="atlas")
        s3.client.put_object(Bucket="atlas", Key="pbmc.sinr", Body=(files / "pbmc.sinr").read_bytes())
        with sinr.open(files / "pbmc.sinr") as local:
            expected = local.get(*ENTRY)
        options = [f"--storage-option={key}={json.dumps(value) if not isinstance(value, str) else value}"
                   for key, value in s3.options.items()]
        result = sinr_cli("get", "s3://atlas/pbmc.sinr", f"#{ENTRY[0]}", f"#{ENTRY[1]}", *options, timeout=60)
        assert result.returncode == 0 and result.stdout.strip() == str(expected), result.stderr
        cut = files.parent / "cut.sinr"  # subset and concat read their inputs from URLs too
        with sinr.open(files / "pbmc.sinr") as local:
            three = ",".join(local.cell_names[:3])
        result = sinr_cli("subset", "s3://atlas/pbmc.sinr", "-o", cut, "--cells", three, "--force", *options,
                          timeout=60)
        assert result.returncode == 0, result.stderr
        result = sinr_cli("concat", "s3://atlas/pbmc.sinr", cut, "-o", files.parent / "cat.sinr", "--force",
                          "--index-unique", "-", *options, timeout=60)
        assert result.returncode == 0, result.stderr
        with sinr.open(files / "pbmc.sinr") as local, sinr.open(cut) as c, sinr.open(files.parent / "cat.sinr") as cat:
            assert (c.to_scipy() != local[:, [0, 1, 2]]).nnz == 0
            assert (cat.to_scipy() != sp.hstack([local.to_scipy(), c.to_scipy()]).tocsr()).nnz == 0
        remote_anndata = sinr.read_sinr("s3://atlas/pbmc.sinr", storage_options=s3.options, dtype=np.int64)
        with sinr.open(files / "pbmc.sinr") as local:
            assert (remote_anndata.X != local.T.to_scipy()).nnz == 0
    assert_one_error_line(sinr_cli("info", str(files / "pbmc.sinr"), "--storage-option", "anon=true"),
                          "storage options (--storage-option) apply to URLs only")
    assert_one_error_line(sinr_cli("info", str(files / "pbmc.sinr"), "--storage-option", "anon"),
                          "expected KEY=VALUE")


def test_storage_options_and_inputs_that_are_not_what_they_must_be(files, tmp_path):
    """storage_options that are not a dict of names, a URL given as an input to encode or append
    (it had been 'no such file or folder' under the URL with its // made /), and --storage-option
    values: each a typed error in one line, a credential kept as text however it looks."""
    from scinrcodec.cli import _storage_option

    for options in ("anon=true", 5, {1: 2}):
        for call in (sinr.open, sinr.read_sinr, sinr.read_lazy):
            with pytest.raises(sinr.InvalidInputError, match="storage_options must be a dict of fsspec's options"):
                call("s3://atlas/pbmc.sinr", storage_options=options)
    for url in ("http://127.0.0.1:9/whole.h5ad", "s3://lab/more.h5"):
        for call in (lambda: sinr.encode(url, tmp_path / "x.sinr"), lambda: sinr.encode_whole(url, tmp_path / "x.sinr")):
            with pytest.raises(sinr.InvalidInputError, match=f"^{url}: an input to encode or append is a local file"):
                call()
        assert_one_error_line(sinr_cli("encode", url, tmp_path / "x.sinr"), f"{url}: an input to encode or append")
    shutil.copy(files / "pbmc.sinr", tmp_path / "ap.sinr")
    assert_one_error_line(sinr_cli("append", tmp_path / "ap.sinr", "https://example.org/more.h5"),
                          "https://example.org/more.h5: an input to encode or append is a local file")
    assert (tmp_path / "ap.sinr").read_bytes() == (files / "pbmc.sinr").read_bytes()
    assert _storage_option("key=12345") == ("key", "12345") and _storage_option("secret=1e5") == ("secret", "1e5")
    assert _storage_option("anon=true") == ("anon", True) and _storage_option("block_size=5") == ("block_size", 5)
    assert _storage_option('tag="123"') == ("tag", "123") and _storage_option("x=a b") == ("x", "a b")


def test_a_filesystem_failing_as_it_is_made_is_a_typed_error(files, tmp_path):
    """fsspec filesystems that connect or read as they are made (ftp://, a zip:: chain) fail there
    with their own errors: each is a RemoteError naming the URL (a plain ConnectionRefusedError,
    FileNotFoundError or an 'internal error (BadZipFile ...)' before)."""
    import fsspec
    import zipfile

    with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
        archive.write(files / "pbmc.sinr", "pbmc.sinr")
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/sinr-zip/s.zip", (tmp_path / "s.zip").read_bytes())
    fs.pipe_file("/sinr-zip/pbmc.sinr", (files / "pbmc.sinr").read_bytes())
    try:
        with sinr.open("zip://pbmc.sinr::memory://sinr-zip/s.zip") as m, sinr.open(files / "pbmc.sinr") as local:
            assert (m.to_scipy() != local.to_scipy()).nnz == 0  # such URLs are read
        with pytest.raises(RemoteNotFoundError, match="^zip://pbmc.sinr::memory://sinr-zip/nope.zip: no such object"):
            sinr.open("zip://pbmc.sinr::memory://sinr-zip/nope.zip")
        with pytest.raises(RemoteError, match=r"^zip://pbmc.sinr::memory://sinr-zip/pbmc.sinr: request failed "
                                              r"\(BadZipFile"):
            sinr.open("zip://pbmc.sinr::memory://sinr-zip/pbmc.sinr")
    finally:
        fs.rm("/sinr-zip", recursive=True)
    closed = f"ftp://127.0.0.1:{free_port()}/x.sinr"  # nothing listens there
    with pytest.raises(RemoteConnectionError, match=f"^{closed}: connection failed \\(ConnectionRefusedError"):
        sinr.open(closed)
    assert_one_error_line(sinr_cli("info", closed), f"{closed}: connection failed (ConnectionRefusedError")


def test_merge_ranges():
    assert remote.merge_ranges([(50, 60), (0, 10), (12, 20), (5, 8), (100, 101)], gap=2) == [(0, 20), (50, 60),
                                                                                             (100, 101)]
    assert remote.merge_ranges([(0, 10), (12, 20)], gap=2, gap_free=lambda a, b: False) == [(0, 10), (12, 20)]
    assert remote.merge_ranges([], gap=5) == []
    assert remote.merge_ranges([(0, 10), (12, 20), (15, 30)], gap=2, limit=15) == [(0, 10), (12, 30)]


def test_any_fsspec_url(files, small_reads):
    """A filesystem without HTTP or S3 (fsspec's memory://) is read by its own range API."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/sinr-test/pbmc.sinr", (files / "pbmc.sinr").read_bytes())
    try:
        with sinr.open(files / "pbmc.sinr") as local, sinr.open("memory://sinr-test/pbmc.sinr") as m:
            assert m.byte_source.round_trips == 3  # as over HTTP: size, preamble and suffix at once; footer; chunk index
            m.gene(GENE)
            assert m.byte_source.round_trips == 5
            _assert_same(_reads(m), _reads(local))
        with pytest.raises(RemoteNotFoundError, match="memory://sinr-test/missing.sinr"):
            sinr.open("memory://sinr-test/missing.sinr")
    finally:
        fs.rm("/sinr-test", recursive=True)


def test_a_filesystem_the_remote_extra_lacks_is_named_without_it(monkeypatch):
    """gs:// without gcsfs: fsspec's message names the package; 'pip install scinrcodec[remote]', which
    installs no gcsfs, is offered only for the schemes the extra serves (here s3fs missing for s3://)."""
    registry = importlib.import_module("fsspec.registry")  # the module: fsspec.registry is its read-only mapping

    for scheme, package in (("gs", "gcsfs"), ("s3", "s3fs")):
        monkeypatch.setitem(registry.known_implementations, scheme,
                            {"class": f"sinr_no_such_module.{package}", "err": f"Install {package} for {scheme}"})
        monkeypatch.delitem(registry._registry, scheme, raising=False)  # a filesystem class loaded before
    with pytest.raises(sinr.InvalidInputError) as err:
        sinr.open("gs://bucket/atlas.sinr")
    assert str(err.value) == "gs://bucket/atlas.sinr: Install gcsfs for gs"
    with pytest.raises(sinr.InvalidInputError) as err:
        sinr.open("s3://bucket/atlas.sinr")
    assert str(err.value) == "s3://bucket/atlas.sinr: Install s3fs for s3 (pip install 'scinrcodec[remote]')"
