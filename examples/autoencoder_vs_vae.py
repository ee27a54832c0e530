"""The same networks as a deterministic autoencoder and as a VAE: what the KL term buys.

    python examples/autoencoder_vs_vae.py --epochs 100 --out runs/autoencoder-vs-vae

Both use one ``VAE(latent_dim=2)`` template, built with the same seed, so they start
from the same weights. The autoencoder maps x to the encoder's location output z
and is trained on the squared error ‖x − E[x|z]‖², with no KL term and no noise;
the VAE is trained on the ELBO. The figure shows, for each, the test digits'
codes coloured by digit (top) and the decodes of a regular grid of z (bottom):
over the box its codes fill for the autoencoder, over ±2.5 prior standard
deviations for the VAE, with the holes (grid points farther than one grid step
from every training code) tinted red.

What to expect (docs/figures/autoencoder_vs_vae.png, 100 epochs on mnist-5k):
nothing pins the autoencoder's scale, so its codes spread as far as training
takes them (|z| up to about 15, sd about 3 per axis, and still growing with more
epochs), unevenly, with empty stretches between the digit clusters where the
decodes blur between digits; the KL term keeps the VAE's codes near its N(0, I)
prior (sd about 1.2–1.5), and its grid decodes to digits that change smoothly,
with few holes. The script prints both: the codes' extent, mean and sd, and the
share of the grid that is a hole.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

from vi_vae import VAE, fit, load_dataset, log_marginal_likelihood  # noqa: E402

#: the VAE's grid spans ±2.5 prior standard deviations (98.8% of N(0, 1) per axis)
PRIOR_EXTENT = 2.5


def codes(vae, x):
    """The centre of q(z|x): the autoencoder's code, the VAE's posterior mean."""
    with torch.no_grad():
        return vae.latent_family.center(vae.encode(x))


def decode_mean(vae, z):
    """E[x|z] (for the autoencoder, its output image)."""
    return vae.likelihood.mean(vae.decoder(z))


def train_autoencoder(vae, data, args):
    """Adam on the squared error of E[x | z = encoder location], batches as ``fit`` draws them."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.learning_rate)
    generator = torch.Generator().manual_seed(args.seed)
    transform = data.batch_transform()
    for _ in range(args.epochs):
        order = torch.randperm(len(data.train), generator=generator)
        for start in range(0, len(order), args.batch_size):
            x = data.train[order[start : start + args.batch_size]]
            if transform is not None:
                x = transform(x, generator)
            z = vae.latent_family.center(vae.encode(x))
            loss = (decode_mean(vae, z) - x).pow(2).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return vae


def grid(low, high, size):
    """A size × size grid of z over [low, high]², rows from the top (z₂ high) down."""
    first = torch.linspace(low[0], high[0], size)
    second = torch.linspace(high[1], low[1], size)
    return torch.stack(torch.meshgrid(first, second, indexing="xy"), dim=-1).reshape(-1, 2)


