"""`scale` results: the CSV, the Markdown tables with the project's targets, and the plots."""
from __future__ import annotations

import csv
from pathlib import Path

from .scale import QUERY_OPS

LABELS = {"10x": "10x HDF5 (h5py)", "sinr": ".sinr", "h5ad": "AnnData .h5ad (backed)",
          "bpcells": "BPCells cell-major"}
OP_LABELS = {"write": "write / encode", "write_memory": "encode from memory", "open": "open", "entry": "entry",
             "gene": "gene", "cell": "cell",
             "cells1000": "1,000 random cells", "read": "full read / decode", "read_csc": "full decode, CSC",
             "loader": "cell-batch loader"}
LOADER_CELLS_PER_S = 20_000
# Absolute latency targets for .sinr reads (seconds), from the project's issues.
LATENCY_TARGETS = {"open": 0.050, "entry": 20e-6, "gene": 3e-3, "cell": 3e-3, "cells1000": 0.5}
ENCODE_NNZ_PER_S = 4e6
ENCODE_MEMORY_NNZ_PER_S = 20e6  # from a scipy matrix in memory (format 3's issue)
ENCODE_PEAK_MB = 2048
DECODE_MEMORY = (1.25, 300.0)  # peak <= 1.25 x result + 300 MB
GROWTH_LIMIT, GROWTH_FROM, GROWTH_AT = 3.0, 60_000_000, 1_000_000_000  # reads at 1e9 <= 3x at 6e7

COLUMNS = [("write", "seconds", "write s", "{:.2f}"), ("write", "peak_rss_mb", "write MB", "{:,.0f}"),
           ("write", "bytes", "bytes", "{:,}"), ("write", "bits_per_nnz", "bits/nnz", "{:.2f}"),
           ("write", "ratio_to_10x", "x 10x", "{:.3f}"), ("open", "seconds", "open ms", "{:.1f}", 1e3),
           ("entry", "seconds", "entry µs", "{:.1f}", 1e6), ("gene", "seconds", "gene ms", "{:.2f}", 1e3),
           ("cell", "seconds", "cell ms", "{:.2f}", 1e3), ("cells1000", "seconds", "1,000 cells ms", "{:.0f}", 1e3),
           ("read", "seconds", "full read s", "{:.2f}"), ("read", "peak_rss_mb", "full read MB", "{:,.0f}"),
           ("read", "result_mb", "result MB", "{:,.0f}"), ("read", "exact", "exact", "{}")]


def _find(rows: list[dict], fmt: str, op: str) -> dict:
    return next((r for r in rows if r["format"] == fmt and r["op"] == op), {})


