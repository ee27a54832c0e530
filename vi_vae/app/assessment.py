"""How good a trained run is: importance sampling and its bound table, AIS beside it, BDMC.

The functions here compute typed metrics from a model in memory and write
nothing; :mod:`vi_vae.app.runs` stores them in the run directory. Every draw is
seeded (:data:`EVALUATION_SEED`), so an evaluation repeated on the same run gives
the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.app.config import AISConfig, EvaluationConfig
from vi_vae.app.metrics import (
    AISSummary,
    AutoAISSummary,
    BDMCSummary,
    BoundSummary,
    EstimateSummary,
    GapSummary,
    PointSubset,
    RunMetrics,
    TrainingSummary,
)
from vi_vae.data import SPLIT_SEED, Dataset
from vi_vae.errors import ConvergenceWarning, LocalOptimizationWarning
from vi_vae.evaluation import (
    AISEstimate,
    AutoAISSettings,
    BDMCResult,
    Bound,
    GapSettings,
    LogLikelihoodEstimate,
    annealed_importance_sampling,
    auto_annealed_importance_sampling,
    bdmc,
    importance_sampling,
    inference_gaps,
)
from vi_vae.evaluation.annealing import phase_callback
from vi_vae.evaluation.auto_ais import gradient_evaluations
from vi_vae.evaluation.estimates import standard_error_over_points
from vi_vae.execution import ExecutionOptions
from vi_vae.model import VAE

__all__ = [
    "DEFAULT_BDMC_NUM_POINTS",
    "DEFAULT_GAPS_NUM_POINTS",
    "EVALUATION_SEED",
    "GapRequest",
    "METHODS",
    "ais_summary",
    "bdmc_summary",
    "evaluate",
    "evaluated_bound_particles",
    "evaluation_points",
    "gaps_summary",
]

logger = logging.getLogger(__name__)

#: seed of the evaluation's draws (IS, AIS, BDMC's simulation), fixed so reruns agree
EVALUATION_SEED = 0
#: (z, x) pairs BDMC simulates by default, as in the docs experiment's full settings
DEFAULT_BDMC_NUM_POINTS = 100
#: test points of ``vi-vae gaps`` by default: AIS and a local optimization per point
#: cost about a second each for the demo's MNIST VAEs on one CPU core
DEFAULT_GAPS_NUM_POINTS = 20
#: the estimators of log p(x) an evaluation can use: importance sampling alone, or AIS too
METHODS = ("is", "ais")

StepCallback = Callable[[int, int], None]
#: what a seeded run returns (an AIS estimate, a BDMC result, ...)
T = TypeVar("T")


def evaluation_points(dataset: Dataset, num_points: int | None) -> tuple[torch.Tensor, PointSubset]:
    """The evaluated test points: all, or the first ``num_points`` of the shuffled split."""
    available = len(dataset.test)
    if num_points is None or num_points >= available:
        asked = "" if num_points in (None, available) else f" ({num_points} were asked for)"
        return dataset.test, PointSubset(
            available, available, f"all {available} test points{asked}"
        )
    description = (
        f"the first {num_points} of the {available} test points in the split's fixed shuffled "
        f"order (a uniformly random subset; split seed {SPLIT_SEED})"
    )
    return dataset.test[:num_points], PointSubset(num_points, available, description)


def evaluated_bound_particles(evaluation: EvaluationConfig) -> tuple[int, ...]:
    """The k of the bound table an evaluation computes: those of ``bound_particles`` ≤ K."""
    return tuple(k for k in evaluation.bound_particles if k <= evaluation.num_particles)


def _device(vae: VAE) -> torch.device:
    return next(vae.parameters()).device


def evaluate(
    vae: VAE,
    dataset: Dataset,
    evaluation: EvaluationConfig,
    training: TrainingSummary | None = None,
    figures: tuple[str, ...] = (),
    *,
    ais: AISConfig | None = None,
    on_evaluation: Callable[[str, int, int], None] | None = None,
    auto: AutoAISSettings | None = None,
    previous: AISSummary | None = None,
) -> RunMetrics:
    """Importance-sampled log p(x) and the bound table on the test points, as run metrics.

    With ``ais.num_points`` set, AIS runs on the first ``ais.num_points`` test points
    too, beside importance sampling on the same points (:func:`ais_summary`); with
    ``auto``, its T is chosen by doubling, and ``previous``,
    the run's earlier AIS summary, is kept beside it when it had fixed settings.
    """
    x, points = evaluation_points(dataset, evaluation.num_points)
    ks = evaluated_bound_particles(evaluation)
    if len(ks) < len(evaluation.bound_particles):
        logger.info("bounds with k > %d particles are left out", evaluation.num_particles)
    estimate, table = _importance(vae, x, evaluation, ks, phase_callback(on_evaluation, "log p(x)"))
    metrics = RunMetrics(
        data_kind="discrete" if vae.likelihood.discrete else "continuous",
        points=points,
        log_marginal_likelihood=EstimateSummary.of(estimate, per_point=True),
        bounds=tuple(BoundSummary.of(bound) for bound in table),
        training=training,
        figures=figures,
    )
    if ais is not None and ais.num_points is not None:
        summary = ais_summary(
            vae, dataset, ais, evaluation, estimate, auto, previous, on_evaluation=on_evaluation
        )
        metrics = dataclasses.replace(metrics, ais=summary)
    return metrics


def ais_summary(
    vae: VAE,
    dataset: Dataset,
    ais: AISConfig,
    evaluation: EvaluationConfig,
    importance: LogLikelihoodEstimate | None = None,
    auto: AutoAISSettings | None = None,
    previous: AISSummary | None = None,
    *,
    on_evaluation: Callable[[str, int, int], None] | None = None,
) -> AISSummary:
    """AIS on the first ``ais.num_points`` test points, beside IS on the same points.

    ``importance`` is an IS estimate of the first test points; the points AIS uses are
    taken from it when it covers them, and estimated anew (with ``evaluation``'s K)
    otherwise. With ``auto``, T is doubled until AIS's verdict holds
    (:func:`~vi_vae.evaluation.auto_ais.auto_annealed_importance_sampling`, ``ais``'s
    settings but T), each round a phase of ``on_evaluation``, and ``previous`` (an earlier
    AIS summary of the run) is kept beside it when it ran with fixed settings on as many
    points.
    """
    x, importance = _ais_points(vae, dataset, ais, evaluation, importance)
    execution = evaluation.execution
    if auto is None:
        started = time.process_time()
        with _verdict_in_summary():
            run = _seeded(
                annealed_importance_sampling, vae, x, ais.settings,
                on_step=phase_callback(on_evaluation, "AIS"), execution=execution,
            )  # fmt: skip
            annealed = run.checked_against(importance)
        cpu_seconds = time.process_time() - started
        cost = gradient_evaluations(len(x), annealed.settings)
        return _ais_summary_of(
            annealed, importance, cpu_seconds=cpu_seconds, gradient_evaluations=cost
        )
    with _verdict_in_summary():
        result = _seeded(
            auto_annealed_importance_sampling, vae, x, ais.settings, auto,
            importance=importance, on_step=on_evaluation, execution=execution,
        )  # fmt: skip
    fixed = previous.auto.fixed if previous is not None and previous.auto else previous
    if fixed is not None and fixed.estimate.num_points != len(x):
        fixed = None
    bdmc_of_t = None if result.bdmc is None else _bdmc_summary_of(result.bdmc)
    summary = AutoAISSummary(settings=auto, rounds=result.rounds, bdmc=bdmc_of_t, fixed=fixed)
    return _ais_summary_of(
        result.estimate,
        importance,
        cpu_seconds=result.cpu_seconds,
        gradient_evaluations=result.gradient_evaluations,
        auto=summary,
    )


def _ais_points(
    vae: VAE,
    dataset: Dataset,
    ais: AISConfig,
    evaluation: EvaluationConfig,
    importance: LogLikelihoodEstimate | None,
) -> tuple[torch.Tensor, LogLikelihoodEstimate]:
    """The first ``ais.num_points`` test points, and importance sampling of exactly them."""
    x, _ = evaluation_points(dataset, ais.num_points)
    x = x.to(_device(vae))
    if importance is None or importance.num_points < len(x):
        importance, _ = _importance(vae, x, evaluation, ())
    return x, importance.select(slice(0, len(x))).judged()


def _importance(
    vae: VAE,
    x: Tensor,
    evaluation: EvaluationConfig,
    bound_particles: Sequence[int],
    on_points: StepCallback | None = None,
) -> tuple[LogLikelihoodEstimate, list[Bound]]:
    """Importance sampling of ``x`` with ``evaluation``'s K (its k: ``bound_particles``)."""
    with _verdict_in_summary():
        return importance_sampling(
            vae.model,
            vae.guide,
            x.to(_device(vae)),
            settings=evaluation,
            bound_particles=bound_particles,
            seed=EVALUATION_SEED,
            execution=evaluation.execution,
            on_points=on_points,
        )


def _ais_summary_of(
    annealed: AISEstimate, importance: LogLikelihoodEstimate, **cost: Any
) -> AISSummary:
    """The summary of an AIS estimate checked against importance sampling of its points."""
    gap = annealed.log_likelihood - importance.log_likelihood
    return AISSummary(
        estimate=EstimateSummary.of(annealed, per_point=True),
        importance_sampling=EstimateSummary.of(importance),
        gap=gap.mean().item(),
        gap_standard_error=standard_error_over_points(gap),
        max_gap=gap.max().item(),
        mean_acceptance_rate=annealed.mean_acceptance_rate,
        settings=annealed.settings,
        convergence=annealed.convergence,
        **cost,
    )


def bdmc_summary(
    vae: VAE,
    num_points: int,
    ais: AISConfig,
    *,
    on_step: StepCallback | None = None,
    execution: ExecutionOptions | None = None,
) -> BDMCSummary:
    """BDMC on ``num_points`` (z, x) pairs simulated from the model, with ``ais``'s settings."""
    shape = torch.zeros(num_points, vae.input_dim, device=_device(vae))
    with _verdict_in_summary():
        result = _seeded(bdmc, vae, shape, ais.settings, on_step=on_step, execution=execution)
    return _bdmc_summary_of(result)


def _bdmc_summary_of(result: BDMCResult) -> BDMCSummary:
    return BDMCSummary(
        num_points=result.x.shape[0],
        lower=EstimateSummary.of(result.lower),
        upper=EstimateSummary.of(result.upper),
        mean_gap=result.mean_gap,
        mean_gap_standard_error=result.mean_gap_standard_error,
        max_gap=result.gap.max().item(),
        settings=result.lower.settings,
        convergence=result.convergence,
    )


def _seeded(run: Callable[..., T], vae: VAE, x: Tensor, *settings: Any, **options: Any) -> T:
    """``run`` (AIS, auto AIS, BDMC, the gaps) of ``vae`` on ``x`` with the evaluation seed."""
    return run(vae.model, vae.guide, x.to(_device(vae)), *settings, seed=EVALUATION_SEED, **options)


@contextlib.contextmanager
def _verdict_in_summary() -> Iterator[None]:
    """No :class:`~vi_vae.ConvergenceWarning` or :class:`~vi_vae.LocalOptimizationWarning`.

    The summary carries the verdicts; the report and the command line state them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", LocalOptimizationWarning)
        yield


@dataclass(frozen=True)
class GapRequest:
    """Where the bound is lost, asked of every run of a comparison.

    Attributes:
        num_points: the first test points it is measured on.
        settings: the :class:`~vi_vae.evaluation.GapSettings`.
    """

    num_points: int = DEFAULT_GAPS_NUM_POINTS
    settings: GapSettings = field(default_factory=GapSettings)

    def __post_init__(self) -> None:
        check_positive_int("gaps.num_points", self.num_points)


def gaps_summary(
    vae: VAE,
    dataset: Dataset,
    num_points: int,
    settings: GapSettings,
    *,
    on_evaluation: Callable[[str, int, int], None] | None = None,
) -> GapSummary:
    """Where the bound is lost (:func:`vi_vae.inference_gaps`) on the first ``num_points``."""
    x, _ = evaluation_points(dataset, num_points)
    with _verdict_in_summary():
        gaps = _seeded(inference_gaps, vae, x, settings, on_progress=on_evaluation)
    return GapSummary.from_gaps(gaps)
