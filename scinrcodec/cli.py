"""The `sinr` command: encode, append, concat, subset, decode, info, get, verify, demo. The only place that prints.

Every failure is one `sinr: error:` line on stderr and exit status 1: usage errors, every error
the library names, and file system errors (a full disk or a file size limit: Python ignores
SIGXFSZ, so an oversized write fails with EFBIG instead of killing the process); anything else is
reported as an internal error on one line (SINR_DEBUG=1 shows its traceback). An interrupt (Ctrl-C,
SIGTERM, or SIGHUP: the terminal or ssh session closed) removes partial outputs and exits 130; a
closed pipe (`sinr info f | head -1`) ends silently with status 141, as a process killed by SIGPIPE
would.
"""
from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sinr_command import on_interrupt

from . import __version__
from .errors import InvalidInputError, SinrError
from .encoder.options import COORDINATES, SIREN_CHOICES, EncodeOptions
from .io.atomic import interrupted
from .io.formats import INPUT_LABELS, LAYERED_LABELS, OUTPUT_LABELS, check_sinr_output
from .io.h5ad import MERGE_RULES
from .io.h5ad_output import COMPRESSIONS
from .limits import CHUNK_NNZ_AIM, DEFAULT_CHUNK_CELLS, DEFAULT_TILE_NNZ, MAX_DEFAULT_CHUNK_CELLS, MAX_ERROR_LIMIT
from .model.siren import NORMALISATIONS
from .reader.selection import INDEX_TEXT, spelled_position
from .report import counted
from .storage.container import DEFAULT_MAJOR, SUPPORTED_MAJORS


JOBS_HELP = "threads (default: every CPU this process may use)"
SINR_INPUT_HELP = "a .sinr file: a path or a URL (s3://, gs://, http(s)://, any fsspec protocol)"
SINR_OUTPUT_HELP = "the new .sinr file"
INDEX_HELP = "an index: '#N' (quoted for the shell), or N where no {} is named N; negative ones count from the end"
WHOLE_FORMATS = ("h5ad", "zarr", "10x-h5")  # formats a .sinr file keeps whole, every part: inputs, and outputs


def _progress(args: argparse.Namespace) -> bool:
    """Whether a command shows its progress bar: on a terminal, unless --quiet."""
    return not args.quiet and sys.stderr.isatty()


def _encode_options(args: argparse.Namespace) -> dict:
    mode = "inr-only" if args.inr_only else "max-error" if args.max_error else "lossless"
    return dict(format_version=args.format_version, mode=mode, max_error=args.max_error or 0, tile_nnz=args.tile_nnz,
                patch_nnz=args.patch_nnz,
                chunk_cells=args.chunk_cells, siren="never" if args.no_siren else args.siren, width=args.width,
                hidden_layers=args.hidden_layers, steps=args.steps, normalisation=args.normalisation,
                coordinates=args.coordinates, device=args.device, jobs=args.jobs,
                progress=_progress(args))


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator:
    """A Dask client for --scheduler ADDRESS (or None), closed after the block. distributed's loggers
    are off meanwhile: a scheduler lost mid-encode had been logged with two tracebacks (distributed.client,
    ERROR) before the encode failed with its one ClusterError line."""
    if not args.scheduler:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise InvalidInputError("--scheduler needs Dask: pip install 'scinrcodec[dask]'") from None
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.split(".")[0] == "distributed"]
    were = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        try:
            client = Client(args.scheduler, timeout=30)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InvalidInputError(f"--scheduler {args.scheduler}: cannot connect ({exc})") from exc
        try:
            yield client
        finally:
            client.close()
    finally:
        for logger, was in zip(loggers, were):
            logger.disabled = was