def _cell(row: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    if row.get(key) is None:
        return "n/a" if not row.get("error") else "failed"
    value = row[key] * scale if scale != 1.0 else row[key]
    return fmt.format(value)


def _agrees(rows: list[dict], fmt: str) -> str:
    """Whether every query of `fmt` returned what the same query of the 10x file did."""
    if fmt == "10x":
        return "(reference)"
    pairs = [(_find(rows, fmt, op).get("digest"), _find(rows, "10x", op).get("digest")) for op in QUERY_OPS[1:]]
    pairs = [(mine, theirs) for mine, theirs in pairs if mine and theirs]
    return str(all(mine == theirs for mine, theirs in pairs)) if pairs else "n/a"


def _size_table(rows: list[dict]) -> list[str]:
    lines = ["| format | " + " | ".join(c[2] for c in COLUMNS) + " | queries agree |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for fmt in dict.fromkeys(r["format"] for r in rows):
        mine = [r for r in rows if r["format"] == fmt]
        cells = [_cell(_find(mine, fmt, op), key, text, *scale) for op, key, _, text, *scale in COLUMNS]
        lines.append(f"| {LABELS[fmt]} | " + " | ".join(cells) + f" | {_agrees(rows, fmt)} |")
        memory = _find(mine, fmt, "write_memory")
        if memory:
            cells = [_cell(memory, key, text, *scale) if op == "write" and key in ("seconds", "peak_rss_mb") else ""
                     for op, key, _, text, *scale in COLUMNS]
            lines.append(f"| {LABELS[fmt]}, encoded from memory | " + " | ".join(cells) + " | |")
        csc = _find(mine, fmt, "read_csc")
        if csc:
            cells = ["" for _ in COLUMNS]
            for k, (op, key, _, text, *scale) in enumerate(COLUMNS):
                if op == "read":
                    cells[k] = _cell(csc, key, text, *scale)
            lines.append(f"| {LABELS[fmt]}, to_scipy(layout='csc') | " + " | ".join(cells) + " | |")
    return lines


def targets(rows: list[dict]) -> list[dict]:
    """Each target of the project's issues at each size: what it asks, what was measured, met or not."""
    checks = []
    sizes = sorted({r["target_nnz"] for r in rows})

    def check(size: int, what: str, measured: float | None, limit: float | None, text: str,
              at_least: bool = False) -> None:
        ok = None if measured is None or limit is None else measured >= limit if at_least else measured <= limit
        checks.append({"target_nnz": size, "target": what, "measured": measured, "limit": limit,
                       "format": text, "ok": ok})

    for size in sizes:
        here = [r for r in rows if r["target_nnz"] == size]
        sinr = {op: _find(here, "sinr", op) for op in OP_LABELS}
        tenx = _find(here, "10x", "read")
        check(size, "full decode no slower than the 10x HDF5 read (s)", sinr["read"].get("seconds"),
              tenx.get("seconds"), "{:.2f}")
        result = sinr["read"].get("result_mb")
        check(size, f"decode peak memory <= {DECODE_MEMORY[0]}x result + {DECODE_MEMORY[1]:.0f} MB (MB)",
              sinr["read"].get("peak_rss_mb"), None if result is None else DECODE_MEMORY[0] * result + DECODE_MEMORY[1],
              "{:,.0f}")
        for op, limit in LATENCY_TARGETS.items():
            check(size, f"{OP_LABELS[op]} (ms)", _ms(sinr[op].get("seconds")), limit * 1e3, "{:.3f}")
        if size >= GROWTH_AT:
            before = [r for r in rows if r["target_nnz"] == GROWTH_FROM]
            for op in QUERY_OPS:
                then = _find(before, "sinr", op).get("seconds")
                check(size, f"{OP_LABELS[op]} <= {GROWTH_LIMIT:g}x its {GROWTH_FROM:.0e} figure (ms)",
                      _ms(sinr[op].get("seconds")), None if then is None else GROWTH_LIMIT * then * 1e3, "{:.3f}")
        loader = _find(here, "sinr", "loader").get("cells_per_s")
        check(size, f"cell-batch loader >= {LOADER_CELLS_PER_S:,} cells/s", loader, LOADER_CELLS_PER_S, "{:,.0f}",
              at_least=True)
        rate = sinr["write"].get("nnz_per_s")
        check(size, "encode throughput >= 4M nonzeros/s (M/s)", None if rate is None else rate / 1e6,
              ENCODE_NNZ_PER_S / 1e6, "{:.2f}", at_least=True)
        check(size, "encode peak memory <= 2 GB (the target is set at 1e9) (MB)", sinr["write"].get("peak_rss_mb"),
              ENCODE_PEAK_MB, "{:,.0f}")
        rate = sinr["write_memory"].get("nnz_per_s")
        if rate is not None:
            check(size, f"encode from a scipy matrix in memory >= {ENCODE_MEMORY_NNZ_PER_S / 1e6:.0f}M nonzeros/s (M/s)",
                  rate / 1e6, ENCODE_MEMORY_NNZ_PER_S / 1e6, "{:.2f}", at_least=True)
    return checks



def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def markdown(rows: list[dict], env: dict) -> str:
    first = rows[0]
    lines = ["# Scale benchmark", "",
             f"Date {env['date']}; machine: {env['machine']}; " + ", ".join(
                 f"{k} {v}" for k, v in env.items() if k not in ("date", "machine")) + ".", "",
             f"Inputs: the cells of `{first['dataset']}` (seed {first['seed']}) replicated, each copy binomially "
             "thinned with a per-cell probability drawn from U(0.5, 1), streamed to a Cell Ranger-layout 10x HDF5 file "
             "(`python -m benchmarks scale`, see benchmarks/README.md). Each figure comes from a fresh process"
             + _processes_text(rows) + "; "
             "memory is that process's peak resident memory (VmHWM), interpreter and libraries included, and "
             "for writes the matrix loaded before the timing ('rss_before_mb' in results.csv). Latencies are "
             "medians of warm queries (file open and one query answered first) on the same seeded random "
             "entries, genes (among expressed genes), cells and sets of 1,000 cells for every format. "
             "'exact': the full read's content digest equals the input's; 'queries agree': every query "
             "returned what the 10x file holds.", ""]
    for size in sorted({r["target_nnz"] for r in rows}):
        here = [r for r in rows if r["target_nnz"] == size]
        r = here[0]
        lines += [f"## {r['nnz']:,} nonzeros ({r['genes']:,} genes x {r['cells']:,} cells, 10x file "
                  f"{r['input_bytes']:,} bytes)", ""] + _size_table(here) + [""]
        notes = sorted({f"{LABELS[x['format']]} {OP_LABELS[x['op']]}: {x.get('note') or x.get('error')}"
                        for x in here if x.get("note") or x.get("error")})
        siren = _find(here, "sinr", "write").get("siren")
        notes += [f".sinr encoded with siren={siren!r}"] if siren else []
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += ["## Targets (.sinr)", "", "| nonzeros | target | measured | limit | met |", "|---|---|---|---|---|"]
    for t in targets(rows):
        measured, limit = ("n/a" if v is None else t["format"].format(v) for v in (t["measured"], t["limit"]))
        met = "n/a" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        lines.append(f"| {t['target_nnz']:.0e} | {t['target']} | {measured} | {limit} | {met} |")
    return "\n".join(lines) + "\n"


def _series(rows: list[dict], fmt: str, op: str, key: str) -> list[tuple]:
    return sorted((r["nnz"], r[key]) for r in rows if r["format"] == fmt and r["op"] == op and r.get(key) is not None)


def plots(rows: list[dict], out: Path) -> None:
    """scale_time.png (one panel per operation, a line per format) and scale_memory.png, log-log,
    with the targets dotted; a format keeps its colour, full reads in CSC layout are dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    colours = {fmt: f"C{k}" for k, fmt in enumerate(LABELS)}
    nnz = sorted({r["nnz"] for r in rows})
    span = [nnz[0] / 1.5, nnz[-1] * 1.5]
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    for ax, op in zip(axes.ravel(), ("write", "open", "entry", "gene", "cell", "cells1000", "read")):
        for fmt in LABELS:
            for this, style in ((op, "o-"), ("read_csc", "s--")) if op == "read" else ((op, "o-"),):
                points = _series(rows, fmt, this, "seconds")
                if points:
                    ax.plot(*zip(*points), style, color=colours[fmt],
                            label=LABELS[fmt] + (", to_scipy(layout='csc')" if this == "read_csc" else ""))
        if op in LATENCY_TARGETS:
            ax.plot(span, [LATENCY_TARGETS[op]] * 2, "k:", lw=1, label=".sinr target")
        if op == "write":
            ax.plot(span, [n / ENCODE_NNZ_PER_S for n in span], "k-.", lw=1, label=".sinr target: 4M nonzeros/s")
        ax.set(xscale="log", yscale="log", xlim=span, title=OP_LABELS[op], xlabel="nonzeros", ylabel="seconds")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    handles = {}
    for ax in axes.ravel()[:7]:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    axes[1, 3].axis("off")
    axes[1, 3].legend(list(handles.values()), list(handles), loc="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "scale_time.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 6))
    for fmt in LABELS:
        for op, style in (("write", "o-"), ("read", "s--"), ("read_csc", "^:")):
            points = _series(rows, fmt, op, "peak_rss_mb")
            if points:
                ax.plot(*zip(*points), style, color=colours[fmt], label=f"{LABELS[fmt]}: {OP_LABELS[op]}")
    decode = [(n, DECODE_MEMORY[0] * mb + DECODE_MEMORY[1]) for n, mb in _series(rows, "sinr", "read", "result_mb")]
    if decode:
        ax.plot(*zip(*decode), "kx:", lw=1, label=".sinr decode target (1.25 x result + 300 MB)")
    ax.plot(span, [ENCODE_PEAK_MB] * 2, "k-.", lw=1, label=".sinr encode target (2 GB, set at 1e9)")
    ax.set(xscale="log", yscale="log", xlim=span, xlabel="nonzeros", ylabel="peak resident memory of the process (MB)",
           title="peak memory: writing, and reading everything")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scale_memory.png", dpi=110)
    plt.close(fig)


def _processes_text(rows: list[dict]) -> str:
    """How many fresh processes each whole-matrix write and read took, where more than one."""
    counts = {r["processes"] for r in rows if r.get("processes")}
    if not counts:
        return ""
    n = "-".join(str(c) for c in sorted(counts))
    return (f" (whole-matrix writes and reads: the median of {n} fresh processes, the largest peak memory of "
            "them; 'runs_s' in results.csv gives each run)")


def write_report(rows: list[dict], out: Path, env: dict, dataset: str, seed: int) -> str:
    """results.csv (every measurement, of any dataset and seed), and for this dataset and seed
    results.md (tables and targets) and the two plots."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    rows = [r for r in rows if r["dataset"] == dataset and r["seed"] == seed]
    text = markdown(rows, env)
    (out / "results.md").write_text(text)
    plots(rows, out)
    return text
