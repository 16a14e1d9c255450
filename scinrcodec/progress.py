"""Progress of long work: one bar with throughput and ETA (tqdm), silent when disabled."""
from __future__ import annotations


class Progress:
    """A progress bar on stderr when enabled, nothing at all otherwise (tqdm imported only then)."""

    def __init__(self, enabled: bool, total: int | None, desc: str, unit: str) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", unit_scale=True, leave=False,
                            dynamic_ncols=True, smoothing=0.1)

    def set_total(self, total: int) -> None:
        """Correct the total once it is known (inputs that only know it after a first pass)."""
        if self.bar is not None and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()

    def update(self, n: int) -> None:
        """Count n more units done."""
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
