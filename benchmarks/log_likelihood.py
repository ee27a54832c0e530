"""How far off is importance sampling? IS at three K against AIS at two budgets, and BDMC.

    python benchmarks/log_likelihood.py                    # the full settings (defaults)
    python benchmarks/log_likelihood.py --num-chains 3 --leapfrog-steps 2 --bdmc-points 25

On mnist-5k (dynamic binarization) it trains one VAE (784-400-20, Bernoulli) per
estimator with the settings of ``make demo`` (60 epochs, seed 0), then, on a
seeded random subset of the test split:

- importance sampling from the guide with K = 1,000 / 5,000 / 50,000 (the smaller K
  are the first draws of the K = 50,000 run; cost pro-rated by K);
- AIS with HMC from the guide at two step budgets;
- BDMC on data simulated from the model: the gap between reverse and forward
  AIS at the smaller budget, which bounds that AIS's error on such data.

It writes ``results.json`` and ``estimate_versus_cost.png`` to ``--out-dir`` and
the page ``--doc`` (:mod:`log_likelihood_report`). ``--resume`` keeps the
estimators already in ``results.json`` with the same settings.
"""

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

import vi_vae
from vi_vae.evaluation import log_weight_chunks, summarize_log_weights

sys.path.insert(0, str(Path(__file__).parent))
from log_likelihood_report import write_figure, write_page  # noqa: E402

#: settings that make a result; --resume reuses a stored estimator only if they match
RESULT_SETTINGS = (
    "epochs",
    "num_points",
    "point_seed",
    "is_particles",
    "ais_steps",
    "num_chains",
    "leapfrog_steps",
    "bdmc_points",
    "bdmc_steps",
    "max_train",
    "seed",
)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train(spelling, data, args):
    vae = vi_vae.VAE(input_dim=784, latent_dim=20, seed=args.seed)
    started = time.perf_counter()
    vi_vae.fit(
        vae.model,
        vae.guide,
        data.train[: args.max_train],
        loss=vi_vae.parse_estimator(spelling),
        epochs=args.epochs,
        seed=args.seed,
        validation=data.validation,
        batch_transform=data.batch_transform(),
    )
    return vae, time.perf_counter() - started


def summary(estimate, seconds, num_points):
    return {
        "mean": estimate.mean,
        "standard_error": estimate.standard_error,
        "mean_monte_carlo_standard_error": estimate.mean_monte_carlo_standard_error,
        "mean_effective_sample_size": estimate.mean_effective_sample_size,
        "seconds_per_point": seconds / num_points,
        "per_point": estimate.log_likelihood.tolist(),
    }


def importance_sampling(vae, x, args):
    largest = max(args.is_particles)
    started = time.perf_counter()
    parts = [
        log_weights.cpu()
        for _, log_weights in log_weight_chunks(vae.model, vae.guide, x, largest, seed=args.seed)
    ]
    seconds = time.perf_counter() - started
    log_weights = torch.cat(parts, dim=1)
    results = {}
    for k in args.is_particles:
        estimate = summarize_log_weights(log_weights[:k])
        results[str(k)] = {
            **summary(estimate, seconds * k / largest, len(x)),
            "share_pareto_k_above": estimate.share_pareto_k_above,
        }
    return results


def annealing(vae, x, args):
    results = {}
    if args.compile:  # compile outside the timed runs: one step on the same shape
        vi_vae.annealed_importance_sampling(
            vae.model, vae.guide, x, num_steps=2, num_chains=args.num_chains,
            leapfrog_steps=args.leapfrog_steps, seed=args.seed, compile=True,
        )  # fmt: skip
    for steps in args.ais_steps:
        started = time.perf_counter()
        estimate = vi_vae.annealed_importance_sampling(
            vae.model,
            vae.guide,
            x,
            num_steps=steps,
            num_chains=args.num_chains,
            leapfrog_steps=args.leapfrog_steps,
            seed=args.seed,
            compile=args.compile,
        )
        results[str(steps)] = {
            **summary(estimate, time.perf_counter() - started, len(x)),
            "acceptance_rate": estimate.mean_acceptance_rate,
            "step_size": estimate.step_size.mean().item(),
        }
        log(f"  AIS {steps} steps: {estimate.mean:.2f} nats")
    return results


