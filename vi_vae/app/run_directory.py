"""The run directory's one owner: its file names, and typed reads and writes of each file.

A run directory holds

- ``config.json``: ``{"config": RunConfig, "dataset": where the data came from,
  "environment": versions}``;
- ``checkpoint.pt`` and ``history.csv``, written after every epoch of
  :func:`vi_vae.fit` by the sink :meth:`RunDirectory.checkpoint_sink` (their
  names are the library's, :mod:`vi_vae.checkpoint`);
- ``metrics.json``: :class:`~vi_vae.app.metrics.RunMetrics`;
- the PNG figures of :data:`FIGURE_FILES` and ``report.md``;
- in a comparison directory, ``comparison.json``:
  :class:`~vi_vae.app.comparison_metrics.Comparison`.

Every write is atomic (temporary file and rename: a symbolic link is replaced,
never written through), taking a directory's lock removes the temporaries a
killed write left behind, and every read is validated against its schema, naming the
offending field.

The files of results, ``metrics.json`` and ``comparison.json``, carry a checksum of
their content (:func:`vi_vae.checkpoint.check_json_checksum`), as ``checkpoint.pt``
does: one changed after it was written, by hand or by damage, is refused instead of
reported; one of an older vi_vae, which has none, is read with an
:class:`~vi_vae.errors.UnverifiedFileWarning`. ``metrics.json`` also names the
``checkpoint.pt`` its numbers were computed from (:data:`CHECKPOINT_FIELD`, the SHA-256
of its bytes): one beside another checkpoint (copied from another run, or left by a
resume that trained on and stopped before its evaluation) is refused, not reported as
this run's. ``config.json`` has none: the settings
that shape the weights and the report are checked against the fingerprint the
checkpoint stores, and the data against the digests of the splits it was trained on
(:meth:`RunDirectory.check_fingerprint`).

Under ``torchrun`` every rank opens the run directory and reads it (so on several
machines it lies on a shared filesystem), but only the *writer*, rank 0, creates,
cleans or writes anything: on the other ranks those calls do nothing.

One process at a time writes a run directory: the writer holds an exclusive
``flock`` on ``.vi_vae.lock`` inside it (:meth:`RunDirectory.locked`,
:mod:`vi_vae.app.directory_lock`) while it trains, evaluates or draws there. A
second process that asks for it does not wait (a training can take hours): it is
refused with :class:`RunDirectoryInUse`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vi_vae._digest import file_sha256
from vi_vae.app.comparison_metrics import Comparison
from vi_vae.app.config import RunConfig
from vi_vae.app.directory_lock import LOCK_FILE, RunDirectoryInUse, directory_lock
from vi_vae.app.fingerprint import changed_data, changed_setting
from vi_vae.app.metrics import RunMetrics
from vi_vae.app.run_checkpoint import RunCheckpointSink, TrainedState, history_csv
from vi_vae.app.schema import from_json, to_json
from vi_vae.checkpoint import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_json_checksum,
    load_checkpoint,
    read_json,
    remove_stale_temporaries,
    save_checkpoint,
)
from vi_vae.data import Dataset
from vi_vae.distributed import is_main_process
from vi_vae.errors import InputError
from vi_vae.train import EpochRecord

__all__ = [
    "CHECKPOINT_FIELD",
    "CHECKPOINT_FILE",
    "COMPARISON_FILE",
    "CONFIG_FILE",
    "FIGURE_FILES",
    "HISTORY_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "MetricsOfAnotherCheckpoint",
    "REPORT_FILE",
    "RunDirectory",
    "RunDirectoryInUse",
    "RunDirectoryNotEmpty",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
COMPARISON_FILE = "comparison.json"
#: the field of ``metrics.json`` naming the checkpoint its numbers are of (its file's SHA-256)
CHECKPOINT_FIELD = "checkpoint_sha256"
#: what to do with a ``metrics.json`` that does not match its checksum: every command
#: that writes it reads it first, so it has to go; a new one lacks what it held
_METRICS_REMEDY = (
    "delete it and evaluate the run again (its training summary is lost with it; "
    "draw the figures and run BDMC and the inference gaps again if it held them)"
)
_COMPARISON_REMEDY = "run the comparison again (resuming it reuses the trained runs)"
#: figure name -> file name, for a run and for a comparison
FIGURE_FILES = {
    "training_curves": "training_curves.png",
    "latent_scatter": "latent_scatter.png",
    "reconstructions": "reconstructions.png",
    "samples": "samples.png",
    "interpolation": "interpolation.png",
    "manifold": "manifold.png",
    "bounds_versus_k": "bounds_versus_k.png",
    "snr_versus_k": "snr_versus_k.png",
    "inference_gaps": "inference_gaps.png",
}


class MetricsOfAnotherCheckpoint(InputError):
    """``metrics.json`` was computed from another ``checkpoint.pt`` than the directory's."""

    def __init__(self, directory: RunDirectory) -> None:
        super().__init__(
            f"{directory.metrics_path} holds the numbers of another checkpoint than "
            f"{directory.checkpoint_path} (one copied in since, or trained on by a resume "
            "that stopped before its evaluation), so they are not this run's; resume the "
            "run to finish it, or " + _METRICS_REMEDY
        )


