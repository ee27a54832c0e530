"""Train a VAE on real MNIST digits, estimate its test log p(x), and draw the classic figures.

    python examples/vae_mnist.py --epochs 20 --latent-dim 2 --out runs/example

Uses the Python API end to end: load_dataset -> VAE -> fit -> bounds and
log_marginal_likelihood -> figures (latent scatter, 2-D manifold, samples,
reconstructions, interpolation).
"""

import argparse
from pathlib import Path

import pyro
import torch

from vi_vae import VAE, bounds, fit, load_dataset, log_marginal_likelihood
from vi_vae.app import plots


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    data = load_dataset(args.dataset, binarization="dynamic", max_train=args.max_train)
    vae = VAE(
        input_dim=data.input_dim,
        latent_dim=args.latent_dim,
        latent_family=args.latent_family,
        hidden_sizes=[args.hidden_size],
        image_shape=data.image_shape,
    )
    result = fit(
        vae.model,
        vae.guide,
        data.train,
        validation=data.validation,
        epochs=args.epochs,
        batch_transform=data.batch_transform(),
        seed=args.seed,
    )
    test = data.test[: args.test_points]
    estimate = log_marginal_likelihood(vae.model, vae.guide, test, args.num_particles, seed=0)
    table = bounds(vae.model, vae.guide, test, [1, 5, 50], args.num_particles, seed=1)
    print(f"trained {len(result.history)} epochs; best validation epoch {result.best_epoch}")
    print(
        f"test log p(x) = {estimate.mean:.2f} ± {estimate.standard_error:.2f} nats "
        f"(K = {args.num_particles}, mean ESS {estimate.effective_sample_size.mean():.1f})"
    )
    for bound in table:
        print(f"  {bound.name:>8}: {bound.mean:.2f} ± {bound.standard_error:.2f}")
    out = Path(args.out)
    with torch.no_grad():
        centres = vae.latent_family.center(vae.encode(test))
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "latent_scatter": plots.plot_latent_scatter(centres, data.test_labels[: args.test_points]),
        "samples": plots.plot_samples(vae.sample(64), data.image_shape),
        "reconstructions": plots.plot_reconstructions(
            test[:20], vae.reconstruct(test[:20]), data.image_shape
        ),
        "interpolation": plots.plot_interpolation(vae, test[0], test[-1]),
        "manifold": plots.plot_manifold(vae),
    }
    for name, png in figures.items():
        if png is not None:
            (out / f"{name}.png").write_bytes(png)
    print(f"figures in {out}")
    return {"log_px": estimate.mean, "bounds": {b.name: b.mean for b in table}}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--latent-family", default="normal")
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--test-points", type=int, default=500)
    parser.add_argument("--num-particles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/example-vae-mnist")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
