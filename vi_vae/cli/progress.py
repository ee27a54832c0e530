"""The progress display of the ``vi-vae`` commands, on stderr.

On a terminal each long phase (the steps of an epoch, an AIS or BDMC run, an
evaluation) shows a tqdm bar; when stderr is piped or redirected (a log file, a
batch job, ``| cat``) the same phase prints a line at most every
:data:`LOG_INTERVAL` seconds, with the share done, the time spent and an
estimate of the time left, so that a long run is never silent. A phase starts
when its work does (the evaluators report ``done = 0`` first), and a heartbeat
thread keeps the lines (or the bar's clock) going while the work blocks between
two updates: a compile inside the first pass, a pass over all the points at once.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from vi_vae.app.compare import ComparisonProgress
from vi_vae.train import EpochRecord

__all__ = ["LOG_INTERVAL", "PhaseProgress", "ProgressBar"]

#: seconds between two progress lines of a phase when stderr is not a terminal
LOG_INTERVAL = 10.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class PhaseProgress:
    """Progress through one phase of ``total`` units: a bar on a terminal, else timed lines.

    Args:
        phase: what runs, e.g. ``"epoch 3"`` or ``"AIS"``.
        total: units in the phase.
        unit: what a unit is, e.g. ``"steps"``.
        stream: where to write (stderr).
        interval: seconds between two lines when ``stream`` is not a terminal.
        clock: the clock (seconds), replaceable in tests.
        heartbeat: seconds between the heartbeat thread's looks at the phase (a line when
            ``interval`` has passed since the last one, or a redraw of the bar); ``None``:
            no thread, lines only from :meth:`update`.
    """

    def __init__(
        self,
        phase: str,
        total: int,
        unit: str,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL,
        clock=time.monotonic,
        heartbeat: float | None = 1.0,
    ) -> None:
        self.phase, self.total, self.unit = phase, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.interval, self.clock = interval, clock
        self.started = self.last_line = clock()
        self.done = 0
        self.postfix: dict[str, str] = {}
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=phase, leave=False, file=self.stream, unit=unit)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._heart = None
        if heartbeat is not None:
            self._heart = threading.Thread(
                target=self._beat, args=(heartbeat,), name=f"progress of {phase}", daemon=True
            )
            self._heart.start()

    def update(self, done: int, **postfix: str) -> None:
        """``done`` units of ``total`` are done."""
        with self._lock:
            self.done, self.postfix = done, postfix or self.postfix
            if self.bar is not None:
                self.bar.update(done - self.bar.n)
                if postfix:
                    self.bar.set_postfix(**postfix)
            elif 0 < done < self.total:
                self._line_if_due()

    def _line_if_due(self) -> None:
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self.stream.write(self.line(self.done, now, self.postfix) + "\n")
            self.stream.flush()

    def _beat(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            with self._lock:
                if self._closed.is_set():
                    return
                if self.bar is not None:
                    self.bar.refresh()  # its elapsed time, while no update comes
                elif self.done < self.total:
                    self._line_if_due()

    def line(self, done: int, now: float, postfix: dict[str, str] | None = None) -> str:
        """The progress line: ``phase: done/total unit (share), elapsed, ETA`` (none at 0)."""
        elapsed = now - self.started
        extra = "".join(f", {name} {value}" for name, value in (postfix or {}).items())
        line = (
            f"{self.phase}: {done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%)"
            f"{extra}, {_duration(elapsed)} so far"
        )
        if not done:
            return line
        return f"{line}, about {_duration(elapsed * (self.total - done) / done)} left"

    def close(self) -> None:
        """End the phase (closes the bar, stops the heartbeat)."""
        with self._lock:
            self._closed.set()
            if self.bar is not None:
                self.bar.close()
                self.bar = None
        if self._heart is not None and self._heart is not threading.current_thread():
            self._heart.join()


class ProgressBar(ComparisonProgress):
    """The progress of a command: one phase at a time, and one summary line per epoch."""

    def __init__(self, disable: bool, stream: TextIO | None = None) -> None:
        self.disable = disable
        self.stream = stream
        self.phase: PhaseProgress | None = None

    def _advance(self, name: str, done: int, total: int, unit: str, **postfix: str) -> None:
        if self.disable:
            return
        if self.phase is None or self.phase.phase != name or done < self.phase.done:
            self.close()
            self.phase = PhaseProgress(name, total, unit, self.stream)
        self.phase.update(done, **postfix)
        if done >= total:
            self.close()

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        """Start an epoch's display before its first step (``fit``'s ``on_epoch_start``)."""
        self._advance(f"epoch {epoch}", 0, steps, "steps")

    def on_step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """Advance through an epoch's steps (``fit``'s ``on_step``).

        After the last step the epoch's validation pass and checkpoint run, with no step
        to report: a phase of their own until :meth:`on_epoch`, whose heartbeat keeps a
        long validation (a large held-out set, a conv net on CPU) from running silent.
        """
        self._advance(f"epoch {epoch}", step, steps, "steps", loss=f"{loss:.2f}")
        if step >= steps:
            self._advance(f"epoch {epoch}: validation and checkpoint", 0, 1, "passes")

    def on_epoch(self, record: EpochRecord) -> None:
        """Print the epoch's summary (``fit``'s ``on_epoch``)."""
        if self.disable:
            return
        self.close()
        print(
            f"epoch {record.epoch}: train loss {record.train_loss:.2f}, validation ELBO "
            f"{record.validation_elbo:.2f} ({record.seconds:.1f} s)",
            file=self.stream or sys.stderr,
        )

    def on_evaluation(self, phase: str, done: int, total: int) -> None:
        """Advance an evaluation phase: ``"log p(x)"`` over points, ``"AIS"``/``"BDMC"`` steps."""
        unit = "points" if phase == "log p(x)" else "annealing steps"
        self._advance(phase, done, total, unit)

    def on_snr_draw(self, done: int, total: int) -> None:
        """Advance the gradient-SNR phase (``on_draw``: gradient draws done)."""
        self._advance("gradient SNR", done, total, "gradient draws")

    def on_run(self, spelling: str) -> None:
        """Say which estimator's run starts (``compare``)."""
        if not self.disable:
            self.close()
            print(f"training with {spelling}", file=self.stream or sys.stderr)

    def close(self) -> None:
        """End the current phase."""
        if self.phase is not None:
            self.phase.close()
            self.phase = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()
