"""Compiled and eager vi_vae against hand-written plain PyTorch: SVI steps and log p(x).

    python benchmarks/compiled.py --threads 1 --write docs/benchmarks.md
    python benchmarks/compiled.py --threads 2 --write docs/benchmarks.md
    python benchmarks/compiled.py --device cuda --gpu-points 10000 \\
        --datasets mnist-5k fashion-mnist --write docs/benchmarks.md

Every ratio is measured in one process, threads pinned, with the sides
interleaved over several rounds (a shared machine drifts; ratios much less),
and reported as the median of the per-round ratios. The model is the VAE
template 784-400-20 with a Bernoulli likelihood, batch 128.

1. SVI step, for ELBO (one draw), IWAE-5 and DReG-5: ``pyro.infer.SVI.step``
   with the vi_vae estimator and the optimizer ``fit`` uses
   (``vi_vae.optim.Adam``: one torch Adam over every parameter), eager and
   ``compile=True``, against the same step written in plain PyTorch (same
   networks and initial weights, same parameter maps, same reparameterized
   draws, same surrogate, one ``torch.optim.Adam``). The eager step with
   Pyro's ``pyro.optim.Adam`` (one torch Adam per parameter, ``fit``'s
   optimizer before) is measured too, and ``vi_vae.fit`` itself for the ELBO.
   Compile time is the first step's time less a steady step's; the break-even
   is the number of steps after which compiling has paid for itself against
   the eager step.
2. log p(x) with K = 5000 importance samples per point
   (``log_marginal_likelihood``, eager and compiled, k̂ off as in the plain
   twin) against a plain-PyTorch loop over the same pass layout, and against
   the floor of that computation: the two decoder GEMMs and one softplus over
   the K × 784 logits (one compiled kernel), measured the same way.
3. With ``--device cuda``: the same, plus ``--gpu-points`` test points at
   K = 5000 in one compiled evaluation (target: 10,000 points in under 10 s)
   and compiled epoch times on ``--datasets``.
"""

import argparse
import math
import os
import statistics
import tempfile
import time

import pyro
import torch
import torch.nn.functional as F
from plain_twins import log_weights, plain_networks, plain_step
from pyro.infer import SVI
from sections import write_section
from step_time import BATCH, HIDDEN, INPUT_DIM, LATENT, make_data

from vi_vae import VAE, TrainSettings, fit, load_dataset, log_marginal_likelihood
from vi_vae.compiled.inductor import inductor_backend
from vi_vae.estimators import ELBO, IWAE, DReG
from vi_vae.evaluation import DEFAULT_CHUNK_SIZE
from vi_vae.optim import Adam

#: the estimators of the SVI-step comparison: name -> (vi_vae constructor, K, gradient)
ESTIMATORS = {"ELBO": (ELBO, 1, "iwae"), "IWAE-5": (IWAE, 5, "iwae"), "DReG-5": (DReG, 5, "dreg")}
#: K of the evaluation: Burda et al.'s, vi_vae.evaluation.DEFAULT_NUM_PARTICLES
EVAL_PARTICLES = 5000


#: seconds of the process: wall time, or CPU time (``--clock cpu``: one thread on a shared machine)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit_optimizer(args, adam, compiled):
    """The optimizer ``fit`` steps with (``--fused-adam``: fused on every side)."""
    if args.fused_adam:
        return Adam(dict(adam))
    return TrainSettings(learning_rate=adam["lr"], compile=compiled).optimizer()


def time_per_call(fn, calls, device):
    synchronize(device)
    started = clock()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (clock() - started) / calls


def one_time_compile_seconds(device):
    """What the first compile of a process costs before any graph of ours (CPU checks, headers)."""
    started = time.perf_counter()
    torch.compile(lambda a: (a.sin() + 1,), fullgraph=True)(torch.ones(3, device=device))
    return time.perf_counter() - started


