"""The Markdown report of a run, from its typed results.

A comparison's report (:mod:`vi_vae.app.comparison_report`) shares its pieces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from vi_vae.app.config import RunConfig
from vi_vae.app.gap_report import run_gap_lines
from vi_vae.app.metrics import AISSummary, BDMCSummary, EstimateSummary, RunMetrics
from vi_vae.evaluation import (
    ABOVE_PARETO_K_THRESHOLD,
    NARROWER_GUIDE_SUPPORT,
    PARETO_K_THRESHOLD,
)
from vi_vae.evaluation.convergence import BDMC_GAP_TOLERANCE

__all__ = [
    "ais_settings_sentence",
    "figure_lines",
    "number",
    "resumed_report",
    "run_report",
    "support_lines",
    "units_sentence",
]


def number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def units_sentence(data_kind: str) -> str:
    """What the sign of log p(x) means for this kind of data."""
    if data_kind == "discrete":
        return (
            "nats per data point; log p(x) is a log probability (≤ 0), NLL = −log p(x) is positive"
        )
    return (
        "nats per data point; log p(x) is a log density of continuous data, which can be "
        "positive (it depends on the data's scale); NLL = −log p(x)"
    )


def _pareto_sentence(estimate: EstimateSummary) -> str:
    share = estimate.share_pareto_k_above
    if math.isnan(share):
        return f"Pareto k̂ undefined ({estimate.pareto_k_reason or 'not computed'})"
    return (
        f"share of points with Pareto k̂ > {PARETO_K_THRESHOLD}: {number(share, 3)} "
        f"(above {PARETO_K_THRESHOLD} the estimate of a point is unreliable: "
        f"{ABOVE_PARETO_K_THRESHOLD})"
    )


def support_lines(estimate: EstimateSummary) -> list[str]:
    """What importance sampling's log p(x) is where the guide cannot reach all of the prior."""
    if not estimate.narrower_guide_sites:
        return []
    return [
        f"- **not log p(x)**: the guide's support at latent site(s) "
        f"{', '.join(estimate.narrower_guide_sites)} is narrower than the prior's, so this "
        f"number is {NARROWER_GUIDE_SUPPORT}"
    ]


def run_report(config: RunConfig, metrics: RunMetrics) -> str:
    """The report of one run: settings, log p(x) with its errors, bounds, figures."""
    training = metrics.training
    lines = [
        _title(config),
        "",
        f"Binarization: **{config.data.binarization}**. Seed {config.training.seed}. "
        f"Epochs completed: {training.epochs_completed if training else 'n/a'} "
        f"(best validation epoch {training.best_epoch if training else 'n/a'}).",
        "",
    ]
    estimate = metrics.log_marginal_likelihood
    if metrics.evaluation_error:
        lines += [
            "## Evaluation failed",
            "",
            f"Training finished and is saved; the evaluation failed: {metrics.evaluation_error}",
            "",
        ]
    if estimate is not None:
        points = metrics.points.description if metrics.points else f"{estimate.num_points} points"
        lines += [
            f"## Test log-likelihood ({units_sentence(metrics.data_kind)})",
            "",
            f"- log p(x) ≈ **{number(estimate.log_likelihood)}** "
            f"± {number(estimate.standard_error)} (standard error over points; Monte Carlo "
            f"standard error {number(estimate.monte_carlo_standard_error, 3)}), importance "
            f"sampling with K = {estimate.num_particles} on {points}",
            f"- NLL = {number(estimate.negative_log_likelihood)}",
            f"- mean effective sample size {number(estimate.mean_effective_sample_size, 1)} "
            f"of {estimate.num_particles}; {_pareto_sentence(estimate)}",
            _verdict(estimate),
            *support_lines(estimate),
            "",
        ]
    if metrics.bounds:
        lines += [
            "## Bounds on log p(x)",
            "",
            "| bound | k | mean (nats) | SE over points | Monte Carlo SE |",
            "|---|---:|---:|---:|---:|",
        ]
        for bound in metrics.bounds:
            lines.append(
                f"| {bound.name} | {bound.num_particles} | {number(bound.mean)} | "
                f"{number(bound.standard_error)} | {number(bound.monte_carlo_standard_error, 3)} |"
            )
        lines.append("")
    if metrics.ais is not None:
        lines += _ais_lines(metrics.ais)
    if metrics.bdmc is not None:
        lines += _bdmc_lines(metrics.bdmc)
    if metrics.gaps is not None:
        lines += run_gap_lines(metrics.gaps)
    return "\n".join(lines + figure_lines(metrics.figures))


def _title(config: RunConfig) -> str:
    model = config.model
    return (
        f"# vi_vae run: {config.data.dataset}, latent {model.latent_family} "
        f"({model.latent_dim}-D), {model.likelihood}, estimator {config.training.estimator}"
    )


def resumed_report(config: RunConfig, completed_epochs: int) -> str:
    """The report of a run training on: its old numbers withdrawn until it is evaluated.

    A resume that trains on changes the weights the old report's numbers and figures
    are of; left in place, a resume stopped before its evaluation would show them as
    the run's.
    """
    return "\n".join(
        [
            _title(config),
            "",
            "## Training, not yet evaluated",
            "",
            f"This run was resumed after epoch {completed_epochs} to train on to epoch "
            f"{config.training.epochs}. Its numbers and figures are written here when it "
            "has finished training and been evaluated; those of the earlier weights were "
            "withdrawn, since the weights change. If it was stopped, resume it to finish it.",
            "",
        ]
    )


