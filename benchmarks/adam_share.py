"""Adam's share of a ``fit`` epoch, for each implementation of ``vi_vae.optim.Adam``.

    python benchmarks/adam_share.py --rounds 8      # about 20 seconds on one thread

The demo's VAE (784-400-20 MLP, Bernoulli) trained by ``fit`` with the ELBO for one
epoch of ``--steps`` batches of 128 statically binarized mnist-5k digits, with
``Adam({"lr": 1e-3})`` in three implementations: torch's per-tensor loop
(``foreach=False``, the arithmetic ``fit`` stepped with before), ``foreach`` (the
default) and ``fused`` (opt-in, not bitwise equal). Adam's time is the CPU time spent
in the optimizer's calls, one per SVI step; the epoch's is the whole ``fit`` call.
The implementations take turns within each round, after one round that warms up;
the medians over the rounds are printed. ``docs/benchmarks.md`` quotes this script's output.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vi_vae import VAE, fit, load_dataset
from vi_vae.optim import Adam

BATCH, LEARNING_RATE = 128, 1e-3
#: torch.optim.Adam's keywords that choose the implementation, besides the learning rate
IMPLEMENTATIONS = {
    "per-tensor loop": {"foreach": False},
    "foreach (default)": {},
    "fused (opt-in)": {"fused": True},
}


def timed_adam(options: dict) -> Adam:
    """``vi_vae.optim.Adam`` whose calls add their CPU time to its ``seconds``."""
    optimizer = Adam({"lr": LEARNING_RATE, **options})
    untimed = type(optimizer).__call__

    class Timed(type(optimizer)):
        def __call__(self, *args, **kwargs):
            started = time.process_time()
            untimed(self, *args, **kwargs)
            self.seconds += time.process_time() - started

    optimizer.__class__ = Timed
    optimizer.seconds = 0.0
    return optimizer


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist-5k", binarization="static").train[: BATCH * args.steps]
    epochs = {name: [] for name in IMPLEMENTATIONS}
    shares = {name: [] for name in IMPLEMENTATIONS}
    for round_index in range(args.rounds + 1):  # round 0 warms up: not counted
        for name, options in IMPLEMENTATIONS.items():
            vae = VAE(784, 20, hidden_sizes=[400], seed=0)
            optimizer = timed_adam(options)
            started = time.process_time()
            fit(vae.model, vae.guide, data, epochs=1, batch_size=BATCH, optimizer=optimizer)
            if round_index > 0:
                epochs[name].append(time.process_time() - started)
                shares[name].append(optimizer.seconds)
    print(
        f"fit epoch of {args.steps} steps of {BATCH}, ELBO, 784-400-20 MLP, mnist-5k, "
        f"{args.threads} thread(s), CPU seconds, medians of {args.rounds} rounds"
    )
    print("| optimizer | fit epoch | Adam | share |\n|---|---:|---:|---:|")
    for name in IMPLEMENTATIONS:
        epoch, adam = statistics.median(epochs[name]), statistics.median(shares[name])
        print(f"| {name} | {epoch:.3f} CPU-s | {adam:.3f} CPU-s | {100 * adam / epoch:.1f} % |")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="SVI steps per fit epoch")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_arguments())
