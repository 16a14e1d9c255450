"""atheris harness over the input parsers: 10x HDF5, .h5ad, Matrix Market (file, gzip, folder), .npz.

Seed:  python tests/fuzz/fuzz_inputs.py --seed-corpus   (writes tests/fuzz/inputs_corpus/seed-*)
Run:   python tests/fuzz/fuzz_inputs.py -max_total_time=300 -timeout=20 -rss_limit_mb=4096 CORPUS_COPY

The first input byte picks the format (and, for Matrix Market, whether a pattern file is read as
ones); the rest is written to a temporary file (an mtx folder: matrix, features and barcodes split
at NUL bytes), opened with read_matrix and read block by block, names included. Any exception other
than SinrError, a crash, a hang or an allocation beyond the RSS limit is a finding; each one found is
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

FORMATS = ("10x.h5", "x.h5ad", "matrix.mtx", "matrix.mtx.gz", "folder", "x.npz")
MAX_BLOCKS = 64  # blocks read per input: a mutated header may declare 2**31 empty cells
WORKDIR = Path(tempfile.mkdtemp(prefix="fuzz_inputs."))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
HERE = Path(__file__).parent


def _write(kind: str, body: bytes) -> Path:
    """The fuzzed bytes as the file (or folder) that read_matrix will open."""
    target = WORKDIR / kind
    if target.is_dir():
        shutil.rmtree(target)
    if kind == "folder":
        target.mkdir()
        parts = body.split(b"\0", 2) + [None, None]
        for name, part in zip(("matrix.mtx", "features.tsv", "barcodes.tsv"), parts):
            if part is not None:
                (target / name).write_bytes(part)
    else:
        target.write_bytes(gzip.compress(body, mtime=0) if kind.endswith(".gz") else body)
    return target


def exercise(data: bytes) -> None:
    from scinrcodec.errors import SinrError
    from scinrcodec.io.readers import open_source_spec, read_matrix
    from scinrcodec.io.sources import RandomAccessSource

    if not data:
        return
    kind = FORMATS[data[0] % len(FORMATS)]
    path = _write(kind, data[1:])
    try:
        source = read_matrix(path, pattern_as_ones=bool(data[0] & 0x80))
        _ = source.gene_ids, source.gene_names, source.feature_types, source.has_cell_names
        for block in itertools.islice(source.blocks(16), MAX_BLOCKS):
            source.cell_names(block.start, block.start + block.n_cells)
        if isinstance(source, RandomAccessSource) and source.shape[1]:
            again = open_source_spec(pickle.loads(pickle.dumps(source.spec())))
            again.block(source.shape[1] - 1, source.shape[1])
    except SinrError:
        pass


def seed_corpus() -> None:
    """Tiny cuts of the real fixtures, in every format the harness reads."""
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
        for suffix in ("h5", "h5ad", "mtx", "npz"):
            write_matrix(tmp / f"x.{suffix}", m)
        write_matrix(tmp / "folder", m)
        mtx = (tmp / "x.mtx").read_bytes()
        folder = b"\0".join(gzip.decompress((tmp / "folder" / name).read_bytes())
                            for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"))
        coo = tmp / "coo.npz"
        sp.save_npz(coo, sp.coo_matrix(m.counts), compressed=False)
        seeds = {"h5": (0, (tmp / "x.h5").read_bytes()), "h5ad": (1, (tmp / "x.h5ad").read_bytes()),
                 "mtx": (2, mtx), "mtx-gz": (3, mtx), "folder": (4, folder), "npz": (5, (tmp / "x.npz").read_bytes()),
                 "npz-coo": (5, coo.read_bytes()),
                 "mtx-real": (2, mtx.replace(b"integer", b"real")),
                 "mtx-pattern": (0x80 | 2, mtx.replace(b"integer", b"pattern"))}
    for name, (kind, blob) in seeds.items():
        (corpus / f"seed-{name}").write_bytes(bytes([kind]) + blob)


def main() -> None:
    """Replay the corpus once before instrumenting, so the compiled Matrix Market parser is built from
    clean bytecode (numba compiles Python bytecode, which atheris rewrites); coverage then guides the
    Python layers."""
    import atheris

    for seed in sorted((HERE / "inputs_corpus").iterdir()):
        exercise(seed.read_bytes())
    atheris.instrument_all()
    atheris.Setup(sys.argv, exercise)
    atheris.Fuzz()


if __name__ == "__main__":
    if sys.argv[1:] == ["--seed-corpus"]:
        seed_corpus()
    else:
        main()
