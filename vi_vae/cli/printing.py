"""What the ``vi-vae`` commands print of their results, on stdout and stderr.

The log p(x) line with its k̂ share and verdict, the bounds, AIS's line and cost (beside
the fixed-settings run for ``--auto``), one warning line per failed convergence check
naming the flags to raise, and plain tables. :mod:`vi_vae.cli.commands` decides what
runs; this module only words and prints it.
"""

from __future__ import annotations

import math
import sys

from vi_vae.app.comparison_metrics import Comparison
from vi_vae.app.metrics import AISSummary, BDMCSummary, EstimateSummary, GapSummary, RunMetrics
from vi_vae.app.report import number
from vi_vae.cli.flags import flag_of_field
from vi_vae.evaluation import (
    ABOVE_PARETO_K_THRESHOLD,
    NARROWER_GUIDE_SUPPORT,
    AISRound,
    AISSettings,
)
from vi_vae.evaluation.convergence import advice

__all__ = [
    "ais_settings_text",
    "print_ais_cost",
    "print_metrics",
    "print_paired_differences",
    "print_points_asked",
    "print_table",
    "share_text",
    "unsettled_mark",
    "warn_unless_converged",
    "warn_unless_gaps_converged",
]


def print_metrics(metrics: RunMetrics, command: str) -> None:
    """The run's log p(x) line (and a warning line unless it converged), bounds and AIS.

    ``command`` names the subcommand whose flag the verdict says to raise.
    """
    estimate = metrics.log_marginal_likelihood
    if estimate is None:
        return
    share = estimate.share_pareto_k_above
    reason = f"; {estimate.pareto_k_reason}" if estimate.pareto_k_reason else ""
    pareto = share_text(share) + (reason if share != share else "")
    if share > 0:  # the estimate of those points has not converged in K: say what it is
        pareto += f", where log p(x) is {ABOVE_PARETO_K_THRESHOLD}"
    narrower = estimate.narrower_guide_sites
    support = (
        f"; the guide's support at {list(narrower)} is narrower than the prior's, so this "
        f"is {NARROWER_GUIDE_SUPPORT} (vi-vae evaluate RUN_DIR --method ais)"
        if narrower
        else ""
    )
    flag = flag_of_field("evaluation.num_particles", command)
    verdict = "; not converged: raise " + flag if estimate.converged is False else ""
    print(
        f"test log p(x) = {estimate.log_likelihood:.2f} ± {number(estimate.standard_error)} nats "
        f"(K = {estimate.num_particles}, {estimate.num_points} points, mean ESS "
        f"{estimate.mean_effective_sample_size:.1f}, share k̂ > 0.7: {pareto}{support}{verdict})"
    )
    if estimate.converged is False:
        print(
            "vi-vae: warning: importance sampling has not converged, its log p(x) is too low: "
            f"{estimate.convergence.findings}. Raise {flag} (now K = {estimate.num_particles}), "
            "or estimate by AIS (vi-vae evaluate RUN_DIR --method ais).",
            file=sys.stderr,
        )
    for bound in metrics.bounds:
        print(f"  {bound.name:>10}: {bound.mean:.2f} ± {number(bound.standard_error)}")
    if metrics.ais is not None:
        ais = metrics.ais
        print(
            f"AIS log p(x) = {ais.estimate.log_likelihood:.2f} ± "
            f"{number(ais.estimate.standard_error)} nats ({ais_settings_text(ais.settings)}, "
            f"{ais.estimate.num_points} points, Monte Carlo SE "
            f"{ais.estimate.monte_carlo_standard_error:.3f}, acceptance "
            f"{ais.mean_acceptance_rate:.2f}); importance sampling on the same points "
            f"{ais.importance_sampling.log_likelihood:.2f}; AIS − IS = {ais.gap:.2f} ± "
            f"{number(ais.gap_standard_error)} (max {ais.max_gap:.2f})"
        )
        print_ais_cost(ais)
        warn_unless_converged(ais, "AIS")


def print_paired_differences(comparison: Comparison) -> None:
    """Each row's log p(x) minus the first row's, paired over the same points: IS, then AIS."""
    first = comparison.rows[0].estimator if comparison.rows else ""
    for ais in (False, True):
        differences = comparison.paired_differences(ais=ais)
        if not differences:
            continue
        listed = "; ".join(
            f"{name} {difference.mean:+.2f} ± {number(difference.standard_error)}"
            for name, difference in differences.items()
        )
        num_points = next(iter(differences.values())).num_points
        unsettled = (
            any(row.ais is not None and row.ais.converged is False for row in comparison.rows)
            if ais
            else comparison.unsettled
        )
        caveat = (
            "; some rows are not converged, and their estimates lie below log p(x) by amounts "
            "that can differ between rows, which these differences include"
            if unsettled
            else ""
        )
        print(
            f"{'AIS ' if ais else ''}log p(x) − {first}'s, paired over the same {num_points} "
            f"points: {listed} (± for these trained models, not another training seed{caveat})"
        )


