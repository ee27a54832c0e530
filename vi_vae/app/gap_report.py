"""The report lines of the inference gaps: a run's section and a comparison's table."""

from __future__ import annotations

from collections.abc import Sequence

from vi_vae.app.comparison_metrics import ComparisonRow
from vi_vae.app.metrics import GapSummary, GapTermSummary

__all__ = ["comparison_gap_lines", "gap_settings_sentence", "run_gap_lines"]

#: the concept page the reports point to
CONCEPT_PAGE = "docs/concepts/inference-gaps.md"
#: the run section's heading mark when AIS or the local optimization has not converged
NOT_TO_QUOTE = " (not converged: not numbers to quote)"
#: the comparison table's sentence when some row has not converged
QUOTE_CONVERGED = "Quote a row only where it converged (last column)."


def _term(term: GapTermSummary | None, digits: int = 2) -> str:
    """``mean ± Monte Carlo SE``; ``n/a`` when there is none."""
    if term is None:
        return "n/a"
    return f"{term.mean:.{digits}f} ± {term.monte_carlo_standard_error:.{digits}f}"


def gap_settings_sentence(summary: GapSummary) -> str:
    """The settings of a gaps result, in words."""
    settings, ais = summary.settings, summary.settings.ais
    return (
        f"{summary.num_points} test points; q* by {settings.local_steps} Adam steps "
        f"(learning rate {settings.local_learning_rate:g}, {settings.local_particles} draws per "
        f"step) from the encoder's output; each ELBO from K = {settings.num_particles} draws; "
        f"log p(x) by AIS with T = {ais.num_steps}, C = {ais.num_chains}, "
        f"L = {ais.leapfrog_steps}"
    )


def _verdicts(summary: GapSummary) -> list[str]:
    lines = []
    for what, convergence in (
        ("AIS", summary.ais_convergence),
        ("local optimization", summary.local_convergence),
    ):
        state = "" if convergence.converged else "**not converged**: "
        lines.append(f"- {what}: {state}{convergence.summary}")
    return lines


def run_gap_lines(summary: GapSummary) -> list[str]:
    """The run report's section "Where the bound is lost"."""
    # unconverged gaps are not the numbers to quote: said at the head, and none in bold
    heading, bold = ("", "**") if summary.converged else (NOT_TO_QUOTE, "")
    lines = [
        f"## Where the bound is lost{heading}",
        "",
        f"{gap_settings_sentence(summary)} ({CONCEPT_PAGE}). Mean ± Monte Carlo standard "
        "error, nats per point:",
        "",
        f"- log p(x) (AIS): {_term(summary.log_likelihood)}",
        f"- ELBO of the amortized guide q_φ: {_term(summary.amortized_elbo)}",
        f"- ELBO of q*, the guide's family optimized per point: {_term(summary.local_elbo)}",
        f"- approximation gap log p(x) − ELBO(q*): {bold}{_term(summary.approximation_gap)}{bold}",
        f"- amortization gap ELBO(q*) − ELBO(q_φ): {bold}{_term(summary.amortization_gap)}{bold}",
    ]
    if summary.full_covariance_elbo is not None:
        lines.append(
            f"- ELBO of a full-covariance Gaussian per point: {_term(summary.full_covariance_elbo)}"
        )
    lines += _verdicts(summary)
    lines += [f"- substitute: {note}" for note in summary.substitutes]
    return [*lines, ""]


def comparison_gap_lines(rows: Sequence[ComparisonRow], figure: str | None) -> list[str]:
    """The comparison report's table "Where the bound is lost" (empty without gaps)."""
    measured = [row for row in rows if row.gaps is not None]
    if not measured:
        return []
    first = measured[0].gaps
    lines = [
        "## Where the bound is lost",
        "",
        f"{gap_settings_sentence(first)}. log p(x) − ELBO(q_φ) = approximation gap "
        "(what the guide's family cannot do for a point) + amortization gap (the price of "
        f"one encoder for all points); {CONCEPT_PAGE}. Mean ± Monte Carlo standard error, "
        "nats per point."
        + ("" if all(row.gaps.converged for row in measured) else f" {QUOTE_CONVERGED}"),
        "",
        "| estimator | log p(x) | ELBO(q_φ) | approximation gap | amortization gap | converged |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in measured:
        gaps = row.gaps
        lines.append(
            f"| {row.estimator} | {_term(gaps.log_likelihood)} | {_term(gaps.amortized_elbo)} | "
            f"{_term(gaps.approximation_gap)} | {_term(gaps.amortization_gap)} | "
            f"{'yes' if gaps.converged else 'no'} |"
        )
    lines.append("")
    if figure:
        lines += [f"![where the bound is lost]({figure})", ""]
    return lines
