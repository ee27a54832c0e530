"""Every estimator drops into pyro.infer.SVI, for a hand-written pair and for the VAE template."""

import math

import pyro
import pyro.optim
import pytest
import torch
from estimator_cases import ESTIMATORS
from gaussian_pair import GaussianPair
from pyro.infer import SVI

from vi_vae import VAE
from vi_vae.estimators import ELBO, IWAE, PIWAE, STL, DReG
from vi_vae.latents import FAMILIES
from vi_vae.train import KLWeight


@pytest.mark.parametrize("name", ESTIMATORS)
def test_svi_trains_a_hand_written_model(name):
    # The data come from another model (shifted and scaled), so that the initial
    # parameters fit them badly; 20 Adam steps raise the exact mean log p(x) by about
    # 6 nats with every estimator, and must raise it by 2.
    pair = GaussianPair()
    x = 2 * pair.sample(32) + 1
    svi = SVI(pair.model, pair.guide, pyro.optim.Adam({"lr": 0.05}), ESTIMATORS[name][0]())
    before = pair.log_marginal(x).mean().item()
    losses = [svi.step(x) for _ in range(20)]
    assert all(math.isfinite(loss) for loss in losses)
    assert pair.log_marginal(x).mean().item() > before + 2


def test_svi_with_dreg_trains_the_vae_template():
    torch.manual_seed(0)
    prototypes = torch.bernoulli(torch.full((4, 12), 0.5))
    x = prototypes[torch.randint(0, 4, (64,))]
    vae = VAE(input_dim=12, latent_dim=2, hidden_sizes=(16,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), loss=DReG(num_particles=5))
    losses = [svi.step(x) for _ in range(30)]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])  # 0.45 with these seeds
    assert all(p.grad is None or not p.grad.any() for p in vae.parameters())  # SVI zeroed them


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "make",
    [
        lambda: ELBO(2, analytic_kl=True),
        lambda: IWAE(3),
        lambda: STL(2),
        lambda: DReG(3),
        lambda: PIWAE(2, 2),
    ],
    ids=["elbo-analytic", "iwae", "stl", "dreg", "piwae"],
)
def test_every_latent_family_gets_finite_gradients(family, make):
    torch.manual_seed(0)
    vae = VAE(input_dim=6, latent_dim=2, latent_family=family, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    pyro.set_rng_seed(1)
    loss = make().loss_and_grads(vae.model, vae.guide, x)
    assert math.isfinite(loss)
    # SVI.step reports loss_and_grads' value and SVI.evaluate_loss reports loss(): on the
    # same draws they are the same number (to float32 rounding of the sums).
    pyro.set_rng_seed(1)
    assert loss == pytest.approx(make().loss(vae.model, vae.guide, x), rel=1e-6, abs=1e-6)
    # Every parameter reaches the objective. STL's and DReG's guide gradients flow only
    # through the draw z, so a family whose rsample lost its gradient leaves the encoder
    # only float32 rounding residue (≈ 1e-8, measured with Normal.rsample detached);
    # intact, each parameter's largest gradient entry is ≥ 0.02 over every family and
    # estimator here. 1e-4 sits between the two.
    for name, parameter in vae.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 1e-4, name


def test_site_scales_apply_as_in_fit():
    # fit's KL weight β scales log p(z) and log q(z|x): the ELBO estimate is
    # log p(x|z) + β (log p(z) − log q(z|x)), linear in β on the same draws.
    pair = GaussianPair()
    x = pair.sample(6)
    values = {}
    for beta in (0.0, 0.5, 1.0):
        pyro.set_rng_seed(4)
        weight = KLWeight(beta)
        values[beta] = ELBO(3).per_point_bound(weight(pair.model), weight(pair.guide), x)
    torch.testing.assert_close(values[0.5], (values[0.0] + values[1.0]) / 2, rtol=0, atol=1e-12)
