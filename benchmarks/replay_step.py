"""Trace once, replay: ``fit``'s eager step against its replayed step, in a long run's steady state.

    python benchmarks/replay_step.py --threads 1 --rounds 5

``fit`` replays an eager step of a VAE template once the (pair, batch shape) has
taken ``REPLAY_AFTER_STEPS`` eager steps in the process (``vi_vae._replay``): the
traced ATen graph runs without Pyro's handlers and without a compiler. This
script times one-epoch ``fit`` calls of one VAE template 784-400-20 (batch 128,
``--loss``) with replay switched off (a replay cache that never traces) and on
(warmed up past ``REPLAY_AFTER_STEPS``, so the trace is not timed), interleaved
over rounds on the CPU clock, and prints the median ratio replayed / eager and
whether the two give the same parameters to the bit from the same start.
"""

import argparse
import hashlib
import math
import os
import statistics
import sys
import time

import torch

import vi_vae._replay as replay
from vi_vae import VAE, fit
from vi_vae.compiled import CompiledCache

BATCH = 128
#: a replay cache that never traces: every step eager, as before vi_vae._replay
NEVER = CompiledCache(replay=True, trace_after=sys.maxsize)
REPLAYED = replay._REPLAYED


def one_fit(vae, data, replayed, loss):
    """CPU seconds of a one-epoch ``fit`` from ``vae``'s initial weights, and their digest."""
    replay._REPLAYED = REPLAYED if replayed else NEVER
    started = time.process_time()
    fit(vae.model, vae.guide, data, epochs=1, batch_size=BATCH, seed=0, loss=loss)
    seconds = time.process_time() - started
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
    vae = VAE(784, latent_dim=20, hidden_sizes=[400], seed=0)
    start = {name: value.clone() for name, value in vae.state_dict().items()}
    for _ in range(math.ceil(replay.REPLAY_AFTER_STEPS / (args.points // BATCH)) + 1):
        one_fit(vae, data, True, args.loss)  # warm-up: the trace is taken, not timed
    ratios, same = [], True
    for _ in range(args.rounds):
        vae.load_state_dict(start)
        eager, eager_digest = one_fit(vae, data, False, args.loss)
        vae.load_state_dict(start)
        replayed, replayed_digest = one_fit(vae, data, True, args.loss)
        ratios.append(replayed / eager)
        same &= eager_digest == replayed_digest
    print(
        f"torch threads {args.threads}; {args.rounds} interleaved rounds of one-epoch fit "
        f"({args.points} points, batch {BATCH}, {args.loss}); load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"replayed (traced graph, no compiler) / eager fit: {statistics.median(ratios):.2f}x "
        f"(rounds {min(ratios):.2f}–{max(ratios):.2f}); same parameters to the bit: {same}"
    )


if __name__ == "__main__":
    main()
