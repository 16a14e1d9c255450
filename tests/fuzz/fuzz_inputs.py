"""atheris harness over the input parsers: 10x HDF5, .h5ad, Matrix Market (file, gzip, folder), .npz.

Seed:  python tests/fuzz/fuzz_inputs.py --seed-corpus   (writes tests/fuzz/inputs_corpus/seed-*)
Run:   python tests/fuzz/fuzz_inputs.py -max_total_time=300 -timeout=20 -rss_limit_mb=4096 CORPUS_COPY

The first input byte picks the format. Matrix Market, gzip, folder (matrix, features and barcodes
split at NUL bytes) and .npz take the rest of the bytes as the file. For HDF5 the rest drives the
contents of a well-formed file written with h5py (shapes, dtypes, arrays, names, layouts): mutating
HDF5's own bytes exercises libhdf5, which can loop forever on a damaged file (found here, in its
attribute reading) and which this project cannot change. Each input is opened with read_matrix and
read block by block, names included, and by cell range through its spec. Any exception other than
SinrError, a crash, a hang or an allocation beyond the RSS limit is a finding; each one found is
kept in tests/fuzz/inputs_corpus/ and replayed by tests/test_inputs.py.
"""
from __future__ import annotations

import atexit
import gzip
import itertools
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

FORMATS = ("10x.h5", "x.h5ad", "matrix.mtx", "matrix.mtx.gz", "folder", "x.npz")
MAX_BLOCKS = 64  # blocks read per input: a mutated header may declare 2**31 empty cells
DTYPES = ["<i4", "<i8", "<u8", "<f2", "<f4", "<f8", "|b1", "S3"]
WORKDIR = Path(tempfile.mkdtemp(prefix="fuzz_inputs."))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
HERE = Path(__file__).parent


def _numbers(fdp, n: int, low: int, high: int) -> np.ndarray:
    """n numbers, mostly in [low, high], in a fuzzed dtype (strings now and then)."""
    dtype = np.dtype(fdp.PickValueInList(DTYPES))
    if dtype.kind == "S":
        return np.array([fdp.ConsumeBytes(3) for _ in range(n)], dtype=dtype)
    values = fdp.ConsumeIntListInRange(n, low, high) if fdp.ConsumeProbability() < 0.9 else fdp.ConsumeIntList(n, 8)
    with np.errstate(all="ignore"):
        return np.array(values, dtype=np.int64).astype(dtype)


def _names(fdp, n: int) -> np.ndarray:
    """n byte strings (now and then one too long), stored fixed-width or variable-length."""
    import h5py

    size = 5000 if fdp.ConsumeProbability() < 0.02 else 6
    names = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, size)) for _ in range(n)]
    if fdp.ConsumeBool():
        return np.array([name.replace(b"\0", b"") for name in names], dtype=h5py.vlen_dtype(bytes))
    return np.array(names, dtype="S")


def _compressed(fdp, group, major: int, minor: int) -> None:
    """data, indices and indptr of `major` slices over `minor` indices, mostly consistent."""
    nnz = fdp.ConsumeIntInRange(0, 40)
    group["data"] = _numbers(fdp, nnz, -1, 2**31 + 1)
    group["indices"] = _numbers(fdp, max(0, nnz + fdp.ConsumeIntInRange(-1, 1) * fdp.ConsumeBool()), -1, minor)
    ptr = np.sort(np.array(fdp.ConsumeIntListInRange(major + 1, 0, nnz), dtype=np.int64))
    if fdp.ConsumeBool() and ptr.size:
        ptr[0], ptr[-1] = 0, nnz
    group["indptr"] = ptr if fdp.ConsumeProbability() < 0.8 else _numbers(fdp, major + 1, -1, nnz + 1)


