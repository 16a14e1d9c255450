"""Loading a whole file into AnnData: scinrcodec.read_sinr of a whole-AnnData .sinr file against
anndata.read_h5ad of the same AnnData written with gzip and uncompressed.

python -m benchmarks.load_anndata [DATASET_DIR] [--copies N] [--repeats R] [--workdir DIR] [--out FILE]

The AnnData is the dataset's counts as scanpy reads a 10x folder (X float32 CSR, names), repeated
`copies` times with distinct cell names (a larger sample, built with scinrcodec.concat). Each
read runs in a fresh process, imports (scinrcodec's reading modules included) done before the
clock starts; the table gives the median seconds and the process's peak resident memory (VmHWM,
imports included: about 170 MB) over the repeats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READERS = {
    "read_sinr (.sinr)": "import scinrcodec as s, scinrcodec.wholefile.restore, scinrcodec.wholefile.scverse; "
                         "read = lambda p: s.read_sinr(p)",
    "read_h5ad (gzip)": "import anndata; read = lambda p: anndata.read_h5ad(p)",
    "read_h5ad (uncompressed)": "import anndata; read = lambda p: anndata.read_h5ad(p)",
}
CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import anndata, numpy, scipy.sparse
{setup}
start = time.perf_counter()
adata = read(sys.argv[1])
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "nnz": int(adata.X.nnz)}}))
"""


def build(dataset: Path, copies: int, workdir: Path) -> dict[str, Path]:
    """The three files of one AnnData (cached in workdir)."""
    import scinrcodec as sinr

    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{dataset.name}_x{copies}"
    paths = {"read_sinr (.sinr)": workdir / f"{stem}.sinr", "read_h5ad (gzip)": workdir / f"{stem}_gzip.h5ad",
             "read_h5ad (uncompressed)": workdir / f"{stem}.h5ad"}
    if all(p.exists() for p in paths.values()):
        return paths
    one = workdir / f"{dataset.name}.sinr"
    sinr.encode(dataset, one, force=True, siren="never", progress=False)
    plain = workdir / f"{stem}_plain.sinr"
    if copies > 1:
        sinr.concat([one] * copies, plain, index_unique="-", force=True)
    else:
        plain = one
    adata = sinr.read_sinr(plain)
    adata.write_h5ad(paths["read_h5ad (gzip)"], compression="gzip")
    adata.write_h5ad(paths["read_h5ad (uncompressed)"])
    sinr.encode_whole(paths["read_h5ad (gzip)"], paths["read_sinr (.sinr)"], force=True, siren="never",
                      progress=False)
    return paths


def measure(paths: dict[str, Path], repeats: int) -> list[dict]:
    rows = []
    for name, path in paths.items():
        runs = []
        for _ in range(repeats):
            child = subprocess.run([sys.executable, "-c", CHILD.format(setup=READERS[name]), str(path)],
                                   capture_output=True, text=True, check=True,
                                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        rows.append({"reader": name, "bytes": path.stat().st_size, "nnz": runs[0]["nnz"],
                     "seconds": statistics.median(r["seconds"] for r in runs),
                     "peak_mb": statistics.median(r["peak_mb"] for r in runs)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_anndata")
    parser.add_argument("dataset", nargs="?", type=Path,
                        default=ROOT.parent / "shared" / "data" / "pbmc4k_v2_soupx_half")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT.parent / "scale_data" / "load_anndata")
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    rows = measure(build(args.dataset, args.copies, args.workdir), args.repeats)
    lines = [f"{args.dataset.name} x{args.copies} ({rows[0]['nnz']:,} nonzeros), median of {args.repeats} fresh "
             "processes:", "", "| reader | file bytes | seconds | peak MB |", "|---|---|---|---|"]
    lines += [f"| {r['reader']} | {r['bytes']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
