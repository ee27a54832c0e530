"""One AIS step against L + 1 plain-PyTorch gradient evaluations of log p(x, z).

    python benchmarks/ais_step_time.py --threads 1

An AIS step with L leapfrog steps needs about L + 1 gradient evaluations of the
annealed log density over all (chain, point) pairs. This script times one step
of ``vi_vae.annealed_importance_sampling`` on the VAE template (784-400-20 MLP,
Bernoulli likelihood, C chains × N points) and, in the same process and rounds,
a hand-written plain-PyTorch forward + backward of log p(x, z) = log p(x | z) +
log p(z) with respect to z for the same decoder weights on the same C × N
pairs. It prints

    ratio = (time of one AIS step) / ((L + 1) × time of one plain gradient),

the target being ≤ 1.3x, and the same per gradient evaluation (AIS step / L),
which is what the Pyro-traced log density costs against plain PyTorch. The AIS
side carries everything the library does per step: tracing model and guide
through Pyro, the guide's log density and its gradient, the Jacobians of the
unconstrained coordinates, keyed random numbers, accept tests, and the pilot
chain that adapts the step size (one more chain than the C the plain side
evaluates). Each AIS step is paired with L + 1 plain gradients run right after
it; the ratio is the median over steps of the paired ratios. ``--compile`` runs
the AIS side with ``compile=True`` (the warm-up run compiles; the timed runs do not).
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vi_vae import VAE, annealed_importance_sampling

INPUT_DIM, HIDDEN, LATENT = 784, 400, 20
#: log N(z | 0, I) normalizer per latent coordinate
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def make_data(num_points, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # about the share of ink in a binarized MNIST digit
    return (torch.rand(num_points, INPUT_DIM, generator=generator) < 0.13).float()


def plain_decoder(vae):
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM))
    decoder.load_state_dict(vae.decoder.state_dict())
    return decoder


def plain_gradient(decoder, z, x):
    """∇_z [log p(x | z) + log p(z)] for z: [C, N, 20], by hand."""
    z = z.detach().requires_grad_(True)
    logits = decoder(z)
    log_likelihood = -F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
    log_prior = -0.5 * z.pow(2).sum(-1) - LATENT * HALF_LOG_TWO_PI
    (gradient,) = torch.autograd.grad((log_likelihood + log_prior).sum(), z)
    return gradient


def paired_times(vae, decoder, x, args):
    """(AIS step, L + 1 plain gradients) in seconds, measured back to back, per AIS step.

    The plain gradients run inside the step callback, between two AIS steps, and
    their time is taken out of the AIS interval; on a shared machine whose load
    drifts over seconds, neighbours in time make the fairest pairs.
    """
    z = torch.randn(args.num_chains, len(x), LATENT)
    pairs, marks = [], {}

    def on_step(done, total):
        started = time.perf_counter()
        if "end" in marks and 2 <= done < total:  # step done ran one transition
            ais = started - marks["end"]
            for _ in range(args.leapfrog_steps + 1):
                plain_gradient(decoder, z, x)
            pairs.append((ais, time.perf_counter() - started))
        marks["end"] = time.perf_counter()

    annealed_importance_sampling(
        vae.model,
        vae.guide,
        x,
        num_steps=args.num_steps,
        num_chains=args.num_chains,
        leapfrog_steps=args.leapfrog_steps,
        seed=0,
        on_step=on_step,
        compile=args.compile,
    )
    return pairs


def main(args):
    torch.set_num_threads(args.threads)
    vae = VAE(input_dim=INPUT_DIM, latent_dim=LATENT, seed=0)
    decoder = plain_decoder(vae)
    x = make_data(args.num_points)
    paired_times(vae, decoder, x, args)  # warm-up (and, with --compile, the compile)
    pairs = [pair for _ in range(args.rounds) for pair in paired_times(vae, decoder, x, args)]
    ratio = statistics.median(ais / plain for ais, plain in pairs)
    per_gradient = ratio * (args.leapfrog_steps + 1) / args.leapfrog_steps
    ais_ms = statistics.median(ais for ais, _ in pairs) * 1e3
    plain_ms = statistics.median(plain for _, plain in pairs) * 1e3 / (args.leapfrog_steps + 1)
    num_pairs = args.num_chains * args.num_points
    print(
        f"torch threads: {args.threads}; {len(pairs)} AIS steps, each paired with L + 1 "
        "plain gradients run right after it; medians\n"
        f"VAE 784-400-20 Bernoulli, {args.num_chains} chains x {args.num_points} points = "
        f"{num_pairs} pairs, L = {args.leapfrog_steps} leapfrog steps\n"
        f"one AIS step: {ais_ms:.1f} ms; one plain-PyTorch gradient of log p(x, z): "
        f"{plain_ms:.2f} ms\n"
        f"AIS {'compiled' if args.compile else 'eager'}: "
        f"AIS step / ((L + 1) x plain gradient): {ratio:.2f}x (target <= 1.3x)\n"
        f"AIS step / (L x plain gradient), per gradient evaluation: {per_gradient:.2f}x"
    )
    return {"ratio": ratio, "per_gradient": per_gradient}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-chains", type=int, default=16)
    parser.add_argument("--num-points", type=int, default=100)
    parser.add_argument("--leapfrog-steps", type=int, default=10)
    parser.add_argument("--num-steps", type=int, default=12, help="AIS steps per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--compile", action="store_true", help="run AIS with compile=True (plain side eager)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
