"""Pathwise gradients: rsample's Monte Carlo gradient of E[f(z)] matches the exact gradient.

As NumPyro's ``test_pathwise_gradient``: with f(z) = Σᵢ zᵢ + zᵢ², the exact value is
Σᵢ meanᵢ + varianceᵢ + meanᵢ². Families without finite closed-form moments (Cauchy;
Gompertz, whose mean needs the exponential integral) use a bounded f and the exact
value ∫ f(z) q(z) dz by quadrature on a fixed grid, differentiated through log q.
"""

import math

import numpy as np
import torch
from latent_cases import example_raw, latent_dim_for, scipy_equivalent

from vi_vae.latents import LatentFamily

#: Independent groups of draws; the gradient's standard error is their spread / √groups.
GROUPS = 20
DRAWS_PER_GROUP = 10000
#: Allowed distance from the exact gradient, in standard errors (5 SE: a false failure
#: has probability ≈ 6e-7 per coordinate).
STANDARD_ERRORS = 5.0


def _closed_form(q):
    try:
        mean, variance = q.mean, q.variance
    except NotImplementedError:
        return None
    if not (torch.isfinite(mean).all() and torch.isfinite(variance).all()):
        return None
    return (mean + variance + mean.pow(2)).sum()


def _quadrature(family, q, bounded):
    # A grid fixed from detached parameters: the scipy quantiles of 2e5 levels.
    levels = np.linspace(1e-9, 1 - 1e-9, 200001)
    grid = np.stack([frozen.ppf(levels) for _, frozen in scipy_equivalent(family).marginals(q)], 1)
    grid = torch.as_tensor(grid)
    density = q.base_dist.log_prob(grid).exp()
    total = torch.trapezoid(bounded(grid) * density, grid, dim=0)
    return total.sum()


def test_pathwise_gradient(family: LatentFamily):
    d = latent_dim_for(family, 2)
    raw = example_raw(family, d).requires_grad_()
    q = family.posterior(raw)
    exact = _closed_form(q)
    if exact is not None:

        def f(z):
            return (z + z.pow(2)).sum(-1)
    else:

        def bounded(z):
            return 1 / (1 + z.pow(2))

        def f(z):
            return bounded(z).sum(-1)

        exact = _quadrature(family, q, bounded)
    (expected,) = torch.autograd.grad(exact, raw)

    estimates = []
    for group in range(GROUPS):
        torch.manual_seed(group)
        z = family.posterior(raw).rsample((DRAWS_PER_GROUP,))
        (gradient,) = torch.autograd.grad(f(z).mean(), raw)
        estimates.append(gradient)
    estimates = torch.stack(estimates)
    estimate = estimates.mean(0)
    standard_error = estimates.std(0) / math.sqrt(GROUPS)

    # Every raw output gets a gradient, and the estimate is precise enough to mean
    # something: a sampler without the pathwise term (gradient 0) is ≥ 20 SE off.
    assert (expected.abs() > 1e-6).all(), expected
    assert (standard_error < 0.05 * expected.abs()).all(), (standard_error, expected)
    assert ((estimate - expected).abs() <= STANDARD_ERRORS * standard_error).all(), (
        estimate,
        expected,
        standard_error,
    )
