"""Trace once, replay: the eager ``fit`` against replaying its traced step graph uncompiled.

    python benchmarks/replay_step.py --threads 1 --rounds 5

``fit(compile=True)`` traces each SVI step's loss and gradients once into a pure
graph (``vi_vae.compiled``) and hands it to ``torch.compile``; with
``VI_VAE_COMPILE_BACKEND=none`` the traced graph runs as it is, which is the
"trace once, replay" step without a compiler. This script times one-epoch
``fit`` calls of the VAE template 784-400-20 (batch 128, ELBO) both ways,
interleaved over rounds on the CPU clock, and prints the median ratio
replay / eager and whether the two give the same parameters to the bit.
"""

import argparse
import hashlib
import os
import statistics
import time

import pyro
import torch

from vi_vae import VAE, fit


def one_fit(data, replay, loss):
    pyro.clear_param_store()
    vae = VAE(784, latent_dim=20, hidden_sizes=[400], seed=0)
    if replay:
        os.environ["VI_VAE_COMPILE_BACKEND"] = "none"
    started = time.process_time()
    fit(vae.model, vae.guide, data, epochs=1, batch_size=128, seed=0, loss=loss, compile=replay)
    seconds = time.process_time() - started
    os.environ.pop("VI_VAE_COMPILE_BACKEND", None)
    digest = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in vae.parameters())
    ).hexdigest()
    return seconds, digest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--points", type=int, default=3840)
    parser.add_argument("--loss", default="elbo")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(args.points, 784, generator=generator) < 0.13).float()
    one_fit(data, True, args.loss)  # trace once (not timed)
    ratios, digests = [], set()
    for _ in range(args.rounds):
        eager, eager_digest = one_fit(data, False, args.loss)
        replay, replay_digest = one_fit(data, True, args.loss)
        ratios.append(replay / eager)
        digests.add((eager_digest, replay_digest))
    same = all(eager == replay for eager, replay in digests)
    print(
        f"torch threads {args.threads}; {args.rounds} interleaved rounds of one-epoch fit "
        f"({args.points} points, batch 128, {args.loss}); load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"replay (traced graph, no compiler) / eager fit: {statistics.median(ratios):.2f}x "
        f"(rounds {min(ratios):.2f}–{max(ratios):.2f}); same parameters to the bit: {same}"
    )


if __name__ == "__main__":
    main()
