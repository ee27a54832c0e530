"""Typed results of a run: what ``metrics.json`` holds, field by field.

The library's estimates carry per-point tensors; a run records their
summaries. Each summary is a frozen dataclass written and read by the one codec
(:mod:`vi_vae.app.schema`), so reports, comparisons and the command line read
attributes, never string keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vi_vae.app.summaries import BoundSummary, EstimateSummary, Summary
from vi_vae.errors import InputError
from vi_vae.evaluation import (
    AISSettings,
    Convergence,
    GapSettings,
    InferenceGaps,
)
from vi_vae.evaluation.auto_ais_settings import AISRound, AutoAISSettings
from vi_vae.train import FitResult

__all__ = [
    "AISSummary",
    "AutoAISSummary",
    "BDMCSummary",
    "BoundSummary",
    "BoundTable",
    "EstimateSummary",
    "GapSummary",
    "GapTermSummary",
    "PointSubset",
    "RunMetrics",
    "TrainingSummary",
]


@dataclass(frozen=True)
class TrainingSummary:
    """How training went."""

    epochs_completed: int
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int
    seconds_this_session: float
    seconds_per_epoch: float
    final_train_loss: float

    @classmethod
    def from_fit(cls, result: FitResult, seconds: float) -> TrainingSummary:
        """Summarize :func:`vi_vae.fit`'s result."""
        history = result.history
        return cls(
            epochs_completed=history[-1].epoch if history else 0,
            best_epoch=result.best_epoch,
            stopped_early=result.stopped_early,
            resumed_from_epoch=result.resumed_from_epoch,
            seconds_this_session=seconds,
            seconds_per_epoch=(
                sum(record.seconds for record in history) / len(history) if history else math.nan
            ),
            final_train_loss=history[-1].train_loss if history else math.nan,
        )


@dataclass(frozen=True)
class PointSubset:
    """Which test points an evaluation used.

    Attributes:
        num_points: how many were used.
        num_available: how many the split holds.
        description: in words, for reports.
    """

    num_points: int
    num_available: int
    description: str


def _nest_settings(value: Any) -> Any:
    """metrics.json before 0.3 held the AIS settings flat in the summary: nest them."""
    if not isinstance(value, dict) or "settings" in value:
        return value
    names = [name for name in AISSettings.names() if name in value]
    settings = {name: value[name] for name in names}
    return {
        **{key: item for key, item in value.items() if key not in names},
        "settings": settings,
    }


class _Annealed:
    """What the summaries of AIS and of BDMC share: the verdict, and their older stored form."""

    convergence: Convergence | None

    @property
    def converged(self) -> bool:
        """Whether the run passed every convergence check (``False`` if unchecked)."""
        return self.convergence is not None and self.convergence.converged

    upgrade_json = staticmethod(_nest_settings)


@dataclass(frozen=True)
class AISSummary(_Annealed):
    """AIS log p(x) on a set of points, beside importance sampling on the same points.

    Attributes:
        estimate: the AIS estimate (``method="ais"``; ``num_particles`` is the chains).
        importance_sampling: the importance-sampling estimate of the same points.
        gap: mean over the points of AIS − IS (nats per point; positive when IS is
            the looser lower bound).
        gap_standard_error: its standard error over points (the pairs share points).
        max_gap: the largest AIS − IS of a single point.
        mean_acceptance_rate: HMC acceptance, averaged over points.
        settings: the AIS settings the estimate ran with (read from the result).
        convergence: the result's verdict, the importance-sampling check included
            (``None``: stored by a version that did not check).
        cpu_seconds: process time of the AIS run (of every round with ``auto``);
            ``None``: stored by a version that did not measure it.
        gradient_evaluations: points × chains × T × L of the run (summed over rounds
            with ``auto``: :func:`vi_vae.evaluation.auto_ais.gradient_evaluations`).
        auto: how T was chosen, when it was (``vi-vae evaluate --method ais --auto``).
    """

    estimate: EstimateSummary
    importance_sampling: EstimateSummary
    gap: float
    gap_standard_error: float
    max_gap: float
    mean_acceptance_rate: float
    settings: AISSettings
    convergence: Convergence | None = None
    cpu_seconds: float | None = None
    gradient_evaluations: int | None = None
    auto: AutoAISSummary | None = None


