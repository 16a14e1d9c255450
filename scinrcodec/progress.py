"""Progress of long work: one bar with throughput and ETA (tqdm), silent when disabled."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

TICK_SECONDS = 1.0  # how often the bar is redrawn while nothing is counted (a pass of one opaque call)
UNCOUNTED = "{desc}: {elapsed}"  # a pass of no total, until it counts: its name and how long it has run


class Progress:
    """A progress bar on stderr when enabled, nothing at all otherwise (tqdm imported only then).
    Thread-safe: a decode counts its chunks on the threads that decode them. With `passes`, the
    number of passes of the work, each pass's name gets 'pass i of n, '."""

    def __init__(self, enabled: bool, total: int | None, desc: str, unit: str, *, passes: int = 0) -> None:
        self.bar, self.desc, self.passes, self.begun = None, desc, passes, 0
        self._lock = threading.Lock()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", unit_scale=True, leave=False,
                            dynamic_ncols=True, smoothing=0.1, bar_format=UNCOUNTED if total is None else None)
            # tqdm redraws only when counted: a pass of one long call (an .h5ad written by anndata) would
            # show the elapsed time it began with until it ended
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, name="sinr-progress", daemon=True)
            self._ticker.start()

    def begin(self, step: str, total: int | None) -> None:
        """Start one pass of work of several anew: the count back to 0, the pass named beside the
        description, so that the bar's rate is this pass's (over both passes of an encode, counted
        as one, it had been twice the nonzeros per second the summary gives). A total of None: a
        pass shown by its name and elapsed time until it counts (one call that does it all never
        does; a source of unknown size does)."""
        self.begun += 1
        if self.bar is None:
            return
        if self.passes > 1:
            step = f"pass {self.begun} of {self.passes}, {step}"
        with self._lock:  # all set before reset() redraws it: no line of one pass's name in another's format
            self.bar.bar_format = UNCOUNTED if total is None else None
            self.bar.total = total  # reset(total=None) keeps the last pass's
            # without the ': ' set_description ends it with, which tqdm adds again to a bar of no total
            self.bar.set_description_str(f"{self.desc} ({step})", refresh=False)
            self.bar.reset(total=total)

    def update(self, n: int) -> None:
        """Count n more units done."""
        if self.bar is not None:
            with self._lock:
                if n and self.bar.bar_format is not None:  # counting after all: the count and rate
                    self.bar.bar_format = None
                self.bar.update(n)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self._stop.set()
            self._ticker.join()
            self.bar.close()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self.bar.refresh()


class Shared:
    """Counts on `progress` work that goes over each of its items `times` times (a 10x file's values,
    then its indices) in items: each time counts 1/times of an item, so that the pass ends at the
    items' number exactly, at the rate the whole pass goes."""

    def __init__(self, progress: Progress, times: int) -> None:
        self.progress, self.times, self.done = progress, times, 0

    def update(self, n: int) -> None:
        """Count n more items of one time over them."""
        before = self.done // self.times
        self.done += n
        self.progress.update(self.done // self.times - before)


@contextlib.contextmanager
def progress_of(progress: bool | Progress, desc: str, unit: str, *, passes: int = 0) -> Iterator[Progress]:
    """A caller's bar (`progress` a Progress: this work is a pass of its bar's), or a bar of this
    work's own (`progress` a bool: shown or not), removed when the work ends."""
    if isinstance(progress, Progress):
        yield progress
        return
    own = Progress(progress, None, desc, unit, passes=passes)
    try:
        yield own
    finally:
        own.close()
