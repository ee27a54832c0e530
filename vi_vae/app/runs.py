"""A training run end to end: config -> data -> VAE -> fit -> evaluation -> files.

A run directory holds ``config.json``, ``checkpoint.pt``, ``history.csv``,
``metrics.json``, figures (PNG) and ``report.md``. Everything here returns
values or writes files; the command line does the printing.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from vi_vae._random import seeded
from vi_vae.app.config import RunConfig, environment
from vi_vae.app.report import write_run_report
from vi_vae.checkpoint import atomic_write_json, load_checkpoint, read_json
from vi_vae.data import Dataset, load_dataset
from vi_vae.errors import InputError
from vi_vae.estimators import parse_estimator
from vi_vae.evaluation import importance_sampling
from vi_vae.model import VAE
from vi_vae.train import CHECKPOINT_FILE, FitResult, fit

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "LoadedRun",
    "build_vae",
    "evaluate_run",
    "load_run",
    "make_figures",
    "resolve_device",
    "train_run",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
#: test points shown in reconstructions, and seed of the evaluation draws
NUM_SHOWN = 30
EVALUATION_SEED = 0


@dataclass
class LoadedRun:
    """A run directory loaded back: its config, data and trained VAE."""

    run_dir: Path
    config: RunConfig
    dataset: Dataset
    vae: VAE
    checkpoint: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing CUDA on a machine without it."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available; use cpu")
    return device


def build_vae(config: RunConfig, dataset: Dataset) -> VAE:
    """The VAE a config describes, sized for ``dataset``."""
    return VAE(
        input_dim=dataset.input_dim,
        latent_dim=config.latent_dim,
        latent_family=config.latent,
        likelihood=config.likelihood,
        likelihood_options=config.likelihood_options,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        image_shape=dataset.image_shape,
    )


def _load_data(config: RunConfig) -> Dataset:
    return load_dataset(
        config.dataset,
        binarization=config.binarization,
        data_dir=config.data_dir,
        max_train=config.max_train,
    )


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    figures: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and write a run directory; return its metrics.

    Args:
        config: the run's settings; ignored with ``resume`` (the stored one is used,
            except ``epochs``, which may be raised to train longer).
        run_dir: the directory to write.
        resume: continue the run in ``run_dir`` from its last completed epoch.
        overwrite: replace an existing run directory.
        on_step: progress callback, see :func:`vi_vae.train.fit`.
        on_epoch: per-epoch callback, see :func:`vi_vae.train.fit`.
        figures: write the PNG figures.
    """
    run_dir = Path(run_dir)
    if resume:
        stored = RunConfig.from_dict(read_json(run_dir / CONFIG_FILE)["config"])
        config = RunConfig(**{**stored.to_dict(), "epochs": max(stored.epochs, config.epochs)})
    else:
        config = config.validated()
        if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
            raise InputError(
                f"run directory {run_dir} is not empty; pass --resume {run_dir} to continue "
                "it or --overwrite to replace it"
            )
    # Everything that can refuse the input runs before the run directory is touched,
    # so bad input neither leaves a half-made run nor destroys the one it would replace.
    device = resolve_device(config.device)
    dataset = _load_data(config)
    pyro.set_rng_seed(config.seed)
    vae = build_vae(config, dataset).to(device)
    vae.check_data(dataset.validation, "validation data")
    vae.check_data(dataset.test, "test data")
    if dataset.binarization != "dynamic":
        vae.check_data(dataset.train, "training data")
    if overwrite and not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run_dir / CONFIG_FILE, {"config": config.to_dict(), "environment": environment()}
    )
    started = time.perf_counter()
    result = fit(
        vae.model,
        vae.guide,
        dataset.train,
        validation=dataset.validation,
        loss=parse_estimator(config.estimator),
        learning_rate=config.learning_rate,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        batch_transform=dataset.batch_transform(),
        kl_weight=config.kl_weight,
        kl_warmup_epochs=config.kl_warmup_epochs,
        patience=config.patience,
        run_dir=run_dir,
        resume=resume,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    training = _training_summary(result, time.perf_counter() - started)
    metrics = _evaluate(vae, dataset, config, device)
    metrics["training"] = training
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    if figures:
        metrics["figures"] = [p.name for p in make_figures(vae, dataset, result.history, run_dir)]
    write_run_report(run_dir, config, metrics)
    return metrics


def _training_summary(result: FitResult, seconds: float) -> dict[str, Any]:
    last = result.history[-1] if result.history else {}
    return {
        "epochs_completed": int(last.get("epoch", 0)),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds_this_session": seconds,
        "seconds_per_epoch": (
            sum(row["seconds"] for row in result.history) / len(result.history)
            if result.history
            else float("nan")
        ),
        "final_train_loss": last.get("train_loss"),
    }


def _evaluate(
    vae: VAE,
    dataset: Dataset,
    config: RunConfig,
    device: torch.device,
    num_samples: int | None = None,
) -> dict[str, Any]:
    x = dataset.test[: config.eval_points].to(device)
    num_samples = num_samples or config.eval_samples
    ks = [k for k in config.eval_bounds if k <= num_samples]
    if len(ks) < len(config.eval_bounds):
        logger.warning("bounds with k > %d importance samples are left out", num_samples)
    estimate, table = importance_sampling(
        vae.model, vae.guide, x, num_particles=num_samples, bound_particles=ks, seed=EVALUATION_SEED
    )
    return {
        "split": "test",
        "log_marginal_likelihood": {
            "log_px": estimate.mean,
            "log_px_standard_error": estimate.standard_error,
            "log_px_monte_carlo_standard_error": estimate.mean_monte_carlo_standard_error,
            "nll": -estimate.mean,
            "mean_effective_sample_size": estimate.mean_effective_sample_size,
            "share_pareto_k_above_0.7": estimate.share_pareto_k_above,
            "num_samples": float(estimate.num_particles),
            "num_points": float(estimate.num_points),
        },
        "bounds": [
            {
                "name": bound.name,
                "num_particles": bound.num_particles,
                "mean": bound.mean,
                "standard_error": bound.standard_error,
                "monte_carlo_standard_error": bound.mean_monte_carlo_standard_error,
            }
            for bound in table
        ],
    }


def load_run(run_dir: str | Path, device: str | None = None) -> LoadedRun:
    """Load a run directory's config, data and best parameters.

    Clears Pyro's param store: a PyroModule registers its parameters there by
    name, and a stale entry of the same name (from an earlier model in this
    process) would shadow the loaded one in every trace.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    stored = read_json(run_dir / CONFIG_FILE)
    if not isinstance(stored, dict) or "config" not in stored:
        raise InputError(f"{run_dir / CONFIG_FILE} is not a vi_vae run config")
    config = RunConfig.from_dict(stored["config"])
    if device is not None:
        config.device = device
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    dataset = _load_data(config)
    vae = build_vae(config, dataset)
    params = checkpoint.get("best_params") or checkpoint["params"]
    try:
        vae.load_state_dict(params)
    except RuntimeError as error:
        raise InputError(
            f"checkpoint in {run_dir} does not fit the model its config describes ({error})"
        ) from None
    vae.to(resolve_device(config.device))
    vae.eval()
    pyro.clear_param_store()
    return LoadedRun(run_dir, config, dataset, vae, checkpoint)


def evaluate_run(
    run_dir: str | Path,
    num_samples: int | None = None,
    device: str | None = None,
    num_points: int | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run on its test split; update and return ``metrics.json``."""
    run = load_run(run_dir, device)
    if num_points is not None:
        run.config.eval_points = num_points
    metrics = _evaluate(
        run.vae, run.dataset, run.config, resolve_device(run.config.device), num_samples
    )
    path = run.run_dir / METRICS_FILE
    previous = read_json(path) if path.exists() else {}
    if isinstance(previous, dict) and "training" in previous:
        metrics["training"] = previous["training"]
    atomic_write_json(path, metrics)
    return metrics


def make_figures(
    vae: VAE, dataset: Dataset, history: list[dict[str, float]], run_dir: str | Path
) -> list[Path]:
    """Write every figure that applies to this run; return their paths."""
    from vi_vae.app import plots

    run_dir = Path(run_dir)
    device = next(vae.decoder.parameters()).device
    written: list[Path | None] = []
    if history:
        written.append(plots.plot_training_curves(history, run_dir / "training_curves.png"))
    x = dataset.test.to(device)
    with torch.no_grad():
        centres = vae.latent_family.center(vae.encode(x))
    written.append(
        plots.plot_latent_scatter(centres, dataset.test_labels, run_dir / "latent_scatter.png")
    )
    if dataset.image_shape is not None:
        # evenly spaced test points: splits are sorted by class, so the first few are alike
        shown = x[torch.linspace(0, len(x) - 1, min(NUM_SHOWN, len(x))).long()]
        written.append(
            plots.plot_reconstructions(
                shown, vae.reconstruct(shown), dataset.image_shape, run_dir / "reconstructions.png"
            )
        )
        with seeded(EVALUATION_SEED, device):
            samples = vae.sample(64)
        written.append(plots.plot_samples(samples, dataset.image_shape, run_dir / "samples.png"))
        start, end = _interpolation_ends(dataset)
        written.append(
            plots.plot_interpolation(vae, x[start], x[end], run_dir / "interpolation.png")
        )
        written.append(plots.plot_manifold(vae, run_dir / "manifold.png"))
    return [path for path in written if path is not None]


def _interpolation_ends(dataset: Dataset) -> tuple[int, int]:
    """Indices of a test '6' and a test '4' when labelled (the seeds' example), else 0 and 1."""
    labels = dataset.test_labels
    if labels is not None:
        sixes, fours = (labels == 6).nonzero(), (labels == 4).nonzero()
        if len(sixes) and len(fours):
            return int(sixes[0]), int(fours[0])
    return 0, min(1, len(dataset.test) - 1)
