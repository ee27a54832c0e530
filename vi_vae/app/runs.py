"""A training run end to end: config -> data -> VAE -> fit -> evaluation -> run directory.

:func:`train_run` and :func:`resume_run` return the trained :class:`Run` in
memory (so a comparison uses it without reading back what it just wrote);
:func:`load_run` rebuilds one from its directory, and :mod:`vi_vae.app.run_evaluation`
measures a stored run again. Everything here returns
values or writes files through :class:`~vi_vae.app.run_directory.RunDirectory`;
the command line does the printing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vi_vae.app.assemble import build_vae, check_model_size, load_data, resolve_device
from vi_vae.app.assessment import (
    evaluate,
)
from vi_vae.app.config import RunConfig, environment
from vi_vae.app.figures import make_run_figures
from vi_vae.app.fingerprint import fingerprint
from vi_vae.app.metrics import RunMetrics, TrainingSummary
from vi_vae.app.report import resumed_report, run_report
from vi_vae.app.run_directory import MetricsOfAnotherCheckpoint, RunDirectory
from vi_vae.callbacks import Callback
from vi_vae.data import Dataset
from vi_vae.errors import InputError, TrainingError
from vi_vae.model import VAE
from vi_vae.train import EpochRecord, fit

__all__ = [
    "EvaluationFailed",
    "Run",
    "RunProgress",
    "load_run",
    "resume_run",
    "train_run",
    "write_run",
]

logger = logging.getLogger(__name__)

#: ``(phase, done, total)``: the progress of an evaluation phase ("log p(x)", "AIS")
EvaluationCallback = Callable[[str, int, int], None]


class RunProgress(Callback):
    """What a run reports as it goes: ``fit``'s hooks, and its evaluation's phases.

    Each hook does nothing unless overridden; ``fit``'s three may also be given as
    functions, as :class:`~vi_vae.callbacks.Callback` takes them.
    """

    def on_evaluation(self, phase: str, done: int, total: int) -> None:
        """The evaluation: ``done`` of ``total`` in ``phase`` ("log p(x)", "AIS", "BDMC")."""


class EvaluationFailed(TrainingError):
    """Training finished and is saved, but a later step (evaluation, figures) failed."""

    def __init__(self, directory: RunDirectory, step: str, error: Exception) -> None:
        super().__init__(
            f"training finished and is saved in {directory.path}, but the {step} failed: {error}"
        )
        self.directory = directory
        self.step = step


@dataclass
class Run:
    """A trained run: its directory, settings, data, model, history and metrics."""

    directory: RunDirectory
    config: RunConfig
    dataset: Dataset
    vae: VAE
    history: list[EpochRecord]
    metrics: RunMetrics | None

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.vae.parameters()).device


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: RunProgress | None = None,
    figures: bool = True,
) -> Run:
    """Train, evaluate and write a new run directory; return the run.

    The evaluation is ``config.evaluation``'s importance sampling and, when
    ``config.ais.num_points`` is set, AIS beside it. ``progress`` is told of each
    epoch and step (it is ``fit``'s callback) and of the evaluation's phases.

    Raises:
        RunDirectoryNotEmpty: when ``run_dir`` holds files and ``overwrite`` is false.
        EvaluationFailed: when training finished but the evaluation or figures failed
            (the checkpoint, history and training metrics are saved).
    """
    directory = RunDirectory(run_dir)
    directory.check_creatable()
    return _train(config.validated(), directory, False, overwrite, progress, figures)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    device: str | None = None,
    progress: RunProgress | None = None,
    figures: bool = True,
) -> Run:
    """Continue the run in ``run_dir`` from its last completed epoch, with its stored settings.

    Only ``epochs`` (to train longer) and ``device`` may differ from the stored
    config. A directory whose training never completed an epoch starts from
    epoch 1 (``TrainingSummary.resumed_from_epoch`` is 0).
    """
    directory = RunDirectory(run_dir)
    directory.open()
    config = directory.read_config()
    if epochs is not None:
        config = config.replace("training", epochs=max(config.training.epochs, epochs))
    if device is not None:
        config = config.replace("training", device=device)
    return _train(config.validated(), directory, True, False, progress, figures)


def _train(
    config: RunConfig,
    directory: RunDirectory,
    resume: bool,
    overwrite: bool,
    progress: RunProgress | None,
    figures: bool,
) -> Run:
    # Everything that can refuse the input runs before the run directory is touched,
    # so bad input neither leaves a half-made run nor destroys the one it would replace.
    device = resolve_device(config.training.device)
    dataset = load_data(config.data)
    check_model_size(config, dataset.input_dim, device)
    vae = build_vae(config, dataset).to(device)
    vae.check_data(dataset.validation, "validation data")
    vae.check_data(dataset.test, "test data")
    if dataset.binarization != "dynamic":
        vae.check_data(dataset.train, "training data")
    if resume:
        directory.check_figures_writable()
    with directory.locked(create=not resume):
        if not resume:
            directory.create(overwrite=overwrite)
        elif directory.has_checkpoint():
            directory.check_fingerprint(config, dataset)
        kept, withdraw = _old_results(directory, resume, config)
        directory.write_config(config, dataset.describe(), environment())
        return _fit_and_evaluate(
            Run(directory, config, dataset, vae, [], RunMetrics(figures=kept)),
            device,
            progress or RunProgress(),
            figures,
            withdraw,
        )


def _old_results(
    directory: RunDirectory, resume: bool, config: RunConfig
) -> tuple[tuple[str, ...], Callable[[], None] | None]:
    """The figures still true after training, and what withdraws the rest.

    A resume that trains on withdraws the figures, and ``report.md`` then says that the
    run is training on, in place of the old numbers, which a resume stopped before its
    evaluation would leave beside other weights. That happens just before its first
    checkpoint is written (the returned callable), so a resume stopped earlier leaves the
    run as it was. A resume that finds the metrics, and so the figures, of an earlier
    checkpoint (one that trained on and stopped before its evaluation) withdraws them at
    once: it evaluates anew.
    """
    if not resume:
        return (), None
    completed = directory.completed_epochs()

    def withdraw() -> None:
        directory.remove_figures()  # they show other weights than those the run ends with
        directory.write_report(resumed_report(config, completed))

    if completed < config.training.epochs:
        return (), withdraw
    try:
        return (directory.read_metrics() or RunMetrics()).figures, None
    except MetricsOfAnotherCheckpoint:
        withdraw()
        return (), None


def _fit_and_evaluate(
    run: Run,
    device: torch.device,
    progress: RunProgress,
    figures: bool,
    withdraw: Callable[[], None] | None = None,
) -> Run:
    config, directory, dataset = run.config, run.directory, run.dataset
    started = time.perf_counter()
    result = fit(
        run.vae.model,
        run.vae.guide,
        dataset.train,
        # the training section is fit's settings; the device resolved for this process
        dataclasses.replace(config.training, device=str(device)),
        validation=dataset.validation,
        batch_transform=dataset.batch_transform(),
        callbacks=[progress],
        # a new run's directory was just created empty: only a resumed one holds a checkpoint
        sink=directory.checkpoint_sink(
            {"fingerprint": fingerprint(config, dataset.input_dim), "data": dataset.digests()},
            before_first_write=withdraw,
        ),
    )
    summary = TrainingSummary.from_fit(result, time.perf_counter() - started)
    kept = run.metrics.figures  # the figures of unchanged weights (a finished run resumed)
    run.history, run.metrics = result.history, RunMetrics(training=summary, figures=kept)
    write_run(run)  # the training summary is saved before anything else can fail
    try:
        run.metrics = evaluate(
            run.vae,
            run.dataset,
            config.evaluation,
            summary,
            kept,
            ais=config.ais,
            on_evaluation=progress.on_evaluation,
        )
    except (InputError, RuntimeError, ValueError) as error:
        run.metrics = dataclasses.replace(run.metrics, evaluation_error=str(error))
        write_run(run)
        raise EvaluationFailed(directory, "evaluation", error) from error
    write_run(run)
    if figures and directory.writer:
        try:
            names = make_run_figures(run.vae, run.dataset, run.history, directory)
        except (RuntimeError, ValueError) as error:
            raise EvaluationFailed(directory, "figures", error) from error
        run.metrics = dataclasses.replace(run.metrics, figures=names)
        write_run(run)
    return run


def write_run(run: Run) -> None:
    """Write ``run``'s metrics and report into its directory."""
    run.directory.write_metrics(run.metrics)
    run.directory.write_report(run_report(run.config, run.metrics))


def load_run(run_dir: str | Path, device: str | None = None) -> Run:
    """Load a run directory's config, data, best parameters, history and metrics.

    The checkpoint must match the config's model-defining settings
    (:meth:`RunDirectory.load_trained`).
    """
    directory = RunDirectory(run_dir)
    directory.open()
    config = directory.read_config()
    if device is not None:
        config = config.replace("training", device=device).validated()
    dataset = load_data(config.data)
    check_model_size(config, dataset.input_dim, resolve_device(config.training.device))
    vae = build_vae(config, dataset)
    trained = directory.load_trained(config, dataset)
    # The checkpoint holds Pyro's param store: every parameter, no buffer (a flow's
    # masks and orders, which the architecture fixes).
    buffers = {name for name, _ in vae.named_buffers()}
    try:
        missing, unexpected = vae.load_state_dict(trained.parameters, strict=False)
    except RuntimeError as error:
        missing, unexpected = [str(error).splitlines()[-1].strip()], []
    if unexpected or set(missing) - buffers:
        names = sorted(set(missing) - buffers) + sorted(unexpected)
        raise InputError(
            f"checkpoint in {directory.path} does not fit the model its config describes "
            f"(parameters that differ: {', '.join(names[:5])})"
        )
    vae.to(resolve_device(config.training.device))
    vae.eval()
    return Run(directory, config, dataset, vae, trained.history, directory.read_metrics())
