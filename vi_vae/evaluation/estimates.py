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
above 0.7 the estimate of that point cannot be trusted (the fit:
:mod:`vi_vae.evaluation.pareto`).

References:
    [1] Pareto Smoothed Importance Sampling, Vehtari, Simpson, Gelman, Yao & Gabry, 2015.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vi_vae.evaluation.convergence import Convergence, finite_points_check
from vi_vae.evaluation.importance_convergence import half_particles_check, pareto_k_check
from vi_vae.evaluation.pareto import (
    MIN_PARTICLES_FOR_PARETO_K,
    pareto_k_from_tails,
    pareto_tail_size,
    too_few_particles,
)

__all__ = [
    "ABOVE_PARETO_K_THRESHOLD",
    "NARROWER_GUIDE_SUPPORT",
    "standard_error_over_points",
    "PARETO_K_THRESHOLD",
    "Bound",
    "LogLikelihoodEstimate",
    "LogWeightSummary",
    "concatenate_bounds",
    "concatenate_estimates",
    "pareto_k",
    "summarize_log_weights",
]

#: Vehtari et al.: above k̂ = 0.7 the importance-sampling estimate is unreliable.
PARETO_K_THRESHOLD = 0.7
#: what the estimate of a point above the threshold is, as the report and the CLI say it
ABOVE_PARETO_K_THRESHOLD = "a lower bound that more samples, a better guide or AIS would raise"
#: what importance sampling's log p(x) is where the guide's support is narrower than the
#: prior's (after "log p(x) is"): one wording for the warning, the command and the report
NARROWER_GUIDE_SUPPORT = (
    "log of the part of p(x) on the guide's support, a lower bound that no number of "
    "particles raises and that its errors and k̂ do not show; AIS, which starts such a run "
    "from the prior, estimates all of p(x)"
)


def standard_error_over_points(values: Tensor) -> float:
    """Standard error of a mean over points: standard deviation / √N.

    NaN for one point, whose spread says nothing of the points it stands for (not 0,
    which would read as an exact mean).
    """
    n = values.numel()
    return values.std().item() / math.sqrt(n) if n > 1 else math.nan


class _MeansOverPoints:
    """The means over data points of a per-point value (log p̂(x), a bound) and their errors.

    A subclass returns its value ``[N]`` from ``_per_point`` and has its Monte Carlo
    standard errors ``[N]`` as ``monte_carlo_standard_error``.
    """

    def _per_point(self) -> Tensor:
        raise NotImplementedError

    @property
    def mean(self) -> float:
        """Average over the data points, nats per point."""
        return self._per_point().mean().item()

    @property
    def standard_error(self) -> float:
        """Standard error of :attr:`mean` over data points, std/√N (NaN for one point)."""
        return standard_error_over_points(self._per_point())

    @property
    def mean_monte_carlo_standard_error(self) -> float:
        """Monte Carlo standard error of :attr:`mean` for these fixed points, √Σse²/N."""
        errors = self.monte_carlo_standard_error
        return errors.pow(2).sum().sqrt().item() / errors.numel()