def _summary(output, result: dict, seconds: float) -> str:
    matrices = len(result.get("matrices") or ())  # nnz is every count matrix's, the shape the AnnData's
    where = f" in its {matrices} count matrices" if matrices > 1 else ""
    per_nonzero, genomes = "", ""
    if matrices:  # a whole file: its genomes, its count matrices' bits (not those of X normalised, obsm, ...)
        from .wholefile.describe import genomes_listed
        from .wholefile.matrix import open as open_sinr

        with open_sinr(output) as written:
            stored = sum(written.matrix(name).stored_bytes for name in result["matrices"])
            genomes = genomes_listed(written)
        if result["nnz"]:
            what = "its count matrix" if matrices == 1 else f"its {matrices} count matrices"
            per_nonzero = f", {stored:,} of them {what}: {stored * 8 / result['nnz']:.2f} bits per nonzero"
    elif result["nnz"]:
        per_nonzero = f", {result['bytes'] * 8 / result['nnz']:.2f} bits per nonzero"
    line = (f"wrote {output}: {result['bytes']:,} bytes{per_nonzero} ({counted(result['shape'][0], 'gene')} x "
            f"{counted(result['shape'][1], 'cell')}, {counted(result['nnz'], 'nonzero')}{where}) in "
            f"{seconds:.1f} s ({result['nnz'] / max(seconds, 1e-9) / 1e6:.2f}M nonzeros/s)")
    if result.get("matrices"):
        line += f"\nmatrices: {', '.join(result['matrices'])}"
    if result.get("parts"):
        line += f"\nparts:    {', '.join(result['parts'])}"
    if genomes:
        line += f"\ngenomes:  {genomes}"
    if result.get("dropped"):
        line += f"\ndropped:  {', '.join(result['dropped'])}"
    if result.get("segments"):
        line += (f"\ncopied:   {counted(result['copied_chunks'], 'chunk')}, coded nothing again "
                 f"({counted(result['segments'], 'segment')})")
    return line


def _encode(args: argparse.Namespace) -> None:
    from .encoder.driver import encode
    from .io.readers import check_local_input, read_matrix, sniff_format
    from .wholefile.encode import encode_whole
    from .wholefile.hints import hinting

    check_local_input(args.input)
    check_sinr_output(args.output, force=args.force, inputs=[args.input])
    whole = not args.matrix_only and sniff_format(Path(args.input)) in WHOLE_FORMATS
    if args.drop and not whole:
        raise InvalidInputError("--drop applies to a whole .h5ad, .zarr or 10x .h5, not with --matrix-only"
                                if args.matrix_only else
                                f"--drop applies to a whole .h5ad, .zarr or 10x .h5, not to {args.input}")
    started = time.perf_counter()
    with _client(args) as client:
        if whole:
            result = encode_whole(args.input, args.output, layer=args.layer, drop=args.drop, force=args.force,
                                  client=client, **_encode_options(args))
        else:
            with hinting(args.input, args.layer):
                source = read_matrix(args.input, args.layer, pattern_as_ones=args.pattern_as_ones)
                result = encode(source, args.output, force=args.force, client=client, **_encode_options(args))
    summary = _summary(args.output, result, time.perf_counter() - started)
    unnamed = [] if whole else [axis for axis, named in (("gene", source.gene_ids or source.gene_names),
                                                         ("cell", source.has_cell_names)) if not named]
    if unnamed:  # a lone .mtx (its features and barcodes elsewhere, or named otherwise) or an .npz
        beside = (" (an .mtx's come from features.tsv or genes.tsv and barcodes.tsv beside it, gzipped or not, "
                  "with its prefix: GSM1_barcodes.tsv.gz for GSM1_matrix.mtx.gz)") \
            if sniff_format(Path(args.input)) == "mtx" else ""
        summary += f"\nnames:    no {' or '.join(unnamed)} names{beside}: read by position ('#N')"
    _say(summary)


def _append(args: argparse.Namespace) -> None:
    from .encoder.append import append
    from .io.readers import read_matrix
    from .wholefile.hints import hinting

    started = time.perf_counter()
    waiting = None if args.quiet else lambda: print(f"sinr: waiting for another append's lock on {args.file}",
                                                    file=sys.stderr, flush=True)
    with hinting(args.new_input, args.layer, "append"):
        source = read_matrix(args.new_input, args.layer, pattern_as_ones=args.pattern_as_ones)
        result = append(args.file, source, jobs=args.jobs, progress=_progress(args), waiting=waiting)
    _say(f"appended {counted(source.shape[1], 'cell')} to {args.file}: now {counted(result['shape'][1], 'cell')}, "
          f"{counted(result['nnz'], 'nonzero')}, {counted(result['chunks'], 'chunk')}, {result['bytes']:,} bytes, in "
          f"{time.perf_counter() - started:.1f} s")


