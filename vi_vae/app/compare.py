"""Estimators side by side: one model per estimator, same data, seed, initialization and budget.

``compare`` trains one run per estimator spelling (``elbo``, ``iwae:5``, ...)
with :func:`vi_vae.app.runs.train_run` — the same seed gives every run the same
initial weights and the same shuffling — evaluates each on the same test points
with the same K, measures gradient signal-to-noise ratios and active units, and
writes ``report.md``, ``comparison.json`` and figures into one directory, with
each run in a subdirectory of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vi_vae.app.config import RunConfig
from vi_vae.app.report import write_comparison_report
from vi_vae.app.runs import METRICS_FILE, load_run, train_run
from vi_vae.checkpoint import atomic_write_json, load_checkpoint, read_json
from vi_vae.errors import InputError
from vi_vae.estimators import parse_estimator, with_num_particles
from vi_vae.evaluation.diagnostics import active_units, gradient_snr
from vi_vae.model import VAE
from vi_vae.train import CHECKPOINT_FILE, fit

__all__ = [
    "COMPARISON_FILE",
    "DEFAULT_SNR_PARTICLES",
    "bound_curve_particles",
    "compare",
    "run_name",
]

logger = logging.getLogger(__name__)

COMPARISON_FILE = "comparison.json"
#: K values of the SNR-versus-K figure (Rainforth et al. 2018 plot K up to ~10³).
DEFAULT_SNR_PARTICLES = (1, 5, 20, 50)
#: test points in the fixed batch on which gradient SNRs are measured
SNR_BATCH = 64
#: K of the bound-versus-K curves, up to the evaluation's K
CURVE_PARTICLES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def run_name(spelling: str) -> str:
    """A directory name for an estimator spelling: ``iwae:5`` -> ``iwae-5``."""
    return spelling.replace(":", "-")


def bound_curve_particles(num_samples: int) -> list[int]:
    """The K of the bound-versus-K curves: 1, 2, 5, 10, ... up to ``num_samples``."""
    return [k for k in CURVE_PARTICLES if k <= num_samples]


def compare(
    base: RunConfig,
    estimators: Sequence[str],
    out_dir: str | Path,
    *,
    snr_particles: Sequence[int] = DEFAULT_SNR_PARTICLES,
    snr_draws: int = 100,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    on_run: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run per estimator; write the comparison report.

    Args:
        base: settings shared by every run (its ``estimator`` is replaced).
        estimators: estimator spellings, e.g. ``["elbo", "iwae:5", "dreg:5"]``.
        out_dir: the comparison directory; run ``s`` goes to ``out_dir/run_name(s)``.
        snr_particles: K values of the SNR-versus-K measurements.
        snr_draws: gradient draws per SNR measurement.
        resume: keep finished runs, resume unfinished ones.
        overwrite: replace an existing comparison directory's runs.
        on_step: progress callback of each run's training.
        on_epoch: per-epoch callback of each run's training.
        on_run: called with each spelling before its run starts.
        command: the command line to print in the report's "Reproduce" section.

    Returns:
        The content of ``comparison.json``: settings, one row per estimator,
        bound curves, SNR curves and histories.
    """
    estimators = list(dict.fromkeys(s.strip() for s in estimators if s.strip()))
    if not estimators:
        raise InputError("estimators must name at least one estimator, e.g. elbo,iwae:5")
    for spelling in estimators:
        parse_estimator(spelling)
    for k in snr_particles:
        if not isinstance(k, int) or k < 1:
            raise InputError(f"snr_particles must be integers >= 1; got {k!r}")
    base = dataclasses.replace(
        base,
        eval_bounds=sorted(set(base.eval_bounds) | set(bound_curve_particles(base.eval_samples))),
    ).validated()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    _warm_up(estimators)
    rows, curves, histories = [], {}, {}
    for spelling in estimators:
        if on_run is not None:
            on_run(spelling)
        config = dataclasses.replace(base, estimator=spelling)
        run_dir = out_dir / run_name(spelling)
        metrics = _train_or_reuse(config, run_dir, resume, overwrite, on_step, on_epoch)
        run = load_run(run_dir)
        rows.append(_row(spelling, run, metrics, snr_draws))
        curves[spelling] = {
            "bounds": [
                (b["num_particles"], b["mean"], b["standard_error"]) for b in metrics["bounds"]
            ],
            "snr": _snr_curve(spelling, run, snr_particles, snr_draws),
        }
        histories[spelling] = run.checkpoint["history"]
    comparison = {
        "settings": base.to_dict()
        | {"estimators": estimators, "snr_draws": snr_draws, "snr_batch": SNR_BATCH},
        "rows": rows,
        "curves": curves,
        "histories": histories,
    }
    if command is not None:
        comparison["command"] = command
    atomic_write_json(out_dir / COMPARISON_FILE, comparison)
    write_comparison_report(out_dir, comparison)
    return comparison


