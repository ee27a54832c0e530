"""What ``comparison.json`` holds: the shared settings, one row per estimator, the curves.

A comparison's rows summarize its runs with the summaries of :mod:`vi_vae.app.metrics`,
written and read by the same codec (:mod:`vi_vae.app.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vi_vae.app.config import RunConfig
from vi_vae.app.metrics import (
    AISSummary,
    BoundSummary,
    BoundTable,
    EstimateSummary,
    GapSummary,
)
from vi_vae.errors import InputError
from vi_vae.evaluation import PairedDifference
from vi_vae.train import EpochRecord

__all__ = ["Comparison", "ComparisonRow", "SNRPoint"]


@dataclass(frozen=True)
class SNRPoint:
    """Gradient signal-to-noise ratios of one estimator at one K (Rainforth et al. 2018)."""

    num_particles: int
    guide: float
    model: float


@dataclass(frozen=True)
class ComparisonRow(BoundTable):
    """One estimator's run in a comparison: its cost, bounds, log p(x) and diagnostics.

    ``active_units`` counts over every stochastic layer, out of ``latent_units``.
    """

    estimator: str
    seconds: float
    epochs: int
    log_marginal_likelihood: EstimateSummary
    bounds: tuple[BoundSummary, ...]
    active_units: int
    latent_units: int
    snr_guide: float
    snr_model: float
    ais: AISSummary | None = None
    gaps: GapSummary | None = None


@dataclass(frozen=True)
class Comparison:
    """What ``comparison.json`` holds: the shared settings, one row per estimator, curves.

    Attributes:
        settings: the run config every estimator's run shares (its estimator aside).
        estimators: the estimator spellings, in order.
        snr_num_draws: gradient draws per SNR value.
        snr_batch_size: test points in the fixed batch the SNRs are measured on.
        rows: one per estimator.
        bound_curves: estimator -> IWAE-k for each k of the curve.
        snr_curves: estimator -> SNR at each K of ``snr_particles``.
        histories: estimator -> its training history.
        command: the command line that made it, for the report's "Reproduce".
    """

    settings: RunConfig
    estimators: tuple[str, ...]
    snr_num_draws: int
    snr_batch_size: int
    rows: tuple[ComparisonRow, ...]
    bound_curves: dict[str, tuple[BoundSummary, ...]]
    snr_curves: dict[str, tuple[SNRPoint, ...]]
    histories: dict[str, tuple[EpochRecord, ...]]
    command: str | None = None

    def paired_differences(self, *, ais: bool = False) -> dict[str, PairedDifference]:
        """Each later row's log p(x) minus the first row's, paired over the same points.

        ``ais``: the rows' AIS estimates (on their common first test points) in place of
        importance sampling's. Rows whose per-point values were not kept (files written
        before vi_vae kept them, or no AIS) are left out, and so is every row when the
        first one lacks them.
        """

        def values(row: ComparisonRow) -> tuple[float, ...]:
            if not ais:
                return row.log_marginal_likelihood.per_point
            return row.ais.estimate.per_point if row.ais is not None else ()

        if not self.rows or not values(self.rows[0]):
            return {}
        reference = values(self.rows[0])
        return {
            row.estimator: PairedDifference.between(values(row), reference)
            for row in self.rows[1:]
            if len(values(row)) == len(reference)
        }

    @property
    def unsettled(self) -> bool:
        """Whether a row's log p(x) failed its convergence check (the tables star it)."""
        return any(row.log_marginal_likelihood.converged is False for row in self.rows)

    def __post_init__(self) -> None:
        # the report reads the rows as paired: the same test points and K in every row
        estimates = {row.estimator: row.log_marginal_likelihood for row in self.rows}
        evaluated = {name: (e.num_points, e.num_particles) for name, e in estimates.items()}
        if len(set(evaluated.values())) > 1:
            listed = "; ".join(f"{name}: {n} points, K = {k}" for name, (n, k) in evaluated.items())
            raise InputError(
                f"the comparison's rows were evaluated on different test points or K "
                f"({listed}); compare them again with resume, which evaluates them alike"
            )