@dataclass(frozen=True)
class BDMCSummary(_Annealed):
    """BDMC on data simulated from the model: AIS's lower and upper bounds and their gap.

    Attributes:
        num_points: simulated (z, x) pairs.
        lower: forward AIS, a stochastic lower bound on log p(x) of the simulated data.
        upper: reverse AIS from the simulating z, a stochastic upper bound.
        mean_gap: mean over points of upper − lower (nats per point).
        mean_gap_standard_error: its Monte Carlo standard error.
        max_gap: the largest gap of a single point.
        settings: the AIS settings of both runs (read from the result).
        convergence: the result's verdict, the gap's check included (``None``: stored
            by a version that did not check).
    """

    num_points: int
    lower: EstimateSummary
    upper: EstimateSummary
    mean_gap: float
    mean_gap_standard_error: float
    max_gap: float
    settings: AISSettings
    convergence: Convergence | None = None


@dataclass(frozen=True)
class AutoAISSummary:
    """How :func:`~vi_vae.evaluation.auto_ais.auto_annealed_importance_sampling` chose T.

    Attributes:
        settings: its :class:`~vi_vae.AutoAISSettings`.
        rounds: every round (T, mean, Monte Carlo SE, verdict, CPU seconds, gradient
            evaluations, BDMC's gap where it ran), in order.
        bdmc: the final round's BDMC check (``None``: it did not run).
        fixed: the AIS run with fixed settings on the same points that ``metrics.json``
            held before, kept beside it for comparison (``None``: there was none).
    """

    settings: AutoAISSettings
    rounds: tuple[AISRound, ...]
    bdmc: BDMCSummary | None = None
    fixed: AISSummary | None = None

    @property
    def num_steps(self) -> tuple[int, ...]:
        """T of every round."""
        return tuple(r.num_steps for r in self.rounds)


#: nats per point a stored gap may differ from the difference of its stored terms: a
#: mean of differences against a difference of means, in float64 (~1e-13 at MNIST's -90)
_ROUNDING = 1e-9


@dataclass(frozen=True)
class GapTermSummary(Summary):
    """One term of the inference-gap decomposition over a set of points.

    Attributes:
        mean: the mean over the points (nats per point).
        standard_error: its standard error over points.
        monte_carlo_standard_error: its Monte Carlo standard error for these points.
    """

    mean: float
    standard_error: float
    monte_carlo_standard_error: float


