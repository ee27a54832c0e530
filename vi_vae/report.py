"""Markdown reports of a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vi_vae.checkpoint import atomic_write_text
from vi_vae.config import RunConfig

__all__ = ["REPORT_FILE", "run_report", "write_run_report"]

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
