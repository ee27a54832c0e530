"""How far the binarization of the test digits moves one trained model's log p(x).

    python benchmarks/binarization.py runs/demo/elbo --num-particles 1000

Loads a trained run of a Bernoulli model on grey-level digits (``make demo``'s, say),
binarizes its dataset's test digits each way that gives binary pixels (``static``:
each pixel drawn once with its grey level as probability, which is also what
``dynamic`` does to the test set; ``threshold``: rounded at 0.5) and prints the
importance-sampled log p(x) of the same model on each, with the same seed and K, and
the mean per-point difference. The README, ``docs/howto/quote-log-likelihood.md`` and
the pages that point to it quote this script's output on ``make demo``'s ELBO run.
"""

from __future__ import annotations

import argparse

from vi_vae import load_dataset, log_marginal_likelihood
from vi_vae.app.runs import load_run

#: binarizations with binary test pixels (``dynamic`` binarizes the test set as ``static``)
BINARIZATIONS = ("static", "threshold")


def main(args: argparse.Namespace) -> None:
    run = load_run(args.run_dir, device="cpu")
    name = run.config.data.dataset
    print(
        f"{args.run_dir}: model trained with binarization {run.config.data.binarization!r}; "
        f"test digits of {name}, K = {args.num_particles}, seed {args.seed}"
    )
    per_point = {}
    for binarization in BINARIZATIONS:
        test = load_dataset(name, binarization=binarization, data_dir=run.config.data.data_dir)
        x = test.test[: args.num_points]
        estimate = log_marginal_likelihood(
            run.vae.model, run.vae.guide, x, args.num_particles, seed=args.seed
        )
        per_point[binarization] = estimate.log_likelihood
        print(
            f"  {binarization:>9}: log p(x) = {estimate.mean:.2f} ± {estimate.standard_error:.2f}"
            f" on {len(x)} points (NLL {-estimate.mean:.2f})"
        )
    difference = per_point["threshold"] - per_point["static"]
    print(
        f"  threshold − static: {difference.mean().item():+.2f} nats per point "
        f"(per point {difference.min().item():+.1f} to {difference.max().item():+.1f})"
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained run directory (Bernoulli likelihood)")
    parser.add_argument("--num-particles", type=int, default=1000, help="K per test point")
    parser.add_argument("--num-points", type=int, default=None, help="first N test points")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_arguments())
