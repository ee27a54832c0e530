"""The progress display of ``vi-vae train`` and ``compare``: a bar per epoch, a line per epoch."""

from __future__ import annotations

import sys

from vi_vae.train import EpochRecord

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar over steps, reset each epoch, and one summary line per epoch (stderr)."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.bar = None

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """Advance the bar (``fit``'s ``on_step``)."""
        if self.disable:
            return
        from tqdm import tqdm

        if self.bar is None or step == 1:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=None
            )
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.2f}")

    def epoch(self, record: EpochRecord) -> None:
        """Print the epoch's summary (``fit``'s ``on_epoch``)."""
        if self.disable:
            return
        self.close()
        print(
            f"epoch {record.epoch}: train loss {record.train_loss:.2f}, validation ELBO "
            f"{record.validation_elbo:.2f} ({record.seconds:.1f} s)",
            file=sys.stderr,
        )

    def ais_step(self, done: int, total: int) -> None:
        """Advance the bar of an AIS or BDMC run (``on_step``: annealing steps done)."""
        if self.disable:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc="AIS", leave=False, file=sys.stderr, disable=None)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
