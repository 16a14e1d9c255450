"""The `sinr` console script. It is a package of its own so that it imports nothing before it
takes Ctrl-C: scinrcodec's imports (numpy, scipy: about 0.3 s) run under it, and an interrupt
during them ends the command as one during its work does (one line, exit 130), not with a
traceback. A package's own __init__ runs before any of its modules, so scinrcodec.cli could not."""
from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C stopped


def on_interrupt() -> int:
    """Say on stderr that the command was interrupted; the exit status that says so."""
    try:
        print("sinr: interrupted", file=sys.stderr)
    except OSError:  # EIO: stderr was the terminal whose hangup (SIGHUP) stopped the command
        pass
    return INTERRUPTED


def main() -> int:
    """Run `sinr` with the process's arguments (scinrcodec.cli.main), an interrupt before the
    command has taken Ctrl-C over (in the imports, or parsing the arguments) included. OpenBLAS,
    which numpy and scipy load and the package never calls, starts one thread unless the user says
    otherwise: under a limit on virtual memory (`ulimit -v`, a scheduler's h_vmem) its thread setup
    looped on a failed allocation, and the command hung, deaf to SIGTERM, where it now ends 'out of
    memory'."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        _stop_on_signals()
        from scinrcodec.cli import main as command

        return command()
    except KeyboardInterrupt:
        return on_interrupt()


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) stop the command in its imports as Ctrl-C does, until
    scinrcodec.cli takes them over: they had killed it silently there (status 143 or 129, where the
    README says 'sinr: interrupted' and 130). One the process was started ignoring (nohup) stays
    ignored, as the command's own handling leaves it."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _stop)
