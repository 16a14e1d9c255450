"""`python -m benchmarks remote`: real cells read over HTTP with a fixed delay per request: the
10x HDF5 file through h5py over fsspec, AnnData's .h5ad (h5py over an fsspec file object) and zarr
store (zarr's FsspecStore), and the .sinr file before (an fsspec HTTP file object: positioned reads
one after another) and after (the URL: planned ranges fetched in concurrent batches, a whole
matrix streamed).

nginx serves the files; a local proxy (tests/servers.py) sleeps DELAY before forwarding each request,
as a network's round-trip time would, and counts requests and body bytes. Every query runs on a
freshly opened file (open itself is measured alone) and is checked against the local file. What
each .sinr query needs is measured on the local file: the byte ranges its reader asks for.
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

QUERIES = ("open", "entry", "gene", "cell", "1000 cells", "whole")
WAYS = ("10x h5", "h5ad", "zarr", "before", "after")  # the peers; .sinr by file object; .sinr by URL
LABELS = {"10x h5": "10x .h5 (h5py, fsspec)", "h5ad": "AnnData .h5ad (h5py, fsspec)",
          "zarr": "AnnData zarr (FsspecStore)", "before": ".sinr before (file object)", "after": ".sinr after (URL)"}


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


class AnnDataX:
    """The same queries on AnnData's X (cells x genes CSR, as write_h5ad and write_zarr store it)
    over HTTP: a .h5ad through h5py over an fsspec file object, or a zarr store through zarr's
    FsspecStore. Cells (rows) and the whole matrix come from anndata's backed sparse dataset; an
    entry is read by positioned reads (the cell's index pointers, its gene indices, one value); a
    gene, a column of CSR, needs all of X's indices, then the values where they match. Answers are
    turned to genes x cells, as .sinr gives them."""

    def __init__(self, url: str) -> None:
        import anndata as ad

        if url.endswith(".zarr"):
            import zarr

            self._file = None
            root = zarr.open_group(zarr.storage.FsspecStore.from_url(url, read_only=True), mode="r")
        else:
            import fsspec
            import h5py

            self._file = fsspec.open(url, mode="rb").open()
            root = self._h5 = h5py.File(self._file, "r")
        group = root["X"]
        self._x = ad.io.sparse_dataset(group)
        self._indptr, self._indices, self._data = group["indptr"], group["indices"], group["data"]
        cells, genes = self._x.shape
        self.shape = (genes, cells)

    def get(self, gene: int, cell: int):
        a, b = (int(v) for v in self._indptr[cell: cell + 2])
        genes = self._indices[a:b]
        k = int(np.searchsorted(genes, gene))  # anndata writes a CSR's indices sorted
        return self._data[a + k] if k < genes.size and genes[k] == gene else 0

    def gene(self, gene: int) -> np.ndarray:
        at = np.flatnonzero(self._indices[:] == gene)
        cells = np.searchsorted(self._indptr[:], at, side="right") - 1
        out = np.zeros(self.shape[1], dtype=self._data.dtype)
        out[cells] = self._data.oindex[at] if hasattr(self._data, "oindex") else self._data[at]
        return out

    def cell(self, cell: int) -> np.ndarray:
        return self._x[cell].toarray().ravel()

    def __getitem__(self, key):
        return self._x[np.asarray(key[1])].T

    def to_scipy(self, layout: str = "csr"):
        return self._x.to_memory().T  # CSC of genes x cells

    def close(self) -> None:
        if self._file is not None:
            self._h5.close()
            self._file.close()


def _open(way: str, url: str):
    import fsspec

    import scinrcodec as sinr

    base = url[: -len(".sinr")]
    if way == "10x h5":
        return TenX(base + ".h5")
    if way in ("h5ad", "zarr"):
        return AnnDataX(f"{base}.{way}")
    if way == "before":
        return sinr.open(fsspec.open(url, mode="rb").open())
    return sinr.open(url)


def _needed(path: Path, work: dict) -> dict:
    """Bytes of the .sinr file each query needs: the union of the byte ranges its reader asks a
    local source for (open's own excluded from the queries'), the gaps a local read copies along
    not counted."""
    import scinrcodec as sinr
    from scinrcodec.storage.remote import merge_ranges
    from scinrcodec.storage.source import LocalFileSource

    class Recording(LocalFileSource):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self.ranges: list[tuple[int, int]] = []
            self._inside = False

        def read(self, offset: int, length: int) -> memoryview:
            if not self._inside:
                self.ranges.append((offset, offset + length))
            return super().read(offset, length)

        def read_into(self, buffer: memoryview, offset: int) -> None:
            if not self._inside:
                self.ranges.append((offset, offset + len(buffer)))
            super().read_into(buffer, offset)

        def gather(self, offsets: np.ndarray, lengths: np.ndarray):
            self.ranges += list(zip(np.asarray(offsets).tolist(), (np.asarray(offsets) + lengths).tolist()))
            self._inside = True  # the runs gather reads, gaps included, are not what the query asks for
            try:
                return super().gather(offsets, lengths)
            finally:
                self._inside = False

    def union(ranges) -> int:
        return sum(b - a for a, b in merge_ranges(ranges, gap=0, limit=0))

    needed = {}
    for query in QUERIES:
        source = Recording(path)
        with sinr.open(source) as m:
            opened = list(source.ranges)
            if query != "open":
                work[query][0](m)
        needed[query] = union(source.ranges) - (0 if query == "open" else union(opened))
    return needed


def _size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (a zarr store)."""
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(path: Path, delays: list[float], repeats: int) -> list[dict]:
    """Rows of (file, delay, way, query): requests, bytes and seconds (median of `repeats`)."""
    import scinrcodec as sinr
    from tests.servers import DelayProxy, Nginx

    rows = []
    with sinr.open(path) as local:
        work = _queries(local)
        nnz = local.nnz
    needed = _needed(path, work)
    sizes = {"file_bytes": path.stat().st_size, **{f"{s}_bytes": _size(path.with_suffix(f".{s}"))
                                                   for s in ("h5", "h5ad", "zarr")}}
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
                        rows.append({"dataset": path.stem.rsplit("-", 1)[0], "nnz": nnz, **sizes,
                                     "delay_ms": round(delay * 1000), "way": way, "query": query,
                                     "requests": requests, "bytes": sent, "seconds": round(seconds, 3),
                                     "sinr_needed_bytes": needed[query]})
                        print(f"{delay * 1000:.0f} ms {way:6s} {query:10s} {requests:5d} requests "
                              f"{sent:>11,d} bytes {seconds:7.3f} s", flush=True)
    return rows


def write(rows: list[dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "remote.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ways = " / ".join(("10x", "h5ad", "zarr", "before", "after"))
    lines = ["Over HTTP: nginx behind a proxy that adds a fixed delay per request; each query on a freshly "
             "opened file, median of the runs, answers checked against the local file. 10x: the Cell Ranger "
             "HDF5 file through h5py over an fsspec HTTP file object; h5ad: AnnData's `write_h5ad` file (float32 "
             "counts, no compression) the same way, X (cells x genes CSR) read with `anndata.io.sparse_dataset`, a gene by "
             "all of X's indices and the values where they match; zarr: AnnData's `write_zarr` store (zarr "
             "format 2, Blosc-LZ4 chunks of 125,000 values) through zarr's `FsspecStore`, read as the h5ad; before: the .sinr file "
             "through an fsspec HTTP file object (`sinr.open(fsspec.open(url).open())`: positioned reads, "
             "fsspec's read-ahead cache); after: the .sinr URL (`sinr.open(url)`: planned ranges, concurrent "
             "batches; open asks for the first 16 bytes and the last 2 kB; the whole matrix requests every chunk "
             "at once and decodes each as it arrives). needs: the bytes of the .sinr file the same reader asks a "
             "local file for: to open it (preamble, trailer, footer, chunk index), or for the query after "
             "opening.", "",
             f"| file | delay | query | requests {ways} | MB {ways} | .sinr needs MB | seconds {ways} |",
             "|---|---|---|---|---|---|---|"]
    by_key = {(r["dataset"], r["delay_ms"], r["way"], r["query"]): r for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        first = next(r for r in rows if r["dataset"] == dataset)
        label = (f"{dataset} ({first['nnz'] / 1e6:.1f}M nonzeros; .sinr {first['file_bytes'] / 1e6:.1f} MB, "
                 f".h5 {first['h5_bytes'] / 1e6:.1f} MB, .h5ad {first['h5ad_bytes'] / 1e6:.1f} MB, "
                 f"zarr {first['zarr_bytes'] / 1e6:.1f} MB)")
        for delay in sorted({r["delay_ms"] for r in rows if r["dataset"] == dataset}):
            for query in QUERIES:
                cells = [by_key[(dataset, delay, way, query)] for way in WAYS]
                requests = " / ".join(str(c["requests"]) for c in cells)
                sent = " / ".join(f"{c['bytes'] / 1e6:.2f}" for c in cells)
                seconds = " / ".join(f"{c['seconds']:.2f}" for c in cells)
                lines.append(f"| {label} | {delay} ms | {query} | {requests} | {sent} | "
                             f"{cells[0]['sinr_needed_bytes'] / 1e6:.3f} | {seconds} |")
    lines += ["", *target_lines(rows)]
    text = "\n".join(lines) + "\n"
    (out / "remote.md").write_text(text)
    plot(rows, out / "remote.png")
    return text


def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets, on the largest file at the longest delay: open in at most 2 round-trip
    times, an entry, a gene and a cell in at most 3 each; bytes at most 2x what the read needs;
    every query faster than on each other format (the .sinr file object, `before`, is the same format)."""
    nnz = max(r["nnz"] for r in rows)
    delay = max(r["delay_ms"] for r in rows if r["nnz"] == nnz)
    by_key = {(r["way"], r["query"]): r for r in rows if r["nnz"] == nnz and r["delay_ms"] == delay}
    lines = [f"Targets at {nnz / 1e6:.1f}M nonzeros, {delay} ms per request (.sinr by URL; round-trip times = "
             "seconds / delay):", "", "| query | round-trip times (target) | bytes / needed (at most 2) | "
             "faster than 10x / h5ad / zarr | met |", "|---|---|---|---|---|"]
    for query in QUERIES:
        after = by_key[("after", query)]
        rtts = after["seconds"] / (delay / 1000) if delay else float("nan")  # no delay: no round trips to count
        limit = {"open": 2, "entry": 3, "gene": 3, "cell": 3}.get(query)
        ratio = after["bytes"] / after["sinr_needed_bytes"] if after["sinr_needed_bytes"] else float("inf")
        faster = [after["seconds"] < by_key[(way, query)]["seconds"] for way in ("10x h5", "h5ad", "zarr")]
        met = (limit is None or rtts <= limit) and ratio <= 2 and all(faster)
        lines.append(f"| {query} | {rtts:.1f}{f' (≤ {limit})' if limit else ''} | {ratio:.2f} | "
                     f"{' / '.join('yes' if f else 'no' for f in faster)} | {'yes' if met else 'no'} |")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    """Seconds of each query by way, one panel per file, at the longest delay (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delay = max(r["delay_ms"] for r in rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    width = 0.8 / len(WAYS)
    for ax, dataset in zip(axes[0], datasets):
        by_key = {(r["way"], r["query"]): float(r["seconds"]) for r in rows
                  if r["dataset"] == dataset and int(r["delay_ms"]) == delay}
        x = np.arange(len(QUERIES))
        for k, way in enumerate(WAYS):
            ax.bar(x + (k - (len(WAYS) - 1) / 2) * width, [max(by_key[(way, q)], 1e-3) for q in QUERIES], width,
                   label=LABELS[way])
        nnz = next(int(r["nnz"]) for r in rows if r["dataset"] == dataset)
        ax.set(title=f"{nnz / 1e6:.1f}M nonzeros, {delay} ms per request", yscale="log", ylabel="seconds")
        ax.set_xticks(x, QUERIES, rotation=30)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_remote(dataset: Path, targets: list[int], workdir: Path, out: Path, delays: list[float],
               repeats: int) -> str:
    """Encode `dataset` itself (target 0) or its cells replicated to each target number of
    nonzeros (benchmarks.scale_data), cached in workdir, with the same matrix beside it as Cell
    Ranger HDF5, AnnData .h5ad and AnnData zarr; measure; write remote.csv, remote.md, remote.png."""
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
        if not (path.with_suffix(".h5ad").exists() and path.with_suffix(".zarr").exists()):
            _write_anndata(path)
        rows += measure(path, delays, repeats)
    return write(rows, out)


def _write_anndata(path: Path) -> None:
    """The .sinr file's matrix as AnnData (cells x genes float32 CSR, names as obs and var) written
    with anndata's defaults, as .h5ad and as a zarr store beside it."""
    import anndata as ad
    import pandas as pd

    import scinrcodec as sinr

    with sinr.open(path) as m:
        x = m.to_scipy(layout="csc").T.tocsr().astype(np.float32)  # cells x genes CSR; counts as scanpy
        x.sort_indices()                                                 # holds them (4 bytes, as 10x's)
        cells = m.cell_names or [str(i) for i in range(m.shape[1])]  # a file may store no names
        genes = m.gene_names or m.gene_ids or [str(i) for i in range(m.shape[0])]
        adata = ad.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(cells, dtype=str)),
                           var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    adata.write_h5ad(path.with_suffix(".h5ad"))
    store = path.with_suffix(".zarr")
    shutil.rmtree(store, ignore_errors=True)
    adata.write_zarr(store)
