"""Every speed target of issue #19, each as a ratio against a baseline measured in the same run.

    nice -n 5 python benchmarks/issue_targets.py --threads 1 --write docs/benchmarks.md

Threads are pinned (``--threads``), each ratio's two sides run interleaved over
``--rounds`` rounds in this one process, and the median of the per-round ratios
is printed beside the issue's target. The rows:

1. ``fit`` epoch (vi_vae's VAE template 784-400-20, ELBO, batch 128) against
   the same epoch written in plain eager PyTorch, and against a plain Pyro SVI
   loop over the same model and loss (``benchmarks/step_time.py``'s twins), and
   against an epoch of Pythae's trainer on the same networks; log p(x) at
   K = 5000 (eager, the default) against Pythae's ``get_nll``
   (``benchmarks/pythae_twins.py``). The Pythae rows are measured only where
   ``pythae`` imports (otherwise they say so). The eager ``fit`` is timed in the
   steady state of a long run: its warm-up runs the ``REPLAY_AFTER_STEPS`` eager
   steps after which ``fit`` replays the step without Pyro's bookkeeping
   (``vi_vae._replay``; the same numbers to the bit). Every side keeps its Adam
   across the rounds' epochs, as a long run does: plain PyTorch and Pythae their
   optimizer, the plain Pyro loop its ``pyro.optim.Adam``, ``fit`` the optimizer it is
   passed (``optimizer=``; a new one per call would start each epoch from zero
   moments, which the others do not). ``fit(compile=True)`` against the
   same three baselines: each timed call is a whole one-epoch ``fit`` as the eager
   row's, all with one compiled estimator (``loss=``), whose traces are kept: the
   steady epoch of a long run. Its first call's compile and trace seconds are
   printed apart, with the compilations and traces of the timed calls (0 and 0)
   and of one call with a new estimator (``fit(compile=True)`` alone: it traces
   again and reuses the process's compiled graph).
2. Compiled ELBO / IWAE-5 / DReG-5 SVI steps against the eager plain-PyTorch
   step, and compiled log p(x) at K = 5000 against its floor of two GEMMs and
   one softplus (``benchmarks/compiled.py``'s measurements).
3. AIS per point at the defaults (T = 1000, C = 16, L = 10), in CPU seconds,
   extrapolated from the time of ``--ais-steps`` and 3 × ``--ais-steps`` steps
   (the difference is the per-step cost; the rest is fixed): eager, and compiled
   (its compile, seconds on an idle CPU, in an untimed first call).
4. The full template combination (``--architecture conv --latent-dims 100,50 --flow iaf:2
   --prior vamp:100``) per SVI step at batch ``--template-batch`` against the MLP
   template with the same latent dims, flow and prior (the issue's target: at most
   2x), against the default MLP template, and against itself with Pyro's
   one-MADE-pass-per-coordinate IAF inverse (what it was before).

``--rows`` measures only some groups of rows (e.g. ``--rows fit fit-compiled``);
``--write`` needs them all, since it replaces the whole table.
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import compiled
import pyro
import pythae_twins
import step_time
import torch
from pyro.infer import SVI, Trace_ELBO
from sections import write_section
from torch import nn

import vi_vae.flows as flows
from vi_vae import (
    VAE,
    AISConvergenceWarning,
    TrainSettings,
    annealed_importance_sampling,
    fit,
    log_marginal_likelihood,
)
from vi_vae._replay import REPLAY_AFTER_STEPS
from vi_vae.compiled import compile_stats
from vi_vae.estimators import ELBO, parse_estimator
from vi_vae.evaluation.annealing import (
    DEFAULT_LEAPFROG_STEPS,
    DEFAULT_NUM_CHAINS,
    DEFAULT_NUM_STEPS,
)
from vi_vae.optim import Adam

INPUT_DIM, HIDDEN, LATENT, BATCH = 784, 400, 20, 128
#: Adam's learning rate of every training side (fit's default)
LEARNING_RATE = 1e-3
#: the Pythae rows where pythae does not import
NO_PYTHAE = "not measured: pip install pythae"
COMBINATION = {
    "latent_dims": (100, 50),
    "flow": "iaf",
    "flow_layers": 2,
    "prior": "vamp",
    "num_pseudo_inputs": 100,
}

#: the groups of rows ``--rows`` chooses from, in the table's order
ROW_GROUPS = ("fit", "fit-compiled", "pythae-log-px", "compiled", "ais", "template")

#: the combination's step with Pyro's IAF inverse, one MADE pass per coordinate (before)
PYROS_INVERSE = "combination, Pyro's IAF inverse"


def median_ratio(rounds, side, baseline):
    return statistics.median(row[side] / row[baseline] for row in rounds)


def timed(fn, clock):
    started = clock()
    fn()
    return clock() - started


def fit_against_plain(args, clock):
    """Per-round seconds of the fit epochs and of the plain-PyTorch, plain Pyro SVI and Pythae ones.

    Returns the rounds and ``compile_stats()`` over the first ``fit(compile=True)``
    call, over the timed calls (one estimator, whose traces are kept), and over one
    more call with a new estimator (``fit(compile=True)`` without ``loss``).
    """
    data = step_time.make_data(BATCH * args.steps)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN], seed=0)

    def networks():
        encoder = nn.Sequential(
            nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT)
        )
        decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM))
        encoder.load_state_dict(vae.encoder.state_dict())
        decoder.load_state_dict(vae.decoder.state_dict())
        return encoder, decoder

    encoder, decoder = networks()
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(0)
    plain_pyro = step_time.PlainPyroVAE(*networks())

    pyro_adam = pyro.optim.Adam({"lr": LEARNING_RATE})

    def plain_pyro_epoch():
        pyro.clear_param_store()
        svi = SVI(plain_pyro.model, plain_pyro.guide, pyro_adam, Trace_ELBO())
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), BATCH):
            svi.step(data[order[start : start + BATCH]])

    sides = {
        "plain": lambda: step_time.plain_torch_epoch(encoder, decoder, optimizer, data, generator),
        "plain Pyro": plain_pyro_epoch,
    }
    if "fit" in args.rows:
        adam = TrainSettings().optimizer()
        sides["fit"] = lambda: fit(
            vae.model, vae.guide, data, epochs=1, batch_size=BATCH, optimizer=adam
        )
    if "fit-compiled" in args.rows:
        # one estimator for every call: its traces are kept, so each call is a steady epoch
        estimator = ELBO(1, compile=True)
        fused = TrainSettings(compile=True).optimizer()
        sides["fit compiled"] = lambda: fit(
            vae.model,
            vae.guide,
            data,
            epochs=1,
            batch_size=BATCH,
            loss=estimator,
            compile=True,
            optimizer=fused,
        )
    if pythae_twins.available():
        sides["Pythae"] = pythae_twins.trainer_epoch(vae, data, BATCH, LEARNING_RATE)
    if "fit" in sides:  # the steps after which fit replays its step (vi_vae._replay)
        for _ in range(math.ceil(REPLAY_AFTER_STEPS / args.steps)):
            sides["fit"]()
    before = compile_stats()
    for side in sides.values():  # warm-up (fit compiled: its compile)
        side()
    first_call = compile_stats() - before
    rounds = [
        {name: timed(side, clock) for name, side in sides.items()} for _ in range(args.rounds)
    ]
    timed_calls = compile_stats() - before - first_call
    new_call = None
    if "fit-compiled" in args.rows:  # a call with a new estimator traces again
        before = compile_stats()
        fit(vae.model, vae.guide, data, epochs=1, batch_size=BATCH, compile=True)
        new_call = compile_stats() - before
    return rounds, first_call, timed_calls, new_call


def log_px_against_pythae(args, clock):
    """Per-round seconds per point of log p(x) at K = 5000 (eager) and of Pythae's get_nll."""
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN], seed=0)
    x = step_time.make_data(args.eval_points, seed=1)
    sides = {
        "vi_vae": lambda: log_marginal_likelihood(
            vae.model, vae.guide, x, compiled.EVAL_PARTICLES, compute_pareto_k=False
        ),
        "Pythae": pythae_twins.get_nll(vae, x, compiled.EVAL_PARTICLES),
    }
    for side in sides.values():  # warm-up
        side()
    return [
        {name: timed(side, clock) / len(x) for name, side in sides.items()}
        for _ in range(args.rounds)
    ]