@dataclass(frozen=True)
class GapSummary:
    """Where the bound is lost (:func:`vi_vae.inference_gaps`) on the first test points.

    Attributes:
        num_points: the points (the first of the shuffled test split).
        log_likelihood: log p(x) by AIS.
        amortized_elbo: ELBO(q_φ), the guide as trained.
        local_elbo: ELBO(q*), the guide's family optimized per point.
        approximation_gap: log p(x) − ELBO(q*).
        amortization_gap: ELBO(q*) − ELBO(q_φ).
        settings: the settings the result ran with, AIS's among them.
        ais_convergence: AIS's verdict.
        local_convergence: the local optimization's verdict.
        local_trajectory: q*'s mean ELBO at each optimization step.
        substitutes: how q*'s family differs from the guide's.
        full_covariance_elbo: ELBO of a full-covariance Gaussian q per point, or ``None``.
    """

    num_points: int
    log_likelihood: GapTermSummary
    amortized_elbo: GapTermSummary
    local_elbo: GapTermSummary
    approximation_gap: GapTermSummary
    amortization_gap: GapTermSummary
    settings: GapSettings
    ais_convergence: Convergence
    local_convergence: Convergence
    local_trajectory: tuple[float, ...] = ()
    substitutes: tuple[str, ...] = ()
    full_covariance_elbo: GapTermSummary | None = None

    def __post_init__(self) -> None:
        """Refuse gaps that are not the differences of the stored terms (an edited file)."""
        for name, first, second in (
            ("approximation_gap", self.log_likelihood, self.local_elbo),
            ("amortization_gap", self.local_elbo, self.amortized_elbo),
        ):
            stored, expected = getattr(self, name).mean, first.mean - second.mean
            # the stored gap is a mean of differences: equal to float rounding, or both NaN
            if not (stored == expected or math.isclose(stored, expected, abs_tol=_ROUNDING)):
                if not (math.isnan(stored) and math.isnan(expected)):
                    raise InputError(
                        f"gaps.{name}.mean is {stored!r}, not the difference of its terms "
                        f"{expected!r}: the record was edited; measure the gaps again"
                    )

    @classmethod
    def from_gaps(cls, gaps: InferenceGaps) -> GapSummary:
        """Summarize a library :class:`~vi_vae.evaluation.InferenceGaps`."""
        full = gaps.full_covariance_elbo
        return cls(
            num_points=gaps.local_elbo.per_point.numel(),
            log_likelihood=GapTermSummary.of(gaps.log_likelihood_term),
            amortized_elbo=GapTermSummary.of(gaps.amortized_elbo),
            local_elbo=GapTermSummary.of(gaps.local_elbo),
            approximation_gap=GapTermSummary.of(gaps.approximation_gap),
            amortization_gap=GapTermSummary.of(gaps.amortization_gap),
            settings=gaps.settings,
            ais_convergence=gaps.log_likelihood.convergence,
            local_convergence=gaps.local_convergence,
            local_trajectory=tuple(gaps.local_trajectory.tolist()),
            substitutes=gaps.substitutes,
            full_covariance_elbo=None if full is None else GapTermSummary.of(full),
        )

    @property
    def converged(self) -> bool:
        """Whether AIS and the local optimization both passed their checks."""
        return self.ais_convergence.converged and self.local_convergence.converged


class BoundTable:
    """A record holding a bound table, ``bounds``."""

    bounds: tuple[BoundSummary, ...]

    def bound(self, num_particles: int) -> BoundSummary | None:
        """The bound with k = ``num_particles``, if the table has it."""
        return next((b for b in self.bounds if b.num_particles == num_particles), None)


@dataclass(frozen=True)
class RunMetrics(BoundTable):
    """Everything ``metrics.json`` records about a run.

    Attributes:
        split: the evaluated split.
        data_kind: ``"discrete"`` (log p(x) is a log probability, ≤ 0) or
            ``"continuous"`` (a log density, which can be positive).
        points: the evaluated points.
        log_marginal_likelihood: the importance-sampling estimate.
        bounds: the ELBO/IWAE-k table.
        training: the training summary (``None`` before training finished).
        figures: file names of the figures written.
        evaluation_error: why the evaluation failed after training, or ``None``.
        ais: AIS beside importance sampling on a subset of the points, or ``None``.
        bdmc: BDMC's bounds on simulated data (``vi-vae bdmc``), or ``None``.
        gaps: where the bound is lost (``vi-vae gaps``), or ``None``.
    """

    split: str = "test"
    data_kind: str = "discrete"
    points: PointSubset | None = None
    log_marginal_likelihood: EstimateSummary | None = None
    bounds: tuple[BoundSummary, ...] = ()
    training: TrainingSummary | None = None
    figures: tuple[str, ...] = ()
    evaluation_error: str | None = field(default=None)
    ais: AISSummary | None = None
    bdmc: BDMCSummary | None = None
    gaps: GapSummary | None = None