@dataclass
class LogLikelihoodEstimate(_MeansOverPoints):
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
        narrower_guide_sites: the latent sites where the guide's support is narrower than
            the prior's (importance sampling only): there the estimate is log of the part
            of p(x) on the guide's support, a lower bound that no K raises and that the
            errors and k̂ do not show (:data:`NARROWER_GUIDE_SUPPORT`).
        half_particles_log_likelihood: per point, the mean of the estimates from the first
            and the second half of the K weights, ``[N]`` (``None``: K < 2).
        convergence: the verdict on the estimate of all N points (importance sampling:
            the pareto-k and half-particles checks of :mod:`vi_vae.evaluation.convergence`,
            :meth:`judged`); ``None`` for a part of the points (:meth:`select`, a shard)
            until it is judged whole.
    """

    log_likelihood: Tensor
    monte_carlo_standard_error: Tensor
    effective_sample_size: Tensor
    pareto_k: Tensor
    num_particles: int
    method: str = "importance-sampling"
    pareto_k_reason: str | None = field(default=None)
    narrower_guide_sites: tuple[str, ...] = ()
    half_particles_log_likelihood: Tensor | None = None
    convergence: Convergence | None = None

    def judged(self) -> LogLikelihoodEstimate:
        """This estimate with its importance-sampling verdict (Pareto k̂, half particles).

        A point with no finite estimate fails a third check, ``finite-points``.
        """
        half = self.half_particles_log_likelihood
        too_few = self.num_particles < MIN_PARTICLES_FOR_PARETO_K
        checks = (
            finite_points_check(self.log_likelihood),
            pareto_k_check(self.pareto_k, PARETO_K_THRESHOLD, self.num_particles, too_few),
            half_particles_check(
                self.log_likelihood,
                self.log_likelihood if half is None else half,
                self.num_particles,
            ),
        )
        verdict = Convergence(tuple(check for check in checks if check is not None))
        return dataclasses.replace(self, convergence=verdict)

    @property
    def num_points(self) -> int:
        """N, the number of data points."""
        return self.log_likelihood.numel()

    def _per_point(self) -> Tensor:
        return self.log_likelihood

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
            narrower_guide_sites=self.narrower_guide_sites,
            half_particles_log_likelihood=_rows(self.half_particles_log_likelihood, rows),
        )


@dataclass
class Bound(_MeansOverPoints):
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

    def _per_point(self) -> Tensor:
        return self.per_point


def summarize_log_weights(
    log_weights: Tensor,
    *,
    compute_pareto_k: bool = True,
    method: str = "importance-sampling",
    computed_in: torch.dtype | None = None,
) -> LogLikelihoodEstimate:
    """Reduce ``log_weights: [num_particles, N]`` to a :class:`LogLikelihoodEstimate`.

    The reductions (module docstring) run in float64 on the weights' device; only
    the Pareto k̂ fit moves anything to the host, once (:class:`LogWeightSummary`).
    ``computed_in``: the dtype the weights' terms were computed in, when they were
    summed in a finer one (AIS), as in :meth:`LogWeightSummary.add`.
    """
    summary = LogWeightSummary(log_weights.shape[0], compute_pareto_k=compute_pareto_k)
    summary.add(log_weights, computed_in=computed_in)
    return summary.estimate(method)


class LogWeightSummary:
    """Per-point reductions of log weights that arrive in chunks of points, k̂ fitted once.

    Each :meth:`add` reduces a chunk ``[num_particles, n]`` on its device to
    per-point values (log-mean-exp, ESS, error) and keeps, for k̂, only the
    largest ``M + 1`` log weights of each point and its smallest, where
    M = ⌈min(K/5, 3√K)⌉ is the tail PSIS fits: k̂ depends on the weights above
    the (M+1)-th largest alone (Vehtari et al. 2024, §3; ArviZ ``psislw``), so a
    point's row rebuilt from its tail, the rest set to that cutoff, gives the
    same k̂. Nothing leaves the device until :meth:`estimate`, which fits k̂ on
    the host once, over all points, in blocks of at most
    :data:`PARETO_K_BLOCK_BYTES` of float64: host memory is O(N·M), not O(N·K)
    (K = 5000: M + 1 = 214).

    Example:
        >>> summary = LogWeightSummary(100)
        >>> for _ in range(3):
        ...     summary.add(torch.randn(100, 4))
        >>> summary.estimate().log_likelihood.shape
        torch.Size([12])
    """

    def __init__(self, num_particles: int, *, compute_pareto_k: bool = True) -> None:
        self.num_particles = num_particles
        self.compute_pareto_k = compute_pareto_k and num_particles >= MIN_PARTICLES_FOR_PARETO_K
        self._requested_pareto_k = compute_pareto_k
        self._tail_size = pareto_tail_size(num_particles) + 1
        #: the machine epsilon of the coarsest dtype the log weights came in
        self._epsilon = 0.0
        self._parts: dict[str, list[Tensor]] = {
            name: [] for name in ("total", "ess", "error", "half", "tail", "smallest")
        }

    def add(self, log_weights: Tensor, computed_in: torch.dtype | None = None) -> None:
        """Reduce ``log_weights: [num_particles, n]`` (on any device) and keep the result there.

        ``computed_in``: the dtype their terms were computed in, if coarser than theirs;
        its rounding tells equal weights from a spread
        (:data:`~vi_vae.evaluation.pareto.EQUAL_WEIGHTS_EPSILONS`).
        """
        dtype = computed_in or log_weights.dtype
        if dtype.is_floating_point:
            self._epsilon = max(self._epsilon, torch.finfo(dtype).eps)
        log_weights = log_weights.detach().double()
        if log_weights.shape[0] != self.num_particles:
            raise ValueError(
                f"expected {self.num_particles} log weights per point; got {log_weights.shape[0]}"
            )
        total = log_weights.logsumexp(0)
        ess = (2 * total - (2 * log_weights).logsumexp(0)).exp()
        parts = self._parts
        parts["total"].append(total)
        parts["ess"].append(ess)
        parts["error"].append((1 / ess - 1 / self.num_particles).clamp(min=0).sqrt())
        half = self.num_particles // 2
        if half:
            halves = log_weights[: 2 * half].reshape(2, half, -1).logsumexp(1)
            parts["half"].append(halves.mean(0) - math.log(half))
        if self.compute_pareto_k:
            parts["tail"].append(log_weights.topk(self._tail_size, dim=0).values)
            parts["smallest"].append(log_weights.amin(0))

    def estimate(self, method: str = "importance-sampling") -> LogLikelihoodEstimate:
        """The :class:`LogLikelihoodEstimate` of every point added, in order."""
        parts = {name: torch.cat(values, -1) for name, values in self._parts.items() if values}
        if self.compute_pareto_k:
            k, reason = pareto_k_from_tails(
                parts["tail"].cpu(), parts["smallest"].cpu(), self.num_particles, self._epsilon
            )
        else:
            num_points = parts["total"].numel()
            k = torch.full((num_points,), math.nan, dtype=torch.float64)
            reason = (
                too_few_particles(self.num_particles)
                if self._requested_pareto_k
                else "not computed (compute_pareto_k=False)"
            )
        return LogLikelihoodEstimate(
            log_likelihood=(parts["total"] - math.log(self.num_particles)).cpu(),
            monte_carlo_standard_error=parts["error"].cpu(),
            effective_sample_size=parts["ess"].cpu(),
            pareto_k=k,
            num_particles=self.num_particles,
            method=method,
            pareto_k_reason=reason,
            half_particles_log_likelihood=parts["half"].cpu() if "half" in parts else None,
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
    estimate = summarize_log_weights(log_weights)
    return estimate.pareto_k, estimate.pareto_k_reason


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
        narrower_guide_sites=tuple(
            dict.fromkeys(name for part in parts for name in part.narrower_guide_sites)
        ),
        half_particles_log_likelihood=_concatenated(
            [part.half_particles_log_likelihood for part in parts]
        ),
    )


def _rows(values: Tensor | None, rows: slice | Tensor) -> Tensor | None:
    return None if values is None else values[rows]


def _concatenated(parts: list[Tensor | None]) -> Tensor | None:
    return None if any(part is None for part in parts) else torch.cat(parts)  # type: ignore[arg-type]


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
