"""`python -m benchmarks remote`: a .sinr file of real cells read over HTTP with a fixed delay per
request, before (an fsspec HTTP file object: positioned reads one after another) and after (the URL:
planned ranges fetched in concurrent batches).

nginx serves the file; a local proxy (tests/servers.py) sleeps DELAY before forwarding each request,
as a network's round-trip time would, and counts requests and body bytes. Every query runs on a
freshly opened file (open itself is measured alone) and is checked against the local file.
"""
from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np

QUERIES = ("open", "entry", "gene", "cell", "1000 cells", "whole")
WAYS = {"before": "fsspec file object", "after": "URL"}


def _queries(local, seed: int = 0) -> dict:
    """The work of each query, on a given open matrix, with its expected answer from the local file."""
    rng = np.random.default_rng(seed)
    csr = local.to_scipy()
    gene = int(np.argmax(np.diff(csr.indptr)))  # the most detected gene: its band spans every chunk
    k = int(rng.integers(csr.nnz))  # a random nonzero
    entry = (int(np.searchsorted(csr.indptr, k, side="right") - 1), int(csr.indices[k]))
    cell = int(rng.integers(csr.shape[1]))
    cells = np.sort(rng.choice(csr.shape[1], size=min(1000, csr.shape[1]), replace=False))
    return {
        "entry": (lambda m: m.get(*entry), csr[entry]),
        "gene": (lambda m: m.gene(gene), csr[gene].toarray().ravel()),
        "cell": (lambda m: m.cell(cell), csr[:, cell].toarray().ravel()),
        "1000 cells": (lambda m: m[:, cells], csr[:, cells]),
        "whole": (lambda m: m.to_scipy(layout="csc"), csr),
    }


def _same(got, expected) -> bool:
    if hasattr(expected, "nnz"):
        return (got != expected).nnz == 0
    return bool(np.array_equal(np.asarray(got), np.asarray(expected)))


def _open(way: str, url: str):
    import fsspec

    import scinrcodec as sinr

    if way == "before":
        return sinr.open(fsspec.open(url, mode="rb").open())
    return sinr.open(url)


def measure(path: Path, delays: list[float], repeats: int) -> list[dict]:
    import scinrcodec as sinr
    from tests.servers import DelayProxy, Nginx

    rows = []
    with sinr.open(path) as local:
        work = _queries(local)
        compressed = path.stat().st_size
        nnz = local.nnz
    with Nginx(path.parent) as server:
        for delay in delays:
            with DelayProxy(server.port, delay) as proxy:
                url = f"{proxy.url}/{path.name}"
                for way in WAYS:
                    for query in QUERIES:
                        samples = []
                        for _ in range(repeats):
                            m = None if query == "open" else _open(way, url)
                            proxy.requests = proxy.bytes = 0
                            started = time.perf_counter()
                            if query == "open":
                                m = _open(way, url)
                            else:
                                run, expected = work[query]
                                got = run(m)
                            seconds = time.perf_counter() - started
                            if query != "open" and not _same(got, expected):
                                raise AssertionError(f"{way} {query}: wrong answer")
                            samples.append((seconds, proxy.requests, proxy.bytes))
                            m.close()
                        seconds, requests, sent = sorted(samples)[len(samples) // 2]
                        rows.append({"dataset": path.stem.rsplit("-", 1)[0], "nnz": nnz, "file_bytes": compressed,
                                     "delay_ms": round(delay * 1000), "way": way, "query": query,
                                     "requests": requests, "bytes": sent, "seconds": round(seconds, 3)})
                        print(f"{delay * 1000:.0f} ms {way:6s} {query:10s} {requests:5d} requests "
                              f"{sent:>11,d} bytes {seconds:7.3f} s", flush=True)
    return rows


def write(rows: list[dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "remote.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["`.sinr` over HTTP: nginx behind a proxy that adds a fixed delay per request; each query on a "
             "freshly opened file, median of the runs, answers checked against the local file. Before: an "
             "fsspec HTTP file object (`sinr.open(fsspec.open(url).open())`: positioned reads, fsspec's "
             "read-ahead cache); after: the URL (`sinr.open(url)`: planned ranges, concurrent batches).", "",
             "| file | delay | query | requests before / after | bytes before / after | seconds before / after |",
             "|---|---|---|---|---|---|"]
    by_key = {(r["dataset"], r["delay_ms"], r["way"], r["query"]): r for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        first = next(r for r in rows if r["dataset"] == dataset)
        label = f"{dataset} ({first['nnz'] / 1e6:.1f}M nonzeros, {first['file_bytes'] / 1e6:.1f} MB)"
        for delay in sorted({r["delay_ms"] for r in rows if r["dataset"] == dataset}):
            for query in QUERIES:
                b, a = by_key[(dataset, delay, "before", query)], by_key[(dataset, delay, "after", query)]
                lines.append(f"| {label} | {delay} ms | {query} | {b['requests']} / {a['requests']} | "
                             f"{b['bytes']:,} / {a['bytes']:,} | {b['seconds']:.2f} / {a['seconds']:.2f} |")
    text = "\n".join(lines) + "\n"
    (out / "remote.md").write_text(text)
    return text


def run_remote(dataset: Path, targets: list[int], workdir: Path, out: Path, delays: list[float],
               repeats: int) -> str:
    """Encode `dataset` itself (target 0) or its cells replicated to each target number of
    nonzeros (benchmarks.scale_data), cached in workdir; measure; write remote.csv and remote.md."""
    import scinrcodec as sinr

    from .scale_data import scale_input

    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for target in targets:
        source = dataset if not target else scale_input(dataset, target, 0, workdir).path
        tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]  # one cached file per input
        path = workdir / "served" / f"{source.stem}-{tag}.sinr"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            sinr.encode(sinr.read_matrix(source) if not target else source, path, siren=False, progress=False,
                        jobs=2)
        rows += measure(path, delays, repeats)
    return write(rows, out)
