"""Step time of vi_vae against hand-written plain PyTorch with identical maths.

    python benchmarks/step_time.py --threads 1 --clock cpu --write docs/benchmarks.md

Two comparisons, each a ratio measured in the same process, with the two
sides interleaved over several rounds (this machine is shared and noisy;
absolute times drift, ratios much less):

1. Training: one epoch of ``vi_vae.fit`` with its defaults (Pyro SVI, vi_vae's
   ELBO with one draw, whose values and gradients are Trace_ELBO's, and
   ``vi_vae.optim.Adam``, one torch Adam over every parameter; the VAE template
   784-400-20, batch 128, Bernoulli likelihood) against the same epoch written
   in plain PyTorch: same networks and initial weights, same reparameterized
   sample, same single-sample ELBO, one ``torch.optim.Adam``. Measured too:
   ``fit`` with Pyro's ``pyro.optim.Adam`` (one torch Adam per parameter,
   ``fit``'s default before), and plain Pyro (Trace_ELBO and ``pyro.optim.Adam``
   on a hand-written Pyro VAE).
2. Evaluation: ``log_marginal_likelihood`` (K importance samples per point)
   against a plain-PyTorch importance-sampling loop over the same networks.
"""

import argparse
import math
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from sections import write_section
from torch import nn

from vi_vae import VAE, fit, log_marginal_likelihood
from vi_vae.evaluation import DEFAULT_CHUNK_SIZE

INPUT_DIM, HIDDEN, LATENT, BATCH = 784, 400, 20, 128
#: seconds of the process: wall time, or CPU time (``--clock cpu``: one thread on a shared machine)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def make_data(num_points, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(num_points, INPUT_DIM, generator=generator) < 0.13).float()


def normal_parameters(raw):
    """The default family's maps (vi_vae.latents.parameters LOCATION and SCALE), inline."""
    loc = raw[..., :LATENT].clamp(-20.0, 20.0)
    scale = (1e-4 + F.softplus(raw[..., LATENT:])).clamp(max=10.0)
    return loc, scale


def plain_torch_epoch(encoder, decoder, optimizer, data, generator):
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(data), BATCH):
        x = data[order[start : start + BATCH]]
        raw = encoder(x)
        loc, scale = normal_parameters(raw)
        z = loc + scale * torch.randn_like(loc)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_likelihood = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(
            -1
        )
        loss = -(log_likelihood + log_prior - log_q).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