def figure_lines(names: Sequence[str]) -> list[str]:
    """The report's figures section (nothing without figures)."""
    if not names:
        return []
    return ["## Figures", "", *(f"![{Path(name).stem}]({name})" for name in names), ""]


def ais_settings_sentence(summary: AISSummary | BDMCSummary) -> str:
    """The AIS settings of a summary, in words: T and its schedule, C, L."""
    settings = summary.settings
    return (
        f"T = {settings.num_steps} annealing steps ({settings.schedule} schedule, from the "
        f"{settings.initial}), C = {settings.num_chains} chains per point, HMC with "
        f"L = {settings.leapfrog_steps} leapfrog steps"
    )


def _verdict(summary: AISSummary | BDMCSummary | EstimateSummary) -> str:
    """One line on the convergence checks of an AIS, BDMC or importance-sampling summary."""
    if summary.convergence is None:
        return "- convergence: not checked (recorded by an earlier version; evaluate again)"
    if summary.converged:
        return f"- convergence: {summary.convergence.summary}"
    return f"- **not converged**: {summary.convergence.summary}"


def _ais_lines(ais: AISSummary) -> list[str]:
    estimate, importance = ais.estimate, ais.importance_sampling
    heading = "the number to quote" if ais.converged else "not converged: not a number to quote"
    return [
        f"## Annealed importance sampling ({heading})",
        "",
        f"On the first {estimate.num_points} test points, {ais_settings_sentence(ais)}:",
        "",
        f"- AIS log p(x) ≈ **{number(estimate.log_likelihood)}** ± "
        f"{number(estimate.standard_error)} (standard error over points; Monte Carlo "
        f"standard error {number(estimate.monte_carlo_standard_error, 3)}); mean HMC "
        f"acceptance {number(ais.mean_acceptance_rate)}",
        f"- importance sampling on the same points (K = {importance.num_particles}): "
        f"{number(importance.log_likelihood)} ± {number(importance.standard_error)}",
        f"- AIS − IS: {number(ais.gap)} ± {number(ais.gap_standard_error)} nats per point "
        f"(paired; the largest single point {number(ais.max_gap)}). Both are stochastic "
        "lower bounds; the gap is how much looser importance sampling from the guide is.",
        *_cost_lines(ais),
        _verdict(ais),
        "",
    ]


def _cost(ais: AISSummary) -> str:
    return (
        f"{number(ais.cpu_seconds, 1)} CPU seconds, {ais.gradient_evaluations:,} gradient "
        "evaluations (points × chains × T × L)"
    )


def _cost_lines(ais: AISSummary) -> list[str]:
    """How T was chosen (``--auto``) and what AIS cost, beside the fixed settings' run."""
    lines, auto = [], ais.auto
    if auto is not None:
        rounds = "; ".join(
            f"T = {r.num_steps}: {number(r.mean)} ± {number(r.monte_carlo_standard_error, 3)}"
            for r in auto.rounds
        )
        start, largest = auto.settings.start_num_steps, auto.settings.max_num_steps
        lines.append(f"- T doubled from {start} (at most {largest}): {rounds}")
    if auto is not None and auto.bdmc is not None:
        lines.append(
            f"- BDMC at the final T on {auto.bdmc.num_points} points simulated from the model: gap "
            f"{number(auto.bdmc.mean_gap, 3)} ± {number(auto.bdmc.mean_gap_standard_error, 3)}"
        )
    if ais.cpu_seconds is not None:
        lines.append(f"- cost: {_cost(ais)}")
    fixed = auto.fixed if auto is not None else None
    if fixed is not None:
        lines.append(
            "- beside the fixed settings' run on the same points "
            f"({ais_settings_sentence(fixed)}): "
            f"{number(fixed.estimate.log_likelihood)} ± {number(fixed.estimate.standard_error)}"
            f" (Monte Carlo {number(fixed.estimate.monte_carlo_standard_error, 3)}); cost: "
            + ("not recorded" if fixed.cpu_seconds is None else _cost(fixed))
        )
    return lines


def _bdmc_lines(bdmc: BDMCSummary) -> list[str]:
    return [
        "## BDMC on simulated data",
        "",
        f"{bdmc.num_points} (z, x) pairs simulated from the model, {ais_settings_sentence(bdmc)}:",
        "",
        f"- forward AIS (lower bound): {number(bdmc.lower.log_likelihood)}; reverse AIS from "
        f"the simulating z (upper bound): {number(bdmc.upper.log_likelihood)} nats per point",
        f"- gap {number(bdmc.mean_gap, 3)} ± {number(bdmc.mean_gap_standard_error, 3)} "
        f"(largest single point {number(bdmc.max_gap)}); the gap bounds the error of AIS "
        f"with these settings on data like the model's own (real data can be harder), and "
        f"is small below {BDMC_GAP_TOLERANCE} nat per point.",
        _verdict(bdmc),
        "",
    ]
