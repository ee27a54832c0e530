"""Estimators side by side: one model per estimator, same data, seed, initialization and budget.

:func:`compare` trains one run per estimator spelling (``elbo``, ``iwae:5``, ...)
with :func:`vi_vae.app.runs.train_run` — the same seed gives every run the same
initial weights and the same shuffling — evaluates each on the same test points
with the same K, measures gradient signal-to-noise ratios and active units on
the model in memory, and writes ``report.md``, ``comparison.json`` and figures
into one directory, with each run in a subdirectory of its own. How each run is
trained, resumed or kept is :mod:`vi_vae.app.compare_runs`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pyro.infer.elbo import ELBO as PyroELBO

from vi_vae._validation import check_positive_int
from vi_vae.app import plots
from vi_vae.app.assessment import GapRequest, evaluation_points, gaps_summary
from vi_vae.app.compare_runs import (
    ComparisonProgress,
    EvaluatedAgainWarning,
    SettingsChanged,
    check_unchanged,
    train_or_reuse,
)
from vi_vae.app.comparison_metrics import Comparison, ComparisonRow, SNRPoint
from vi_vae.app.comparison_report import comparison_report
from vi_vae.app.config import RunConfig
from vi_vae.app.metrics import BoundSummary
from vi_vae.app.run_directory import RunDirectory
from vi_vae.app.runs import Run
from vi_vae.errors import InputError
from vi_vae.estimators import canonical_spelling, parse_estimator, with_num_particles
from vi_vae.evaluation import GradientSNR, active_units, gradient_snr
from vi_vae.model import VAE
from vi_vae.train import fit

__all__ = [
    "CURVE_PARTICLES",
    "DEFAULT_ESTIMATORS",
    "DEFAULT_SNR_NUM_DRAWS",
    "DEFAULT_SNR_PARTICLES",
    "SNR_BATCH_SIZE",
    "ComparisonProgress",
    "EvaluatedAgainWarning",
    "SettingsChanged",
    "bound_curve_particles",
    "compare",
    "run_name",
]

#: the estimators ``make demo`` and ``vi-vae compare`` compare by default
DEFAULT_ESTIMATORS = ("elbo", "iwae:5", "dreg:5", "stl:1")
#: K values of the SNR-versus-K figure (Rainforth et al. 2018 plot K up to ~10³).
DEFAULT_SNR_PARTICLES = (1, 5, 20, 50)
#: gradient draws per SNR value
DEFAULT_SNR_NUM_DRAWS = 100
#: test points in the fixed batch on which gradient SNRs are measured
SNR_BATCH_SIZE = 64
#: k of the bound-versus-k curves, up to the evaluation's K
CURVE_PARTICLES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: seed of the gradient draws of the SNR measurements
SNR_SEED = 0


def run_name(spelling: str) -> str:
    """A directory name for an estimator spelling: ``iwae:5`` -> ``iwae-5``."""
    return spelling.replace(":", "-")


def bound_curve_particles(num_particles: int) -> list[int]:
    """The k of the bound-versus-k curves: 1, 2, 5, 10, ... up to ``num_particles``."""
    return [k for k in CURVE_PARTICLES if k <= num_particles]


def compare(
    base: RunConfig,
    estimators: Sequence[str],
    out_dir: str | Path,
    *,
    snr_particles: Sequence[int] = DEFAULT_SNR_PARTICLES,
    snr_num_draws: int = DEFAULT_SNR_NUM_DRAWS,
    resume: bool = False,
    overwrite: bool = False,
    progress: ComparisonProgress | None = None,
    command: str | None = None,
    gaps: GapRequest | None = None,
) -> Comparison:
    """Train and evaluate one run per estimator; write the comparison report.

    Every argument is checked before the first run starts training.

    Args:
        base: settings shared by every run (its estimator is replaced).
        estimators: estimator spellings, e.g. ``["elbo", "iwae:5", "dreg:5"]``.
        out_dir: the comparison directory; run ``s`` goes to ``out_dir/run_name(s)``.
        snr_particles: K values of the SNR-versus-K measurements.
        snr_num_draws: gradient draws per SNR measurement (at least 2).
        resume: keep finished runs, resume unfinished ones. Their stored settings must
            be the ones asked for, except the device and a raised number of epochs
            (the run then trains on). A finished run evaluated since with other
            settings (:func:`~vi_vae.app.run_evaluation.evaluate_run`) is evaluated again with
            the comparison's, with an :class:`EvaluatedAgainWarning`, so that every
            row has the same points, K and AIS.
        overwrite: replace an existing comparison directory's runs.
        progress: told of each run, training step and epoch, evaluation phase
            (importance sampling; AIS too with ``base.ais.num_points`` set, on that
            many test points of every run) and gradient draw of the SNR measurements.
        command: the command line to print in the report's "Reproduce" section.
        gaps: also where each run's bound is lost (:func:`vi_vae.inference_gaps`), on
            ``gaps.num_points`` test points with ``gaps.settings`` (default: not computed).

    Returns:
        The :class:`~vi_vae.app.comparison_metrics.Comparison` written to ``comparison.json``.

    Raises:
        SettingsChanged: with ``resume``, when a run was made with other settings.
        RunDirectoryInUse: when another process writes ``out_dir`` or one of its runs.
    """
    progress = progress or ComparisonProgress()
    # one row per estimator: "iwae:05" is "iwae:5", and a name given twice is one row
    estimators = list(dict.fromkeys(canonical_spelling(s) for s in estimators if s.strip()))
    if not estimators:
        raise InputError("estimators must name at least one estimator, e.g. elbo,iwae:5")
    for spelling in estimators:
        parse_estimator(spelling)
    for k in snr_particles:
        check_positive_int("snr_particles", k)
    check_positive_int("snr_num_draws", snr_num_draws, minimum=2)
    curve = bound_curve_particles(base.evaluation.num_particles)
    bound_particles = tuple(sorted(set(base.evaluation.bound_particles) | set(curve)))
    base = base.replace("evaluation", bound_particles=bound_particles).validated()
    directory = RunDirectory(out_dir)
    directory.check_creatable()
    if resume:
        for spelling in estimators:
            check_unchanged(
                base.replace("training", estimator=spelling), directory.path / run_name(spelling)
            )
    train = functools.partial(train_or_reuse, resume=resume, overwrite=overwrite, progress=progress)
    with directory.locked(create=True):
        return _compare(
            base,
            estimators,
            directory,
            train,
            snr_particles,
            snr_num_draws,
            progress,
            command,
            gaps,
        )


def _compare(
    base: RunConfig,
    estimators: Sequence[str],
    directory: RunDirectory,
    train: Callable[[RunConfig, Path], Run],
    snr_particles: Sequence[int],
    snr_num_draws: int,
    progress: ComparisonProgress,
    command: str | None,
    gaps: GapRequest | None,
) -> Comparison:
    _warm_up(estimators)
    rows, bound_curves, snr_curves, histories = [], {}, {}, {}
    for spelling in estimators:
        progress.on_run(spelling)
        config = base.replace("training", estimator=spelling)
        run = train(config, directory.path / run_name(spelling))
        snr, snr_curves[spelling] = _snrs(spelling, run, snr_particles, snr_num_draws, progress)
        rows.append(_row(spelling, run, snr, gaps, progress))
        bound_curves[spelling] = run.metrics.bounds
        histories[spelling] = tuple(run.history)
    comparison = Comparison(
        settings=base,
        estimators=tuple(estimators),
        snr_num_draws=snr_num_draws,
        snr_batch_size=SNR_BATCH_SIZE,
        rows=tuple(rows),
        bound_curves=bound_curves,
        snr_curves=snr_curves,
        histories=histories,
        command=command,
    )
    directory.write_comparison(comparison)
    figures = _comparison_figures(comparison, directory)
    directory.write_report(comparison_report(comparison, figures))
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


def _draw_counter(progress: ComparisonProgress, total: int) -> Callable[[int, int], None]:
    """An ``on_draw`` that counts the draws of a run's SNR measurements, all together."""
    done = 0

    def on_draw(_: int, __: int) -> None:
        nonlocal done
        done += 1
        progress.on_snr_draw(done, total)

    return on_draw


