import pytest
import torch

from vi_vae import VAE, annealed_importance_sampling
from vi_vae.latents import FAMILIES

X = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)


@pytest.mark.parametrize("initial", ["guide", "prior"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_ais_runs_and_stays_finite_for_every_latent_family(name, initial):
    # positive, bounded, simplex and correlated supports: every latent is mapped
    # through biject_to(its support), and the chains must move (acceptance > 0).
    vae = VAE(input_dim=6, latent_dim=2, latent_family=name, hidden_sizes=(8,), seed=0)
    estimate = annealed_importance_sampling(
        vae.model, vae.guide, X, num_steps=6, num_chains=2, leapfrog_steps=2, initial=initial,
        seed=0,
    )  # fmt: skip
    assert torch.isfinite(estimate.log_weights).all()
    assert (estimate.log_likelihood < 0).all()  # a log probability of binary data
    assert (estimate.acceptance_rate > 0).all() and (estimate.acceptance_rate <= 1).all()
    assert torch.isfinite(estimate.step_size).all()
