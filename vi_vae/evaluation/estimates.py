r"""What an estimate of log p(x) is: per-point values, their errors, and how far to trust them.

Every estimator of log p(x) in vi_vae (importance sampling from the guide, AIS)
ends with the same reduction: ``num_particles`` log weights per data point,
``log_weights: [num_particles, N]``, whose mean weight estimates p(x_n) without
bias. :func:`summarize_log_weights` turns them into a :class:`LogLikelihoodEstimate`:

.. math::
    \log \hat p(x_n) = \log \frac{1}{K} \sum_{k=1}^K w_{k,n}, \qquad
    \mathrm{ESS}_n = \frac{(\sum_k w_{k,n})^2}{\sum_k w_{k,n}^2}, \qquad
    \mathrm{se}_n = \sqrt{1/\mathrm{ESS}_n - 1/K},

the last being the delta-method Monte Carlo standard error of
:math:`\log \hat p(x_n)`, and the Pareto k̂ of each point's weights (Vehtari et al.):
above 0.7 the estimate of that point cannot be trusted.

References:
    [1] Pareto Smoothed Importance Sampling, Vehtari, Simpson, Gelman, Yao & Gabry, 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MIN_PARTICLES_FOR_PARETO_K",
    "standard_error_over_points",
    "PARETO_K_THRESHOLD",
    "Bound",
    "LogLikelihoodEstimate",
    "concatenate_bounds",
    "concatenate_estimates",
    "pareto_k",
    "summarize_log_weights",
]

#: Vehtari et al.: above k̂ = 0.7 the importance-sampling estimate is unreliable.
PARETO_K_THRESHOLD = 0.7
#: ArviZ fits the generalized Pareto distribution to the largest ⌈min(K/5, 3√K)⌉
#: weights and needs more than 4 of them, so K ≥ 21.
MIN_PARTICLES_FOR_PARETO_K = 21
#: log weights that differ by less than this (nats) are equal: float rounding of an
#: exact posterior's weights is ~1e-12 nats, far below any real spread
EQUAL_WEIGHTS_TOLERANCE = 1e-8


def standard_error_over_points(values: Tensor) -> float:
    """Standard error of a mean over points: standard deviation / √N (0 for one point)."""
    n = values.numel()
    return values.std().item() / math.sqrt(n) if n > 1 else 0.0


def _mean_monte_carlo_standard_error(errors: Tensor) -> float:
    """Monte Carlo standard error of a mean over fixed points: √Σ se² / N."""
    return errors.pow(2).sum().sqrt().item() / errors.numel()


@dataclass
class LogLikelihoodEstimate:
    """log p(x) per data point, with its Monte Carlo errors and reliability diagnostics.

    Attributes:
        log_likelihood: log p̂(x_n), ``[N]`` (nats; a log probability for discrete
            data, a log density for continuous data).
        monte_carlo_standard_error: √(1/ESS − 1/K) per point, ``[N]``.
        effective_sample_size: (Σ_k w_k)² / Σ_k w_k², ``[N]``, between 1 and K.
        pareto_k: Pareto k̂ of each point's weights, ``[N]``; NaN where it is not
            defined (see :attr:`pareto_k_reason`).
        num_particles: K, the weights per point.
        method: how the weights were made: ``"importance-sampling"`` or ``"ais"``.
        pareto_k_reason: why some k̂ are NaN, or ``None`` when every point has one.
    """

    log_likelihood: Tensor
    monte_carlo_standard_error: Tensor
    effective_sample_size: Tensor
    pareto_k: Tensor
    num_particles: int
    method: str = "importance-sampling"
    pareto_k_reason: str | None = field(default=None)

    @property
    def num_points(self) -> int:
        """N, the number of data points."""
        return self.log_likelihood.numel()

    @property
    def mean(self) -> float:
        """Average log p̂(x) over the data points, nats per point."""
        return self.log_likelihood.mean().item()

    @property
    def standard_error(self) -> float:
        """Standard error of :attr:`mean` over data points, std/√N (0 for one point)."""
        return standard_error_over_points(self.log_likelihood)

    @property
    def mean_monte_carlo_standard_error(self) -> float:
        """Monte Carlo standard error of :attr:`mean` for these fixed points, √Σse²/N."""
        return _mean_monte_carlo_standard_error(self.monte_carlo_standard_error)

    @property
    def mean_effective_sample_size(self) -> float:
        """Average effective sample size over points."""
        return self.effective_sample_size.mean().item()

    @property
    def share_pareto_k_above(self) -> float:
        """Share of the points with a defined k̂ whose k̂ exceeds 0.7 (NaN if none has one)."""
        defined = ~torch.isnan(self.pareto_k)
        if not defined.any():
            return math.nan
        return (self.pareto_k[defined] > PARETO_K_THRESHOLD).double().mean().item()

    def select(self, rows: slice | Tensor) -> LogLikelihoodEstimate:
        """The estimate of a subset of the points (``rows`` indexes dimension 0)."""
        return LogLikelihoodEstimate(
            log_likelihood=self.log_likelihood[rows],
            monte_carlo_standard_error=self.monte_carlo_standard_error[rows],
            effective_sample_size=self.effective_sample_size[rows],
            pareto_k=self.pareto_k[rows],
            num_particles=self.num_particles,
            method=self.method,
            pareto_k_reason=self.pareto_k_reason,
        )

    @property
    def num_samples(self) -> int:
        """Deprecated name of :attr:`num_particles`."""
        from vi_vae._deprecation import warn_renamed

        warn_renamed("LogLikelihoodEstimate.num_samples", "LogLikelihoodEstimate.num_particles")
        return self.num_particles


@dataclass
class Bound:
    """IWAE-k (k = 1: the ELBO) per data point, averaged over independent groups of k draws.

    Attributes:
        num_particles: k, the draws inside one estimate of the bound.
        per_point: the bound for each point, ``[N]``.
        monte_carlo_standard_error: across-group standard error per point, ``[N]``
            (NaN when only one group of k fits in the draws).
    """

    num_particles: int
    per_point: Tensor
    monte_carlo_standard_error: Tensor

    @property
    def name(self) -> str:
        """``"ELBO"`` for k = 1, else ``"IWAE-k"``."""
        return "ELBO" if self.num_particles == 1 else f"IWAE-{self.num_particles}"

    @property
    def mean(self) -> float:
        """Average bound over points, nats per point."""
        return self.per_point.mean().item()

    @property
    def standard_error(self) -> float:
        """Std over points / √N."""
        return standard_error_over_points(self.per_point)

    @property
    def mean_monte_carlo_standard_error(self) -> float:
        """Monte Carlo standard error of :attr:`mean` for these fixed points."""
        return _mean_monte_carlo_standard_error(self.monte_carlo_standard_error)


def summarize_log_weights(
    log_weights: Tensor,
    *,
    compute_pareto_k: bool = True,
    method: str = "importance-sampling",
) -> LogLikelihoodEstimate:
    """Reduce ``log_weights: [num_particles, N]`` to a :class:`LogLikelihoodEstimate`.

    The reductions (module docstring) run in float64 on the weights' device; only
    the Pareto k̂ fit moves them to the host, once.
    """
    log_weights = log_weights.detach().double()
    num_particles = log_weights.shape[0]
    total = log_weights.logsumexp(0)
    ess = (2 * total - (2 * log_weights).logsumexp(0)).exp()
    error = (1 / ess - 1 / num_particles).clamp(min=0).sqrt()
    if compute_pareto_k:
        k, reason = pareto_k(log_weights)
    else:
        k = torch.full((log_weights.shape[1],), math.nan, dtype=torch.float64)
        reason = "not computed (compute_pareto_k=False)"
    return LogLikelihoodEstimate(
        log_likelihood=(total - math.log(num_particles)).cpu(),
        monte_carlo_standard_error=error.cpu(),
        effective_sample_size=ess.cpu(),
        pareto_k=k,
        num_particles=num_particles,
        method=method,
        pareto_k_reason=reason,
    )


def pareto_k(log_weights: Tensor) -> tuple[Tensor, str | None]:
    """Pareto k̂ of each column of ``log_weights: [num_particles, N]`` (ArviZ ``psislw``).

    k̂ is undefined, and returned as NaN, when there are fewer than
    :data:`MIN_PARTICLES_FOR_PARETO_K` weights per point, and for a point whose
    weights are all equal (the guide is its exact posterior: the estimate is exact
    and the weights have no tail to fit).

    Returns:
        ``(k, reason)``: k̂ per point (``[N]``, float64, on the host) and why some are
        NaN, or ``None`` when none is.
    """
    num_particles, num_points = log_weights.shape
    if num_particles < MIN_PARTICLES_FOR_PARETO_K:
        reason = (
            f"Pareto k̂ needs at least {MIN_PARTICLES_FOR_PARETO_K} weights per point "
            f"(the tail fit uses the largest ⌈min(K/5, 3√K)⌉ > 4); K = {num_particles}"
        )
        return torch.full((num_points,), math.nan, dtype=torch.float64), reason
    import arviz  # imported here: it is slow to import and only k̂ needs it

    values = log_weights.detach().double().cpu().numpy().T.copy()
    with np.errstate(all="ignore"):
        _, k = arviz.psislw(values)
    k = torch.as_tensor(np.atleast_1d(k), dtype=torch.float64)
    # weights equal to float precision (the guide is the exact posterior of the point)
    constant = torch.as_tensor(np.ptp(values, axis=1) <= EQUAL_WEIGHTS_TOLERANCE)
    if constant.any():
        k[constant] = math.nan
        return k, "a point whose weights are all equal (an exact estimate) has no tail to fit"
    return k, None


def concatenate_estimates(parts: Sequence[LogLikelihoodEstimate]) -> LogLikelihoodEstimate:
    """One estimate from the estimates of consecutive groups of points (chunks, shards)."""
    reasons = sorted({part.pareto_k_reason for part in parts if part.pareto_k_reason})
    return LogLikelihoodEstimate(
        log_likelihood=torch.cat([part.log_likelihood for part in parts]),
        monte_carlo_standard_error=torch.cat([part.monte_carlo_standard_error for part in parts]),
        effective_sample_size=torch.cat([part.effective_sample_size for part in parts]),
        pareto_k=torch.cat([part.pareto_k for part in parts]),
        num_particles=parts[0].num_particles,
        method=parts[0].method,
        pareto_k_reason="; ".join(reasons) or None,
    )


def concatenate_bounds(tables: Sequence[Sequence[Bound]]) -> list[Bound]:
    """One bound table from the tables (same k, same order) of consecutive groups of points."""
    return [
        Bound(
            column[0].num_particles,
            torch.cat([bound.per_point for bound in column]),
            torch.cat([bound.monte_carlo_standard_error for bound in column]),
        )
        for column in zip(*tables, strict=True)
    ]
