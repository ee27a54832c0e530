"""What :func:`vi_vae.fit` hands out as it trains: callbacks, and checkpoints to a sink.

``fit`` writes no files. After every completed epoch it gives a
:class:`TrainingCheckpoint` (plain tensors and numbers) to the ``sink`` it was
passed, and at the start it asks the sink for the checkpoint to resume from. A
sink is any object with the two methods of :class:`CheckpointSink`: the
application's run directory is one (it writes ``checkpoint.pt`` and
``history.csv``), and one that keeps checkpoints in memory is five lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from vi_vae._training import EpochRecord, TrainingCheckpoint

__all__ = ["Callback", "CheckpointSink", "TrainingCheckpoint"]

StepFunction = Callable[[int, int, int, float], None]
EpochFunction = Callable[[EpochRecord], None]
EpochStartFunction = Callable[[int, int], None]


class Callback:
    """Called by :func:`vi_vae.fit` as each epoch starts, after every step and every epoch.

    Subclass it and override the hooks you need, or pass plain functions:
    ``Callback(on_epoch=print)``. An object with ``on_step`` and ``on_epoch`` methods
    alone serves too (``fit`` calls ``on_epoch_start`` where there is one).

    Args:
        on_step: called as ``on_step(epoch, step, steps_per_epoch, loss_per_point)``.
        on_epoch: called with each completed epoch's :class:`EpochRecord`.
        on_epoch_start: called as ``on_epoch_start(epoch, steps_per_epoch)`` before the
            epoch's first step, which can be slow (a compile, a GPU's first kernels).
    """

    # a subclass whose __init__ does not call this one's still has every hook
    _on_step: StepFunction | None = None
    _on_epoch: EpochFunction | None = None
    _on_epoch_start: EpochStartFunction | None = None

    def __init__(
        self,
        on_step: StepFunction | None = None,
        on_epoch: EpochFunction | None = None,
        on_epoch_start: EpochStartFunction | None = None,
    ) -> None:
        self._on_step, self._on_epoch = on_step, on_epoch
        self._on_epoch_start = on_epoch_start

    def on_epoch_start(self, epoch: int, steps_per_epoch: int) -> None:
        """Before the first step of ``epoch``, which will take ``steps_per_epoch`` steps."""
        if self._on_epoch_start is not None:
            self._on_epoch_start(epoch, steps_per_epoch)

    def on_step(self, epoch: int, step: int, steps_per_epoch: int, loss_per_point: float) -> None:
        """After SVI step ``step`` (1-based) of ``steps_per_epoch`` in ``epoch``."""
        if self._on_step is not None:
            self._on_step(epoch, step, steps_per_epoch, loss_per_point)

    def on_epoch(self, record: EpochRecord) -> None:
        """After an epoch is complete and its checkpoint was given to the sink."""
        if self._on_epoch is not None:
            self._on_epoch(record)


@runtime_checkable
class CheckpointSink(Protocol):
    """Where :func:`vi_vae.fit` puts a checkpoint after every epoch, and finds one to resume.

    ``str(sink)`` names where it keeps them (a training error that ends a run
    says the last checkpoint is kept there). Under torchrun every rank passes a
    sink; only rank 0's :meth:`read_checkpoint` is called (its checkpoint is sent
    to the others), and every rank's :meth:`write_checkpoint` is, so a sink
    writes on rank 0 only.

    Example:
        >>> class InMemory:
        ...     last = None
        ...     def write_checkpoint(self, checkpoint):
        ...         self.last = checkpoint
        ...     def read_checkpoint(self):
        ...         return self.last
        >>> isinstance(InMemory(), CheckpointSink)
        True
    """

    def write_checkpoint(self, checkpoint: TrainingCheckpoint) -> None:
        """Keep ``checkpoint``, the state after its last completed epoch."""

    def read_checkpoint(self) -> TrainingCheckpoint | None:
        """The checkpoint to resume from, or ``None`` to start from scratch."""
