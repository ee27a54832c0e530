"""Train the same VAE on mnist-5k with every latent family under one budget, and compare.

    python benchmarks/latent_families.py --epochs 10 --output docs/latent_families.md

For each registered family: the same 784-200-(raw)/d-200-784 MLP VAE (Bernoulli
likelihood, statically binarized mnist-5k, 4000 training points), the same seed,
the same number of epochs of Adam on the single-sample ELBO (``vi_vae.fit`` with its
default loss, ``vi_vae.ELBO(1)``). Then, on the 500 test points and from one set of K = 1000
importance samples per point: the test ELBO (the mean of the K single-draw ELBOs)
and log p(x) ≈ IWAE-K, each with its standard error over test points, the share
of points whose Pareto k̂ exceeds 0.7 (estimate unreliable), and the mean seconds
per training epoch. Writes a Markdown page with the table, the setup and the
command that regenerates it.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import pyro
import torch

from vi_vae import VAE, ConvergenceWarning, TrainingError, fit, load_dataset
from vi_vae.evaluation import NARROWER_GUIDE_SUPPORT, PairedDifference, importance_sampling
from vi_vae.evaluation.importance_convergence import UNSETTLED_IMPORTANCE_SAMPLING
from vi_vae.latents import FAMILIES

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "latent_families.md"


def run_family(name, data, args, seed=None):
    seed = args.seed if seed is None else seed
    pyro.clear_param_store()
    torch.manual_seed(seed)
    vae = VAE(
        input_dim=data.input_dim,
        latent_dim=args.latent_dim,
        latent_family=name,
        hidden_sizes=(args.hidden_size,),
    )
    row = {"name": name, "category": ", ".join(FAMILIES[name].categories)}
    try:
        result = fit(
            vae.model,
            vae.guide,
            data.train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=seed,
        )
    except TrainingError as error:
        row["failure"] = str(error)
        return row
    row["seconds_per_epoch"] = sum(r.seconds for r in result.history) / len(result.history)
    started = time.perf_counter()
    with warnings.catch_warnings():  # the page states each verdict (a star)
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimate, (elbo,) = importance_sampling(
            vae.model,
            vae.guide,
            data.test,
            num_particles=args.num_particles,
            bound_particles=(1,),
            seed=seed,
        )
    row["evaluation_seconds"] = time.perf_counter() - started
    row["elbo"], row["elbo_se"] = elbo.mean, elbo.standard_error
    row["log_px"], row["log_px_se"] = estimate.mean, estimate.standard_error
    row["log_px_mc_se"] = estimate.mean_monte_carlo_standard_error
    row["per_point"] = estimate.log_likelihood.tolist()
    row["pareto_k_share"] = estimate.share_pareto_k_above
    row["narrower_guide_sites"] = list(estimate.narrower_guide_sites)
    row["converged"] = estimate.convergence.converged
    return row


def results_table(rows, reference_name):
    """The results table; Δ is each family's log p(x) minus ``reference_name``'s, paired."""
    reference = next((r for r in rows if r["name"] == reference_name and "per_point" in r), None)
    lines = [
        "| family | category | test ELBO | test log p(x), K = {K} | ± SE "
        f"| Δ vs {reference_name} ± paired SE | k̂ > 0.7 | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "failure" in row:
            lines.append(
                f"| {row['name']} | {row['category']} | diverged: {row['failure']} | | | | | |"
            )
            continue
        if reference is None or row is reference:
            delta = "—"
        else:
            difference = PairedDifference.between(row["per_point"], reference["per_point"])
            delta = f"{difference.mean:+.2f} ± {difference.standard_error:.2f}" + (
                " †" if row.get("narrower_guide_sites") else ""
            )
        lines.append(
            f"| {row['name']} | {row['category']} | {row['elbo']:.2f} ± {row['elbo_se']:.2f} "
            f"| {row['log_px']:.2f}{'' if row.get('converged', True) else '*'}"
            f"{' †' if row.get('narrower_guide_sites') else ''} "
            f"| {row['log_px_se']:.2f} | {delta} "
            f"| {100 * row['pareto_k_share']:.0f}% | {row['seconds_per_epoch']:.2f} |"
        )
    return lines


def families_table():
    lines = [
        "| family | category | support | default prior | KL | sampler "
        "| raw encoder outputs → parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for family in FAMILIES.values():
        row = family.summary()
        lines.append(
            f"| {row['name']} | {row['category']} | {row['support']} | {row['prior']} "
            f"| {row['kl']} | {row['description']} | {row['parameters']} |"
        )
    return lines


def spread_text(rows, spread_rows, args):
    if not spread_rows:
        return "The spread between training seeds was not measured (`--spread-seeds 0`)."
    reference = next(row for row in rows if row["name"] == args.spread_family)
    values = [reference["log_px"]] + [row["log_px"] for row in spread_rows]
    seeds = [args.seed] + [args.seed + i + 1 for i in range(len(spread_rows))]
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    listed = ", ".join(f"{v:.2f} (seed {s})" for v, s in zip(values, seeds, strict=True))
    return (
        f"Run-to-run spread: {args.spread_family} trained with {len(values)} seeds gives "
        f"test log p(x) = {listed}, a standard deviation of {spread:.2f} nats. Differences "
        "between families smaller than a few times that are not evidence that one is better: "
        "the Δ column's paired SE covers the test points and the draws of these trained "
        "models, not another seed."
    )


def write_page(path, rows, spread_rows, args, command, total_seconds):
    evaluated = [row for row in rows if "failure" not in row]
    worst_mc_se = max((row["log_px_mc_se"] for row in evaluated), default=math.nan)
    narrower = [row["name"] for row in evaluated if row.get("narrower_guide_sites")]
    ranked = sorted(
        (row for row in evaluated if row["name"] not in narrower), key=lambda row: -row["log_px"]
    )
    lines = [
        "# Latent families on mnist-5k",
        "",
        "Every registered latent family in the same VAE, trained under the same budget.",
        "Generated by `benchmarks/latent_families.py`; regenerate with",
        "",
        "```",
        command,
        "```",
        "",
        "## Setup",
        "",
        f"- Data: `mnist-5k` (5,000 real MNIST digits), static binarization; "
        f"{args.train_points} training points, {args.test_points} test points.",
        f"- Model: `VAE(latent_family=<family>, latent_dim={args.latent_dim}, "
        f"hidden_sizes=({args.hidden_size},))`, Bernoulli likelihood; the encoder outputs "
        "as many raw values as the family needs.",
        f"- Budget: {args.epochs} epochs of Adam (learning rate {args.learning_rate:g}, "
        f"batch {args.batch_size}) on the single-sample ELBO (`vi_vae.fit` with its default "
        f"loss, `vi_vae.ELBO(1)`), seed {args.seed}, the same for every family.",
        f"- Evaluation: K = {args.num_particles} importance samples per test point from the "
        "trained q(z|x), one set of draws for both columns (`vi_vae.evaluation."
        "importance_sampling`). Test ELBO: mean of the K single-draw ELBOs. log p(x): "
        "IWAE-K, log (1/K) Σ w_k. ± is the standard error over test points (std/√N); "
        "the Monte Carlo error of each mean, for these fixed points, is at most "
        f"{worst_mc_se:.3f} nats. Δ: a family's log p(x) minus {args.spread_family}'s, point "
        "by point on the same test points, with the SE of that paired mean "
        "(`vi_vae.PairedDifference`). k̂ > 0.7: share of "
        "test points whose importance weights have Pareto k̂ above 0.7, where the "
        "log p(x) estimate is unreliable (Vehtari et al.).",
        f"- Machine: {platform.processor() or platform.machine()}, "
        f"torch threads: {args.threads}, torch {torch.__version__}, pyro {pyro.__version__}, "
        f"Python {platform.python_version()}. The machine is shared with other jobs, so "
        "seconds per epoch are indicative only. Total wall time "
        f"{total_seconds / 60:.1f} minutes.",
        "",
        "## Results",
        "",
        "Nats per test point (higher is better), in registry order.",
        "",
        *[
            line.replace("{K}", str(args.num_particles))
            for line in results_table(rows, args.spread_family)
        ],
        "",
        "Ranked by test log p(x): "
        + ", ".join(f"{row['name']} ({row['log_px']:.1f})" for row in ranked)
        + ".",
        "",
        *(
            [
                f"† Not ranked: {', '.join(narrower)}. Their guide's support is narrower than "
                f"the prior's, so the column is {NARROWER_GUIDE_SUPPORT} "
                "(`vi-vae evaluate RUN_DIR --method ais`).",
                "",
            ]
            if narrower
            else []
        ),
        spread_text(rows, spread_rows, args),
        "",
        "Where most points have k̂ > 0.7 the K-sample value is still a lower bound on "
        "log p(x) (IWAE-K), but it may be far from log p(x) itself; the ELBO column is "
        "a lower bound whatever k̂ says.",
        "",
        *(
            [
                f"\\* log p(x) is {UNSETTLED_IMPORTANCE_SAMPLING} (its verdict, "
                "`estimate.convergence`): the families trained alike are ranked by these "
                "lower bounds, which are not values of log p(x) to quote.",
                "",
            ]
            if any(not row.get("converged", True) for row in evaluated)
            else []
        ),
        "## The families",
        "",
        "As `vi-vae families` lists them (`LatentFamily.summary()`). Every parameter "
        "map ends in a stated box (clamps, softplus floors, sigmoids), chosen so that "
        "draws, log-densities, KL terms and their gradients stay finite in float32 for "
        "any encoder output; bounded posteriors (uniform, triangular, reciprocal, the "
        "Pareto's lower end) stay inside their prior's support, so every KL is finite. "
        "`vi_vae.latents.ELLIPTICAL_STUDENT_T` (the elliptical family over a spherical "
        "t₅ base, with a t₅ prior and a sampled KL) is exported but not registered.",
        "",
        *families_table(),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def main(args):
    torch.set_num_threads(args.threads)
    names = args.families or list(FAMILIES)
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families: {', '.join(unknown)}")
    data = load_dataset("mnist-5k", binarization="static")
    if args.max_train is not None:
        data.train = data.train[: args.max_train]
    if args.max_test is not None:
        data.test = data.test[: args.max_test]
    args.train_points, args.test_points = len(data.train), len(data.test)
    # The first Adam imports torch._dynamo (seconds); do it before any epoch is timed.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    started = time.perf_counter()
    rows = []
    for name in names:
        row = run_family(name, data, args)
        rows.append(row)
        if "failure" in row:
            print(f"{name:12s} diverged: {row['failure']}", flush=True)
        else:
            print(
                f"{name:12s} ELBO {row['elbo']:8.2f}  log p(x) {row['log_px']:8.2f} "
                f"± {row['log_px_se']:.2f}  {row['seconds_per_epoch']:.2f} s/epoch  "
                f"eval {row['evaluation_seconds']:.1f} s",
                flush=True,
            )
    spread_rows = []
    if args.spread_seeds and args.spread_family in names:
        for offset in range(1, args.spread_seeds + 1):
            row = run_family(args.spread_family, data, args, seed=args.seed + offset)
            if "failure" not in row:
                spread_rows.append(row)
                print(
                    f"{args.spread_family} seed {args.seed + offset}: log p(x) {row['log_px']:.2f}",
                    flush=True,
                )
    total = time.perf_counter() - started
    if args.output is not None:
        command = "python benchmarks/latent_families.py " + " ".join(sys.argv[1:])
        write_page(args.output, rows, spread_rows, args, command.strip(), total)
        print(f"wrote {args.output}")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs, every family")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--num-particles", type=int, default=1000, help="K for log p(x)")
    parser.add_argument("--max-train", type=int, help="use only this many training points")
    parser.add_argument("--max-test", type=int, help="evaluate only this many test points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--families", nargs="*", help="default: every registered family")
    parser.add_argument(
        "--spread-family",
        default="normal",
        help="family retrained with other seeds to measure the spread",
    )
    parser.add_argument(
        "--spread-seeds", type=int, default=2, help="extra seeds for --spread-family (0: skip)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="Markdown page to write (default docs/latent_families.md)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