class PlainPyroVAE(nn.Module):
    """A Pyro VAE as Pyro's own tutorial writes it (pyro.module, no PyroModule)."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            logits = self.decoder(z)
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            raw = self.encoder(x)
            pyro.sample("z", dist.Normal(*normal_parameters(raw)).to_event(1))


def time_it(fn, repeats):
    started = clock()
    for _ in range(repeats):
        fn()
    return (clock() - started) / repeats


def training_ratios(args):
    data = make_data(BATCH * args.steps)
    pyro.set_rng_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN])
    encoder = nn.Sequential(nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM))
    encoder.load_state_dict(vae.encoder.state_dict())
    decoder.load_state_dict(vae.decoder.state_dict())
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    plain_pyro = PlainPyroVAE(
        nn.Sequential(nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT)),
        nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM)),
    )

    def run_fit():
        fit(vae.model, vae.guide, data, epochs=1, batch_size=BATCH)

    def run_fit_pyro_adam():
        optimizer = pyro.optim.Adam({"lr": 1e-3})
        fit(vae.model, vae.guide, data, optimizer=optimizer, epochs=1, batch_size=BATCH)

    def run_plain_pyro():
        pyro.clear_param_store()
        svi = SVI(plain_pyro.model, plain_pyro.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), BATCH):
            svi.step(data[order[start : start + BATCH]])

    def run_torch():
        plain_torch_epoch(encoder, decoder, optimizer, data, generator)

    for fn in (run_fit, run_fit_pyro_adam, run_plain_pyro, run_torch):  # warm-up
        fn()
    rows = []
    for _ in range(args.rounds):
        torch_time = time_it(run_torch, 1) / args.steps
        fit_time = time_it(run_fit, 1) / args.steps
        fit_pyro_adam_time = time_it(run_fit_pyro_adam, 1) / args.steps
        pyro_time = time_it(run_plain_pyro, 1) / args.steps
        rows.append((torch_time, fit_time, pyro_time, fit_pyro_adam_time))
    return rows


def evaluation_ratios(args):
    pyro.set_rng_seed(0)
    vae = VAE(INPUT_DIM, LATENT, hidden_sizes=[HIDDEN])
    x = make_data(args.eval_num_points, seed=1)
    num_samples = args.eval_num_particles

    def run_vi_vae():
        log_marginal_likelihood(vae.model, vae.guide, x, num_samples, compute_pareto_k=False)

    @torch.no_grad()
    def run_torch():
        # the same pass layout as the evaluator: a chunk of points, all K at once
        points_per_pass = max(1, DEFAULT_CHUNK_SIZE // num_samples)
        results = []
        for start in range(0, len(x), points_per_pass):
            batch = x[start : start + points_per_pass]
            raw = vae.encoder(batch)
            loc, scale = normal_parameters(raw)
            z = loc + scale * torch.randn(num_samples, *loc.shape)
            log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
            log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
            logits = vae.decoder(z)
            log_likelihood = -F.binary_cross_entropy_with_logits(
                logits, batch.expand_as(logits), reduction="none"
            ).sum(-1)
            log_weights = log_likelihood + log_prior - log_q
            results.append(log_weights.logsumexp(0) - math.log(num_samples))
        return torch.cat(results)

    run_vi_vae()
    run_torch()
    rows = []
    for _ in range(args.rounds):
        rows.append((time_it(run_torch, 1), time_it(run_vi_vae, 1)))
    return rows


def main(args):
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    training = training_ratios(args)
    evaluation = evaluation_ratios(args)
    fit_ratio = statistics.median(f / t for t, f, _, _ in training)
    pyro_ratio = statistics.median(p / t for t, _, p, _ in training)
    fit_pyro_adam_ratio = statistics.median(a / t for t, _, _, a in training)
    eval_ratio = statistics.median(v / t for t, v in evaluation)
    torch_ms = statistics.median(t for t, _, _, _ in training) * 1e3
    lines = [
        f"torch threads: {args.threads}; {args.clock} clock; {args.rounds} interleaved rounds; "
        "medians of per-round ratios",
        "",
        "| measurement | ratio to plain PyTorch |",
        "|---|---:|",
        f"| SVI step, vi_vae.fit (VAE template, its default ELBO and vi_vae.optim.Adam), "
        f"784-400-20, batch {BATCH} | {fit_ratio:.2f}x |",
        f"| SVI step, vi_vae.fit with pyro.optim.Adam (one torch Adam per parameter) "
        f"| {fit_pyro_adam_ratio:.2f}x |",
        f"| SVI step, plain Pyro Trace_ELBO and pyro.optim.Adam (pyro.module VAE) "
        f"| {pyro_ratio:.2f}x |",
        f"| log p(x) evaluator, K = {args.eval_num_particles}, {args.eval_num_points} points "
        f"| {eval_ratio:.2f}x |",
        "",
        f"(plain PyTorch step here: {torch_ms:.2f} ms; absolute times drift on a shared machine)",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "python benchmarks/step_time.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "write"
        )
        write_section(
            args.write,
            "Step time against plain PyTorch",
            f"Regenerate with:\n\n    {command} --write {args.write}\n\n{report}\n",
        )
    return {
        "fit": fit_ratio,
        "fit_pyro_adam": fit_pyro_adam_ratio,
        "plain_pyro": pyro_ratio,
        "evaluation": eval_ratio,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="SVI steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eval-num-particles", type=int, default=1000)
    parser.add_argument("--eval-num-points", type=int, default=64)
    parser.add_argument(
        "--clock", choices=CLOCKS, default="wall", help="cpu: process CPU time (shared machine)"
    )
    parser.add_argument("--write", help="write the table to this markdown file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
