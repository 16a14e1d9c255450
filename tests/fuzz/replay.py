"""Replay a fuzz corpus without fuzzing: python tests/fuzz/replay.py {reader,inputs} DIR [DIR ...]

Each file runs once through the harness's target. .ci/sanitize uses it to send the corpora that
CI's fuzzing runs grew through the AddressSanitizer build of the native core, where an invalid
read or write aborts the process; any exception other than SinrError fails the replay here.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def main(argv: list[str]) -> int:
    kind, folders = argv[0], [Path(a) for a in argv[1:]]
    if kind == "reader":
        from fuzz.targets import exercise_reader as target
    elif kind == "inputs":
        from fuzz_inputs import exercise as target
    else:
        raise SystemExit(f"usage: replay.py {{reader,inputs}} DIR ...; not {kind!r}")
    files = sorted(p for folder in folders for p in folder.iterdir() if p.is_file())
    for path in files:
        try:
            target(path.read_bytes())
        except Exception as exc:  # a finding: name the input, then fail
            print(f"replay {kind}: {path} raised {type(exc).__name__}: {exc}", file=sys.stderr)
            raise
    print(f"replayed {len(files)} {kind} inputs: no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