def print_points_asked(
    metrics: RunMetrics, evaluation_points: int | None, ais_points: int | None, command: str
) -> None:
    """A note on stderr for each estimate that had fewer test points than were asked for.

    The split decides: asking for more points than it holds evaluates all of them.
    """
    used = (
        ("evaluation.num_points", evaluation_points, metrics.points and metrics.points.num_points),
        ("ais.num_points", ais_points, metrics.ais and metrics.ais.estimate.num_points),
    )
    for field, asked, num_points in used:
        if asked is not None and num_points and num_points < asked:
            print(
                f"vi-vae: note: {flag_of_field(field, command)} {asked} is more than the test "
                f"split holds; all its {num_points} points were evaluated",
                file=sys.stderr,
            )


def unsettled_mark(estimate: EstimateSummary) -> str:
    """``*`` after an importance-sampling log p(x) that failed its convergence check."""
    return "*" if estimate.converged is False else " "


def share_text(share: float) -> str:
    """The share of points with k̂ > 0.7, or ``undefined`` (NaN: no point has a k̂)."""
    return "undefined" if share != share else f"{share:.2f}"


def print_ais_cost(ais: AISSummary) -> None:
    """The rounds of an automatic T, and the cost, beside a fixed-settings run if known."""
    if ais.auto is not None:
        rounds = ", ".join(_round(r) for r in ais.auto.rounds)
        verdict = "converged" if ais.converged else "not converged"
        print(f"  T chosen by doubling: {rounds}; {verdict} at T = {ais.settings.num_steps}")
    if ais.cpu_seconds is None:
        return
    rounds = len(ais.auto.rounds) if ais.auto else 0
    print(f"  cost: {_cost(ais)}" + (f" over {rounds} round{'s' * (rounds > 1)}" if rounds else ""))
    fixed = ais.auto.fixed if ais.auto is not None else None
    if fixed is None:
        return
    difference = ais.estimate.log_likelihood - fixed.estimate.log_likelihood
    error = math.hypot(
        ais.estimate.monte_carlo_standard_error, fixed.estimate.monte_carlo_standard_error
    )
    print(
        f"  beside the fixed settings ({ais_settings_text(fixed.settings)}, from metrics.json): "
        f"AIS log p(x) = {fixed.estimate.log_likelihood:.2f} ± "
        f"{number(fixed.estimate.standard_error)} (Monte Carlo SE "
        f"{fixed.estimate.monte_carlo_standard_error:.3f}), cost {_cost(fixed)}; "
        f"auto − fixed = {difference:+.3f} ± {error:.3f} (Monte Carlo)"
        + (
            f", {ais.cpu_seconds / fixed.cpu_seconds:.2f}× its CPU time"
            if fixed.cpu_seconds
            else ""
        )
    )


def _round(trail: AISRound) -> str:
    text = f"T = {trail.num_steps} ({trail.mean:.2f} ± {trail.monte_carlo_standard_error:.3f}"
    if trail.bdmc_mean_gap is not None:
        text += f", BDMC gap {trail.bdmc_mean_gap:.2f} ± {number(trail.bdmc_gap_standard_error)}"
    return text + ")"


def _cost(ais: AISSummary) -> str:
    if ais.cpu_seconds is None:
        return "unknown"
    evaluations = "" if ais.gradient_evaluations is None else f", {ais.gradient_evaluations:,}"
    return f"{ais.cpu_seconds:.1f} CPU s{evaluations} gradient evaluations"


def warn_unless_converged(summary: AISSummary | BDMCSummary, what: str) -> None:
    """One line on stderr when an AIS or BDMC result failed a convergence check."""
    if summary.convergence is None or summary.converged:
        return
    convergence = summary.convergence
    flags = " and ".join("--ais-" + name.replace("_", "-") for name in convergence.remedies)
    print(
        f"vi-vae: warning: {what} has not converged, not a number to quote: "
        f"{convergence.findings}. Raise {flags} (now {ais_settings_text(summary.settings)}).",
        file=sys.stderr,
    )


def ais_settings_text(settings: AISSettings) -> str:
    """``T = …, C = …, L = …``: the AIS settings a line quotes."""
    return f"T = {settings.num_steps}, C = {settings.num_chains}, L = {settings.leapfrog_steps}"


def warn_unless_gaps_converged(gaps: GapSummary, estimator: str = "") -> None:
    """One line on stderr per failed verdict of a gaps result (AIS's, the local one's)."""
    where = f"{estimator}: " if estimator else ""
    for what, convergence, prefix in (
        ("AIS", gaps.ais_convergence, "--ais-"),
        ("the local optimization of q*", gaps.local_convergence, "--"),
    ):
        if not convergence.converged:
            flags = advice(convergence.remedies, lambda name, p=prefix: p + name.replace("_", "-"))
            print(
                f"vi-vae: warning: {where}{what} has not converged, the gaps are not numbers to "
                f"quote; {flags}",
                file=sys.stderr,
            )


def print_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    """``rows`` as a plain table of ``columns``, headed by their names in capitals."""
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
