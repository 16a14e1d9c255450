"""python -m benchmarks run [DATASET_DIR ...] [--quick] [--out benchmarks/results]
python -m benchmarks table1 [--hidden 2400 --layers 10] [--device cuda]
python -m benchmarks scale [--nnz 6e6 6e7 ...] [--dataset DIR] [--workdir DIR] [--out benchmarks/results/scale]
python -m benchmarks startup FILE.sinr [...] [--samples 11]
python -m benchmarks loader FILE.sinr [...] [--buffers 1 2 4 8 16] [--repeats 3]
python -m benchmarks fresh [DATASET_DIR ...] [--repeats 3] [--workdir DIR] [--format-versions 3]
python -m benchmarks kernel FILE.sinr ... [--repeats 7]
python -m benchmarks summaries FILE.sinr ... [--repeats 3] [--jobs 1 2]
python -m benchmarks encode_kernel INPUT ... [--repeats 5] [--max-nnz 2e7]
python -m benchmarks remote [--dataset DIR] [--nnz 0 6e6] [--delays 20 80] [--repeats 3] [--out benchmarks/results]
python -m benchmarks concat [--dataset DIR ...] [--parts 10] [--part-nnz 6e6] [--repeats 3] [--out benchmarks/results]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .scale import FORMATS

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "data"
SCALE_DATA = ROOT.parent / "scale_data"


def _count(text: str) -> int:
    """A nonzero count as written on the command line: 6e7, 60000000 or 6_000_000."""
    return int(float(text.replace("_", "")))


def default_datasets(quick: bool) -> list[Path]:
    """Every dataset in ../shared/data, or with --quick the small real cuts in tests/data."""
    base = FIXTURES if quick or not SHARED.is_dir() else SHARED
    return sorted(p for p in base.iterdir() if p.is_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="size, exactness and speed of every format on every dataset")
    run.add_argument("datasets", nargs="*", type=Path)
    run.add_argument("--quick", action="store_true", help="small real cuts and few repeats (CI)")
    run.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    table1 = commands.add_parser("table1", help="reproduce the study's Table 1 (SIREN alone on one patch)")
    table1.add_argument("--dataset", type=Path, default=None, help="default: pbmc4k_v2_soupx_half (or a cut)")
    table1.add_argument("--hidden", type=int, default=64, help="width (the study: 2400; default 64 on CPU)")
    table1.add_argument("--layers", type=int, default=10, help="hidden layers (the study: 10)")
    table1.add_argument("--steps", type=int, default=1500)
    table1.add_argument("--batch", type=int, default=4096)
    table1.add_argument("--device", default=None, help="torch device, e.g. cuda")
    table1.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    scale = commands.add_parser("scale", help="encode, query and decode matrices of up to 1e9 nonzeros")
    scale.add_argument("--nnz", nargs="+", type=_count, default=[6_000_000, 60_000_000],
                       help="target nonzeros of each input (default 6e6 6e7; 1e9 builds a file of several GB)")
    scale.add_argument("--dataset", type=Path, default=SHARED / "pbmc4k_v2_soupx_half",
                       help="the real cells to replicate (default: pbmc4k_v2_soupx_half)")
    scale.add_argument("--workdir", type=Path, default=SCALE_DATA, help="built inputs (cached) and scratch files")
    scale.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale")
    scale.add_argument("--seed", type=int, default=0)
    scale.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    scale.add_argument("--siren", choices=("auto", "never"), default="auto",
                       help="the encoder's SIREN setting (auto, the default, probes a SIREN on the first chunk)")
    scale.add_argument("--in-memory-max-nnz", type=_count, default=200_000_000,
                       help="largest input that h5ad and BPCells, written from memory, are run on")
    scale.add_argument("--timeout", type=float, default=7200, help="seconds one measurement may take")
    scale.add_argument("--processes", type=int, default=1,
                       help="fresh processes each whole-matrix write and read runs in (their median is reported)")
    startup = commands.add_parser("startup", help="fresh-process cost of importing scinrcodec and a first entry")
    startup.add_argument("files", nargs="+", type=Path)
    startup.add_argument("--samples", type=int, default=11)
    fresh = commands.add_parser("fresh", help="size, encode, whole reads and lookups of .sinr, each in a fresh process")
    fresh.add_argument("datasets", nargs="*", type=Path)
    fresh.add_argument("--repeats", type=int, default=3)
    fresh.add_argument("--workdir", type=Path, default=SCALE_DATA / "fresh")
    fresh.add_argument("--format-versions", nargs="+", type=int, default=[3], help="the .sinr formats to write and read")
    kernel = commands.add_parser("kernel", help="tile decoding per nonzero, one thread: scalar against the lockstep lanes")
    kernel.add_argument("files", nargs="+", type=Path)
    kernel.add_argument("--repeats", type=int, default=7)
    summaries = commands.add_parser("summaries", help="each gene's and cell's totals and variances: one pass, "
                                    "the whole matrix, dask")
    summaries.add_argument("files", nargs="+", type=Path)
    summaries.add_argument("--repeats", type=int, default=3)
    summaries.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    encode_kernel = commands.add_parser("encode_kernel", help="a chunk's encoding per nonzero, one thread")
    encode_kernel.add_argument("inputs", nargs="+", type=Path,
                               help="what sinr encode reads (a 10x .h5, a folder)")
    encode_kernel.add_argument("--repeats", type=int, default=5)
    encode_kernel.add_argument("--max-nnz", type=_count, default=20_000_000, help="the first chunks up to this many")
    loader = commands.add_parser("loader", help="the cell-batch loader's shuffle: speed, memory, chunks per batch")
    loader.add_argument("files", nargs="+", type=Path)
    loader.add_argument("--buffers", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    loader.add_argument("--repeats", type=int, default=3)
    remote = commands.add_parser("remote", help="reads over HTTP with a fixed delay per request: .sinr (file object and "
                                 "URL), 10x .h5, AnnData .h5ad and zarr")
    remote.add_argument("--dataset", type=Path, default=SHARED / "pbmc4k_v2_soupx_half")
    remote.add_argument("--nnz", nargs="+", type=_count, default=[0, 6_000_000],
                        help="0: the dataset itself; N: its cells replicated to N nonzeros (as `scale` builds them)")
    remote.add_argument("--delays", nargs="+", type=float, default=[20, 80], help="milliseconds per request")
    remote.add_argument("--repeats", type=int, default=3)
    remote.add_argument("--workdir", type=Path, default=SCALE_DATA / "remote", help="the encoded file (cached)")
    remote.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    concat = commands.add_parser("concat", help="sinr concat of several files against decoding and encoding them")
    concat.add_argument("--dataset", type=Path, nargs="+", default=[SHARED / "pbmc4k_v2_soupx_half"])
    concat.add_argument("--parts", type=int, default=10, help="files to combine")
    concat.add_argument("--part-nnz", type=_count, default=6_000_000, help="nonzeros of each file")
    concat.add_argument("--repeats", type=int, default=3)
    concat.add_argument("--cases", nargs="+", choices=("same genes", "permuted genes"),
                        default=["same genes", "permuted genes"])
    concat.add_argument("--workdir", type=Path, default=SCALE_DATA, help="built inputs (cached)")
    concat.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.command == "concat":
        from .concat import run_concat

        print(run_concat(args.dataset, args.parts, args.part_nnz, args.repeats, args.workdir, args.out, args.cases,
                         argv if argv is not None else sys.argv[1:]))
        return 0
    if args.command == "remote":
        from .remote import run_remote

        sys.path.insert(0, str(ROOT))  # tests/servers.py: the servers the tests use
        print(run_remote(args.dataset, args.nnz, args.workdir, args.out, [d / 1000 for d in args.delays], args.repeats))
        return 0
    if args.command == "kernel":
        from .kernel import run_kernel

        print(run_kernel(args.files, args.repeats))
        return 0
    if args.command == "summaries":
        from .summaries import run_summaries

        print(run_summaries(args.files, args.repeats, args.jobs))
        return 0
    if args.command == "encode_kernel":
        from .encode_kernel import run_encode_kernel

        print(run_encode_kernel(args.inputs, args.repeats, args.max_nnz))
        return 0
    if args.command == "fresh":
        from .fresh import run_fresh

        print(run_fresh(args.datasets or default_datasets(quick=False), args.workdir, args.repeats,
                        tuple(args.format_versions)))
        return 0
    if args.command == "loader":
        from .loader import run_loader

        print(run_loader(args.files, args.buffers, args.repeats))
        return 0
    if args.command == "startup":
        from .startup import run_startup

        print(run_startup(args.files, args.samples))
        return 0
    if args.command == "scale":
        from .scale import run_scale

        print(run_scale(args.dataset, args.nnz, args.workdir, args.out, seed=args.seed, formats=args.formats,
                        siren=args.siren, in_memory_max_nnz=args.in_memory_max_nnz, timeout=args.timeout,
                        processes=args.processes))
        return 0
    if args.command == "table1":
        from .table1 import run_table1

        dataset = args.dataset or (SHARED / "pbmc4k_v2_soupx_half" if SHARED.is_dir()
                                   else FIXTURES / "pbmc4k_v2_soupx_half")
        args.out.mkdir(parents=True, exist_ok=True)
        print(run_table1(dataset, args.hidden, args.layers, args.steps, args.batch, args.device, args.out))
        return 0
    from .suite import environment, run as run_suite, write_results

    datasets = args.datasets or default_datasets(args.quick)
    rows = run_suite(datasets, args.out, args.quick)
    print(write_results(rows, args.out, environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