def _warm_up(estimators: Sequence[str]) -> None:
    """Take one step of each estimator on a throwaway VAE.

    One-time start-up costs (thread pools, first kernel calls) then do not land in
    the first run's seconds.
    """
    x = torch.zeros(4, 8)
    for spelling in estimators:
        vae = VAE(input_dim=8, latent_dim=2, hidden_sizes=[4])
        fit(vae.model, vae.guide, x, loss=parse_estimator(spelling), epochs=1, batch_size=4)


def _train_or_reuse(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    on_step: Callable | None,
    on_epoch: Callable | None,
) -> dict[str, Any]:
    if resume and (run_dir / METRICS_FILE).exists() and (run_dir / CHECKPOINT_FILE).exists():
        if load_checkpoint(run_dir / CHECKPOINT_FILE)["epoch"] >= config.epochs:
            return read_json(run_dir / METRICS_FILE)
    resuming = resume and (run_dir / CHECKPOINT_FILE).exists()
    return train_run(
        config,
        run_dir,
        resume=resuming,
        overwrite=overwrite and not resuming,
        on_step=on_step,
        on_epoch=on_epoch,
    )


def _row(spelling: str, run: Any, metrics: dict[str, Any], snr_draws: int) -> dict[str, Any]:
    estimate = metrics["log_marginal_likelihood"]
    by_k = {b["num_particles"]: b for b in metrics["bounds"]}
    device = next(run.vae.parameters()).device
    test = run.dataset.test[: run.config.eval_points].to(device)
    snr = gradient_snr(
        run.vae.model,
        run.vae.guide,
        parse_estimator(spelling),
        test[:SNR_BATCH],
        num_draws=snr_draws,
        seed=0,
    )
    history = run.checkpoint["history"]
    return {
        "estimator": spelling,
        "seconds": sum(row["seconds"] for row in history),
        "epochs": len(history),
        "elbo": by_k.get(1, {}).get("mean", math.nan),
        "elbo_se": by_k.get(1, {}).get("standard_error", math.nan),
        "iwae_5": by_k.get(5, {}).get("mean", math.nan),
        "iwae_50": by_k.get(50, {}).get("mean", math.nan),
        "log_px": estimate["log_px"],
        "log_px_se": estimate["log_px_standard_error"],
        "log_px_mc_se": estimate["log_px_monte_carlo_standard_error"],
        "mean_ess": estimate["mean_effective_sample_size"],
        "share_k_above": estimate["share_pareto_k_above_0.7"],
        "num_samples": estimate["num_samples"],
        "active_units": active_units(run.vae.encode, test).num_active,
        "latent_dim": run.config.latent_dim,
        "snr_encoder": snr.guide,
        "snr_decoder": snr.model,
    }


def _snr_curve(
    spelling: str, run: Any, snr_particles: Sequence[int], snr_draws: int
) -> list[tuple[int, float, float]]:
    device = next(run.vae.parameters()).device
    batch = run.dataset.test[:SNR_BATCH].to(device)
    curve = []
    for k in snr_particles:
        snr = gradient_snr(
            run.vae.model,
            run.vae.guide,
            with_num_particles(spelling, k),
            batch,
            num_draws=snr_draws,
            seed=0,
        )
        curve.append((k, snr.guide, snr.model))
    return curve
