import functools

import pytest
import torch

from vi_vae import VAE, annealed_importance_sampling
from vi_vae.latents import FAMILIES

X = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
#: prior draws of the reference: its weights p(x|z) of binary data lie in [0, 1], so
#: importance sampling from the prior has bounded weights and a small, honest error
REFERENCE_DRAWS = 20_000
#: nats per point AIS may sit from the reference beyond 3 joint standard errors: the
#: bias left by T = 50 steps on these 2-D posteriors (measured ≤ 0.07 from the prior)
TOLERANCE = 0.1


def vae_of(name):
    return VAE(input_dim=6, latent_dim=2, latent_family=name, hidden_sizes=(8,), seed=0)


@functools.cache
def reference(name):
    """log p(x) by importance sampling from the prior: AIS with T = 1 from the prior."""
    vae = vae_of(name)
    return annealed_importance_sampling(
        vae.model, None, X, num_steps=1, num_chains=REFERENCE_DRAWS, initial="prior", seed=1,
        chunk_size=REFERENCE_DRAWS * len(X),
    )  # fmt: skip


@pytest.mark.parametrize("initial", ["guide", "prior"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_ais_matches_log_p_x_for_every_latent_family(name, initial):
    # positive, bounded, simplex and correlated supports: every latent is mapped
    # through biject_to(its support); from the guide, a narrower support than the
    # prior's (pareto, reciprocal, uniform, triangular) makes AIS start from the prior
    vae = vae_of(name)
    estimate = annealed_importance_sampling(
        vae.model, vae.guide, X, num_steps=50, num_chains=8, leapfrog_steps=2, initial=initial,
        seed=0,
    )  # fmt: skip
    exact = reference(name)
    deviation = (estimate.log_likelihood - exact.log_likelihood).mean().item()
    error = (
        estimate.monte_carlo_standard_error.pow(2) + exact.monte_carlo_standard_error.pow(2)
    ).sum().sqrt().item() / len(X)
    assert abs(deviation) <= TOLERANCE + 3 * error, (deviation, error)
    assert exact.mean_monte_carlo_standard_error < 0.05  # the reference is precise
    assert (estimate.acceptance_rate > 0).all() and (estimate.acceptance_rate <= 1).all()
