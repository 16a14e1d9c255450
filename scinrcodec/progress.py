"""Progress of long work: one bar with throughput and ETA (tqdm), silent when disabled."""
from __future__ import annotations


class Progress:
    """A progress bar on stderr when enabled, nothing at all otherwise (tqdm imported only then)."""

    def __init__(self, enabled: bool, total: int | None, desc: str, unit: str) -> None:
        self.bar, self.desc = None, desc
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", unit_scale=True, leave=False,
                            dynamic_ncols=True, smoothing=0.1)

    def begin(self, step: str, total: int | None) -> None:
        """Start one pass of work of several anew: the count back to 0, the pass named beside the
        description, so that the bar's rate is this pass's (over both passes of an encode, counted
        as one, it had been twice the nonzeros per second the summary gives)."""
        if self.bar is not None:
            self.bar.reset(total=total)
            self.bar.set_description(f"{self.desc} ({step})")

    def update(self, n: int) -> None:
        """Count n more units done."""
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
