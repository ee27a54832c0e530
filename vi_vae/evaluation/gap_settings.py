"""What :func:`~vi_vae.evaluation.gaps.inference_gaps` takes and returns, term by term.

Its settings, one frozen object checked once (:class:`GapSettings`), its result
(:class:`InferenceGaps`), and the type of each term of it (:class:`GapTerm`): per-point
values with their Monte Carlo standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from vi_vae._validation import check_bool, check_positive_float, check_positive_int
from vi_vae.errors import InputError
from vi_vae.evaluation.ais import AISEstimate
from vi_vae.evaluation.annealing import AISSettings
from vi_vae.evaluation.convergence import Convergence
from vi_vae.evaluation.estimates import _MeansOverPoints
from vi_vae.settings import Settings

__all__ = [
    "DEFAULT_GAP_PARTICLES",
    "DEFAULT_LOCAL_LEARNING_RATE",
    "DEFAULT_LOCAL_PARTICLES",
    "DEFAULT_LOCAL_STEPS",
    "DEFAULT_LOCAL_TOLERANCE",
    "GapSettings",
    "GapTerm",
    "InferenceGaps",
]

#: steps of the per-point optimization of q*; from the encoder's output the demo's
#: MNIST VAEs settled within a few hundred at the default learning rate
DEFAULT_LOCAL_STEPS = 500
#: Adam's learning rate for q*'s unconstrained parameters (a location, a log scale)
DEFAULT_LOCAL_LEARNING_RATE = 0.01
#: draws per point in each step of the local optimization
DEFAULT_LOCAL_PARTICLES = 10
#: K, draws per point in each ELBO estimate (its Monte Carlo error is ~ sd(log w)/√K)
DEFAULT_GAP_PARTICLES = 1000
#: nats per point the local ELBO may still rise over the last tenth of its steps:
#: a tenth of the precision (one decimal) to which the docs quote the gaps
DEFAULT_LOCAL_TOLERANCE = 0.01


@dataclass(frozen=True)
class GapSettings(Settings):
    """What :func:`inference_gaps` does, as data, checked once here.

    Its fields, and those of its ``ais``, are the keyword shortcuts of
    :func:`inference_gaps` (the rule: :mod:`vi_vae.settings`).

    Attributes:
        local_steps: Adam steps of the per-point optimization of q*.
        local_learning_rate: Adam's learning rate there.
        local_particles: draws per point in each of those steps.
        num_particles: K, draws per point in each ELBO estimate (of q_φ, q*, and the
            full-covariance q).
        local_tolerance: nats per point the local ELBO may rise over the last tenth of
            the steps (beyond 2 standard errors) and still count as converged.
        full_covariance: also optimize a full-covariance Gaussian q per point (every
            latent site must be a diagonal Gaussian).
        ais: the :class:`~vi_vae.evaluation.annealing.AISSettings` of log p(x).

    Raises:
        InputError: naming the first bad setting and its accepted values.
    """

    local_steps: int = DEFAULT_LOCAL_STEPS
    local_learning_rate: float = DEFAULT_LOCAL_LEARNING_RATE
    local_particles: int = DEFAULT_LOCAL_PARTICLES
    num_particles: int = DEFAULT_GAP_PARTICLES
    local_tolerance: float = DEFAULT_LOCAL_TOLERANCE
    full_covariance: bool = False
    ais: AISSettings = field(default_factory=AISSettings)

    def __post_init__(self) -> None:
        where = self._where
        check_positive_int(where + "local_steps", self.local_steps, minimum=2)
        check_positive_float(where + "local_learning_rate", self.local_learning_rate)
        check_positive_int(where + "local_particles", self.local_particles)
        check_positive_int(where + "num_particles", self.num_particles, minimum=2)
        check_positive_float(where + "local_tolerance", self.local_tolerance)
        check_bool(where + "full_covariance", self.full_covariance)
        if not isinstance(self.ais, AISSettings):
            raise InputError(f"{where}ais must be an AISSettings; got {self.ais!r}")


@dataclass(frozen=True)
class GapTerm(_MeansOverPoints):
    """One term of the decomposition per data point, with its Monte Carlo standard error.

    Its means over points and their errors are those of a bound
    (``mean``, ``standard_error``, ``mean_monte_carlo_standard_error``).

    Attributes:
        per_point: nats per point, ``[N]``.
        monte_carlo_standard_error: per point, ``[N]``.
    """

    per_point: Tensor
    monte_carlo_standard_error: Tensor

    def _per_point(self) -> Tensor:
        return self.per_point

    def minus(self, other: GapTerm) -> GapTerm:
        """``self − other`` per point; their draws are independent, so the errors add in squares."""
        error = self.monte_carlo_standard_error.pow(2) + other.monte_carlo_standard_error.pow(2)
        return GapTerm(self.per_point - other.per_point, error.sqrt())


@dataclass(frozen=True)
class InferenceGaps:
    """log p(x), the ELBOs of q_φ and q*, and the gaps between them, per data point.

    Attributes:
        settings: the :class:`GapSettings` of the run.
        log_likelihood: log p(x) by AIS, with its settings and convergence verdict.
        amortized_elbo: ELBO(q_φ), the guide as trained.
        local_elbo: ELBO(q*), the guide's family optimized per point.
        local_trajectory: q*'s ELBO estimate at each step, averaged over points, ``[steps]``.
        local_convergence: the local optimization's verdict (check
            ``"local-optimization"``, ``"local-points"``, and
            ``"full-covariance-optimization"``).
        substitutes: how q*'s family differs from the guide's (flows, several sites).
        full_covariance_elbo: ELBO of a full-covariance Gaussian q per point, or ``None``.
        full_covariance_trajectory: its trajectory, or ``None``.
    """

    settings: GapSettings
    log_likelihood: AISEstimate
    amortized_elbo: GapTerm
    local_elbo: GapTerm
    local_trajectory: Tensor
    local_convergence: Convergence
    substitutes: tuple[str, ...] = ()
    full_covariance_elbo: GapTerm | None = None
    full_covariance_trajectory: Tensor | None = None

    @property
    def log_likelihood_term(self) -> GapTerm:
        """The AIS estimate of log p(x) as a :class:`GapTerm`."""
        estimate = self.log_likelihood
        return GapTerm(estimate.log_likelihood, estimate.monte_carlo_standard_error)

    @property
    def approximation_gap(self) -> GapTerm:
        """The approximation gap log p(x) − ELBO(q*): what the family cannot do for the point."""
        return self.log_likelihood_term.minus(self.local_elbo)

    @property
    def amortization_gap(self) -> GapTerm:
        """The amortization gap ELBO(q*) − ELBO(q_φ): the price of one encoder for all points."""
        return self.local_elbo.minus(self.amortized_elbo)

    @property
    def total_gap(self) -> GapTerm:
        """The whole gap log p(x) − ELBO(q_φ), the sum of the two gaps."""
        return self.log_likelihood_term.minus(self.amortized_elbo)

    @property
    def full_covariance_gain(self) -> GapTerm | None:
        """ELBO(full-covariance q) − ELBO(q*), or ``None`` without ``full_covariance``.

        The part of the approximation gap that is the diagonal family's.
        """
        if self.full_covariance_elbo is None:
            return None
        return self.full_covariance_elbo.minus(self.local_elbo)

    @property
    def converged(self) -> bool:
        """Whether AIS and the local optimization both passed their checks."""
        return self.log_likelihood.convergence.converged and self.local_convergence.converged