def _names_list(text: str | None) -> list[str] | list[int] | None:
    """NAME,NAME,... or @FILE (one name a line, UTF-8 with or without a byte order mark, gzipped or
    not, as 10x's barcodes.tsv.gz) -> names, or indices where every item is #N (as `sinr get` takes
    them; a list mixing both is refused); None stays None."""
    if text is None:
        return None
    if text.startswith("@"):
        import gzip
        import zlib

        from .io.mtx import GZIP_MAGIC

        try:  # read once: a pipe (@/dev/stdin, @<(cmd)) gives its bytes once
            raw = Path(text[1:]).read_bytes()
            lines = (gzip.decompress(raw) if raw.startswith(GZIP_MAGIC) else raw).decode("utf-8-sig")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{text[1:]}: cannot read the list of names ({exc})") from exc
        names = [n for n in lines.replace("\r\n", "\n").replace("\r", "\n").split("\n") if n]
    else:
        names = [n for n in text.split(",") if n]
    if not names:
        raise InvalidInputError(f"{text!r} names nothing")
    positions = [spelled_position(n) for n in names]
    if all(p is not None for p in positions):
        return positions
    if any(p is not None for p in positions):
        raise InvalidInputError(f"{text!r} mixes #N indices and names; give one or the other")
    return names


def _concat(args: argparse.Namespace) -> None:
    from .wholefile.combine import concat

    started = time.perf_counter()
    keys = args.keys.split(",") if args.keys else None
    result = concat(args.inputs, args.output, join=args.join, label=args.label, keys=keys,
                    index_unique=args.index_unique, merge=args.merge, uns_merge=args.uns_merge, force=args.force,
                    jobs=args.jobs, progress=_progress(args), format_version=args.format_version,
                    recode=args.recode, drop=args.drop, storage_options=args.storage_options)
    _say(_summary(args.output, result, time.perf_counter() - started))


def _subset(args: argparse.Namespace) -> None:
    from .wholefile.combine import subset

    if args.cells is None and args.genes is None:
        raise InvalidInputError("subset needs --cells, --genes or both")
    started = time.perf_counter()
    result = subset(args.input, args.output, cells=_names_list(args.cells), genes=_names_list(args.genes),
                    force=args.force, jobs=args.jobs, progress=_progress(args),
                    format_version=args.format_version, storage_options=args.storage_options)
    _say(_summary(args.output, result, time.perf_counter() - started))


def _decode(args: argparse.Namespace) -> None:
    from .io.writers import check_output
    from .wholefile.matrix import open as open_sinr
    from .wholefile.output import write_decoded

    started = time.perf_counter()
    check_output(args.output, force=args.force, inputs=[args.input])  # as decode() does, the file opened once
    with open_sinr(args.input, matrix=args.matrix, jobs=args.jobs, storage_options=args.storage_options) as m:
        kind = write_decoded(m, args.output, force=args.force, compression=args.compression, dtype=args.dtype,
                             whole=args.matrix is None, progress=_progress(args))
        several = len(m.matrix_names) > 1 and (args.matrix or kind not in WHOLE_FORMATS)
        which = f", matrix {m.name}" if several else ""  # which matrix of several a one-matrix output holds
    _say(f"wrote {args.output} ({kind}{which}) in {time.perf_counter() - started:.1f} s")


def _info(args: argparse.Namespace) -> None:
    from .report import describe
    from .wholefile.describe import describe_contents
    from .wholefile.matrix import open as open_sinr

    with open_sinr(args.input, storage_options=args.storage_options) as matrix:
        _say(describe(matrix))
        contents = describe_contents(matrix)
        if contents:
            _say(f"\n{contents}")