class RunDirectoryNotEmpty(InputError):
    """A new run was asked for in a directory that already holds files."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"run directory {path} is not empty; resume it or overwrite it")
        self.path = path


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an :class:`InputError` of reading ``path``'s content with the path in front."""
    try:
        yield
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _file_property(name: str) -> property:
    """A :class:`RunDirectory` property: the path of its file ``name``."""
    return property(lambda directory: directory.path / name, doc=f"``{name}``.")


class RunDirectory:
    """A run directory on disk: where each file is, and how to read and write it.

    Args:
        path: the directory.
        writer: whether this process writes it; default: unless it is a rank other
            than 0 of a torch.distributed job (module docstring).
    """

    def __init__(self, path: str | Path, writer: bool | None = None) -> None:
        self.path = Path(path)
        self.writer = is_main_process() if writer is None else writer

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- where things are ----------------------------------------------------------

    config_path = _file_property(CONFIG_FILE)
    checkpoint_path = _file_property(CHECKPOINT_FILE)
    history_path = _file_property(HISTORY_FILE)
    metrics_path = _file_property(METRICS_FILE)
    report_path = _file_property(REPORT_FILE)
    #: in a comparison directory (which uses the same file names)
    comparison_path = _file_property(COMPARISON_FILE)

    def figure_path(self, name: str) -> Path:
        """The file of figure ``name`` (a key of :data:`FIGURE_FILES`)."""
        return self.path / FIGURE_FILES[name]

    def has_checkpoint(self) -> bool:
        """Whether training has completed at least one epoch here."""
        return self.checkpoint_path.is_file()

    # -- opening -----------------------------------------------------------------

    def create(self, *, overwrite: bool = False) -> None:
        """Make the directory for a new run (replacing an old run's files with ``overwrite``).

        Call it only once the input has been checked: bad input must neither
        leave a half-made run nor destroy the one it would replace; and call it
        holding :meth:`locked`, whose lock file it keeps.

        Raises:
            RunDirectoryNotEmpty: when it holds files and ``overwrite`` is false.
            InputError: when it is a file or cannot be created.
        """
        self.check_creatable()
        if not self.writer:
            return
        entries = (
            [p for p in self.path.iterdir() if p.name != LOCK_FILE] if self.path.exists() else []
        )
        if entries:
            if not overwrite:
                raise RunDirectoryNotEmpty(self.path)
            for entry in entries:  # the lock file stays: this process holds it
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self._mkdir()

    def check_creatable(self) -> None:
        """Refuse a path that is a file or whose parent cannot hold a directory."""
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"run directory {self.path} is a file, not a directory")
        parent = next((p for p in self.path.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise InputError(f"cannot create run directory {self.path}: no existing parent")

    def open(self) -> None:
        """Open an existing run: it must hold ``config.json``."""
        if not self.path.is_dir():
            raise InputError(f"run directory {self.path} does not exist")
        if not self.config_path.is_file():
            raise InputError(f"{self.path} is not a vi_vae run directory (no {CONFIG_FILE})")

    @contextmanager
    def locked(self, *, create: bool = False) -> Iterator[None]:
        """Hold the directory's lock (module docstring) while the block runs.

        Once it holds the lock, the writer removes the temporaries a killed write left
        behind (not before: they may be another process's writes in flight).

        Args:
            create: make the directory first (a new run); otherwise it must exist.

        Raises:
            RunDirectoryInUse: when another process holds it.
        """
        if self.writer:
            if create:
                self._mkdir()
            elif not self.path.is_dir():
                raise InputError(f"run directory {self.path} does not exist")
        with directory_lock(self.path, enabled=self.writer):
            if self.writer:
                remove_stale_temporaries(self.path)
            yield

    def _mkdir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(
                f"cannot create run directory {self.path}: {error.strerror or error}"
            ) from None

    # -- config.json ---------------------------------------------------------------

    def write_config(
        self, config: RunConfig, dataset: dict[str, Any], environment: dict[str, str]
    ) -> None:
        """Write ``config.json``."""
        if self.writer:
            stored = {"config": config.to_json(), "dataset": dataset, "environment": environment}
            atomic_write_json(self.config_path, stored)

    def read_config(self) -> RunConfig:
        """Read and check ``config.json``'s config."""
        stored = read_json(self.config_path)
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise InputError(f"{self.config_path} is not a vi_vae run config")
        with _naming(self.config_path):
            return RunConfig.from_json(stored["config"], "config").validated()

    # -- checkpoint.pt and history ------------------------------------------------

    def load_trained(self, config: RunConfig, dataset: Dataset) -> TrainedState:
        """The trained parameters and history in ``checkpoint.pt``, checked against the config.

        An edited ``config.json``, or data other than those it was trained on, that would
        evaluate or report the weights as another run's are refused
        (:meth:`check_fingerprint`).
        """
        checkpoint = load_checkpoint(self.checkpoint_path)
        self.check_fingerprint(config, dataset, checkpoint)
        return TrainedState(
            epoch=int(checkpoint["epoch"]),
            parameters=checkpoint.get("best_params") or checkpoint["params"],
            history=[EpochRecord.from_dict(row) for row in checkpoint.get("history", [])],
        )

    def checkpoint_sink(
        self,
        metadata: dict[str, Any] | None = None,
        before_first_write: Callable[[], None] | None = None,
    ) -> RunCheckpointSink:
        """The sink :func:`vi_vae.fit` writes ``checkpoint.pt`` and ``history.csv`` through.

        ``metadata`` (plain values) is stored in every checkpoint, e.g. the
        fingerprint of the model's settings, so that a loader can refuse weights of
        another model. ``before_first_write`` is called once, before the first
        checkpoint the sink writes (a resume withdraws the old results then).
        """
        return RunCheckpointSink(self, metadata or {}, before_first_write)

    def check_fingerprint(
        self, config: RunConfig, dataset: Dataset, checkpoint: dict[str, Any] | None = None
    ) -> None:
        """Refuse a config, or data, that differ from those the checkpoint was trained with.

        The config's comparison is :func:`~vi_vae.app.fingerprint.changed_setting`'s;
        the data's, that of each split's :meth:`~vi_vae.data.Dataset.digests` with those
        stored as the checkpoint's ``metadata["data"]`` (a checkpoint of an earlier
        vi_vae has none, and its data are not checked).

        Raises:
            InputError: naming the first field, or the splits, that differ.
        """
        if checkpoint is None:
            checkpoint = load_checkpoint(self.checkpoint_path)
        stored = checkpoint.get("metadata", {}).get("fingerprint")
        if stored is None:
            raise InputError(
                f"{self.checkpoint_path} holds no fingerprint of the settings it was trained "
                "with (a run directory's checkpoint always does), so it cannot be checked "
                "against the config; train a new run"
            )
        changed = changed_setting(config, dataset.input_dim, stored)
        if changed is not None:
            name, value, trained = changed
            raise InputError(
                f"{self.config_path} says {name} = {value!r} but {self.checkpoint_path} was "
                f"trained with {trained!r}; the config was changed after training (restore "
                "it, or train a new run)"
            )
        trained_on = checkpoint["metadata"].get("data")
        changed = None if trained_on is None else changed_data(dataset, trained_on)
        if changed is not None:
            raise InputError(
                f"dataset {dataset.name!r} is not the data {self.checkpoint_path} was "
                f"trained on: {changed}; the data, or their binarization, changed after "
                "training (restore the data its config.json names, with the versions of its "
                "environment, or train a new run)"
            )

    def write_checkpoint(self, state: dict[str, Any], history: list[EpochRecord]) -> None:
        """Write ``checkpoint.pt``, then ``history.csv``: the history never runs ahead of it."""
        if self.writer:
            save_checkpoint(self.checkpoint_path, state)
            atomic_write_text(self.history_path, history_csv(history))

    def completed_epochs(self) -> int:
        """The last epoch the checkpoint holds (0 without a checkpoint)."""
        return int(load_checkpoint(self.checkpoint_path)["epoch"]) if self.has_checkpoint() else 0

    # -- metrics.json, report.md, figures ---------------------------------------

    def write_metrics(self, metrics: RunMetrics) -> None:
        """Write ``metrics.json``, naming the checkpoint its numbers are of."""
        if self.writer:
            content = {**to_json(metrics), CHECKPOINT_FIELD: self._checkpoint_sha256()}
            atomic_write_json(self.metrics_path, content, checksum=True)

    def read_metrics(self) -> RunMetrics | None:
        """Read and check ``metrics.json``; ``None`` when there is none.

        Raises:
            InputError: when it does not match its checksum, was computed from another
                checkpoint than the directory's (module docstring), or breaks its schema.
        """
        if not self.metrics_path.is_file():
            return None
        stored = check_json_checksum(
            self.metrics_path, read_json(self.metrics_path), _METRICS_REMEDY
        )
        made_from = stored.pop(CHECKPOINT_FIELD, None)  # None: an older vi_vae wrote it
        if made_from is not None and made_from != self._checkpoint_sha256():
            raise MetricsOfAnotherCheckpoint(self)
        with _naming(self.metrics_path):
            return from_json(RunMetrics, stored, "metrics")

    def _checkpoint_sha256(self) -> str | None:
        """The SHA-256 of ``checkpoint.pt``'s bytes (``None`` without one)."""
        return file_sha256(self.checkpoint_path) if self.has_checkpoint() else None

    def write_report(self, text: str) -> None:
        """Write ``report.md``."""
        if self.writer:
            atomic_write_text(self.report_path, text)

    def write_figure(self, name: str, png: bytes | None) -> str | None:
        """Write figure ``name`` (a key of :data:`FIGURE_FILES`); return its file name.

        ``png=None`` (a figure that does not apply) writes nothing and returns None.
        """
        if png is None:
            return None
        if self.writer:
            atomic_write_bytes(self.figure_path(name), png)
        return FIGURE_FILES[name]

    def remove_figures(self) -> None:
        """Delete the figures of :data:`FIGURE_FILES`: they show weights about to change."""
        if not self.writer:
            return
        for name in FIGURE_FILES:
            path = self.figure_path(name)
            if path.is_file() or path.is_symlink():
                path.unlink()

    def check_figures_writable(self) -> None:
        """Refuse a figure path that is a directory, before hours of training."""
        for name in FIGURE_FILES:
            if self.figure_path(name).is_dir():
                raise InputError(f"cannot write {self.figure_path(name)}: it is a directory")

    def write_comparison(self, comparison: Comparison) -> None:
        """Write ``comparison.json`` (a comparison directory)."""
        if self.writer:
            atomic_write_json(self.comparison_path, to_json(comparison), checksum=True)

    def read_comparison(self) -> Comparison:
        """Read and check ``comparison.json`` (a comparison directory).

        Raises:
            InputError: when it is missing, does not match its checksum (module
                docstring) or its schema.
        """
        path = self.comparison_path
        stored = check_json_checksum(path, read_json(path), _COMPARISON_REMEDY)
        with _naming(path):
            return from_json(Comparison, stored, "comparison")
