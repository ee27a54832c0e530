"""A training run end to end: config -> data -> VAE -> fit -> evaluation -> run directory.

:func:`train_run` and :func:`resume_run` return the trained :class:`Run` in
memory (so a comparison uses it without reading back what it just wrote);
:func:`load_run` rebuilds one from its directory. Everything here returns
values or writes files through :class:`~vi_vae.app.run_directory.RunDirectory`;
the command line does the printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.app.assemble import build_vae, check_model_size, load_data, resolve_device
from vi_vae.app.assessment import (
    DEFAULT_BDMC_NUM_POINTS,
    DEFAULT_GAPS_NUM_POINTS,
    METHODS,
    bdmc_summary,
    evaluate,
    gaps_summary,
)
from vi_vae.app.config import AISConfig, EvaluationConfig, RunConfig, environment
from vi_vae.app.figures import make_run_figures
from vi_vae.app.fingerprint import fingerprint
from vi_vae.app.metrics import AISSummary, RunMetrics, TrainingSummary
from vi_vae.app.report import run_report
from vi_vae.app.run_directory import RunDirectory
from vi_vae.callbacks import Callback
from vi_vae.data import Dataset
from vi_vae.errors import InputError, TrainingError
from vi_vae.evaluation import AutoAISSettings, GapSettings
from vi_vae.execution import ExecutionOptions
from vi_vae.model import VAE
from vi_vae.train import EpochRecord, fit

__all__ = [
    "AISNotKeptWarning",
    "EvaluationFailed",
    "Run",
    "bdmc_run",
    "evaluate_run",
    "gaps_run",
    "load_run",
    "redraw_figures",
    "resume_run",
    "train_run",
]

logger = logging.getLogger(__name__)

#: ``(phase, done, total)``: the progress of an evaluation phase ("log p(x)", "AIS")
EvaluationCallback = Callable[[str, int, int], None]


StepCallback = Callable[[int, int, int, float], None]
EpochCallback = Callable[[EpochRecord], None]
EpochStartCallback = Callable[[int, int], None]


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
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    figures: bool = True,
    on_evaluation: EvaluationCallback | None = None,
    on_epoch_start: EpochStartCallback | None = None,
) -> Run:
    """Train, evaluate and write a new run directory; return the run.

    The evaluation is ``config.evaluation``'s importance sampling and, when
    ``config.ais.num_points`` is set, AIS beside it (``on_evaluation`` reports its
    progress). ``on_epoch_start``, ``on_step`` and ``on_epoch`` are ``fit``'s
    (:class:`~vi_vae.callbacks.Callback`).

    Raises:
        RunDirectoryNotEmpty: when ``run_dir`` holds files and ``overwrite`` is false.
        EvaluationFailed: when training finished but the evaluation or figures failed
            (the checkpoint, history and training metrics are saved).
    """
    directory = RunDirectory(run_dir)
    directory.check_creatable()
    callback = Callback(on_step, on_epoch, on_epoch_start)
    return _train(config.validated(), directory, False, overwrite, callback, figures, on_evaluation)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    device: str | None = None,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    figures: bool = True,
    on_evaluation: EvaluationCallback | None = None,
    on_epoch_start: EpochStartCallback | None = None,
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
    callback = Callback(on_step, on_epoch, on_epoch_start)
    return _train(config.validated(), directory, True, False, callback, figures, on_evaluation)


def _train(
    config: RunConfig,
    directory: RunDirectory,
    resume: bool,
    overwrite: bool,
    callback: Callback,
    figures: bool,
    on_evaluation: EvaluationCallback | None,
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
            directory.check_fingerprint(config, dataset.input_dim)
        kept = _figures_to_keep(directory, resume, config.training.epochs)
        directory.write_config(config, dataset.describe(), environment())
        return _fit_and_evaluate(
            Run(directory, config, dataset, vae, [], RunMetrics(figures=kept)),
            device,
            callback,
            figures,
            on_evaluation,
        )


def _figures_to_keep(directory: RunDirectory, resume: bool, epochs: int) -> tuple[str, ...]:
    """The figures still true after training: a resume that trains on deletes them."""
    if not resume:
        return ()
    if directory.completed_epochs() < epochs:
        directory.remove_figures()  # they show the weights training is about to change
        return ()
    return (directory.read_metrics() or RunMetrics()).figures


def _fit_and_evaluate(
    run: Run,
    device: torch.device,
    callback: Callback,
    figures: bool,
    on_evaluation: EvaluationCallback | None,
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
        callbacks=[callback],
        # a new run's directory was just created empty: only a resumed one holds a checkpoint
        sink=directory.checkpoint_sink({"fingerprint": fingerprint(config, dataset.input_dim)}),
    )
    summary = TrainingSummary.from_fit(result, time.perf_counter() - started)
    kept = run.metrics.figures  # the figures of unchanged weights (a finished run resumed)
    run.history, run.metrics = result.history, RunMetrics(training=summary, figures=kept)
    _write(run)  # the training summary is saved before anything else can fail
    try:
        run.metrics = evaluate(
            run.vae,
            run.dataset,
            config.evaluation,
            summary,
            kept,
            ais=config.ais,
            on_evaluation=on_evaluation,
        )
    except (InputError, RuntimeError, ValueError) as error:
        run.metrics = dataclasses.replace(run.metrics, evaluation_error=str(error))
        _write(run)
        raise EvaluationFailed(directory, "evaluation", error) from error
    _write(run)
    if figures and directory.writer:
        try:
            names = make_run_figures(run.vae, run.dataset, run.history, directory)
        except (RuntimeError, ValueError) as error:
            raise EvaluationFailed(directory, "figures", error) from error
        run.metrics = dataclasses.replace(run.metrics, figures=names)
        _write(run)
    return run


def _write(run: Run) -> None:
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
    trained = directory.load_trained(config, dataset.input_dim)
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


def evaluate_run(
    run_dir: str | Path,
    evaluation: EvaluationConfig | None = None,
    *,
    ais: AISConfig | None = None,
    method: str = "is",
    device: str | None = None,
    on_evaluation: EvaluationCallback | None = None,
    auto: AutoAISSettings | None = None,
) -> Run:
    """Re-evaluate a run on its test split; rewrite ``metrics.json`` and ``report.md``.

    Args:
        run_dir: the run directory.
        evaluation: the evaluation settings; default the library's (K = 5000 on every
            test point, bounds for k = 1, 5, 50), not the run's own.
        ais: AIS settings; with ``ais.num_points`` set, AIS runs on that many test
            points beside importance sampling (default: none).
        method: ``"is"``, or ``"ais"``: AIS on the evaluated points (``ais.num_points``
            defaults to them).
        device: where to evaluate (default: the run's device).
        on_evaluation: the evaluation's progress, ``(phase, done, total)``.
        auto: with ``method="ais"``, choose T by doubling
            (:func:`vi_vae.auto_annealed_importance_sampling`).
    """
    evaluation = evaluation or EvaluationConfig()
    ais = ais or AISConfig()
    check_choice("method", method, METHODS)
    if auto is not None and method != "ais":
        raise InputError(
            f"auto chooses AIS's number of steps; it needs method='ais', not {method!r}"
        )
    # refuse bad settings before loading anything
    RunConfig(evaluation=evaluation, ais=ais).validated()
    with _locked_run(run_dir, device) as run:
        return _evaluate(run, evaluation, ais, method, on_evaluation, auto)


def _evaluate(
    run: Run,
    evaluation: EvaluationConfig,
    ais: AISConfig,
    method: str,
    on_evaluation: EvaluationCallback | None,
    auto: AutoAISSettings | None = None,
) -> Run:
    if method == "ais" and ais.num_points is None:
        num_points = evaluation.num_points or len(run.dataset.test)
        ais = dataclasses.replace(ais, num_points=num_points)
    config = dataclasses.replace(run.config, evaluation=evaluation, ais=ais).validated()
    previous = run.metrics or RunMetrics()
    run.metrics = evaluate(
        run.vae,
        run.dataset,
        config.evaluation,
        previous.training,
        previous.figures,
        ais=ais,
        on_evaluation=on_evaluation,
        auto=auto,
        previous=previous.ais,
    )
    run.metrics = dataclasses.replace(run.metrics, bdmc=previous.bdmc, gaps=previous.gaps)
    if previous.ais is not None and run.metrics.ais is None:
        warnings.warn(AISNotKeptWarning(run.directory.path, previous.ais), stacklevel=3)
    _write(dataclasses.replace(run, config=config))
    return run


class AISNotKeptWarning(UserWarning):
    """A re-evaluation without AIS replaced metrics that held an AIS estimate.

    The AIS summary was computed beside the evaluation it replaces (its importance
    sampling, its gap); it is not carried over to a new one.
    """

    def __init__(self, run_dir: Path, ais: AISSummary) -> None:
        settings = ais.settings
        super().__init__(
            f"{run_dir}: metrics.json held an AIS estimate ({ais.estimate.log_likelihood:.2f} "
            f"on {ais.estimate.num_points} points, T = {settings.num_steps}, "
            f"C = {settings.num_chains}, L = {settings.leapfrog_steps}) made beside the "
            "evaluation this one replaces; it is not kept: evaluate with method 'ais' to "
            "estimate it again"
        )


def bdmc_run(
    run_dir: str | Path,
    num_points: int = DEFAULT_BDMC_NUM_POINTS,
    ais: AISConfig | None = None,
    *,
    execution: ExecutionOptions | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Run:
    """BDMC on data simulated from a run's model; record it in ``metrics.json`` and ``report.md``.

    A small gap between the lower and the upper bound is the evidence that AIS with
    ``ais``'s settings can be trusted on the run's real data. ``execution``: where
    (default: the run's device) and whether compiled (:func:`vi_vae.bdmc`).
    """
    execution = execution or ExecutionOptions()
    ais = ais or AISConfig()
    check_positive_int("num_points", num_points)
    device = None if execution.device is None else str(execution.device)
    return _record_in(
        run_dir,
        device,
        bdmc=lambda run: bdmc_summary(
            run.vae, num_points, ais, on_step=on_step, execution=execution
        ),
    )


def gaps_run(
    run_dir: str | Path,
    num_points: int = DEFAULT_GAPS_NUM_POINTS,
    settings: GapSettings | None = None,
    *,
    device: str | None = None,
    on_evaluation: EvaluationCallback | None = None,
) -> Run:
    """Where a run's bound is lost (:func:`vi_vae.inference_gaps`); record it in the run.

    On the first ``num_points`` test points; the result goes to ``metrics.json``
    (``gaps``) and ``report.md``.
    """
    settings = settings or GapSettings()
    check_positive_int("num_points", num_points)
    return _record_in(
        run_dir,
        device,
        gaps=lambda run: gaps_summary(
            run.vae, run.dataset, num_points, settings, on_evaluation=on_evaluation
        ),
    )


def redraw_figures(run_dir: str | Path) -> Run:
    """Draw a run's figures again; update ``metrics.json`` and ``report.md``."""
    return _record_in(
        run_dir,
        None,
        figures=lambda run: make_run_figures(run.vae, run.dataset, run.history, run.directory),
    )


@contextlib.contextmanager
def _locked_run(run_dir: str | Path, device: str | None = None) -> Iterator[Run]:
    """The run in ``run_dir`` (:func:`load_run`), while this process holds its lock."""
    directory = RunDirectory(run_dir)
    directory.open()
    with directory.locked():
        yield load_run(run_dir, device)


def _record_in(run_dir: str | Path, device: str | None, **measure: Callable[[Run], Any]) -> Run:
    """Measure the run in ``run_dir`` under its lock; write each measured field of its metrics."""
    with _locked_run(run_dir, device) as run:
        measured = {name: function(run) for name, function in measure.items()}
        run.metrics = dataclasses.replace(run.metrics or RunMetrics(), **measured)
        _write(run)
    return run