def _write_10x(fdp, path: Path) -> None:
    """Cell Ranger 3's matrix group, or Cell Ranger 2's genome groups (one to three: a later group's
    barcodes now and then the first's, or the first's from some point on, as a filtered file's)."""
    v2 = fdp.ConsumeBool()
    groups = ("GRCh38", "mm10", "dm6")[:fdp.ConsumeIntInRange(1, 3)] if v2 else ("matrix",)
    with h5py_file(path) as f:
        for group in groups:
            n_genes, n_cells = fdp.ConsumeIntInRange(0, 12), fdp.ConsumeIntInRange(0, 12)
            first = f[groups[0]]["barcodes"] if group != groups[0] and fdp.ConsumeBool() else None
            if first is not None:
                first = first[fdp.ConsumeIntInRange(0, len(first)):].astype(first.dtype)
                n_cells = len(first)
            g = f.create_group(group)
            _compressed(fdp, g, n_cells, n_genes)
            consistent = fdp.ConsumeProbability() < 0.8
            g["shape"] = (np.array([n_genes, n_cells]) if consistent else
                          _numbers(fdp, fdp.ConsumeIntInRange(1, 3), -1, 40))
            g["barcodes"] = first if first is not None else _names(fdp, n_cells + (0 if consistent else
                                                                                  fdp.ConsumeIntInRange(-1, 1)))
            features = g if v2 else g.create_group("features")
            for name in (("genes", "gene_names") if v2 else ("id", "name", "feature_type")):
                features[name] = _names(fdp, n_genes + (0 if consistent else fdp.ConsumeIntInRange(-1, 1)))


def _frame(fdp, group, n: int) -> None:
    group.attrs.update({"encoding-type": "dataframe", "_index": "_index"})
    group["_index"] = _names(fdp, n + fdp.ConsumeIntInRange(-1, 1) * (fdp.ConsumeProbability() < 0.1))
    if fdp.ConsumeBool():
        group["gene_ids"] = _names(fdp, n)
    if fdp.ConsumeBool():
        types = group.create_group("feature_types")
        types.attrs["encoding-type"] = "categorical"
        types["categories"] = _names(fdp, fdp.ConsumeIntInRange(0, 3))
        types["codes"] = _numbers(fdp, n, -2, 3)


def _write_h5ad(fdp, path: Path) -> str | None:
    """An .h5ad whose matrix is X, a layer or raw.X (returned as the layer to read)."""
    n_genes, n_cells = fdp.ConsumeIntInRange(0, 12), fdp.ConsumeIntInRange(0, 12)
    where, layer = fdp.PickValueInList([("X", None), ("layers/counts", "counts"), ("raw/X", "raw")])
    encoding = fdp.PickValueInList(["csr_matrix", "csc_matrix", "array"])
    with h5py_file(path) as f:
        f.attrs["encoding-type"] = "anndata"
        _frame(fdp, f.create_group("obs"), n_cells)
        _frame(fdp, f.create_group("raw/var" if layer == "raw" else "var"), n_genes)
        if encoding == "array":
            values = _numbers(fdp, n_cells * n_genes, -1, 300)
            f[where] = values.reshape(n_cells, n_genes) if fdp.ConsumeProbability() < 0.9 else values
        else:
            x = f.create_group(where)
            major, minor = (n_cells, n_genes) if encoding == "csr_matrix" else (n_genes, n_cells)
            _compressed(fdp, x, major, minor)
            x.attrs["shape"] = [n_cells, n_genes] if fdp.ConsumeProbability() < 0.8 else _numbers(fdp, 2, -1, 40)
        f[where].attrs["encoding-type"] = encoding
    return layer


def h5py_file(path: Path):
    import h5py

    return h5py.File(path, "w")


def _write(kind: str, body: bytes) -> tuple[Path, str | None]:
    """The fuzzed bytes as the file (or folder) that read_matrix will open, and the layer to read."""
    import atheris

    target = WORKDIR / kind
    if target.is_dir():
        shutil.rmtree(target)
    layer = None
    if kind == "10x.h5":
        _write_10x(atheris.FuzzedDataProvider(body), target)
    elif kind == "x.h5ad":
        layer = _write_h5ad(atheris.FuzzedDataProvider(body), target)
    elif kind == "folder":
        target.mkdir()
        parts = body.split(b"\0", 2) + [None, None]
        for name, part in zip(("matrix.mtx", "features.tsv", "barcodes.tsv"), parts):
            if part is not None:
                (target / name).write_bytes(part)
    else:
        target.write_bytes(gzip.compress(body, mtime=0) if kind.endswith(".gz") else body)
    return target, layer