def _verify(args: argparse.Namespace) -> None:
    from .wholefile.describe import verify_file
    from .wholefile.matrix import open as open_sinr

    started = time.perf_counter()

    with open_sinr(args.input, jobs=args.jobs, storage_options=args.storage_options) as matrix:
        report = verify_file(matrix, progress=_progress(args))
    _say(f"{args.input}: ok ({report['bytes']:,} bytes, {counted(report['matrices'], 'matrix', 'matrices')}, "
          f"{counted(report['chunks'], 'chunk')}, {counted(report['nnz'], 'nonzero')}, "
          f"{counted(report['sections'], 'other part')} checked in "
          f"{time.perf_counter() - started:.1f} s)")


def parse_key(text: str, name_lists: Callable[[], Iterable[list[str] | None]]) -> int | str:
    """`#N` is index N, no names read; other text is a name when some list of `name_lists()` holds
    it, else an index if it is one (names are read only then: a file's every cell name had been read
    for `sinr get f '#i' '#j'`, 8 times the bytes of the entry itself at 6e7 nonzeros)."""
    position = spelled_position(text)
    if position is not None:
        return position
    if any(names and text in names for names in name_lists()):
        return text
    return int(text) if INDEX_TEXT.fullmatch(text) else text


def _get(args: argparse.Namespace) -> None:
    from .wholefile.matrix import open as open_sinr

    with open_sinr(args.input, matrix=args.matrix, storage_options=args.storage_options) as matrix:
        gene = parse_key(args.gene, lambda: (matrix.gene_names, matrix.gene_ids))
        _say(matrix.get(gene, parse_key(args.cell, lambda: (matrix.cell_names,))))


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    _say(run_demo(Path(args.workdir) if args.workdir else None, force=args.force))


def _matrix_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--matrix", metavar="NAME", help=f"one matrix of a file that holds several (X, layers/KEY, "
                                                         f"raw/X; `sinr info` lists them): {what}")


# storage options whose values are text whatever they look like: an all-digit key or secret had been
# handed to botocore as a number ('sequence item 0: expected str instance, int found')
_TEXT_STORAGE_OPTIONS = ("key", "secret", "token", "username", "password", "profile", "region_name", "endpoint_url")


def _storage_option(text: str) -> tuple[str, object]:
    """KEY=VALUE for fsspec: VALUE as JSON where it parses (true, 3, {"a": 1}; '"123"' is text), else
    as text; always text for _TEXT_STORAGE_OPTIONS."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    if key in _TEXT_STORAGE_OPTIONS:
        return key, value
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _StorageOptions(argparse.Action):
    """Collects repeated --storage-option KEY=VALUE into one dict (a later KEY wins)."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        key, item = value
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), key: item})


def _remote_options(parser: argparse.ArgumentParser) -> None:
    """--storage-option, repeatable: what fsspec is given for a URL input (s3fs's anon=true or
    endpoint_url=..., for instance); credentials may also come from the usual environment."""
    parser.add_argument("--storage-option", dest="storage_options", metavar="KEY=VALUE", type=_storage_option,
                        action=_StorageOptions, help="for a URL input: an fsspec storage option (repeatable), "
                                                     "e.g. anon=true or endpoint_url=http://127.0.0.1:9000; VALUE "
                                                     "is read as JSON where it is JSON ('\"123\"' stays text; "
                                                     "key, secret, token and the like always do)")


def _path(text: str) -> str:
    """A file or folder argument: '-' is refused (sinr reads and writes files, which it seeks in and
    renames into place, not standard input or output; it had made a file or folder named '-')."""
    if text == "-":
        raise argparse.ArgumentTypeError("'-' (standard input or output) is not supported: name a file")
    return text


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a {'positive' if least else 'non-negative'} number, not {value}")
    return value


def _positive(text: str) -> int:
    return _whole_number(text, 1)