def _row(
    spelling: str,
    run: Run,
    snr: GradientSNR,
    gaps: GapRequest | None,
    progress: ComparisonProgress,
) -> ComparisonRow:
    """The run's row; with ``gaps``, where its bound is lost (measured last)."""
    test, _ = evaluation_points(run.dataset, run.config.evaluation.num_points)
    test = test.to(run.device)
    return ComparisonRow(
        estimator=spelling,
        seconds=sum(record.seconds for record in run.history),
        epochs=len(run.history),
        log_marginal_likelihood=run.metrics.log_marginal_likelihood,
        bounds=run.metrics.bounds,
        active_units=active_units(run.vae, test).num_active,
        latent_units=sum(run.vae.latent_dims),
        snr_guide=snr.guide,
        snr_model=snr.model,
        ais=run.metrics.ais,
        gaps=None
        if gaps is None
        else gaps_summary(
            run.vae,
            run.dataset,
            gaps.num_points,
            gaps.settings,
            on_evaluation=progress.on_evaluation,
        ),
    )


def _snrs(
    spelling: str,
    run: Run,
    snr_particles: Sequence[int],
    snr_num_draws: int,
    progress: ComparisonProgress,
) -> tuple[GradientSNR, tuple[SNRPoint, ...]]:
    """The run's gradient SNR with its own estimator, and its SNR-versus-K curve.

    Every measurement draws from :data:`SNR_SEED` on the same batch, so where the
    curve's estimator at some K is the run's own (the same class and settings) its
    measurement is the run's, taken once.
    """
    test, _ = evaluation_points(run.dataset, run.config.evaluation.num_points)
    batch = test[:SNR_BATCH_SIZE].to(run.device)
    own = parse_estimator(spelling)
    losses = [(k, with_num_particles(spelling, k)) for k in snr_particles]
    shared = next((k for k, loss in losses if _same_estimator(loss, own)), None)
    measured = 1 + sum(k != shared for k, _ in losses)
    on_draw = _draw_counter(progress, snr_num_draws * measured)

    def measure(loss: PyroELBO) -> GradientSNR:
        return gradient_snr(
            run.vae.model,
            run.vae.guide,
            loss,
            batch,
            num_draws=snr_num_draws,
            seed=SNR_SEED,
            on_draw=on_draw,
        )

    snr = measure(own)
    points = [(k, snr if k == shared else measure(loss)) for k, loss in losses]
    return snr, tuple(SNRPoint(k, point.guide, point.model) for k, point in points)


def _same_estimator(first: PyroELBO, second: PyroELBO) -> bool:
    """Whether two estimators compute the same: the same class and public settings."""

    def public(loss: PyroELBO) -> dict[str, Any]:
        return {name: value for name, value in vars(loss).items() if not name.startswith("_")}

    return type(first) is type(second) and public(first) == public(second)


def _comparison_figures(comparison: Comparison, directory: RunDirectory) -> tuple[str, ...]:
    curves: dict[str, tuple[BoundSummary, ...]] = comparison.bound_curves
    gaps = {row.estimator: row.gaps for row in comparison.rows if row.gaps is not None}
    extra = (
        (directory.write_figure("inference_gaps", plots.plot_inference_gaps(gaps)),) if gaps else ()
    )
    return (
        directory.write_figure("bounds_versus_k", plots.plot_bounds_versus_particles(curves)),
        directory.write_figure(
            "training_curves", plots.plot_training_curves_overlaid(comparison.histories)
        ),
        directory.write_figure(
            "snr_versus_k",
            plots.plot_snr_versus_particles(comparison.snr_curves, comparison.snr_num_draws),
        ),
    ) + extra
