"""python -m benchmarks run [DATASET_DIR ...] [--quick] [--out benchmarks/results]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "data"


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
    args = parser.parse_args(argv)
    from .suite import environment, run as run_suite, write_results

    datasets = args.datasets or default_datasets(args.quick)
    rows = run_suite(datasets, args.out, args.quick)
    print(write_results(rows, args.out, environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
