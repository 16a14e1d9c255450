"""What a fresh process pays before its first answer: `python -m benchmarks startup [FILE.sinr ...]`.

Each sample is a new interpreter that times, in order, `import numpy, scipy.sparse` (what any
scientific script already imports), `import scinrcodec` on top of it, and opening a file plus
reading its first entry. Samples alternate between the files and are summarised by medians, so a
slow moment of the machine spreads over all rows instead of landing on one.

The probes run as an installed package does: with bytecode caches (an environment that sets
PYTHONDONTWRITEBYTECODE would otherwise time the compilation of every module), after one unmeasured
run that writes them.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SAMPLES = 11
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy, scipy.sparse
t1 = time.perf_counter()
import scinrcodec
t2 = time.perf_counter()
m = scinrcodec.open(sys.argv[1])
m[0, 0]
t3 = time.perf_counter()
print(json.dumps({"base_s": t1 - t0, "import_s": t2 - t1, "first_entry_s": t3 - t2}))
"""


def sample(path: Path) -> dict:
    """One fresh interpreter's timings for `path`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True, env=env)
    return json.loads(run.stdout)


def run_startup(files: list[Path], samples: int = SAMPLES) -> str:
    """A markdown table of median startup costs per file (milliseconds)."""
    seen: dict[Path, list[dict]] = {path: [] for path in files}
    sample(files[0])  # writes the bytecode caches
    for _ in range(samples):
        for path in files:
            seen[path].append(sample(path))
    lines = [f"Medians of {samples} fresh interpreters ({sys.executable}).", "",
             "| file | import numpy, scipy.sparse ms | import scinrcodec ms (added) | open + first entry ms |",
             "|---|---|---|---|"]
    for path, rows in seen.items():
        med = {key: statistics.median(row[key] for row in rows) * 1000 for key in rows[0]}
        lines.append(f"| {path.name} | {med['base_s']:.1f} | {med['import_s']:.1f} | {med['first_entry_s']:.2f} |")
    return "\n".join(lines)
