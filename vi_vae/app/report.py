"""Markdown reports of a run and of a comparison, from their typed results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from vi_vae.app.comparison_metrics import Comparison, ComparisonRow
from vi_vae.app.config import RunConfig
from vi_vae.app.gap_report import comparison_gap_lines, run_gap_lines
from vi_vae.app.metrics import AISSummary, BDMCSummary, EstimateSummary, RunMetrics
from vi_vae.evaluation import (
    ABOVE_PARETO_K_THRESHOLD,
    NARROWER_GUIDE_SUPPORT,
    PARETO_K_THRESHOLD,
    snr_noise_floor,
)
from vi_vae.evaluation.convergence import BDMC_GAP_TOLERANCE, UNSETTLED_IMPORTANCE_SAMPLING

__all__ = ["comparison_report", "number", "run_report", "units_sentence"]


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


def _support_lines(estimate: EstimateSummary) -> list[str]:
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
    model, training = config.model, metrics.training
    lines = [
        f"# vi_vae run: {config.data.dataset}, latent {model.latent_family} "
        f"({model.latent_dim}-D), {model.likelihood}, estimator {config.training.estimator}",
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
            *_support_lines(estimate),
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
    return "\n".join(lines + _figure_lines(metrics.figures))


def _figure_lines(names: Sequence[str]) -> list[str]:
    """The report's figures section (nothing without figures)."""
    if not names:
        return []
    return ["## Figures", "", *(f"![{Path(name).stem}]({name})" for name in names), ""]


def _ais_settings(summary: AISSummary | BDMCSummary) -> str:
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
        f"On the first {estimate.num_points} test points, {_ais_settings(ais)}:",
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
            f"- beside the fixed settings' run on the same points ({_ais_settings(fixed)}): "
            f"{number(fixed.estimate.log_likelihood)} ± {number(fixed.estimate.standard_error)}"
            f" (Monte Carlo {number(fixed.estimate.monte_carlo_standard_error, 3)}); cost: "
            + ("not recorded" if fixed.cpu_seconds is None else _cost(fixed))
        )
    return lines


