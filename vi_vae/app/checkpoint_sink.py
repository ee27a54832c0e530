"""A run directory as :func:`vi_vae.fit`'s checkpoint sink: ``checkpoint.pt`` and ``history.csv``.

:meth:`vi_vae.app.run_directory.RunDirectory.checkpoint_sink` makes one; the files'
names are the library's (:mod:`vi_vae.checkpoint`), and every write goes through its
atomic writers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import TYPE_CHECKING, Any

from vi_vae.callbacks import TrainingCheckpoint
from vi_vae.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from vi_vae.train import EpochRecord

if TYPE_CHECKING:
    from vi_vae.app.run_directory import RunDirectory

__all__ = ["RunCheckpointSink", "history_csv"]


class RunCheckpointSink:
    """A run directory as :func:`vi_vae.fit`'s checkpoint sink (:mod:`vi_vae.callbacks`).

    After every epoch it writes ``checkpoint.pt`` (the checkpoint and ``metadata``)
    first and ``history.csv`` second, both atomically, so the history never runs
    ahead of the checkpoint; it hands ``fit`` the stored checkpoint to resume from.
    On a rank that is not the directory's writer it only reads.
    """

    def __init__(self, directory: RunDirectory, metadata: dict[str, Any]) -> None:
        self.directory = directory
        self.metadata = metadata

    def __str__(self) -> str:
        return str(self.directory.path)

    def write_checkpoint(self, checkpoint: TrainingCheckpoint) -> None:
        """Write ``checkpoint.pt``, then ``history.csv``."""
        if not self.directory.writer:
            return
        state = {**checkpoint.to_state(), "metadata": self.metadata}
        save_checkpoint(self.directory.checkpoint_path, state)
        atomic_write_text(self.directory.history_path, history_csv(checkpoint.history))

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
