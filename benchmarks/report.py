"""Tables (Markdown) and plots (PNG) of benchmark results."""
from __future__ import annotations

from pathlib import Path

COLUMNS = [("format", "format", "{}"), ("bytes", "bytes", "{:,}"), ("bits_per_nnz", "bits/nnz", "{:.2f}"),
           ("ratio_to_10x", "x 10x", "{:.3f}"), ("exact", "exact", "{}"), ("write_s", "write s", "{:.2f}"),
           ("read_s", "read s", "{:.2f}"), ("entry_us", "entry µs", "{:.0f}"),
           ("cold_entry_us", "cold entry µs", "{:.0f}"), ("gene_ms", "gene ms", "{:.2f}"),
           ("cell_ms", "cell ms", "{:.2f}"), ("random1000_ms", "1000 entries ms", "{:.0f}"),
           ("write_peak_mb", "write MB", "{:.0f}"), ("read_peak_mb", "read MB", "{:.0f}")]
LOSSY = [("format", "format", "{}"), ("bits_per_nnz", "bits/nnz", "{:.2f}"),
         ("exact_match_nonzeros", "exact nonzeros", "{:.1%}"), ("mean_abs_error", "mean abs err", "{:.4f}"),
         ("max_abs_error", "max abs err", "{}"), ("zeros_preserved", "zeros kept", "{}")]
PARTS = ["bitmap", "values", "weights", "scaling_metadata", "names", "permutations", "chunk_index", "headers"]


def _table(rows: list[dict], columns) -> list[str]:
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) if row.get(key) is not None else "n/a"
                                       for key, _, fmt in columns) + " |")
    return lines


def _timing_note() -> str:
    from .suite import MEASURE_BUDGET_S, MIN_SAMPLES, RANDOM_BATCH_LIMIT_S, REPEATS

    return (f"Latencies are medians of warm reads (file open; up to {REPEATS['entry']:,} random entries, "
            f"{REPEATS['gene']} genes and {REPEATS['cell']} cells, each measure stopping after "
            f"{MEASURE_BUDGET_S:g} s with at least {MIN_SAMPLES} samples); 'cold entry' opens the file for each "
            f"read; '1000 entries' is n/a where the single-entry median predicts more than "
            f"{RANDOM_BATCH_LIMIT_S:g} s. Peak memory is the rise of the process's resident memory (RSS) during "
            f"the write or the full read, so it counts the compiled kernels' and HDF5's own allocations.")


def markdown(rows: list[dict], env: dict) -> str:
    lines = ["# Benchmark results", "",
             f"Date {env['date']}; machine: {env['machine']}; " + ", ".join(
                 f"{k} {v}" for k, v in env.items() if k not in ("date", "machine")) + ".", "",
             "Ratios are file sizes (names included) over the 10x Cell Ranger HDF5 file (CSC, int32 data, int64 "
             "indices, gzip 4 + shuffle, 80,000-element chunks). " + _timing_note(), ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        subset = [r for r in rows if r["dataset"] == dataset]
        first = subset[0]
        lines += [f"## {dataset}", "",
                  f"{first['genes']:,} genes x {first['cells']:,} cells, {first['nnz']:,} nonzeros. "
                  f"Static per-gene model (binomial positions + per-gene value entropy, parameters free): "
                  f"**{first['static_model_bits_per_nnz']:.2f} bits/nnz**.", ""]
        lines += _table(subset, COLUMNS) + [""]
        lossy = [r for r in subset if r["lossy"]]
        if lossy:
            lines += ["Lossy modes:", ""] + _table(lossy, LOSSY) + [""]
        sinr_rows = [r for r in subset if "sinr_bitmap_bits" in r]
        if sinr_rows:
            parts = [("format", "format", "{}")] + [(f"sinr_{p}_bits", p.replace("_", " "), "{:.3f}") for p in PARTS]
            parts += [("sirens_kept", "SIRENs kept", "{}"), ("bands", "bands", "{}"), ("chunks", "chunks", "{}")]
            lines += [".sinr bits per nonzero by part:", ""] + _table(sinr_rows, parts) + [""]
    return "\n".join(lines)


def plots(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    names = list(dict.fromkeys(r["format"] for r in rows))
    fig, ax = plt.subplots(figsize=(12, 5 + 0.1 * len(names)))
    width = 0.8 / len(datasets)
    for k, dataset in enumerate(datasets):
        ratio = {r["format"]: r["ratio_to_10x"] for r in rows if r["dataset"] == dataset}
        ax.barh([i + k * width for i in range(len(names))], [ratio.get(n, 0) for n in names], height=width,
                label=dataset)
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("file size / 10x Cell Ranger HDF5 (lower is better)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "size_by_format.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for dataset in datasets:
        lossy = [r for r in rows if r["dataset"] == dataset and r["format"].startswith(".sinr")]
        ax.plot([r["bits_per_nnz"] for r in lossy], [r["exact_match_nonzeros"] for r in lossy], "o", label=dataset)
        for r in lossy:
            ax.annotate(r["format"].replace(".sinr ", ""), (r["bits_per_nnz"], r["exact_match_nonzeros"]),
                        fontsize=6)
    ax.set_xlabel("bits per nonzero")
    ax.set_ylabel("nonzeros reproduced exactly")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lossy_size_vs_accuracy.png", dpi=120)
    plt.close(fig)