def ais_seconds_per_point(args, compile_ais):
    """CPU seconds per point of AIS at the default T, C and L (fixed cost + T x step cost)."""
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN], seed=0)
    x = step_time.make_data(args.ais_points, seed=3)

    def run(num_steps):
        # runs of a few steps are timed, not read: their unconverged verdict is expected
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AISConvergenceWarning)
            return timed(
                lambda: annealed_importance_sampling(
                    vae.model, vae.guide, x, num_steps=num_steps, seed=0, compile=compile_ais
                ),
                time.process_time,
            )

    run(args.ais_steps)  # warm-up (with compile_ais, the compile)
    short, long = args.ais_steps, 3 * args.ais_steps
    pairs = [(run(short), run(long)) for _ in range(args.rounds)]
    per_step = statistics.median((b - a) / (long - short) for a, b in pairs)
    fixed = statistics.median(a for a, _ in pairs) - short * per_step
    return (max(fixed, 0.0) + DEFAULT_NUM_STEPS * per_step) / len(x)


def template_step_seconds(args, clock):
    """Per-round seconds of one SVI step: the combination (new and old inverse) and two MLPs."""
    x = step_time.make_data(args.template_batch, seed=4)
    models = {
        "combination": VAE(
            INPUT_DIM, architecture="conv", image_shape=(1, 28, 28), seed=0, **COMBINATION
        ),
        "MLP, same latents, flow and prior": VAE(INPUT_DIM, seed=0, **COMBINATION),
        "MLP template 784-400-20": VAE(INPUT_DIM, seed=0),
    }
    steps = {}
    for name, vae in models.items():
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), parse_estimator("elbo"))

        def step(svi=svi):
            pyro.clear_param_store()  # the templates' parameters share names: one at a time
            svi.step(x)

        steps[name] = step
    fast = flows._condition

    def with_pyros_inverse(step=steps["combination"]):
        flows._condition = lambda layer, context: layer.condition(context)
        try:
            step()
        finally:
            flows._condition = fast

    steps[PYROS_INVERSE] = with_pyros_inverse
    for step in steps.values():  # warm-up: every parameter registered, first-call costs paid
        step()
    return [{name: timed(step, clock) for name, step in steps.items()} for _ in range(args.rounds)]


