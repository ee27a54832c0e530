"""What :func:`~vi_vae.evaluation.auto_ais.auto_annealed_importance_sampling` takes and returns.

Its settings, one frozen object checked once (:class:`AutoAISSettings`), each round of
the doubling of T (:class:`AISRound`) and the result (:class:`AutoAISResult`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vi_vae._validation import check_positive_int
from vi_vae.errors import InputError
from vi_vae.evaluation.ais import AISEstimate
from vi_vae.evaluation.annealing import MAX_SIZES
from vi_vae.evaluation.bdmc import BDMCResult
from vi_vae.evaluation.convergence import Convergence

__all__ = [
    "DEFAULT_AUTO_BDMC_NUM_POINTS",
    "DEFAULT_MAX_NUM_STEPS",
    "DEFAULT_START_NUM_STEPS",
    "AISRound",
    "AutoAISResult",
    "AutoAISSettings",
]

#: T of the first round: the step-size adaptation needs ~35–65 transitions to find its
#: scale (:data:`~vi_vae.evaluation.hmc.STEP_SIZE_ADAPTATION_RATE`), so a shorter
#: first round fails the acceptance check whatever the model
DEFAULT_START_NUM_STEPS = 64
#: the largest T the doubling tries: the largest T of the docs' experiments
#: (docs/log-likelihood.md), 10× the fixed default
DEFAULT_MAX_NUM_STEPS = 10_000
#: simulated points of the BDMC check: "a few"; its gap's standard error is the spread
#: of the per-point gaps over √4, and the check costs 2 × 4 points' annealing at T
DEFAULT_AUTO_BDMC_NUM_POINTS = 4


@dataclass(frozen=True)
class AutoAISSettings:
    """How :func:`~vi_vae.evaluation.auto_ais.auto_annealed_importance_sampling` chooses T.

    Attributes:
        start_num_steps: T of the first round, at least 2 (T = 1 has no half schedule).
        max_num_steps: the largest T; the rounds double T up to it, and a run that has
            not converged there stops with a non-converged verdict and a warning.
        bdmc_num_points: points simulated from the model for the BDMC check (at most
            the points estimated; 0: no BDMC check, the verdict lacks its gap).

    Raises:
        InputError: naming the first bad setting and its accepted values.
    """

    start_num_steps: int = DEFAULT_START_NUM_STEPS
    max_num_steps: int = DEFAULT_MAX_NUM_STEPS
    bdmc_num_points: int = DEFAULT_AUTO_BDMC_NUM_POINTS

    def __post_init__(self) -> None:
        check_positive_int("start_num_steps", self.start_num_steps, minimum=2)
        check_positive_int("max_num_steps", self.max_num_steps, minimum=2)
        largest = MAX_SIZES["num_steps"]
        if not self.start_num_steps <= self.max_num_steps <= largest:
            raise InputError(
                f"max_num_steps must be between start_num_steps ({self.start_num_steps:,}) "
                f"and {largest:,}; got {self.max_num_steps:,}"
            )
        check_positive_int("bdmc_num_points", self.bdmc_num_points, minimum=0)

    def num_steps(self) -> tuple[int, ...]:
        """T of every possible round: T_0, 2 T_0, …, the last capped at ``max_num_steps``."""
        steps = [self.start_num_steps]
        while steps[-1] < self.max_num_steps:
            steps.append(min(2 * steps[-1], self.max_num_steps))
        return tuple(steps)


@dataclass(frozen=True)
class AISRound:
    """One round: AIS at one T (and BDMC at that T, when its AIS checks passed).

    Attributes:
        num_steps: T.
        mean: the AIS estimate's mean over points, nats per point.
        monte_carlo_standard_error: its Monte Carlo standard error (fixed points).
        convergence: the round's verdict (AIS's checks, the previous round's, the
            importance-sampling one when given, BDMC's gap when it ran).
        cpu_seconds: process time of the round (AIS and BDMC).
        gradient_evaluations: of the round
            (:func:`~vi_vae.evaluation.auto_ais.gradient_evaluations`).
        bdmc_mean_gap: BDMC's mean gap at this T (``None``: BDMC did not run).
        bdmc_gap_standard_error: its standard error (``None``: BDMC did not run).
    """

    num_steps: int
    mean: float
    monte_carlo_standard_error: float
    convergence: Convergence
    cpu_seconds: float
    gradient_evaluations: int
    bdmc_mean_gap: float | None = None
    bdmc_gap_standard_error: float | None = None


@dataclass(frozen=True)
class AutoAISResult:
    """The last round's estimate, the trail of rounds, and the BDMC check.

    Attributes:
        estimate: the final :class:`~vi_vae.evaluation.ais.AISEstimate`, its
            ``convergence`` the full verdict.
        rounds: every round, in order.
        bdmc: the final round's BDMC run (``None``: it did not run).
        settings: the :class:`AutoAISSettings` of the run.
    """

    estimate: AISEstimate
    rounds: tuple[AISRound, ...]
    bdmc: BDMCResult | None
    settings: AutoAISSettings

    @property
    def converged(self) -> bool:
        """Whether the final verdict holds."""
        return self.estimate.convergence.converged

    @property
    def num_steps(self) -> int:
        """The final T."""
        return self.estimate.settings.num_steps

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of every round, summed."""
        return sum(r.cpu_seconds for r in self.rounds)

    @property
    def gradient_evaluations(self) -> int:
        """Gradient evaluations of every round, summed."""
        return sum(r.gradient_evaluations for r in self.rounds)
