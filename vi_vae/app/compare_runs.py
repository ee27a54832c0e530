"""One run of a comparison: trained, resumed, kept, or evaluated again.

:func:`~vi_vae.app.compare.compare` trains one run per estimator; with ``resume=True``
it keeps a finished run whose metrics hold the comparison's evaluation, evaluates again
one evaluated since with other settings (:class:`EvaluatedAgainWarning`), and trains an
unfinished one on, after refusing any run made with other settings
(:class:`SettingsChanged`). :class:`ComparisonProgress` is what it reports as it goes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vi_vae.app.assessment import evaluated_bound_particles, evaluation_points
from vi_vae.app.config import RunConfig
from vi_vae.app.run_directory import MetricsOfAnotherCheckpoint, RunDirectory
from vi_vae.app.run_evaluation import AISNotKeptWarning, evaluate_run
from vi_vae.app.runs import Run, RunProgress, load_run, resume_run, train_run
from vi_vae.errors import InputError

__all__ = [
    "ComparisonProgress",
    "EvaluatedAgainWarning",
    "SettingsChanged",
    "check_unchanged",
    "train_or_reuse",
]


class ComparisonProgress(RunProgress):
    """What :func:`compare` reports as it goes: each run's progress, and its own phases.

    Each hook does nothing unless overridden.
    """

    def on_run(self, spelling: str) -> None:
        """The run of estimator ``spelling`` starts."""

    def on_snr_draw(self, done: int, total: int) -> None:
        """The gradient-SNR measurements of the current run: ``done`` of ``total`` draws."""


def train_or_reuse(
    config: RunConfig,
    run_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    progress: ComparisonProgress,
) -> Run:
    """The run of ``config`` in ``run_dir``: trained, resumed, kept or evaluated again.

    With ``resume``, a finished run whose metrics hold the comparison's evaluation is
    kept; one evaluated since with other settings is evaluated again
    (:class:`EvaluatedAgainWarning`); an unfinished one trains on, and so does one whose
    metrics are another checkpoint's (evaluated anew). Otherwise the run is trained
    (over a run there only with ``overwrite``).
    """
    directory = RunDirectory(run_dir)
    if resume and directory.has_checkpoint():
        finished = directory.completed_epochs() >= config.training.epochs
        if finished and directory.metrics_path.is_file():
            try:
                run = load_run(run_dir)
            except MetricsOfAnotherCheckpoint:  # a resume stopped before its evaluation
                return resume_run(run_dir, epochs=config.training.epochs, progress=progress)
            if run.metrics is not None and run.metrics.log_marginal_likelihood is not None:
                differences = _evaluated_otherwise(run, config)
                if not differences:
                    return run
                warnings.warn(EvaluatedAgainWarning(run_dir, differences), stacklevel=2)
                with warnings.catch_warnings():
                    # the warning above names an AIS estimate that is not kept
                    warnings.simplefilter("ignore", AISNotKeptWarning)
                    return evaluate_run(
                        run_dir,
                        config.evaluation,
                        ais=config.ais,
                        device=config.training.device,
                        on_evaluation=progress.on_evaluation,
                    )
        return resume_run(run_dir, epochs=config.training.epochs, progress=progress)
    return train_run(config, run_dir, overwrite=overwrite or resume, progress=progress)


class EvaluatedAgainWarning(UserWarning):
    """``compare(resume=True)`` found a finished run evaluated with other settings.

    Its ``metrics.json`` was rewritten since training (a re-evaluation with other test
    points, K, bounds or AIS), or keeps no per-point log p(x) (written before vi_vae kept
    them); the comparison evaluated it again with its own settings, the numbers its
    training would have written, and replaced those metrics.

    Attributes:
        differences: what the run's metrics held against what the comparison asks for.
    """

    def __init__(self, run_dir: Path, differences: Sequence[str]) -> None:
        super().__init__(
            f"{run_dir} was evaluated with other settings than the comparison's "
            f"({'; '.join(differences)}); evaluated it again with the comparison's, "
            "replacing its metrics"
        )
        self.differences = tuple(differences)


def _evaluated_otherwise(run: Run, config: RunConfig) -> list[str]:
    """How ``run``'s metrics differ from what ``config``'s evaluation and AIS compute.

    Rows of one comparison must come from the same test points, K, bounds and AIS
    settings, with each point's log p(x) kept: its report reads them as paired.
    """
    metrics, evaluation, ais = run.metrics, config.evaluation, config.ais
    _, points = evaluation_points(run.dataset, evaluation.num_points)
    estimate = metrics.log_marginal_likelihood
    differences = []
    if (
        metrics.points != points
        or estimate.method != "importance-sampling"
        or estimate.num_particles != evaluation.num_particles
    ):
        differences.append(
            f"log p(x) by {estimate.method} on {estimate.num_points} test points with "
            f"K = {estimate.num_particles}, the comparison's on {points.num_points} with "
            f"K = {evaluation.num_particles}"
        )
    if not estimate.per_point:  # evaluated before vi_vae kept them
        differences.append("no per-point log p(x), which the comparison pairs between rows")
    have = tuple(bound.num_particles for bound in metrics.bounds)
    want = evaluated_bound_particles(evaluation)
    if have != want:
        differences.append(f"bounds for k = {list(have)}, the comparison's for k = {list(want)}")
    annealed = metrics.ais
    if ais.num_points is None:
        if annealed is not None:
            differences.append(
                f"AIS on {annealed.estimate.num_points} test points, the comparison's none"
            )
        return differences
    _, ais_points = evaluation_points(run.dataset, ais.num_points)
    if (
        annealed is None
        or annealed.auto is not None
        or annealed.settings != ais.settings
        or annealed.estimate.num_points != ais_points.num_points
    ):
        found = "no AIS" if annealed is None else f"AIS with other settings ({annealed.settings})"
        differences.append(
            f"{found}, the comparison's AIS on {ais_points.num_points} test points ({ais.settings})"
        )
    return differences


class SettingsChanged(InputError):
    """``compare(resume=True)`` was asked for settings other than its runs were made with.

    Attributes:
        fields: the changed settings, ``section.name``.
    """

    def __init__(self, run_dir: Path, changes: dict[str, tuple[Any, Any]]) -> None:
        listed = "; ".join(f"{field} {old!r} -> {new!r}" for field, (old, new) in changes.items())
        super().__init__(
            f"{run_dir} was made with other settings than asked for ({listed}); resume it "
            "with its own settings, or overwrite it"
        )
        self.fields = tuple(changes)


def check_unchanged(config: RunConfig, run_dir: Path) -> None:
    """Refuse to resume or reuse a run whose stored settings differ from ``config``.

    Only ``training.device`` may differ, and ``training.epochs`` may be raised (the run
    then trains on).
    """
    directory = RunDirectory(run_dir)
    if not directory.config_path.is_file():
        return
    stored = _flat(directory.read_config().to_json())
    wanted = _flat(config.to_json())
    changes = {
        field: (stored.get(field), wanted.get(field))
        for field in sorted(set(stored) | set(wanted))
        if stored.get(field) != wanted.get(field)
        and field != "training.device"
        and not (field == "training.epochs" and wanted[field] > stored[field])
    }
    if changes:
        raise SettingsChanged(run_dir, changes)


def _flat(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        f"{section}.{name}": value
        for section, fields in sections.items()
        for name, value in fields.items()
    }