def compiled_rows(args):
    """Median ratios of compiled.py's training and evaluation rounds."""
    options = SimpleNamespace(
        steps=args.compiled_steps,
        rounds=args.rounds,
        fused_adam=False,
        eval_num_points=args.eval_points,
    )
    device = torch.device("cpu")
    pyro.clear_param_store()
    train = compiled.training(options, device)
    evaluate = compiled.evaluation(options, device)["rounds"]
    steps = " / ".join(
        f"{median_ratio(train[name]['rounds'], 'compiled', 'plain'):.2f}x"
        for name in compiled.ESTIMATORS
    )
    log_px = median_ratio(evaluate, "compiled", "floor")
    eager_log_px = median_ratio(evaluate, "eager", "floor")
    return steps, log_px, eager_log_px


def fit_rows(args, clock):
    """The rows of ``fit`` (eager, compiled, as ``args.rows`` asks) against the three baselines."""
    fit_rounds, first_call, timed_calls, new_call = fit_against_plain(args, clock)
    rows = []
    for side, name in (("fit", "`fit`"), ("fit compiled", "`fit(compile=True)`")):
        if side not in fit_rounds[0]:
            continue
        pythae = NO_PYTHAE
        if pythae_twins.available():
            pythae = f"{median_ratio(fit_rounds, side, 'Pythae'):.2f}x"
        rows += [
            (
                f"{name} epoch / hand-written eager PyTorch",
                f"{median_ratio(fit_rounds, side, 'plain'):.2f}x",
                "≤ 1.1x",
            ),
            (
                f"{name} / a plain Pyro SVI loop, same model and loss",
                f"{median_ratio(fit_rounds, side, 'plain Pyro'):.2f}x",
                "≤ 0.8x",
            ),
            (f"{name} / Pythae's trainer, same networks", pythae, "≤ 0.8x"),
        ]
    if "fit compiled" in fit_rounds[0]:
        rows.append(
            (
                "`fit(compile=True)`: its first call's compile (apart from the epochs above)",
                f"{first_call.compile_seconds:.1f} s compiling, {first_call.trace_seconds:.1f} s "
                f"tracing, {first_call.compilations} graph(s); the timed calls "
                f"{timed_calls.compilations} compilations, {timed_calls.traces} traces; "
                f"a call with a new estimator: {new_call.compilations} compilations, "
                f"{new_call.reuses} reuse(s), {new_call.trace_seconds:.2f} s tracing",
                "—",
            )
        )
    return rows


