"""Do AIS's and BDMC's reported standard errors match the scatter of repeated runs?

    python benchmarks/ais_standard_error.py            # about 10 seconds on one thread

The cases of ``tests/evaluation/test_ais_standard_error.py`` (which requires each
ratio below to lie in [0.7, 1.4]), on the linear Gaussian model whose log p(x) is
closed form, with a guide one posterior sd off and 0.9 as wide, so that each chain's
weight is skewed: AIS (T = 20, C = 4, L = 2) on 8 points and BDMC (T = 5, C = 4,
L = 2) on 10 simulated points, each repeated under ``--repetitions`` seeds. Prints
the standard deviation of the estimates across the repetitions divided by the root
mean square of the standard error the runs report; for AIS also divided by the
delta-method standard error alone (the first of the two estimates whose larger one
:func:`vi_vae.evaluation.ais.annealed_standard_error` reports), which the scatter
exceeds. ``docs/concepts/ais-bdmc.md`` quotes this script's output.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "evaluation")]  # the tests' closed-form models

from ais_cases import poor_guide  # noqa: E402
from linear_gaussian import LinearGaussian  # noqa: E402

from vi_vae import AISConvergenceWarning, annealed_importance_sampling, bdmc  # noqa: E402


def delta_method_standard_error(log_weights: torch.Tensor) -> torch.Tensor:
    """sqrt(s²(w / w̄) / C) per point, from ``[C, N]`` log weights."""
    num_chains = log_weights.shape[0]
    normalized = (log_weights - log_weights.logsumexp(0) + math.log(num_chains)).exp()
    return (normalized.var(0) / num_chains).sqrt()


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    # the runs are short on purpose (skewed weights): their verdicts say so every time
    warnings.simplefilter("ignore", AISConvergenceWarning)
    model = LinearGaussian()
    guide = poor_guide(model, shift=1.0, scale=0.9)
    x = model.sample(8)
    runs = [
        annealed_importance_sampling(
            model.model, guide, x, num_steps=20, num_chains=4, leapfrog_steps=2, seed=seed
        )
        for seed in range(args.repetitions)
    ]
    scatter = torch.stack([run.log_likelihood for run in runs]).var(0).mean()
    reported = torch.stack([run.monte_carlo_standard_error for run in runs]).pow(2).mean()
    delta = torch.stack([delta_method_standard_error(run.log_weights) for run in runs])
    print(f"AIS, {args.repetitions} repetitions, 8 points, T = 20, C = 4, L = 2:")
    print(f"  scatter / reported standard error: {(scatter / reported).sqrt().item():.2f}")
    print(f"  scatter / delta method alone: {(scatter / delta.pow(2).mean()).sqrt().item():.2f}")

    shape = torch.zeros(10, 3, dtype=torch.float64)
    checks = [
        bdmc(model.model, guide, shape, num_steps=5, num_chains=4, leapfrog_steps=2, seed=seed)
        for seed in range(args.repetitions)
    ]
    gaps = torch.tensor([check.mean_gap for check in checks])
    errors = torch.tensor([check.mean_gap_standard_error for check in checks])
    ratio = (gaps.std() / errors.pow(2).mean().sqrt()).item()
    print(f"BDMC mean gap, {args.repetitions} repetitions, 10 simulated points, T = 5, C = 4:")
    print(f"  scatter / reported standard error: {ratio:.2f}")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=30, help="seeds 0, 1, ...")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_arguments())
