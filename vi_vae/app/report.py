"""Markdown reports of a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vi_vae.app.config import RunConfig
from vi_vae.checkpoint import atomic_write_text

__all__ = [
    "REPORT_FILE",
    "comparison_report",
    "run_report",
    "write_comparison_report",
    "write_run_report",
]

REPORT_FILE = "report.md"


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def run_report(config: RunConfig, metrics: dict[str, Any]) -> str:
    """The report of one run: settings, log p(x) with its errors, bounds, figures."""
    estimate = metrics["log_marginal_likelihood"]
    training = metrics.get("training", {})
    lines = [
        f"# vi_vae run: {config.dataset}, latent {config.latent} ({config.latent_dim}-D), "
        f"{config.likelihood}, estimator {config.estimator}",
        "",
        f"Binarization: **{config.binarization}**. Seed {config.seed}. "
        f"Epochs completed: {training.get('epochs_completed', 'n/a')} "
        f"(best validation epoch {training.get('best_epoch', 'n/a')}).",
        "",
        "## Test log-likelihood (nats per data point; log p(x) is negative, NLL positive)",
        "",
        f"- log p(x) ≈ **{_number(estimate['log_px'])}** "
        f"± {_number(estimate['log_px_standard_error'])}"
        f" (standard error over {int(estimate['num_points'])} test points; Monte Carlo standard "
        f"error {_number(estimate['log_px_monte_carlo_standard_error'], 3)}), "
        f"importance sampling with K = {int(estimate['num_samples'])}",
        f"- NLL = {_number(estimate['nll'])}",
        f"- mean effective sample size {_number(estimate['mean_effective_sample_size'], 1)} "
        f"of {int(estimate['num_samples'])}; share of points with Pareto k̂ > 0.7: "
        f"{_number(estimate['share_pareto_k_above_0.7'], 3)} (above 0.7 the estimate of a "
        "point is unreliable)",
        "",
    ]
    if metrics.get("bounds"):
        lines += [
            "## Bounds on log p(x)",
            "",
            "| bound | k | mean (nats) | SE over points | Monte Carlo SE |",
            "|---|---:|---:|---:|---:|",
        ]
        for bound in metrics["bounds"]:
            lines.append(
                f"| {bound['name']} | {bound['num_particles']} | {_number(bound['mean'])} | "
                f"{_number(bound['standard_error'])} | "
                f"{_number(bound['monte_carlo_standard_error'], 3)} |"
            )
        lines.append("")
    figures = metrics.get("figures", [])
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in figures]
        lines.append("")
    return "\n".join(lines)


def write_run_report(run_dir: str | Path, config: RunConfig, metrics: dict[str, Any]) -> Path:
    """Write ``report.md`` into ``run_dir`` atomically and return its path."""
    path = Path(run_dir) / REPORT_FILE
    atomic_write_text(path, run_report(config, metrics))
    return path


def comparison_report(comparison: dict[str, Any], figures: list[str]) -> str:
    """The report of ``vi-vae compare``: settings, the table, figures, how to read them."""
    settings = comparison["settings"]
    rows = comparison["rows"]
    k = int(rows[0]["num_samples"]) if rows else 0
    points = (
        f"the same first {settings['eval_points']} test points"
        if settings["eval_points"]
        else "every test point (the same for all runs)"
    )
    lines = [
        f"# Estimators compared on {settings['dataset']}",
        "",
        f"Every run: latent {settings['latent']} ({settings['latent_dim']}-D), likelihood "
        f"{settings['likelihood']}, binarization **{settings['binarization']}**, hidden "
        f"{settings['hidden_sizes']}, {settings['epochs']} epochs of batch "
        f"{settings['batch_size']}, Adam {settings['learning_rate']}, seed {settings['seed']} "
        "(so the same initial weights and the same shuffling). Evaluated on "
        f"{points} with K = {k} importance samples. "
        "Nats per data point; bounds and log p(x) are negative, higher is better.",
        "",
        "| estimator | seconds | test ELBO | IWAE-5 | IWAE-50 | log p(x) ± SE | mean ESS | "
        "k̂ > 0.7 | active units | SNR encoder | SNR decoder |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['estimator']} | {row['seconds']:.3g} | {_number(row['elbo'])} | "
            f"{_number(row['iwae_5'])} | {_number(row['iwae_50'])} | "
            f"{_number(row['log_px'])} ± {_number(row['log_px_se'])} | "
            f"{_number(row['mean_ess'], 1)} | {_number(row['share_k_above'], 2)} | "
            f"{row['active_units']}/{row['latent_dim']} | {_number(row['snr_encoder'], 3)} | "
            f"{_number(row['snr_decoder'], 3)} |"
        )
    lines += [
        "",
        "How to read it:",
        "",
        "- *seconds*: wall-clock training time on the machine that made the report (other "
        "jobs on a shared machine inflate it); runs share the number of epochs, not the cost "
        "per step.",
        "- *log p(x) ± SE*: importance-sampled estimate (IWAE-K); SE is over test points "
        "(the Monte Carlo SE of each mean is in `comparison.json`). Differences between "
        "rows are paired (same points), so they are more precise than the SEs suggest.",
        "- *mean ESS*, *k̂ > 0.7*: reliability of the importance weights; a large share of "
        "k̂ > 0.7 means log p(x) may be underestimated (Vehtari et al.).",
        "- *active units*: latent dimensions with Cov_x(E_q[z_i]) > 0.01 (Burda et al.).",
        f"- *SNR*: |E g| / sd(g) of each estimator's own gradient over "
        f"{comparison['settings']['snr_draws']} draws on {comparison['settings']['snr_batch']} "
        "test points, averaged over encoder or decoder parameters (Rainforth et al. 2018).",
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{Path(name).stem}]({name})" for name in figures]
        lines.append("")
    if comparison.get("command"):
        lines += ["## Reproduce", "", f"    {comparison['command']}", ""]
    return "\n".join(lines)


def write_comparison_report(out_dir: str | Path, comparison: dict[str, Any]) -> Path:
    """Draw the comparison figures and write ``report.md`` into ``out_dir``."""
    from vi_vae.app import plots

    out_dir = Path(out_dir)
    figures = [
        plots.plot_bounds_versus_particles(
            {name: curve["bounds"] for name, curve in comparison["curves"].items()},
            out_dir / "bounds_versus_k.png",
        ),
        plots.plot_training_curves_overlaid(
            comparison["histories"], out_dir / "training_curves.png"
        ),
        plots.plot_snr_versus_particles(
            {name: curve["snr"] for name, curve in comparison["curves"].items()},
            out_dir / "snr_versus_k.png",
        ),
    ]
    path = out_dir / REPORT_FILE
    atomic_write_text(path, comparison_report(comparison, [p.name for p in figures]))
    return path