def _max_error(text: str) -> int:
    """E of --max-error: 0 (exact) is lossless, so that a script may pass any E from 0."""
    value = _whole_number(text, 0)
    if value > MAX_ERROR_LIMIT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_ERROR_LIMIT:,}, not {value:,}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `sinr: error:` line with status 1, like every other failure."""

    def error(self, message: str):
        self.exit(1, f"sinr: error: {message} (see '{self.prog} --help')\n")


def _format_option(parser: argparse.ArgumentParser) -> None:
    """--format-version, as every command that encodes a new file takes it."""
    parser.add_argument("--format-version", type=int, choices=SUPPORTED_MAJORS, default=DEFAULT_MAJOR,
                        help=f"the .sinr format to write (default {DEFAULT_MAJOR}; 2 for readers of scinrcodec 2.x)")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """--force, --jobs and --quiet, as every command that writes a file takes them."""
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--jobs", type=_positive, help=JOBS_HELP)
    _quiet_option(parser)


def _quiet_option(parser: argparse.ArgumentParser, also: str = "") -> None:
    """--quiet, as every command that shows a progress bar takes it (_progress); `also`: what else it silences."""
    parser.add_argument("--quiet", action="store_true",
                        help=f"no progress bar (there is none unless stderr is a terminal){also}")


def build_parser() -> argparse.ArgumentParser:
    """The `sinr` argument parser: every command, its options, and the function that runs it (args.run);
    defaults and choices come from EncodeOptions and the format table."""
    parser = _Parser(prog="sinr", description="Encode, decode and query .sinr count matrices.")
    parser.add_argument("--version", action="version", version=f"scinrcodec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        """A command, its line in `sinr --help` also opening `sinr NAME --help`."""
        return commands.add_parser(name, help=text, description=text)

    default = EncodeOptions.defaults()
    enc = command("encode", f"encode a matrix ({INPUT_LABELS}) into .sinr")
    enc.add_argument("input", type=_path, help=f"the matrix to encode ({INPUT_LABELS})")
    enc.add_argument("output", type=_path, help=SINR_OUTPUT_HELP)
    enc.add_argument("--force", action="store_true", help="overwrite an existing output")
    enc.add_argument("--layer", help=f"for {LAYERED_LABELS} input, the count matrix opened by default (with "
                                     "--matrix-only, the only one stored): a layer name, or 'raw' for adata.raw")
    enc.add_argument("--matrix-only", action="store_true",
                     help="store only the count matrix of an .h5ad, .zarr or 10x .h5, not its other parts")
    enc.add_argument("--drop", action="append", default=[], metavar="NAME",
                     help="leave out a part of an .h5ad or .zarr (e.g. uns/callback, obsm/X_umap, layers/x, raw); "
                          "repeatable")
    enc.add_argument("--pattern-as-ones", action="store_true",
                     help="read a Matrix Market 'pattern' file (positions without values) as counts of 1")
    mode = enc.add_mutually_exclusive_group()
    mode.add_argument("--max-error", type=_max_error, metavar="E",
                      help="near-lossless: every entry within E of the input, zeros exact (0: lossless, the default)")
    mode.add_argument("--inr-only", action="store_true",
                      help="the study's setup: bitmap + SIREN, no residuals (lossy)")
    enc.add_argument("--scheduler", metavar="ADDRESS",
                     help="encode chunks on a Dask cluster (its scheduler's address); the file is the same")
    siren = enc.add_mutually_exclusive_group()
    siren.add_argument("--siren", choices=[c for c in SIREN_CHOICES if c != "force"], default=default["siren"],
                       help="fit per-band SIRENs: auto (default: a sample first, the rest only if one pays), "
                            "always, never")
    siren.add_argument("--no-siren", action="store_true", help="same as --siren never")
    enc.add_argument("--jobs", type=_positive, help=f"{JOBS_HELP}; the file is the same for any")
    enc.add_argument("--chunk-cells", type=_positive, default=default["chunk_cells"],
                     help=f"cells per independently coded chunk (default: {DEFAULT_CHUNK_CELLS:,}, or the multiple of it "
                          f"up to {MAX_DEFAULT_CHUNK_CELLS:,} nearest to {CHUNK_NNZ_AIM:,} nonzeros a chunk where "
                          "cells are small, or fewer where cells are deep, in chunks of about that many nonzeros)")
    enc.add_argument("--tile-nnz", type=_positive, default=None,
                     help=f"nonzeros per coded tile (default {DEFAULT_TILE_NNZ})")
    enc.add_argument("--patch-nnz", type=_positive, default=None, help="nonzeros per band (default: balanced)")
    enc.add_argument("--width", type=_positive, default=default["width"],
                     help=f"SIREN hidden width (default {default['width']})")
    enc.add_argument("--hidden-layers", type=_positive, default=default["hidden_layers"],
                     help=f"SIREN hidden layers (default {default['hidden_layers']})")
    enc.add_argument("--steps", type=_positive, default=default["steps"],
                     help=f"SIREN training steps (default {default['steps']})")
    enc.add_argument("--normalisation", choices=NORMALISATIONS, default=default["normalisation"],
                     help=f"how counts are scaled for the SIREN (default {default['normalisation']})")
    enc.add_argument("--coordinates", choices=COORDINATES, default=default["coordinates"],
                     help="how gene and cell positions are scaled for the SIREN: both axes by the longer "
                          f"(isotropic) or each by its own (per-axis) (default {default['coordinates']})")
    enc.add_argument("--device", help="torch device for training (default: cuda if available)")
    _quiet_option(enc)
    _format_option(enc)
    enc.set_defaults(run=_encode)

    app = command("append", "add the cells of another matrix with the same genes, as new chunks")
    app.add_argument("file", type=_path, help="the .sinr file to extend (replaced atomically)")
    app.add_argument("new_input", type=_path, help=f"a matrix ({INPUT_LABELS}) with the same genes")
    app.add_argument("--layer", help=f"for {LAYERED_LABELS} input: a layer name, or 'raw' for adata.raw")
    app.add_argument("--pattern-as-ones", action="store_true", help="read a Matrix Market pattern field as counts of 1")
    app.add_argument("--jobs", type=_positive, help=JOBS_HELP)
    _quiet_option(app, ", nor the line saying it waits for another append of the file")
    app.set_defaults(run=_append)

    cat = command("concat", "the cells of several .sinr files in one new file (as anndata.concat)")
    cat.add_argument("inputs", nargs="+", type=_path, help="two or more .sinr files")
    cat.add_argument("-o", "--output", required=True, type=_path, help=SINR_OUTPUT_HELP)
    cat.add_argument("--join", choices=["inner", "outer"], default="inner",
                     help="genes every file holds (inner, default) or all genes, zeros where a file lacks one")
    cat.add_argument("--label", help="an obs column naming each cell's file by its key (makes a whole AnnData)")
    cat.add_argument("--keys", help="each file's key, comma-separated (default 0,1,...)")
    cat.add_argument("--index-unique", metavar="SEP",
                     help="append SEP and the file's key to every cell name (needed when files share names)")
    cat.add_argument("--merge", choices=MERGE_RULES,
                     help="anndata's rule for var columns and varm of whole AnnData files (default: dropped; "
                          "files of one matrix keep each gene's id and feature type, from the files that hold it)")
    cat.add_argument("--uns-merge", choices=MERGE_RULES,
                     help="anndata's rule for uns of whole AnnData files (default: dropped)")
    cat.add_argument("--drop", action="append", default=[], metavar="NAME",
                     help="leave out a part of the combined AnnData (e.g. var/column, uns/key); repeatable")
    cat.add_argument("--recode", action="store_true",
                     help="code every cell again (one gene order, bands sized for the whole: faster gene reads) "
                          "instead of copying each file's chunks into a segment")
    _run_options(cat)
    _format_option(cat)
    _remote_options(cat)
    cat.set_defaults(run=_concat)

    sub = command("subset", "some cells and genes of a .sinr file in a new file")
    sub.add_argument("input", type=_path, help=SINR_INPUT_HELP)
    sub.add_argument("-o", "--output", required=True, type=_path, help=SINR_OUTPUT_HELP)
    sub.add_argument("--cells", metavar="LIST", help="cell names (or #N indices), comma-separated, or @FILE with one "
                                                     "a line")
    sub.add_argument("--genes", metavar="LIST", help="gene names or ids (or #N indices), comma-separated, or @FILE "
                                                     "with one a line")
    _run_options(sub)
    _format_option(sub)
    _remote_options(sub)
    sub.set_defaults(run=_subset)

    dec = command("decode", f"decode .sinr to {OUTPUT_LABELS} (chosen by the output's name)")
    dec.add_argument("input", type=_path, help=SINR_INPUT_HELP)
    dec.add_argument("output", type=_path, help=f"the file to write, in the format its name says ({OUTPUT_LABELS}, "
                                                "the folder a 10x mtx triple); .mtx(.gz) and .npz hold the counts "
                                                "alone, no names")
    _run_options(dec)
    dec.add_argument("--compression", choices=COMPRESSIONS, default="auto",
                     help=".h5ad datasets: auto (default) as the input .h5ad was, else gzip; .zarr arrays: "
                          "auto is zarr's default codec, lzf is refused; none is faster and larger")
    dec.add_argument("--dtype", choices=["float32", "float64", "int32", "int64"],
                     help=".h5ad or .zarr X: as stored for a whole AnnData, float32 for one matrix (as scanpy "
                          "reads 10x)")
    _matrix_option(dec, "decode it alone, with its names, whatever the output (default: the whole file where the "
                        "output holds one, else the file's default matrix)")
    _remote_options(dec)
    dec.set_defaults(run=_decode)

    info = command("info", "shape, nnz, mode, layout and bits per nonzero by part")
    info.add_argument("input", type=_path, help=SINR_INPUT_HELP)
    _remote_options(info)
    info.set_defaults(run=_info)

    verify = command("verify", "check every byte and every chunk's decoded content")
    verify.add_argument("input", type=_path, help=SINR_INPUT_HELP)
    verify.add_argument("--jobs", type=_positive, help=JOBS_HELP)
    _quiet_option(verify)
    _remote_options(verify)
    verify.set_defaults(run=_verify)

    get = command("get", "print one entry, by name or index (#N forces an index)")
    get.add_argument("input", type=_path, help=SINR_INPUT_HELP)
    get.add_argument("gene", help=f"a gene name or id, or {INDEX_HELP.format('gene')}")
    get.add_argument("cell", help=f"a cell name, or {INDEX_HELP.format('cell')}")
    _matrix_option(get, "read it (default: the file's default matrix)")
    _remote_options(get)
    get.set_defaults(run=_get)

    demo = command("demo", "encode the bundled real matrix, check it, compare with 10x HDF5")
    demo.add_argument("--workdir", help="an existing folder for the demo's files (default: a temporary folder)")
    demo.add_argument("--force", action="store_true", help="replace the demo.sinr a --workdir already holds")
    demo.set_defaults(run=_demo)
    return parser


_LAST_SIGNAL = [signal.SIGINT]  # the signal _interrupt last took: the one _Reinterrupt sends again
# the signals that stop a command (_interrupt); SIGHUP too, where there is one: a closed terminal or ssh
# session had killed the command and left its temporary output, as large as the output, behind
_STOPS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


def _interrupt(signum, frame) -> None:
    """The signals of _STOPS: stop, and keep any output from being renamed into place even where the
    KeyboardInterrupt lands in code whose exceptions Python discards (io.atomic.interrupted)."""
    interrupted.set()
    _LAST_SIGNAL[0] = signum
    raise KeyboardInterrupt


def _fail(message: str) -> int:
    print(f"sinr: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run `sinr` with argv (default: the process's): 0 on success, else one error line on stderr and the exit
    status the module docstring gives. Without argv the call is the `sinr` command, and the process ends
    after it: once the command has run, the signals that stop it are ignored, so that one arriving as the
    process exits does not turn a finished command into exit 130 (a pipeline would then run it again and
    find its output there); with argv (a caller's own process), or after a failure, the handlers are
    put back. Signals reach the main thread only, which alone may set their handlers: run by another
    thread (a caller's worker), a command is not interrupted by them and leaves the process's handlers
    as they are. A signal the process was started ignoring (a job a script ran with &) stays ignored."""
    parser = build_parser()
    args = parser.parse_args(argv)
    in_charge = threading.current_thread() is threading.main_thread()
    if in_charge:
        interrupted.clear()
        # a signal the process was started ignoring (a job run with & by a script) stays ignored, as a shell's
        previous = {sig: signal.signal(sig, _interrupt) for sig in _STOPS
                    if signal.getsignal(sig) is not signal.SIG_IGN}
        previous_hook, reinterrupt = sys.unraisablehook, _Reinterrupt(sys.unraisablehook)
        sys.unraisablehook = reinterrupt
        previous_warning, warnings.showwarning = warnings.showwarning, _OneLineWarnings()
    settle = argv is None and in_charge
    ran = False
    try:
        args.run(args)
        if settle:  # done: a signal from now on must not turn it into a failure
            _ignore_signals()
        ran = True
        if sys.stdout is not None:  # None: started with stdout closed (`sinr info f >&-`), where print() writes nothing
            _flush_report()
    except SinrError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return on_interrupt()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except MemoryError:
        return _fail("out of memory")
    except OSError as exc:
        return _fail(f"{str(exc.filename) + ': ' if exc.filename else ''}{exc.strerror or exc}")
    except Exception as exc:
        if os.environ.get("SINR_DEBUG"):
            raise
        return _fail(f"internal error ({type(exc).__name__}: {exc}); please report it (SINR_DEBUG=1 shows where)")
    finally:
        if in_charge:
            reinterrupt.cancel()  # an interrupt raised again must not land in the caller's code
            sys.unraisablehook = previous_hook
            warnings.showwarning = previous_warning
            if not (settle and ran):
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            interrupted.clear()  # the library's writes after main() (in the same process) are not stopped by it
    return 0


