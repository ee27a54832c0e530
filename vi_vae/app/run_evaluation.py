"""A stored run measured again: re-evaluated, BDMC, the inference gaps, its figures redrawn.

Each loads the run from its directory (:func:`~vi_vae.app.runs.load_run`) while this
process holds the directory's lock, measures it, and writes the measured field of its
``metrics.json`` and its ``report.md`` back; the other fields are kept as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.app.assessment import (
    DEFAULT_BDMC_NUM_POINTS,
    DEFAULT_GAPS_NUM_POINTS,
    METHODS,
    bdmc_summary,
    evaluate,
    gaps_summary,
)
from vi_vae.app.config import AISConfig, EvaluationConfig, RunConfig
from vi_vae.app.figures import make_run_figures
from vi_vae.app.metrics import AISSummary, RunMetrics
from vi_vae.app.run_directory import RunDirectory
from vi_vae.app.runs import EvaluationCallback, Run, load_run, write_run
from vi_vae.errors import InputError
from vi_vae.evaluation import AutoAISSettings, GapSettings
from vi_vae.execution import ExecutionOptions

__all__ = ["AISNotKeptWarning", "bdmc_run", "evaluate_run", "gaps_run", "redraw_figures"]


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
    write_run(dataclasses.replace(run, config=config))
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
        write_run(run)
    return run
