"""A run's checkpoint: the sink :func:`vi_vae.fit` writes it through, and what evaluation reads.

``checkpoint.pt`` and ``history.csv`` (their names are the library's,
:mod:`vi_vae.checkpoint`) are written by the run directory
(:meth:`vi_vae.app.run_directory.RunDirectory.write_checkpoint`), through the sink its
:meth:`~vi_vae.app.run_directory.RunDirectory.checkpoint_sink` makes, and read back as
a :class:`TrainedState` by its
:meth:`~vi_vae.app.run_directory.RunDirectory.load_trained`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

from vi_vae.callbacks import TrainingCheckpoint
from vi_vae.checkpoint import load_checkpoint
from vi_vae.train import EpochRecord

if TYPE_CHECKING:
    from vi_vae.app.run_directory import RunDirectory

__all__ = ["RunCheckpointSink", "TrainedState", "history_csv"]


@dataclasses.dataclass
class TrainedState:
    """What a run's checkpoint holds for evaluation: the best parameters and the history."""

    epoch: int
    parameters: dict[str, Tensor]
    history: list[EpochRecord]


class RunCheckpointSink:
    """A run directory as :func:`vi_vae.fit`'s checkpoint sink (:mod:`vi_vae.callbacks`).

    After every epoch it hands the checkpoint (with ``metadata``) to the directory,
    which writes ``checkpoint.pt`` first and ``history.csv`` second, both atomically, so
    the history never runs ahead of the checkpoint
    (:meth:`~vi_vae.app.run_directory.RunDirectory.write_checkpoint`); it hands ``fit``
    the stored checkpoint to resume from. On a rank that is not the directory's writer
    it only reads.
    """

    def __init__(
        self,
        directory: RunDirectory,
        metadata: dict[str, Any],
        before_first_write: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.metadata = metadata
        self._before_first_write = before_first_write

    def __str__(self) -> str:
        return str(self.directory.path)

    def write_checkpoint(self, checkpoint: TrainingCheckpoint) -> None:
        """Write ``checkpoint.pt`` (with ``metadata``), then ``history.csv``."""
        if self.directory.writer:
            if self._before_first_write is not None:
                self._before_first_write()
                self._before_first_write = None
            state = {**checkpoint.to_state(), "metadata": self.metadata}
            self.directory.write_checkpoint(state, checkpoint.history)

    def read_checkpoint(self) -> TrainingCheckpoint | None:
        """The stored checkpoint, or ``None`` when training has not completed an epoch here."""
        if not self.directory.has_checkpoint():
            return None
        return TrainingCheckpoint.from_state(load_checkpoint(self.directory.checkpoint_path))


def history_csv(history: list[EpochRecord]) -> str:
    """``history.csv``: a header of :class:`EpochRecord`'s fields, one row per epoch."""
    buffer = io.StringIO()
    columns = [field.name for field in dataclasses.fields(EpochRecord)]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in history:
        writer.writerow(record.to_dict())
    return buffer.getvalue()
