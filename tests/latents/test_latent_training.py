"""A short VAE training run on mnist-5k with each family improves a finite bound."""

import math

import pytest
import torch

from vi_vae import VAE, bounds, fit, load_dataset
from vi_vae.latents import FAMILIES, LatentFamily

#: 300 training points, 3 epochs of 6 steps: a fraction of a second per family.
NUM_POINTS = 300
EPOCHS = 3
#: ELBO draws per point for the bound before and after (1 particle each).
NUM_SAMPLES = 4


@pytest.fixture(scope="module")
def mnist_points() -> torch.Tensor:
    return load_dataset("mnist-5k", binarization="static").train[:NUM_POINTS]


def _elbo(vae: VAE, x: torch.Tensor) -> float:
    (bound,) = bounds(
        vae.model, vae.guide, x, bound_particles=(1,), num_particles=NUM_SAMPLES, seed=1
    )
    return bound.mean


def test_short_training_improves_a_finite_bound(family: LatentFamily, mnist_points):
    torch.manual_seed(0)
    latent_dim = 2
    # By name, as a user writes it; an unregistered variant as the object itself.
    latent = family.name if family.name in FAMILIES else family
    vae = VAE(input_dim=784, latent_dim=latent_dim, latent_family=latent, hidden_sizes=(32,))
    assert vae.latent_family is family
    before = _elbo(vae, mnist_points)
    result = fit(
        vae.model,
        vae.guide,
        mnist_points,
        epochs=EPOCHS,
        batch_size=50,
        learning_rate=3e-3,
        seed=0,
    )
    after = _elbo(vae, mnist_points)
    assert len(result.history) == EPOCHS
    assert math.isfinite(before) and math.isfinite(after)
    # At initialization the ELBO is about −545 nats (784 log 2 minus a little);
    # three epochs must gain at least 50.
    assert after > before + 50, (before, after)
    reconstruction = vae.reconstruct(mnist_points[:5])
    assert reconstruction.shape == (5, 784) and torch.isfinite(reconstruction).all()
