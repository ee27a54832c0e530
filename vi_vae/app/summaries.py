"""A library estimate or bound as a record keeps it: its means, standard errors and verdict.

The library's estimates carry per-point tensors; ``metrics.json`` and
``comparison.json`` keep these summaries of them (:mod:`vi_vae.app.metrics`,
:mod:`vi_vae.app.comparison_metrics`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from vi_vae.evaluation import Convergence

__all__ = ["BoundSummary", "EstimateSummary", "Summary"]


class Summary:
    """A record whose fields are the attributes of the same names of a library result.

    A subclass is a frozen dataclass; :meth:`of` reads each field from the result.
    """

    #: field -> the result's attribute it reads where the names differ (a Monte Carlo
    #: standard error is the mean of the per-point ones)
    renamed: ClassVar[dict[str, str]] = {
        "monte_carlo_standard_error": "mean_monte_carlo_standard_error"
    }

    #: fields the summary does not read from the result (they keep their defaults)
    not_read: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def of(cls, result: Any) -> Any:
        """Summarize a library estimate, bound or gap term."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = [field.name for field in fields if field.name not in cls.not_read]
        return cls(**{name: getattr(result, cls.renamed.get(name, name)) for name in names})


@dataclass(frozen=True)
class EstimateSummary(Summary):
    """A log p(x) estimate over a set of points: its mean, errors and diagnostics.

    Attributes:
        method: ``"importance-sampling"`` or ``"ais"``.
        log_likelihood: mean log p̂(x) over the points (nats per point).
        standard_error: standard error of that mean over points.
        monte_carlo_standard_error: its Monte Carlo standard error for these points.
        mean_effective_sample_size: mean ESS of the weights, out of ``num_particles``.
        share_pareto_k_above: share of points with Pareto k̂ > 0.7 (NaN: k̂ undefined).
        pareto_k_reason: why k̂ is undefined for some points, or ``None``.
        num_particles: K, the weights per point.
        num_points: the number of points.
        narrower_guide_sites: the latent sites where the guide's support is narrower than
            the prior's: importance sampling's log p(x) is then
            :data:`~vi_vae.evaluation.NARROWER_GUIDE_SUPPORT`.
        convergence: the estimate's verdict (importance sampling: the half-particles
            check; ``None`` in files of vi_vae 0.3.0 and earlier, which had none).
        per_point: log p̂(x_n) of each point, in the points' order, where it was kept
            (:meth:`of` with ``per_point=True``: a run's own evaluation), so that two runs
            evaluated on the same points compare point by point; empty otherwise and in
            files written before vi_vae kept them.
    """

    method: str
    log_likelihood: float
    standard_error: float
    monte_carlo_standard_error: float
    mean_effective_sample_size: float
    share_pareto_k_above: float
    pareto_k_reason: str | None
    num_particles: int
    num_points: int
    narrower_guide_sites: tuple[str, ...] = ()
    convergence: Convergence | None = None
    per_point: tuple[float, ...] = ()

    not_read: ClassVar[tuple[str, ...]] = ("per_point",)

    @classmethod
    def of(cls, result: Any, *, per_point: bool = False) -> EstimateSummary:
        """Summarize a log p(x) estimate; with ``per_point``, keep each point's value too."""
        summary = super().of(result)
        if not per_point:
            return summary
        return dataclasses.replace(summary, per_point=tuple(result.log_likelihood.tolist()))

    @property
    def converged(self) -> bool | None:
        """Whether the verdict holds (``None``: a file without one)."""
        return None if self.convergence is None else self.convergence.converged

    renamed: ClassVar[dict[str, str]] = {**Summary.renamed, "log_likelihood": "mean"}

    @property
    def negative_log_likelihood(self) -> float:
        """NLL = −log p̂(x), nats per point."""
        return -self.log_likelihood


@dataclass(frozen=True)
class BoundSummary(Summary):
    """One row of a bound table: the ELBO (k = 1) or IWAE-k over a set of points."""

    name: str
    num_particles: int
    mean: float
    standard_error: float
    monte_carlo_standard_error: float
