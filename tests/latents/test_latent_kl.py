"""KL(q ‖ p) between each posterior and its default prior: closed forms against Monte Carlo."""

import math

import pytest
import torch
from latent_cases import example_raw, latent_dim_for

from vi_vae.latents import LatentFamily

#: Draws of the Monte Carlo KL; the tolerance is 5 of its standard errors plus a
#: relative 1e-9 for the laws (uniform, reciprocal) where log q − log p is constant.
DRAWS = 100000


def _monte_carlo(q, p):
    torch.manual_seed(0)
    z = q.sample((DRAWS,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(DRAWS)


def test_analytic_kl_matches_monte_carlo(family: LatentFamily):
    if not family.has_analytic_kl:
        pytest.skip(f"{family.name}: sampled KL")
    d = latent_dim_for(family, 3)
    q = family.posterior(example_raw(family, d, batch_shape=(4,)))
    p = family.prior(d, dtype=torch.float64)
    kl = torch.distributions.kl_divergence(q, p)
    assert kl.shape == (4,)
    estimate, standard_error = _monte_carlo(q, p)
    assert (standard_error < 0.05 * kl.abs() + 1e-9).all(), "too few draws to check anything"
    assert ((kl - estimate).abs() <= 5 * standard_error + 1e-9 * kl.abs()).all(), (
        kl,
        estimate,
        standard_error,
    )
    # The family's kl_divergence uses the closed form.
    torch.testing.assert_close(family.kl_divergence(q, p), kl)


def test_sampled_kl_is_unbiased_and_differentiable(family: LatentFamily):
    # Against the closed form where there is one, else against a larger Monte Carlo.
    d = latent_dim_for(family, 2)
    raw = example_raw(family, d, batch_shape=(3,)).requires_grad_()
    q, p = family.posterior(raw), family.prior(d, dtype=torch.float64)
    particles = 10000
    with torch.no_grad():
        reference, standard_error = _monte_carlo(q, p)
        if family.has_analytic_kl:
            reference = torch.distributions.kl_divergence(q, p)
            p = torch.distributions.Independent(_Opaque(p), 0)  # no registered pair
        standard_error = standard_error * math.sqrt(DRAWS / particles)
    torch.manual_seed(1)
    sampled = family.kl_divergence(q, p, num_particles=particles)
    assert sampled.shape == (3,)
    tolerance = 5 * standard_error + 1e-9 * reference.abs()
    assert ((sampled - reference).abs() <= tolerance).all(), (sampled, reference, tolerance)
    (gradient,) = torch.autograd.grad(sampled.sum(), raw)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


class _Opaque(torch.distributions.Distribution):
    """Wraps a distribution so that no closed-form KL is found for it."""

    arg_constraints = {}

    def __init__(self, inner):
        self.inner = inner
        super().__init__(inner.batch_shape, inner.event_shape, validate_args=False)

    def log_prob(self, value):
        return self.inner.log_prob(value)