def training(args, device):
    """Per-step seconds of plain, eager and compiled steps, per round; compile seconds."""
    data = make_data(BATCH * args.steps).to(device)
    batches = [data[start : start + BATCH] for start in range(0, len(data), BATCH)]
    pyro.set_rng_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN]).to(device)
    results = {}
    adam = {"lr": 1e-3, "fused": True} if args.fused_adam else {"lr": 1e-3}
    for name, (build, num_particles, gradient) in ESTIMATORS.items():
        encoder, decoder = plain_networks(vae, device)
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], **adam)
        losses = {compiled: build(num_particles, compile=compiled) for compiled in (False, True)}
        svis = {  # the optimizer fit uses: with compile, fused (TrainSettings.optimizer)
            compiled: SVI(vae.model, vae.guide, fit_optimizer(args, adam, compiled), loss=loss)
            for compiled, loss in losses.items()
        }
        # the compiled loss with plain PyTorch's Adam: what compiling alone buys
        same_adam = SVI(vae.model, vae.guide, Adam(dict(adam)), loss=losses[True])
        # Pyro's own Adam: one torch optimizer per parameter, stepped one by one (fit's
        # before), with the same estimators (nothing compiles twice)
        pyro_svis = {
            compiled: SVI(vae.model, vae.guide, pyro.optim.Adam(dict(adam)), loss=loss)
            for compiled, loss in losses.items()
        }
        started = time.perf_counter()
        svis[True].step(batches[0])
        synchronize(device)
        first_step = time.perf_counter() - started

        def epoch(step):
            return lambda: [step(batch) for batch in batches]

        def plain(x, networks=(encoder, decoder, optimizer), k=num_particles, kind=gradient):
            return plain_step(*networks, x, k, kind)

        def plain_gradients(x, networks=(encoder, decoder), k=num_particles, kind=gradient):
            return plain_step(*networks, None, x, k, kind)

        def compiled_gradients(x, loss=svis[True].loss_and_grads, parameters=vae.parameters):
            for parameter in parameters():
                parameter.grad = None
            return loss(vae.model, vae.guide, x)

        sides = {
            "plain": epoch(plain),
            "eager": epoch(svis[False].step),
            "compiled": epoch(svis[True].step),
            "compiled, plain's Adam": epoch(same_adam.step),
            "eager, pyro.optim.Adam": epoch(pyro_svis[False].step),
            "compiled, pyro.optim.Adam": epoch(pyro_svis[True].step),
            # the loss and gradients alone: no optimizer, no SVI
            "plain gradients": epoch(plain_gradients),
            "compiled gradients": epoch(compiled_gradients),
        }
        if name == "ELBO":  # vi_vae.fit with its default loss and optimizer, same steps

            def fit_epoch():
                # fit's default optimizer, or the same one (vi_vae.optim.Adam) fused
                fused = {"optimizer": Adam(dict(adam))} if args.fused_adam else {}
                fit(vae.model, vae.guide, data, epochs=1, batch_size=BATCH, **fused)

            sides["fit"] = fit_epoch
        for side in sides.values():  # warm-up
            side()
        rounds = [
            {side: time_per_call(fn, 1, device) / len(batches) for side, fn in sides.items()}
            for _ in range(args.rounds)
        ]
        compiled_step = statistics.median(row["compiled"] for row in rounds)
        results[name] = {"rounds": rounds, "compile_seconds": first_step - compiled_step}
    results["fit"] = median_ratio(results["ELBO"]["rounds"], "fit")
    return results


def evaluation(args, device):
    """Per-point seconds of the plain twin, eager, compiled and the GEMM + softplus floor."""
    pyro.set_rng_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN]).to(device)
    encoder, decoder = plain_networks(vae, device)
    x = make_data(args.eval_num_points, seed=1).to(device)
    num_particles = EVAL_PARTICLES
    points_per_pass = max(1, DEFAULT_CHUNK_SIZE // num_particles)
    first_linear, last_linear = decoder[0], decoder[2]

    @torch.no_grad()
    def plain():
        results = []
        for start in range(0, len(x), points_per_pass):
            values = log_weights(
                encoder, decoder, x[start : start + points_per_pass], num_particles
            )
            results.append(values.logsumexp(0) - math.log(num_particles))
        return torch.cat(results)

    # The floor: the decoder's two GEMMs and one softplus over the K x 784 logits,
    # each timed alone, for every pass: work no implementation of this evaluator avoids.
    # The softplus is one compiled kernel with the compiled passes' log1p
    # (vi_vae.compiled.inductor): torch's eager softplus calls a log1p several times
    # slower on CPU, which compiled log p(x) does not pay, so it would be no floor.
    z = torch.randn(num_particles * points_per_pass, LATENT, device=device)
    hidden = F.relu(F.linear(z, first_linear.weight, first_linear.bias))
    logits = F.linear(hidden, last_linear.weight, last_linear.bias)
    softplus = torch.compile(F.softplus, backend=inductor_backend, fullgraph=True, dynamic=False)
    softplus(logits)  # compiles it, outside the timing
    floor_parts = {
        "first GEMM": lambda: torch.addmm(first_linear.bias, z, first_linear.weight.T),
        "second GEMM": lambda: torch.addmm(last_linear.bias, hidden, last_linear.weight.T),
        "softplus": lambda: softplus(logits),
    }
    passes = math.ceil(len(x) / points_per_pass)

    @torch.no_grad()
    def floor_seconds():
        return passes * sum(time_per_call(part, 3, device) for part in floor_parts.values())

    def evaluator(compiled):
        return lambda: log_marginal_likelihood(
            vae.model, vae.guide, x, num_particles, compute_pareto_k=False, compile=compiled
        )

    started = time.perf_counter()
    evaluator(True)()
    synchronize(device)
    first_call = time.perf_counter() - started
    sides = {"plain": plain, "eager": evaluator(False), "compiled": evaluator(True)}
    for side in sides.values():
        side()
    rounds = []
    for _ in range(args.rounds):
        row = {side: time_per_call(fn, 1, device) / len(x) for side, fn in sides.items()}
        row["floor"] = floor_seconds() / len(x)
        rounds.append(row)
    compiled_call = statistics.median(row["compiled"] for row in rounds) * len(x)
    return {"rounds": rounds, "compile_seconds": first_call - compiled_call}


def gpu_evaluation(args, device):
    """Seconds of one compiled evaluation of ``--gpu-points`` points at K = 5000."""
    pyro.set_rng_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN]).to(device)
    x = make_data(args.gpu_points, seed=2).to(device)
    log_marginal_likelihood(vae.model, vae.guide, x[:64], EVAL_PARTICLES, compile=True)
    seconds = []
    for _ in range(2):  # the first may compile the shapes of a full run
        synchronize(device)
        started = time.perf_counter()
        log_marginal_likelihood(vae.model, vae.guide, x, EVAL_PARTICLES, compile=True)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds[-1]


