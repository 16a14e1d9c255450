"""atheris harness over the reader (targets.exercise_reader).

Run from the repository root, on a copy of the corpus (libFuzzer adds the inputs it keeps):
    cp -r tests/fuzz/corpus /tmp/corpus
    python tests/fuzz/fuzz_reader.py -max_total_time=240 -timeout=20 -rss_limit_mb=4096 /tmp/corpus
Under atheris the process's resident memory grows by about 10 KB per run (a plain replay of the
same inputs stays flat at 176 MB), so a run of much more than 300,000 executions needs a higher
-rss_limit_mb, or several shorter runs on the same corpus.
Any exception other than the package's own errors, a crash, a hang or an allocation beyond the
RSS limit is a finding; each one found is kept in tests/fuzz/crashes/ and replayed by
tests/test_reliability.py. Coverage guides the Python parsing and checking layers; the native core's
tile decoder behind them runs on every mutated file (a crash there is a finding), and .ci/sanitize
replays the corpus through an AddressSanitizer build of it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from fuzz.targets import exercise_reader, instrument_package  # noqa: E402


def main() -> None:
    for seed in sorted((HERE / "corpus").glob("*.bin")):  # imports every module a read reaches
        exercise_reader(seed.read_bytes())
    instrument_package()
    atheris.Setup(sys.argv, exercise_reader)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
