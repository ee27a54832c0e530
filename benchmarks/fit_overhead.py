"""Where a ``fit`` epoch spends the time its plain-PyTorch twin does not.

    nice -n 5 python benchmarks/fit_overhead.py --threads 1 --rounds 7

``issue_targets.py`` times one-epoch ``fit`` calls of the VAE template 784-400-20
(ELBO, batch 128) against ``step_time.plain_torch_epoch``. This script splits the
difference into three parts, each measured with interleaved rounds on the CPU
clock (medians):

1. **Per call**: the seconds a ``fit`` call spends besides its steps (settings,
   the param store, the data-support check and the pair's contract trial on the
   first batch, the optimizer's first step adding its parameters, the epoch's
   record), from calls of 1 and of ``--steps`` steps:
   ``fixed = t(1) - (t(n) - t(1)) / (n - 1)``. An epoch of ``n`` steps pays it once.
2. **Per step**: ``fit``'s step against the plain step, at batch 128 and at batch 2
   (where the networks cost little, so the difference is the bookkeeping: Pyro's
   traces and handlers, the distributions' objects, the loss's surrogates).
3. **Fresh optimizer state**: each ``fit`` call starts Adam from zero moments,
   while the plain twin keeps its optimizer across epochs. A parameter whose
   gradients have all been zero so far keeps a second moment of exactly 0, and
   ``torch.sqrt`` is several times slower on zeros than on positive numbers on
   some CPUs (printed: a 784x400 tensor of each). The plain epoch is timed with
   its kept optimizer and with a new one per epoch, to show whether this part of
   ``fit``'s work differs from the twin's at batch 128.
"""

import argparse
import os
import statistics
import time

import step_time
import torch
from plain_twins import plain_networks

from vi_vae import VAE, fit

BATCH, SMALL_BATCH = 128, 2


def median_seconds(sides, rounds):
    """Median CPU seconds of each side over interleaved rounds (after one warm-up each)."""
    for side in sides.values():
        side()
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            started = time.process_time()
            side()
            times[name].append(time.process_time() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def epochs(vae, batch, steps, fresh_plain=False):
    """One-epoch fit and plain-PyTorch epochs of ``steps`` steps at ``batch``."""
    data = step_time.make_data(batch * steps)
    encoder, decoder = plain_networks(vae, "cpu")
    parameters = [*encoder.parameters(), *decoder.parameters()]
    kept = torch.optim.Adam(parameters, lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def plain(fresh=fresh_plain):
        optimizer = torch.optim.Adam(parameters, lr=1e-3) if fresh else kept
        step_time.plain_torch_epoch(encoder, decoder, optimizer, data, generator)

    def fit_epoch():
        fit(vae.model, vae.guide, data, epochs=1, batch_size=batch)

    return fit_epoch, plain


def sqrt_microseconds(values, repeats=200):
    out = torch.empty_like(values)
    torch.sqrt(values, out=out)
    started = time.process_time()
    for _ in range(repeats):
        torch.sqrt(values, out=out)
    return (time.process_time() - started) / repeats * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30, help="steps of the long fit calls")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = VAE(step_time.INPUT_DIM, step_time.LATENT, hidden_sizes=[step_time.HIDDEN], seed=0)
    one, _ = epochs(vae, BATCH, 1)
    many, plain = epochs(vae, BATCH, args.steps)
    _, plain_fresh = epochs(vae, BATCH, args.steps, fresh_plain=True)
    small_fit, small_plain = epochs(vae, SMALL_BATCH, args.steps, fresh_plain=True)
    step_time.BATCH = BATCH  # plain_torch_epoch's batch size, read when it runs
    seconds = median_seconds(
        {
            "fit, 1 step": one,
            "fit": many,
            "plain, kept optimizer": plain,
            "plain, new optimizer": plain_fresh,
        },
        args.rounds,
    )
    step_time.BATCH = SMALL_BATCH
    small = median_seconds({"fit": small_fit, "plain": small_plain}, args.rounds)
    step_time.BATCH = BATCH
    n = args.steps
    per_step = (seconds["fit"] - seconds["fit, 1 step"]) / (n - 1)
    fixed = seconds["fit, 1 step"] - per_step
    ms = 1e3
    print(
        f"torch threads {args.threads}; {args.rounds} interleaved rounds, CPU clock, medians; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"fit epoch of {n} steps (batch {BATCH}): {seconds['fit'] * ms / n:.2f} ms per step; "
        f"plain twin {seconds['plain, kept optimizer'] * ms / n:.2f} ms "
        f"(ratio {seconds['fit'] / seconds['plain, kept optimizer']:.2f}x)"
    )
    print(
        f"  per fit call, besides its steps: {fixed * ms:.1f} ms "
        f"({fixed / seconds['fit']:.0%} of the epoch); per step: {per_step * ms:.2f} ms"
    )
    print(
        f"  plain twin with a new optimizer each epoch, as fit has: "
        f"{seconds['plain, new optimizer'] * ms / n:.2f} ms per step "
        f"(fit / it: {seconds['fit'] / seconds['plain, new optimizer']:.2f}x)"
    )
    print(
        f"batch {SMALL_BATCH} (bookkeeping, not arithmetic), new optimizers on both sides: "
        f"fit {small['fit'] * ms / n:.2f} ms per step, plain {small['plain'] * ms / n:.2f} ms, "
        f"difference {(small['fit'] - small['plain']) * ms / n:.2f} ms"
    )
    shape = (784, 400)
    print(
        f"torch.sqrt of a {shape[0]}x{shape[1]} tensor: zeros "
        f"{sqrt_microseconds(torch.zeros(shape)):.0f} us, positive numbers "
        f"{sqrt_microseconds(torch.rand(shape) + 0.5):.0f} us"
    )


if __name__ == "__main__":
    main()