def epoch_times(args, device):
    """Eager and compiled seconds per epoch (the second epoch: the first compiles)."""
    rows = {}
    for dataset in args.datasets:
        data = load_dataset(dataset, binarization="dynamic")
        row = {}
        for compiled in (False, True):
            pyro.set_rng_seed(0)
            vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN]).to(device)
            result = fit(
                vae.model,
                vae.guide,
                data.train,
                epochs=2,
                batch_size=BATCH,
                device=device,
                batch_transform=data.batch_transform(),
                compile=compiled,
            )
            row["compiled" if compiled else "eager"] = result.history[-1].seconds
        rows[dataset] = row
    return rows


def median_ratio(rounds, side, baseline="plain"):
    return statistics.median(row[side] / row[baseline] for row in rounds)


def report(args, device, train, evaluate, gpu_seconds, epochs):
    lines = [
        f"device {device}; torch threads: {args.threads}; {args.clock} clock; {args.rounds} "
        "interleaved rounds; medians of per-round ratios to plain PyTorch (lower is faster). "
        "Compile times from an empty inductor cache, after a first compile in the process "
        f"(inductor's one-time checks: {args.one_time_compile:.1f} s); break-even: compile "
        "time over the time a compiled step saves against the eager one.",
        "",
        "| SVI step, 784-400-20, batch 128 | eager | compiled "
        "| compiled, plain PyTorch's Adam "
        "| eager, compiled with pyro.optim.Adam "
        "| plain PyTorch step | compile (s) | break-even (steps) "
        "| compiled loss and gradients alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in train.items():
        if name == "fit":
            continue
        rounds = result["rounds"]
        same_adam = median_ratio(rounds, "compiled, plain's Adam")
        eager_step = statistics.median(row["eager"] for row in rounds)
        compiled_step = statistics.median(row["compiled"] for row in rounds)
        saved = eager_step - compiled_step
        break_even = f"{result['compile_seconds'] / saved:.0f}" if saved > 0 else "never"
        eager, compiled = median_ratio(rounds, "eager"), median_ratio(rounds, "compiled")
        per_parameter = (
            f"{median_ratio(rounds, 'eager, pyro.optim.Adam'):.2f}x, "
            f"{median_ratio(rounds, 'compiled, pyro.optim.Adam'):.2f}x"
        )
        plain_ms = statistics.median(row["plain"] for row in rounds) * 1e3
        alone = median_ratio(rounds, "compiled gradients", "plain gradients")
        lines.append(
            f"| {name} | {eager:.2f}x | {compiled:.2f}x "
            f"| {same_adam:.2f}x "
            f"| {per_parameter} | {plain_ms:.2f} ms "
            f"| {result['compile_seconds']:.1f} | {break_even} | {alone:.2f}x |"
        )
    implementation = "fused" if args.fused_adam else "torch's default implementation"
    lines += [
        "",
        f"Adam ({implementation}) on every side but one: plain PyTorch one `torch.optim.Adam`; "
        "vi_vae's steps and `fit` `vi_vae.optim.Adam`, `fit`'s default optimizer (one torch "
        "Adam over every parameter), which with `compile` is torch's fused kernel "
        '(`TrainSettings.optimizer`; the column "compiled"); the column "compiled, plain '
        "PyTorch's Adam\": the compiled loss with plain PyTorch's Adam implementation, what "
        'compiling alone buys; the column "eager, compiled with pyro.optim.Adam": the same steps '
        "with Pyro's Adam, one torch Adam per parameter (`fit`'s default before "
        "`vi_vae.optim`), measured in the same rounds. The last "
        "column: the compiled estimator's `loss_and_grads` against plain PyTorch's forward and "
        "backward, neither with an optimizer or SVI. `vi_vae.fit` with its default loss "
        f"(vi_vae's ELBO, one draw), in calls of one epoch of {args.steps} steps (shuffling, "
        f"checks and setup included), per step: {train['fit']:.2f}x plain PyTorch.",
        "",
    ]
    rounds = evaluate["rounds"]
    plain_ms = statistics.median(row["plain"] for row in rounds) * 1e3
    lines += [
        f"| log p(x), K = {EVAL_PARTICLES}, {args.eval_num_points} points | eager | compiled "
        "| plain PyTorch per point | GEMM + softplus floor | compile (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| ratio to plain PyTorch | {median_ratio(rounds, 'eager'):.2f}x "
        f"| {median_ratio(rounds, 'compiled'):.2f}x | {plain_ms:.1f} ms "
        f"| {median_ratio(rounds, 'floor'):.2f}x | {evaluate['compile_seconds']:.1f} |",
        f"| ratio to the floor | {median_ratio(rounds, 'eager', 'floor'):.2f}x "
        f"| {median_ratio(rounds, 'compiled', 'floor'):.2f}x "
        f"| {median_ratio(rounds, 'plain', 'floor'):.2f}x | 1.00x | |",
    ]
    if gpu_seconds is not None:
        lines += [
            "",
            f"{args.gpu_points} points × K = {EVAL_PARTICLES}, compiled: {gpu_seconds:.1f} s",
        ]
    for dataset, row in epochs.items():
        lines.append(
            f"{dataset}: epoch {row['eager']:.1f} s eager, {row['compiled']:.1f} s compiled"
        )
    if device.type != "cuda":
        lines += [
            "",
            "Not measured here (no GPU on this machine): the GPU targets, 10,000 test points "
            f"× K = {EVAL_PARTICLES} in under 10 s and compiled epoch times on mnist-5k and "
            "Fashion-MNIST. On a GPU: `python benchmarks/compiled.py --device cuda "
            "--gpu-points 10000 --datasets mnist-5k fashion-mnist --write docs/benchmarks.md`.",
        ]
    return "\n".join(lines)


def main(args):
    global clock
    clock = CLOCKS[args.clock]
    if not args.warm_cache:  # compile times from scratch, not from an earlier run's cache
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="vi_vae_benchmark_")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.one_time_compile = one_time_compile_seconds(device)
    train = training(args, device)
    evaluate = evaluation(args, device)
    gpu_seconds = gpu_evaluation(args, device) if args.gpu_points else None
    epochs = epoch_times(args, device) if args.datasets else {}
    text = report(args, device, train, evaluate, gpu_seconds, epochs)
    print(text)
    if args.write:
        options = [f"--threads {args.threads}", f"--rounds {args.rounds}", f"--steps {args.steps}"]
        options += [f"--eval-num-points {args.eval_num_points}", f"--clock {args.clock}"]
        if args.fused_adam:
            options.append("--fused-adam")
        if args.device != "cpu":
            options.append(f"--device {args.device}")
        if args.gpu_points:
            options.append(f"--gpu-points {args.gpu_points}")
        if args.datasets:
            options.append("--datasets " + " ".join(args.datasets))
        command = "python benchmarks/compiled.py " + " ".join(options)
        write_section(
            args.write,
            f"Compiled and eager against plain PyTorch ({args.device}, {args.threads} "
            f"thread{'s' if args.threads > 1 else ''}{', fused Adam' if args.fused_adam else ''})",
            f"Regenerate with:\n\n    {command} --write {args.write}\n\n{text}\n",
        )
    return {"training": train, "evaluation": evaluate, "gpu_seconds": gpu_seconds, "epochs": epochs}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="SVI steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--eval-num-points", type=int, default=4, help="points per evaluation round"
    )
    parser.add_argument("--gpu-points", type=int, default=0, help="points of the GPU evaluation")
    parser.add_argument("--datasets", nargs="*", default=[], help="compiled epoch times on these")
    parser.add_argument(
        "--fused-adam", action="store_true", help="fused Adam on every side (default: torch's)"
    )
    parser.add_argument(
        "--clock", choices=CLOCKS, default="wall", help="cpu: process CPU time (shared machine)"
    )
    parser.add_argument(
        "--warm-cache", action="store_true", help="keep inductor's on-disk cache (faster compiles)"
    )
    parser.add_argument("--write", help="put the table into this markdown file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
