"""`python -m benchmarks remote`: real cells read over HTTP with a fixed delay per request: the
10x HDF5 file through h5py over fsspec, and the .sinr file before (an fsspec HTTP file object:
positioned reads one after another) and after (the URL: planned ranges fetched in concurrent batches).

nginx serves the files; a local proxy (tests/servers.py) sleeps DELAY before forwarding each request,
as a network's round-trip time would, and counts requests and body bytes. Every query runs on a
freshly opened file (open itself is measured alone) and is checked against the local file.
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

QUERIES = ("open", "entry", "gene", "cell", "1000 cells", "whole")
WAYS = ("10x h5", "before", "after")  # 10x HDF5 by h5py over fsspec; .sinr by file object; .sinr by URL


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


class TenX:
    """The same queries on a 10x HDF5 file (CSC: cells are columns) through h5py over an fsspec
    file object, as a user of that format reads it remotely."""

    def __init__(self, url: str) -> None:
        import fsspec
        import h5py

        self._file = fsspec.open(url, mode="rb").open()
        self._h5 = h5py.File(self._file, "r")
        group = self._h5["matrix"]
        self.shape = tuple(int(x) for x in group["shape"][:])
        self._indptr, self._indices, self._data = group["indptr"], group["indices"], group["data"]

    def _cells(self, cells: np.ndarray):
        import scipy.sparse as sp

        parts = [(self._indices[a:b], self._data[a:b]) for a, b in
                 (self._indptr[j: j + 2] for j in cells.tolist())]
        indptr = np.concatenate([[0], np.cumsum([p[0].size for p in parts])])
        return sp.csc_matrix((np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts]), indptr),
                             shape=(self.shape[0], cells.size))

    def get(self, gene: int, cell: int) -> int:
        column = self._cells(np.array([cell]))
        return int(column[gene, 0])

    def cell(self, cell: int) -> np.ndarray:
        return self._cells(np.array([cell])).toarray().ravel()

    def gene(self, gene: int) -> np.ndarray:
        return self.to_scipy().getrow(gene).toarray().ravel()  # CSC: a row is spread over the whole file

    def __getitem__(self, key):
        return self._cells(np.asarray(key[1]))

    def to_scipy(self, layout: str = "csr"):
        import scipy.sparse as sp

        return sp.csc_matrix((self._data[:], self._indices[:], self._indptr[:]), shape=self.shape)

    def close(self) -> None:
        self._h5.close()
        self._file.close()


def _open(way: str, url: str):
    import fsspec

    import scinrcodec as sinr

    if way == "10x h5":
        return TenX(url[: -len(".sinr")] + ".h5")
    if way == "before":
        return sinr.open(fsspec.open(url, mode="rb").open())
    return sinr.open(url)


def measure(path: Path, delays: list[float], repeats: int) -> list[dict]:
    """Rows of (file, delay, way, query): requests, bytes and seconds (median of `repeats`)."""
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
                                     "h5_bytes": path.with_suffix(".h5").stat().st_size,
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
    lines = ["Over HTTP: nginx behind a proxy that adds a fixed delay per request; each query on a freshly "
             "opened file, median of the runs, answers checked against the local file. 10x: the Cell Ranger "
             "HDF5 file through h5py over an fsspec HTTP file object; before: the .sinr file through an fsspec "
             "HTTP file object (`sinr.open(fsspec.open(url).open())`: positioned reads, fsspec's read-ahead "
             "cache); after: the .sinr URL (`sinr.open(url)`: planned ranges, concurrent batches).", "",
             "| file | delay | query | requests 10x / before / after | MB 10x / before / after | "
             "seconds 10x / before / after |", "|---|---|---|---|---|---|"]
    by_key = {(r["dataset"], r["delay_ms"], r["way"], r["query"]): r for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        first = next(r for r in rows if r["dataset"] == dataset)
        label = (f"{dataset} ({first['nnz'] / 1e6:.1f}M nonzeros; .sinr {first['file_bytes'] / 1e6:.1f} MB, "
                 f".h5 {first['h5_bytes'] / 1e6:.1f} MB)")
        for delay in sorted({r["delay_ms"] for r in rows if r["dataset"] == dataset}):
            for query in QUERIES:
                cells = [by_key[(dataset, delay, way, query)] for way in WAYS]
                requests = " / ".join(str(c["requests"]) for c in cells)
                sent = " / ".join(f"{c['bytes'] / 1e6:.2f}" for c in cells)
                seconds = " / ".join(f"{c['seconds']:.2f}" for c in cells)
                lines.append(f"| {label} | {delay} ms | {query} | {requests} | {sent} | {seconds} |")
    text = "\n".join(lines) + "\n"
    (out / "remote.md").write_text(text)
    plot(rows, out / "remote.png")
    return text


def plot(rows: list[dict], path: Path) -> None:
    """Seconds of each query by way, one panel per file, at the longest delay (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delay = max(r["delay_ms"] for r in rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        by_key = {(r["way"], r["query"]): float(r["seconds"]) for r in rows
                  if r["dataset"] == dataset and int(r["delay_ms"]) == delay}
        x = np.arange(len(QUERIES))
        for k, way in enumerate(WAYS):
            ax.bar(x + (k - 1) * 0.27, [max(by_key[(way, q)], 1e-3) for q in QUERIES], 0.27, label=way)
        nnz = next(int(r["nnz"]) for r in rows if r["dataset"] == dataset)
        ax.set(title=f"{nnz / 1e6:.1f}M nonzeros, {delay} ms per request", yscale="log", ylabel="seconds")
        ax.set_xticks(x, QUERIES, rotation=30)
    axes[0][0].legend(["10x h5 (h5py, fsspec)", ".sinr before (file object)", ".sinr after (URL)"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
        h5 = path.with_suffix(".h5")  # the same matrix as Cell Ranger's HDF5, served beside it
        if not h5.exists():
            if target:
                shutil.copyfile(source, h5)
            else:
                sinr.decode(path, h5)
        rows += measure(path, delays, repeats)
    return write(rows, out)