def sandwich(vae, args):
    started = time.perf_counter()
    result = vi_vae.bdmc(
        vae.model,
        vae.guide,
        torch.zeros(args.bdmc_points, 784),
        num_steps=args.bdmc_steps,
        num_chains=args.num_chains,
        leapfrog_steps=args.leapfrog_steps,
        seed=args.seed,
        compile=args.compile,
    )
    return {
        "num_steps": args.bdmc_steps,
        "num_points": args.bdmc_points,
        "lower": result.lower.mean,
        "upper": result.upper.mean,
        "mean_gap": result.mean_gap,
        "mean_gap_standard_error": result.mean_gap_standard_error,
        "max_gap": result.gap.max().item(),
        "seconds": time.perf_counter() - started,
    }


def main(args):
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    settings = {name: getattr(args, name) for name in RESULT_SETTINGS}
    results = {"settings": settings, "estimators": {}}
    if args.resume and results_path.exists():
        stored = json.loads(results_path.read_text())
        if stored["settings"] == json.loads(json.dumps(settings)):
            results = stored
    argv = args.argv if args.argv is not None else sys.argv[1:]
    results["command"] = "python benchmarks/log_likelihood.py " + " ".join(
        shlex.quote(a) for a in argv if a != "--resume"
    )
    results["threads"] = args.threads
    results["compile"] = args.compile
    data = vi_vae.load_dataset("mnist-5k", binarization="dynamic")
    generator = torch.Generator().manual_seed(args.point_seed)
    indices = torch.randperm(len(data.test), generator=generator)[: args.num_points]
    indices = indices.sort().values
    results["test_indices"] = indices.tolist()
    x = data.test[indices]
    started = time.perf_counter()
    for spelling in args.estimators.split(","):
        if spelling in results["estimators"]:
            log(f"{spelling}: kept from {results_path}")
            continue
        log(f"{spelling}: training {args.epochs} epochs")
        vae, seconds = train(spelling, data, args)
        entry = {"training_seconds": seconds, "code": code_version()}
        log(f"  importance sampling, K up to {max(args.is_particles)}")
        entry["importance_sampling"] = importance_sampling(vae, x, args)
        entry["ais"] = annealing(vae, x, args)
        log(f"  BDMC, {args.bdmc_points} simulated points, {args.bdmc_steps} steps")
        entry["bdmc"] = sandwich(vae, args)
        results["estimators"][spelling] = entry
        results_path.write_text(json.dumps(results, indent=1))
    results["seconds"] = results.get("seconds", 0.0) + time.perf_counter() - started
    results_path.write_text(json.dumps(results, indent=1))
    figure = write_figure(results, out_dir / "estimate_versus_cost.png")
    write_page(results, Path(args.doc), figure, defaults=vars(parse_args([])))
    log(f"done in {results['seconds'] / 60:.0f} min; {args.doc}")
    return results


#: what ``code_version`` checks for uncommitted changes (git's top-level pathspecs)
CODE = (":/vi_vae", ":/benchmarks", ":/pyproject.toml")


def code_version():
    """Today's date and the checkout's commit (``+changes`` if its code has uncommitted ones).

    Only the code that computes the numbers counts (``vi_vae/``, ``benchmarks/``,
    ``pyproject.toml``): the page, figure and ``results.json`` this script writes as
    it goes are not changes to it.
    """
    commit = None
    try:
        run = lambda *argv: subprocess.run(  # noqa: E731
            ["git", *argv], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
        dirty = "+changes" if run("status", "--porcelain", "--", *CODE) else ""
        commit = run("rev-parse", "--short", "HEAD") + dirty
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout: the page says so
    return {"date": datetime.date.today().isoformat(), "commit": commit}


def integers(text):
    return [int(value) for value in text.split(",")]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default="elbo,iwae:5,dreg:5,stl:1")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--max-train", type=int, default=None, help="first N training points")
    parser.add_argument("--num-points", type=int, default=100, help="test points")
    parser.add_argument("--point-seed", type=int, default=0, help="seed of the test subset")
    parser.add_argument("--is-particles", type=integers, default=[1000, 5000, 50000])
    parser.add_argument("--ais-steps", type=integers, default=[1000, 10000])
    parser.add_argument("--num-chains", type=int, default=vi_vae.evaluation.DEFAULT_NUM_CHAINS)
    parser.add_argument(
        "--leapfrog-steps", type=int, default=vi_vae.evaluation.DEFAULT_LEAPFROG_STEPS
    )
    parser.add_argument("--bdmc-points", type=int, default=100)
    parser.add_argument("--bdmc-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default="docs/log-likelihood")
    parser.add_argument("--doc", default="docs/log-likelihood.md")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--compile", action="store_true", help="AIS and BDMC with compile=True (same numbers)"
    )
    args = parser.parse_args(argv)
    args.argv = argv
    return args


if __name__ == "__main__":
    main(parse_args())