def holes(points, z, step):
    """Which grid points are farther than one grid step from every code, ``[num_points]``."""
    return torch.cdist(points, z).min(1).values > step


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    data = load_dataset(args.dataset, binarization="dynamic", max_train=args.max_train)
    # mnist-5k's splits are ordered by digit: take evenly spaced test points
    chosen = torch.linspace(0, len(data.test) - 1, min(args.test_points, len(data.test))).long()
    test, labels = data.test[chosen], data.test_labels[chosen]

    def template():
        return VAE(
            input_dim=data.input_dim,
            latent_dim=2,
            hidden_sizes=[args.hidden],
            image_shape=data.image_shape,
            seed=args.seed,
        )

    autoencoder = train_autoencoder(template(), data, args)
    vae = template()
    fit(
        vae.model,
        vae.guide,
        data.train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        batch_transform=data.batch_transform(),
        seed=args.seed,
    )

    results = {}
    panels = {}
    for name, model in (("autoencoder", autoencoder), ("VAE", vae)):
        z = codes(model, test)
        training_codes = codes(model, data.train)
        if name == "autoencoder":
            low, high = z.min(0).values, z.max(0).values
        else:
            low, high = torch.full((2,), -PRIOR_EXTENT), torch.full((2,), PRIOR_EXTENT)
        points = grid(low, high, args.grid_size)
        step = ((high - low) / (args.grid_size - 1)).max().item()
        with torch.no_grad():
            images = decode_mean(model, points)
            error = (decode_mean(model, z) - test).pow(2).sum(-1).mean().item()
        empty = holes(points, training_codes, step)
        results[name] = {
            "extent": training_codes.abs().max().item(),
            "code_mean": training_codes.mean(0).tolist(),
            "code_std": training_codes.std(0).tolist(),
            "hole_share": empty.double().mean().item(),
            "squared_error": error,
        }
        panels[name] = (z, low, high, images, empty)
        mean, std = results[name]["code_mean"], results[name]["code_std"]
        print(
            f"{name:12s} training codes within |z| <= {results[name]['extent']:.1f}, mean "
            f"({mean[0]:.2f}, {mean[1]:.2f}), std ({std[0]:.2f}, {std[1]:.2f}); holes: "
            f"{100 * results[name]['hole_share']:.0f}% of the grid is farther than one step "
            f"from every training code; test squared error {error:.1f}"
        )
    estimate = log_marginal_likelihood(vae.model, vae.guide, test, args.eval_num_particles, seed=0)
    results["VAE"]["log_px"] = estimate.mean
    print(
        f"VAE test log p(x) = {estimate.mean:.2f} ± {estimate.standard_error:.2f} nats "
        f"(K = {args.eval_num_particles}); the autoencoder has no likelihood to compare"
    )
    path = Path(args.out) / "autoencoder_vs_vae.png"
    plot(panels, data.image_shape, args.grid_size, labels, path)
    print(f"figure: {path}")
    return results


def plot(panels, image_shape, grid_size, labels, path):
    height, width = image_shape
    figure, axes = plt.subplots(2, 2, figsize=(10, 10.5))
    for column, (name, (z, low, high, images, empty)) in enumerate(panels.items()):
        axis = axes[0, column]
        scatter = axis.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=5, alpha=0.8)
        axis.add_patch(
            plt.Rectangle(
                tuple(low.tolist()), *(high - low).tolist(), fill=False, ls="--", color="grey"
            )
        )
        if name == "VAE":
            for radius in (1, 2):  # prior contours, N(0, I)
                axis.add_patch(plt.Circle((0, 0), radius, fill=False, color="black", lw=0.6))
            axis.set_aspect("equal")
        std = ", ".join(f"{value:.1f}" for value in z.std(0).tolist())
        axis.set_title(f"{name}: test codes, sd ({std}); dashed: the decoded grid", fontsize=10)
        axis.set_xlabel("z₁")
        axis.set_ylabel("z₂")
        # grey levels, with the holes (no training code within a grid step) tinted red
        tiles = images.reshape(grid_size, grid_size, 1, height, width).repeat(1, 1, 3, 1, 1)
        tint = torch.tensor([1.0, 0.35, 0.35]).reshape(1, 3, 1, 1)
        tiles[empty.reshape(grid_size, grid_size)] *= tint
        tiles[empty.reshape(grid_size, grid_size)] += (1 - tint) * 0.25
        mosaic = tiles.permute(0, 3, 1, 4, 2).reshape(grid_size * height, grid_size * width, 3)
        axes[1, column].imshow(mosaic.clamp(0, 1).numpy(), interpolation="nearest")
        axes[1, column].set_axis_off()
        span = "its codes' box" if name == "autoencoder" else f"±{PRIOR_EXTENT:g} prior sd"
        axes[1, column].set_title(
            f"{name}: decodes of a {grid_size}×{grid_size} grid ({span});\n"
            "red: holes, no training code within one grid step",
            fontsize=10,
        )
    figure.colorbar(scatter, ax=axes[0, :], label="digit", shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--test-points", type=int, default=500)
    parser.add_argument("--grid-size", type=int, default=15, help="decodes per side")
    parser.add_argument(
        "--eval-num-particles", type=int, default=1000, help="K for the VAE's log p(x)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/autoencoder-vs-vae")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