def exercise(data: bytes) -> None:
    from scinrcodec.errors import SinrError
    from scinrcodec.io.readers import open_source_spec, read_matrix
    from scinrcodec.io.sources import RandomAccessSource

    if not data:
        return
    path, layer = _write(FORMATS[data[0] % len(FORMATS)], data[1:])
    try:
        source = read_matrix(path, layer, pattern_as_ones=bool(data[0] & 0x80))
        _ = source.gene_ids, source.gene_names, source.feature_types, source.has_cell_names
        for block in itertools.islice(source.blocks(16), MAX_BLOCKS):
            source.cell_names(block.start, block.start + block.n_cells)
        if isinstance(source, RandomAccessSource) and source.shape[1]:
            again = open_source_spec(pickle.loads(pickle.dumps(source.spec())))
            again.block(source.shape[1] - 1, source.shape[1])
    except SinrError:
        pass


def seed_corpus() -> None:
    """Tiny cuts of a real fixture as Matrix Market and .npz; random recipes for the HDF5 formats."""
    import scipy.sparse as sp

    from scinrcodec.io.matrix import CountMatrix
    from scinrcodec.io.readers import read_matrix
    from scinrcodec.io.writers import write_matrix

    corpus = HERE / "inputs_corpus"
    corpus.mkdir(exist_ok=True)
    full = read_matrix(HERE.parent / "data" / "pbmc500_3p_lt_x_50genes")
    genes, cells = slice(0, 12), slice(0, 6)
    m = CountMatrix(full.matrix()[genes, cells], full.gene_ids[genes], full.gene_names[genes], full.cell_names(0, 6),
                    full.feature_types[genes])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for suffix in ("mtx", "npz"):
            write_matrix(tmp / f"x.{suffix}", m)
        write_matrix(tmp / "folder", m)
        mtx = (tmp / "x.mtx").read_bytes()
        folder = b"\0".join(gzip.decompress((tmp / "folder" / name).read_bytes())
                            for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"))
        coo = tmp / "coo.npz"
        sp.save_npz(coo, sp.coo_matrix(m.counts), compressed=False)
        seeds = {"mtx": (2, mtx), "mtx-gz": (3, mtx), "folder": (4, folder), "npz": (5, (tmp / "x.npz").read_bytes()),
                 "npz-coo": (5, coo.read_bytes()), "mtx-real": (2, mtx.replace(b"integer", b"real")),
                 "mtx-pattern": (0x80 | 2, mtx.replace(b"integer", b"pattern"))}
    recipe = np.random.default_rng(0)
    for k in range(4):  # any bytes make a well-formed HDF5 file: random seeds of a few sizes
        seeds[f"h5-{k}"] = (0, recipe.bytes(64 << k))
        seeds[f"h5ad-{k}"] = (1, recipe.bytes(64 << k))
    for name, (kind, blob) in seeds.items():
        (corpus / f"seed-{name}").write_bytes(bytes([kind]) + blob)


def main() -> None:
    """Replay the corpus once so every module that parsing reaches is imported, then instrument
    scinrcodec's own functions, so coverage guides the parsing and checking layers."""
    import atheris

    sys.path.insert(0, str(HERE.resolve().parent))
    from fuzz.targets import instrument_package

    for seed in sorted((HERE / "inputs_corpus").iterdir()):
        exercise(seed.read_bytes())
    instrument_package()
    atheris.Setup(sys.argv, exercise)
    atheris.Fuzz()


if __name__ == "__main__":
    if sys.argv[1:] == ["--seed-corpus"]:
        seed_corpus()
    else:
        main()
