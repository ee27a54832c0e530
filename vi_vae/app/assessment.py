"""How good a trained run is: importance sampling and its bound table, AIS beside it, BDMC.

The functions here compute typed metrics from a model in memory and write
nothing; :mod:`vi_vae.app.runs` stores them in the run directory. Every draw is
seeded (:data:`EVALUATION_SEED`), so an evaluation repeated on the same run gives
the same numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vi_vae._validation import check_positive_int
from vi_vae.app.config import AISConfig, EvaluationConfig
from vi_vae.app.metrics import (
    AISSummary,
    BDMCSummary,
    BoundSummary,
    EstimateSummary,
    GapSummary,
    PointSubset,
    RunMetrics,
    TrainingSummary,
)
from vi_vae.data import SPLIT_SEED, Dataset
from vi_vae.errors import AISConvergenceWarning, LocalOptimizationWarning
from vi_vae.evaluation import (
    GapSettings,
    LogLikelihoodEstimate,
    annealed_importance_sampling,
    bdmc,
    importance_sampling,
    inference_gaps,
)
from vi_vae.evaluation.estimates import standard_error_over_points
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


def evaluation_points(dataset: Dataset, num_points: int | None) -> tuple[torch.Tensor, PointSubset]:
    """The evaluated test points: all, or the first ``num_points`` of the shuffled split."""
    available = len(dataset.test)
    if num_points is None or num_points >= available:
        return dataset.test, PointSubset(available, available, f"all {available} test points")
    description = (
        f"the first {num_points} of the {available} test points in the split's fixed shuffled "
        f"order (a uniformly random subset; split seed {SPLIT_SEED})"
    )
    return dataset.test[:num_points], PointSubset(num_points, available, description)


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
) -> RunMetrics:
    """Importance-sampled log p(x) and the bound table on the test points, as run metrics.

    With ``ais.num_points`` set, AIS runs on the first ``ais.num_points`` test points
    too, beside importance sampling on the same points (:func:`ais_summary`).
    """
    x, points = evaluation_points(dataset, evaluation.num_points)
    ks = [k for k in evaluation.bound_particles if k <= evaluation.num_particles]
    if len(ks) < len(evaluation.bound_particles):
        logger.info("bounds with k > %d particles are left out", evaluation.num_particles)
    estimate, table = importance_sampling(
        vae.model,
        vae.guide,
        x.to(_device(vae)),
        num_particles=evaluation.num_particles,
        bound_particles=ks,
        seed=EVALUATION_SEED,
        compile=evaluation.compile,
        on_points=_phase(on_evaluation, "log p(x)"),
    )
    metrics = RunMetrics(
        data_kind="discrete" if vae.likelihood.discrete else "continuous",
        points=points,
        log_marginal_likelihood=EstimateSummary.from_estimate(estimate),
        bounds=tuple(BoundSummary.from_bound(bound) for bound in table),
        training=training,
        figures=figures,
    )
    if ais is not None and ais.num_points is not None:
        on_step = _phase(on_evaluation, "AIS")
        summary = ais_summary(vae, dataset, ais, evaluation, estimate, on_step=on_step)
        metrics = dataclasses.replace(metrics, ais=summary)
    return metrics


def _phase(
    on_evaluation: Callable[[str, int, int], None] | None, phase: str
) -> StepCallback | None:
    """``on_evaluation`` for one phase, as the library's ``(done, total)`` callbacks take it."""
    return None if on_evaluation is None else functools.partial(on_evaluation, phase)


def ais_summary(
    vae: VAE,
    dataset: Dataset,
    ais: AISConfig,
    evaluation: EvaluationConfig,
    importance: LogLikelihoodEstimate | None = None,
    *,
    on_step: StepCallback | None = None,
) -> AISSummary:
    """AIS on the first ``ais.num_points`` test points, beside IS on the same points.

    ``importance`` is an IS estimate of the first test points; the points AIS uses are
    taken from it when it covers them, and estimated anew (with ``evaluation``'s K)
    otherwise.
    """
    x, _ = evaluation_points(dataset, ais.num_points)
    x = x.to(_device(vae))
    if importance is None or importance.num_points < len(x):
        importance, _ = importance_sampling(
            vae.model,
            vae.guide,
            x,
            num_particles=evaluation.num_particles,
            bound_particles=(),
            seed=EVALUATION_SEED,
            compile=evaluation.compile,
        )
    importance = importance.select(slice(0, len(x)))
    with warnings.catch_warnings():
        # the verdict is in the summary: the report and the command line state it
        warnings.simplefilter("ignore", AISConvergenceWarning)
        annealed = annealed_importance_sampling(
            vae.model,
            vae.guide,
            x,
            ais.settings,
            seed=EVALUATION_SEED,
            on_step=on_step,
            compile=evaluation.compile,
        ).checked_against(importance)
    gap = annealed.log_likelihood - importance.log_likelihood
    return AISSummary(
        estimate=EstimateSummary.from_estimate(annealed),
        importance_sampling=EstimateSummary.from_estimate(importance),
        gap=gap.mean().item(),
        gap_standard_error=standard_error_over_points(gap),
        max_gap=gap.max().item(),
        mean_acceptance_rate=annealed.mean_acceptance_rate,
        settings=annealed.settings,
        convergence=annealed.convergence,
    )


def bdmc_summary(
    vae: VAE,
    num_points: int,
    ais: AISConfig,
    *,
    on_step: StepCallback | None = None,
    compile: bool = False,
) -> BDMCSummary:
    """BDMC on ``num_points`` (z, x) pairs simulated from the model, with ``ais``'s settings."""
    shape = torch.zeros(num_points, vae.input_dim, device=_device(vae))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)  # the summary states it
        result = bdmc(
            vae.model,
            vae.guide,
            shape,
            ais.settings,
            seed=EVALUATION_SEED,
            on_step=on_step,
            compile=compile,
        )
    return BDMCSummary(
        num_points=num_points,
        lower=EstimateSummary.from_estimate(result.lower),
        upper=EstimateSummary.from_estimate(result.upper),
        mean_gap=result.mean_gap,
        mean_gap_standard_error=result.mean_gap_standard_error,
        max_gap=result.gap.max().item(),
        settings=result.lower.settings,
        convergence=result.convergence,
    )


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
    with warnings.catch_warnings():
        # the verdicts are in the summary: the report and the command line state them
        warnings.simplefilter("ignore", AISConvergenceWarning)
        warnings.simplefilter("ignore", LocalOptimizationWarning)
        gaps = inference_gaps(
            vae.model,
            vae.guide,
            x.to(_device(vae)),
            settings,
            seed=EVALUATION_SEED,
            on_progress=on_evaluation,
        )
    return GapSummary.from_gaps(gaps)