def _bdmc_lines(bdmc: BDMCSummary) -> list[str]:
    return [
        "## BDMC on simulated data",
        "",
        f"{bdmc.num_points} (z, x) pairs simulated from the model, {_ais_settings(bdmc)}:",
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


#: the IWAE-k columns of the comparison table, besides the ELBO (k = 1)
COMPARISON_BOUND_COLUMNS = (5, 50)


def comparison_report(comparison: Comparison, figures: Sequence[str]) -> str:
    """The report of ``vi-vae compare``: settings, the table, figures, how to read them."""
    settings, rows = comparison.settings, comparison.rows
    first = rows[0].log_marginal_likelihood if rows else None
    points = (
        f"the same {first.num_points} test points (the first of the shuffled test split, a "
        "random subset)"
        if settings.evaluation.num_points
        else "every test point (the same for all runs)"
    )
    model, training = settings.model, settings.training
    bound_headers = "".join(f" IWAE-{k} |" for k in COMPARISON_BOUND_COLUMNS)
    lines = [
        f"# Estimators compared on {settings.data.dataset}",
        "",
        f"Every run: latent {model.latent_family} ({model.latent_dim}-D), likelihood "
        f"{model.likelihood}, binarization **{settings.data.binarization}**, hidden "
        f"{list(model.hidden_sizes)}, {training.epochs} epochs of batch {training.batch_size}, "
        f"Adam {training.learning_rate}, seed {training.seed} (so the same initial weights "
        f"and the same shuffling). Evaluated on {points} with K = "
        f"{first.num_particles if first else 'n/a'} importance samples. Nats per data point; "
        "higher is better.",
        "",
        f"| estimator | seconds | test ELBO |{bound_headers} log p(x) ± SE | mean ESS | "
        "k̂ > 0.7 | active units | SNR encoder | SNR decoder |",
        "|---|---:|---:|"
        + "---:|" * len(COMPARISON_BOUND_COLUMNS)
        + "---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        estimate = row.log_marginal_likelihood
        elbo = row.bound(1)
        bound_cells = "".join(
            f" {number(getattr(row.bound(k), 'mean', None))} |" for k in COMPARISON_BOUND_COLUMNS
        )
        lines.append(
            f"| {row.estimator} | {row.seconds:.3g} | {number(getattr(elbo, 'mean', None))} |"
            f"{bound_cells} {number(estimate.log_likelihood)}"
            f"{'*' if estimate.converged is False else ''} ± "
            f"{number(estimate.standard_error)} | {number(estimate.mean_effective_sample_size, 1)}"
            f" | {number(estimate.share_pareto_k_above, 2)} | {row.active_units}/{row.latent_units}"
            f" | {number(row.snr_guide, 3)} | {number(row.snr_model, 3)} |"
        )
    lines += _paired_difference_lines(comparison)
    lines += _comparison_legend(comparison)
    lines += _comparison_ais_section(rows)
    gap_figure = "inference_gaps.png" if "inference_gaps.png" in figures else None
    lines += comparison_gap_lines(rows, gap_figure)
    others = [name for name in figures if name != gap_figure]  # that one is beside its table
    lines += _figure_lines(others)
    if comparison.command:
        lines += ["## Reproduce", "", f"    {comparison.command}", ""]
    return "\n".join(lines)


def _comparison_legend(comparison: Comparison) -> list[str]:
    """How to read the comparison's table: one line per column (and the starred rows)."""
    first = comparison.rows[0].log_marginal_likelihood if comparison.rows else None
    return [
        "",
        "How to read it:",
        "",
        "- *seconds*: wall-clock training time on the machine that made the report (other "
        "jobs on a shared machine inflate it); runs share the number of epochs, not the cost "
        "per step.",
        "- *log p(x) ± SE*: importance-sampled estimate (IWAE-K); SE is over test points "
        "(the Monte Carlo SE of each mean is in `comparison.json`)."
        + _pairing_sentence(comparison),
        *(
            [f"- *\\**: log p(x) is {UNSETTLED_IMPORTANCE_SAMPLING}; raise num_particles."]
            if comparison.unsettled
            else []
        ),
        "- *mean ESS*, *k̂ > 0.7*: reliability of the importance weights; a large share of "
        "k̂ > 0.7 means log p(x) may be underestimated (Vehtari et al.).",
        *[  # the rows share their model, so the first row's guide speaks for all
            line.replace("this number", "each row's log p(x)")
            for line in (_support_lines(first) if first is not None else [])
        ],
        "- *active units*: latent dimensions with Cov_x(E_q[z_i]) > 0.01 (Burda et al.).",
        f"- *SNR*: |E g| / sd(g) of each estimator's own gradient over "
        f"{comparison.snr_num_draws} draws on {comparison.snr_batch_size} test points, "
        "averaged over encoder or decoder parameters (Rainforth et al. 2018). "
        + _snr_floor_sentence(comparison.snr_num_draws),
        "",
    ]


def _pairing_sentence(comparison: Comparison) -> str:
    """Why rows' differences are more precise than their SEs, and where their SE is."""
    if len(comparison.rows) < 2:
        return ""
    where = (
        ": the paired differences give its SE."
        if comparison.paired_differences()
        else "; these runs were evaluated before vi_vae kept per-point values, so none are paired."
    )
    return (
        " Rows share their points, so a difference between rows is far more precise than "
        "these SEs suggest" + where
    )


def _snr_floor_sentence(num_draws: int) -> str:
    """What a gradient with mean 0 reads at ``num_draws`` draws (:func:`snr_noise_floor`)."""
    floor = snr_noise_floor(num_draws)
    if math.isinf(floor):
        return (
            f"At {num_draws} draws a gradient with mean 0 has no finite expected SNR, so "
            "these SNRs cannot tell signal from noise: raise snr_num_draws."
        )
    return (
        f"A parameter whose gradient has mean 0 reads {floor:.3f} at {num_draws} draws (the "
        "dashed line of the SNR figure): SNRs near it are noise."
    )


def _paired_difference_lines(comparison: Comparison) -> list[str]:
    """Each row's log p(x) minus the first row's, paired over the same points, as a table.

    Nothing for a comparison whose runs did not keep their per-point values.
    """
    differences = comparison.paired_differences()
    if not differences:
        return []
    first = comparison.rows[0]
    reference = first.log_marginal_likelihood
    lines = [
        "",
        f"Paired differences: log p(x) minus {first.estimator}'s, point by point on the same "
        f"{reference.num_points} test points (nats per point; positive is better than "
        f"{first.estimator}).",
        "",
        "| estimator | difference | paired SE | SE if unpaired |",
        "|---|---:|---:|---:|",
    ]
    for row in comparison.rows[1:]:
        difference = differences.get(row.estimator)
        if difference is None:
            continue
        unpaired = math.hypot(row.log_marginal_likelihood.standard_error, reference.standard_error)
        lines.append(
            f"| {row.estimator} | {difference.mean:+.3f} | "
            f"{number(difference.standard_error, 3)} | {number(unpaired, 3)} |"
        )
    if comparison.unsettled:
        lines += [
            "",
            "Starred rows' log p(x) are not converged in K: their differences compare the "
            "estimates, which lie below log p(x) by amounts that can differ between rows.",
        ]
    return lines


def _comparison_ais_section(rows: Sequence[ComparisonRow]) -> list[str]:
    """The comparison report's AIS table, when its runs ran AIS (else nothing)."""
    with_ais = [row for row in rows if row.ais is not None]
    if not with_ais:
        return []
    lines: list[str] = []
    quote = (
        "AIS is the number to quote"
        if all(row.ais.converged for row in with_ais)
        else "AIS is the number to quote only where it converged (last column)"
    )
    lines += [
        f"## AIS on {with_ais[0].ais.estimate.num_points} of the test points",
        "",
        f"{_ais_settings(with_ais[0].ais)}; the same points for every run. {quote}; "
        "AIS − IS is how far importance sampling from the guide falls short on these "
        "points (paired, nats per point).",
        "",
        "| estimator | AIS log p(x) ± SE | IS on the same points | AIS − IS | acceptance "
        "| converged |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in with_ais:
        ais = row.ais
        lines.append(
            f"| {row.estimator} | {number(ais.estimate.log_likelihood)} ± "
            f"{number(ais.estimate.standard_error)} | "
            f"{number(ais.importance_sampling.log_likelihood)} | {number(ais.gap)} ± "
            f"{number(ais.gap_standard_error)} | {number(ais.mean_acceptance_rate)} | "
            f"{'yes' if ais.converged else 'no'} |"
        )
    lines.append("")
    return lines
