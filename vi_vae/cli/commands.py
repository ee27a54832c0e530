"""What each ``vi-vae`` subcommand does, given its parsed arguments; printing lives here."""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

from vi_vae.app.config import RunConfig
from vi_vae.errors import InputError

__all__ = ["COMMANDS"]


def config_from_args(args: argparse.Namespace, estimator: str) -> RunConfig:
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be an integer >= 1; got {args.epochs}")
    if args.eval_samples < 1:
        raise InputError(f"--eval-samples must be an integer >= 1; got {args.eval_samples}")
    if args.sigma is not None and args.likelihood != "gaussian":
        raise InputError("--sigma applies only to --likelihood gaussian")
    return RunConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        binarization=args.binarization,
        max_train=args.max_train,
        latent=args.latent,
        latent_dim=args.latent_dim,
        likelihood=args.likelihood,
        likelihood_options={"scale": args.sigma} if args.sigma is not None else {},
        hidden_sizes=args.hidden,
        activation=args.activation,
        estimator=estimator,
        epochs=args.epochs or (1 if getattr(args, "resume", None) else RunConfig.epochs),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        kl_weight=args.kl_weight,
        kl_warmup_epochs=args.kl_warmup_epochs,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        eval_samples=args.eval_samples,
        eval_bounds=args.eval_bounds,
        eval_points=args.eval_points,
    )


def _print_estimate(metrics: dict) -> None:
    estimate = metrics["log_marginal_likelihood"]
    print(
        f"test log p(x) = {estimate['log_px']:.2f} ± {estimate['log_px_standard_error']:.2f} nats "
        f"(K = {int(estimate['num_samples'])}, mean ESS "
        f"{estimate['mean_effective_sample_size']:.1f}, share k̂ > 0.7: "
        f"{estimate['share_pareto_k_above_0.7']:.2f})"
    )
    for bound in metrics["bounds"]:
        print(f"  {bound['name']:>10}: {bound['mean']:.2f} ± {bound['standard_error']:.2f}")


def _train(args: argparse.Namespace) -> int:
    from vi_vae.app.runs import train_run

    config = config_from_args(args, args.estimator)
    if args.resume:
        run_dir = Path(args.resume)
    elif args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        run_dir = Path("runs") / f"{Path(args.dataset).stem}-{args.latent}"
    progress = _ProgressBar(disable=args.quiet)
    try:
        metrics = train_run(
            config,
            run_dir,
            resume=bool(args.resume),
            overwrite=args.overwrite,
            on_step=progress.step,
            on_epoch=progress.epoch,
            figures=not args.no_figures,
        )
    finally:
        progress.close()
    print(f"run directory: {run_dir}")
    _print_estimate(metrics)
    print(f"report: {run_dir / 'report.md'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vi_vae.app.compare import compare, run_name

    config = config_from_args(args, "elbo")
    out_dir = Path(args.out_dir or Path("runs") / f"compare-{Path(args.dataset).stem}")
    progress = _ProgressBar(disable=args.quiet)

    def announce(spelling: str) -> None:
        if not args.quiet:
            print(f"training with {spelling}", file=sys.stderr)

    try:
        comparison = compare(
            config,
            args.estimators.split(","),
            out_dir,
            snr_particles=args.snr_particles,
            snr_draws=args.snr_draws,
            resume=args.resume,
            overwrite=args.overwrite,
            on_step=progress.step,
            on_epoch=progress.epoch,
            on_run=announce,
            command="vi-vae " + " ".join(shlex.quote(a) for a in args.argv),
        )
    finally:
        progress.close()
    print(f"comparison directory: {out_dir}")
    print(
        "run directories: "
        + ", ".join(str(out_dir / run_name(row["estimator"])) for row in comparison["rows"])
    )
    print(f"{'estimator':<14} {'log p(x)':>10} {'± SE':>6} {'ELBO':>9} {'seconds':>8}")
    for row in comparison["rows"]:
        print(
            f"{row['estimator']:<14} {row['log_px']:>10.2f} {row['log_px_se']:>6.2f} "
            f"{row['elbo']:>9.2f} {row['seconds']:>8.0f}"
        )
    print(f"report: {out_dir / 'report.md'}")
    return 0


class _ProgressBar:
    """A tqdm bar over steps, reset each epoch (stderr)."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.bar = None

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if self.disable:
            return
        from tqdm import tqdm

        if self.bar is None or step == 1:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=None
            )
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.2f}")

    def epoch(self, row: dict[str, float]) -> None:
        if self.disable:
            return
        self.close()
        print(
            f"epoch {int(row['epoch'])}: train loss {row['train_loss']:.2f}, validation ELBO "
            f"{row['validation_elbo']:.2f} ({row['seconds']:.1f} s)",
            file=sys.stderr,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _evaluate(args: argparse.Namespace) -> int:
    from vi_vae.app.runs import evaluate_run

    if args.num_samples < 1:
        raise InputError(f"--num-samples must be an integer >= 1; got {args.num_samples}")
    metrics = evaluate_run(args.run_dir, args.num_samples, args.device, args.num_points)
    _print_estimate(metrics)
    print(f"metrics: {Path(args.run_dir) / 'metrics.json'}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vi_vae.app import plots
    from vi_vae.app.runs import load_run

    run = load_run(args.run_dir)
    torch.manual_seed(args.seed)
    samples = run.vae.sample(args.num).cpu()
    output = Path(args.output) if args.output else run.run_dir / "samples.png"
    if output.suffix == ".npy":
        np.save(output, samples.numpy())
    elif output.suffix == ".png" and run.dataset.image_shape is not None:
        plots.plot_samples(samples, run.dataset.image_shape, output)
    else:
        raise InputError(f"--output must end in .npy or .png (image data only); got {output}")
    print(f"{args.num} samples written to {output}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from vi_vae.app.runs import load_run, make_figures

    run = load_run(args.run_dir)
    history_path = run.run_dir / "history.csv"
    history = []
    if history_path.exists():
        with open(history_path) as handle:
            history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    for path in make_figures(run.vae, run.dataset, history, run.run_dir):
        print(path)
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from vi_vae.data import dataset_descriptions

    for name, description in dataset_descriptions().items():
        print(f"{name:<20} {description}")
    return 0


def _families(args: argparse.Namespace) -> int:
    from vi_vae.latents import FAMILIES

    rows = [family.summary() for family in FAMILIES.values()]
    columns = ("name", "category", "support", "prior", "kl")
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    return 0


COMMANDS = {
    "train": _train,
    "compare": _compare,
    "evaluate": _evaluate,
    "sample": _sample,
    "plot": _plot,
    "datasets": _datasets,
    "families": _families,
}