def _say(text: object = "") -> None:
    """A line of the command's report on standard output (see _stdout)."""
    with _stdout():
        print(text)


def _flush_report() -> None:
    with _stdout():
        sys.stdout.flush()


@contextlib.contextmanager
def _stdout():
    """A standard output that cannot take the report (`> /dev/full`, a full disk) is named as what
    failed, after the command's work (an encode's file is written): the bare 'No space left on
    device' had read as the encode's failure. A closed pipe is not a failure (status 141)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise SinrError(f"standard output: cannot write the command's report ({exc.strerror or exc})") from exc


def _ignore_signals() -> None:
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_IGN)


class _OneLineWarnings:
    """warnings.showwarning for a command: a library's warning (anndata's 'Only some AnnData objects
    have .raw ...' in a concat) as one line, 'sinr: warning: ...', each text once; Python's own form
    had printed the path and source line of the code that warned."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text in self.said:
            return
        self.said.add(text)
        try:
            print(f"sinr: warning: {text}", file=sys.stderr)
        except (OSError, ValueError):  # stderr closed or gone: a warning is not worth failing for
            pass


class _Reinterrupt:
    """sys.unraisablehook for a command: a KeyboardInterrupt raised where Python discards exceptions
    (h5py's weakref callbacks) is raised again in the command, not printed as 'Exception ignored' with
    a traceback; anything else goes to the hook that was there."""

    DELAY_SECONDS = 0.05  # raised at once (in the callback, or while a thread starts) it is discarded again

    def __init__(self, previous) -> None:
        self.previous, self.timers = previous, []

    def __call__(self, unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # _interrupt again, in the main thread, for the signal it took (a SIGINT sent where the command
            # was started ignoring SIGINT would be dropped, and a SIGTERM with it)
            timer = threading.Timer(self.DELAY_SECONDS, _thread.interrupt_main, (_LAST_SIGNAL[0],))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
            return
        self.previous(unraisable)

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()


if __name__ == "__main__":
    sys.exit(main())