def compiled_table_rows(args, clock):
    """The compiled steps, compiled log p(x) and (where pythae imports) the get_nll rows."""
    rows = []
    if "compiled" in args.rows:
        steps, log_px, eager_log_px = compiled_rows(args)
        rows += [
            ("compiled ELBO / IWAE-5 / DReG-5 step vs eager torch", steps, "≤ 0.8x"),
            (
                "compiled log p(x), K = 5000, vs the GEMM floor",
                f"{log_px:.2f}x (eager {eager_log_px:.2f}x)",
                "≤ 1.1x",
            ),
        ]
    if "pythae-log-px" in args.rows:
        pythae_log_px = NO_PYTHAE
        if pythae_twins.available():
            log_px_rounds = log_px_against_pythae(args, clock)
            pythae_log_px = f"{median_ratio(log_px_rounds, 'vi_vae', 'Pythae'):.2f}x"
        rows.append(
            (
                f"log p(x), K = {compiled.EVAL_PARTICLES} (eager), vs Pythae `get_nll` "
                f"(batch {pythae_twins.GET_NLL_BATCH}, no gradients)",
                pythae_log_px,
                "keep",
            )
        )
    return rows


def ais_row(args):
    """AIS per point at the defaults, eager and compiled (its compile in the warm-up)."""
    eager_ais = ais_seconds_per_point(args, compile_ais=False)
    compiled_ais = f"{ais_seconds_per_point(args, compile_ais=True):.1f} CPU-s compiled"
    return [
        (
            f"AIS per point at the defaults (T={DEFAULT_NUM_STEPS}, C={DEFAULT_NUM_CHAINS}, "
            f"L={DEFAULT_LEAPFROG_STEPS})",
            f"{eager_ais:.1f} CPU-s eager; {compiled_ais}",
            "(the `--auto` item)",
        )
    ]


def template_rows(args, clock):
    """The template combination against the MLPs and against Pyro's IAF inverse."""
    template = template_step_seconds(args, clock)
    combination = statistics.median(row["combination"] for row in template)
    return [
        (
            f"template combination / MLP with the same latents, flow and prior "
            f"(SVI step, batch {args.template_batch})",
            f"{median_ratio(template, 'combination', 'MLP, same latents, flow and prior'):.2f}x "
            f"({combination:.2f} s per step)",
            "≤ 2x",
        ),
        (
            "template combination / MLP template 784-400-20",
            f"{median_ratio(template, 'combination', 'MLP template 784-400-20'):.1f}x",
            "—",
        ),
        (
            "template combination / itself with Pyro's IAF inverse (before)",
            f"{median_ratio(template, 'combination', PYROS_INVERSE):.2f}x",
            "—",
        ),
    ]


def table(args, clock):
    rows = []
    if {"fit", "fit-compiled"} & set(args.rows):
        rows += fit_rows(args, clock)
    rows += compiled_table_rows(args, clock)
    if "ais" in args.rows:
        rows += ais_row(args)
    if "template" in args.rows:
        rows += template_rows(args, clock)
    return rows


def main(args):
    torch.set_num_threads(args.threads)
    clock = compiled.CLOCKS[args.clock]
    compiled.clock = clock
    step_time.clock = clock
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = table(args, clock)
    minutes = (time.perf_counter() - started) / 60
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{value:.2f}" for value in load_before)
    lines = [
        f"torch threads: {args.threads}; {args.clock} clock; {args.rounds} interleaved rounds, "
        f"medians of per-round ratios; fit over {args.steps} steps of {BATCH}; "
        f"took {minutes:.1f} min; {pythae_twins.describe()}",
        "",
        f"load average before: {load}; after: `{uptime}`",
        "",
        "| workload | measured | target |",
        "|---|---|---|",
        *[f"| {name} | {value} | {target} |" for name, value, target in rows],
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        command = "    nice -n 5 python benchmarks/issue_targets.py " + " ".join(args.argv)
        write_section(args.write, "Issue #19's targets", f"Regenerate with:\n\n{command}\n\n{text}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(compiled.CLOCKS), default="cpu")
    parser.add_argument("--steps", type=int, default=30, help="SVI steps per fit epoch")
    parser.add_argument(
        "--compiled-steps", type=int, default=10, help="SVI steps per round of the compiled rows"
    )
    parser.add_argument("--eval-points", type=int, default=16, help="points of log p(x), K=5000")
    parser.add_argument("--ais-points", type=int, default=8)
    parser.add_argument("--ais-steps", type=int, default=5, help="AIS steps of the short run")
    parser.add_argument("--template-batch", type=int, default=32)
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=ROW_GROUPS,
        default=list(ROW_GROUPS),
        help="the groups of rows to measure (default: all)",
    )
    parser.add_argument("--write", help="put the table into this markdown file")
    args = parser.parse_args(argv)
    if args.write and set(args.rows) != set(ROW_GROUPS):
        parser.error("--write replaces the whole table: it needs every group of --rows")
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


if __name__ == "__main__":
    main(parse_args())
