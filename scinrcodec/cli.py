"""The `sinr` command: encode, decode, info, get, demo. The only place that prints."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import SinrError


def _encode(args: argparse.Namespace) -> None:
    from .encoder import encode

    options = dict(mode=args.mode, max_error=args.max_error or 0, tile_nnz=args.tile_nnz,
                   patch_nnz=args.patch_nnz, siren=not args.no_siren, width=args.width,
                   hidden_layers=args.hidden_layers, steps=args.steps, normalisation=args.normalisation,
                   coordinates=args.coordinates, device=args.device, layer=args.layer, progress=not args.quiet)
    if args.max_error:
        options["mode"] = "max-error"
    if args.inr_only:
        options["mode"] = "inr-only"
    started = time.perf_counter()
    result = encode(args.input, args.output, force=args.force, **options)
    seconds = time.perf_counter() - started
    print(f"wrote {args.output}: {result['bytes']:,} bytes, {result['bytes'] * 8 / max(result['nnz'], 1):.2f} "
          f"bits per nonzero ({result['shape'][0]} genes x {result['shape'][1]} cells, "
          f"{result['nnz']:,} nonzeros) in {seconds:.1f} s")


def _decode(args: argparse.Namespace) -> None:
    from .reader import decode

    started = time.perf_counter()
    kind = decode(args.input, args.output, force=args.force)
    print(f"wrote {args.output} ({kind}) in {time.perf_counter() - started:.1f} s")


def _info(args: argparse.Namespace) -> None:
    from .report import describe
    from .reader import open as open_sinr

    with open_sinr(args.input) as matrix:
        print(describe(matrix, Path(args.input).stat().st_size))


def _parse_key(text: str, *name_lists: list[str] | None):
    """A name when some list holds it, else an integer index when the text is one."""
    if any(names and text in names for names in name_lists):
        return text
    try:
        return int(text)
    except ValueError:
        return text


def _get(args: argparse.Namespace) -> None:
    from .reader import open as open_sinr

    with open_sinr(args.input) as matrix:
        gene = _parse_key(args.gene, matrix.gene_names, matrix.gene_ids)
        print(matrix.get(gene, _parse_key(args.cell, matrix.cell_names)))


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    print(run_demo(Path(args.workdir) if args.workdir else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinr", description="Encode, decode and query .sinr count matrices.")
    parser.add_argument("--version", action="version", version=f"scinrcodec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    enc = commands.add_parser("encode", help="encode a 10x mtx dir, 10x .h5, .h5ad or .npz into .sinr")
    enc.add_argument("input")
    enc.add_argument("output")
    enc.add_argument("--force", action="store_true", help="overwrite an existing output")
    enc.add_argument("--layer", help="for .h5ad input: a layer name, or 'raw' for adata.raw")
    mode = enc.add_mutually_exclusive_group()
    mode.add_argument("--max-error", type=int, metavar="E",
                      help="near-lossless: every entry within E of the input, zeros exact")
    mode.add_argument("--inr-only", action="store_true",
                      help="the study's setup: bitmap + SIREN, no residuals (lossy)")
    enc.add_argument("--no-siren", action="store_true", help="skip SIREN fitting (baseline predictor only)")
    enc.add_argument("--tile-nnz", type=int, default=256, help="nonzeros per coded tile (default 256)")
    enc.add_argument("--patch-nnz", type=int, default=None, help="nonzeros per patch (default: balanced)")
    enc.add_argument("--width", type=int, default=24, help="SIREN hidden width (default 24)")
    enc.add_argument("--hidden-layers", type=int, default=2, help="SIREN hidden layers (default 2)")
    enc.add_argument("--steps", type=int, default=300, help="SIREN training steps (default 300)")
    enc.add_argument("--normalisation", choices=["none", "minmax", "log"], default="log")
    enc.add_argument("--coordinates", choices=["isotropic", "per-axis"], default="isotropic")
    enc.add_argument("--device", help="torch device for training (default: cuda if available)")
    enc.add_argument("--quiet", action="store_true", help="no progress bar")
    enc.set_defaults(run=_encode, mode="lossless")

    dec = commands.add_parser("decode", help="decode .sinr to .h5ad, .h5 (10x), .mtx(.gz), a mtx folder or .npz")
    dec.add_argument("input")
    dec.add_argument("output")
    dec.add_argument("--force", action="store_true", help="overwrite an existing output")
    dec.set_defaults(run=_decode)

    info = commands.add_parser("info", help="shape, nnz, mode, patches and bits per nonzero by part")
    info.add_argument("input")
    info.set_defaults(run=_info)

    get = commands.add_parser("get", help="print one entry, by index or by name")
    get.add_argument("input")
    get.add_argument("gene")
    get.add_argument("cell")
    get.set_defaults(run=_get)

    demo = commands.add_parser("demo", help="encode the bundled real matrix, check it, compare with 10x HDF5")
    demo.add_argument("--workdir", help="folder for the demo's files (default: a temporary folder)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except SinrError as exc:
        print(f"sinr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sinr: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
