"""Every family's posterior against numerical quadrature and its scipy.stats equivalent."""

import math

import numpy as np
import pytest
import torch
from latent_cases import example_raw, latent_dim_for, scipy_equivalent
from scipy import integrate, stats
from torch.distributions import constraints

from vi_vae.latents import LatentFamily

#: Draws per Kolmogorov-Smirnov test, and the p-value below which it fails. About 65
#: marginals are tested, so α = 1e-5 keeps the chance that a correct sampler fails
#: anywhere below 1e-3 (the first column of of ``torch.rand`` alone gives
#: p = 5e-4 for seed 0). At n = 20000 it rejects a KS statistic above
#: √(−log(α/2)/2)/√n ≈ 0.017: a 10% error in a scale, or a wrong shape, is far beyond
#: that (``test_samples_do_not_match_a_wrong_law`` checks it on the same draws).
KS_DRAWS = 20000
KS_ALPHA = 1e-5


def _bounds(q) -> tuple[float, float]:
    support = q.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    lower = getattr(support, "lower_bound", -math.inf)
    upper = getattr(support, "upper_bound", math.inf)
    return float(lower), float(upper)


def test_log_prob_integrates_to_one(family: LatentFamily):
    # One dimension: a scalar latent, or the 1-simplex {(t, 1 − t)} for the Dirichlet
    # (whose density is with respect to the first d − 1 coordinates).
    on_simplex = family.support is constraints.simplex
    d = 2 if on_simplex else 1
    for seed in range(3):
        q = family.posterior(example_raw(family, d, seed=seed))
        lower, upper = (0.0, 1.0) if on_simplex else _bounds(q)

        def density(t, q=q):
            point = torch.tensor([t, 1 - t] if on_simplex else [t], dtype=torch.float64)
            return q.log_prob(point).exp().item()

        total, error = integrate.quad(density, lower, upper, limit=500, epsabs=1e-10)
        assert total == pytest.approx(1.0, abs=1e-6), (seed, total, error)


def test_log_prob_matches_scipy(family: LatentFamily):
    equivalent = scipy_equivalent(family)
    d = latent_dim_for(family, 3)
    for seed in range(3):
        q = family.posterior(example_raw(family, d, seed=seed))
        torch.manual_seed(seed)
        z = q.sample((50,))
        expected = equivalent.logpdf(q, z.numpy())
        np.testing.assert_allclose(q.log_prob(z).numpy(), expected, rtol=1e-7, atol=1e-7)


def test_samples_match_scipy(family: LatentFamily):
    # In float32, the dtype a VAE samples in.
    equivalent = scipy_equivalent(family)
    d = latent_dim_for(family, 3)
    q = family.posterior(example_raw(family, d, dtype=torch.float32))
    torch.manual_seed(0)
    z = q.sample((KS_DRAWS,)).double().numpy()
    q64 = family.posterior(example_raw(family, d))
    for project, frozen in equivalent.marginals(q64):
        result = stats.kstest(project(z), frozen.cdf)
        assert result.pvalue > KS_ALPHA, (result.statistic, result.pvalue)


def test_samples_do_not_match_a_wrong_law(family: LatentFamily):
    # The KS test above can fail: the same draws against a 10% wider law are rejected.
    equivalent = scipy_equivalent(family)
    d = latent_dim_for(family, 3)
    q = family.posterior(example_raw(family, d))
    torch.manual_seed(0)
    z = q.sample((KS_DRAWS,)).numpy()
    for project, frozen in equivalent.marginals(q):
        median = frozen.median()
        stretched = median + 1.1 * (project(z) - median)
        assert stats.kstest(stretched, frozen.cdf).pvalue < KS_ALPHA


def test_moments_match_scipy(family: LatentFamily):
    equivalent = scipy_equivalent(family)
    d = latent_dim_for(family, 3)
    q = family.posterior(example_raw(family, d))
    try:
        mean, variance = q.mean, q.variance
    except NotImplementedError:
        pytest.skip(f"{family.name}: no closed-form moments")
    marginals = equivalent.marginals(q)
    coordinates = len(marginals) == d
    for i, (project, frozen) in enumerate(marginals):
        projected_mean = float(project(mean.numpy()[None])[0])
        if math.isfinite(frozen.mean()):
            assert projected_mean == pytest.approx(frozen.mean(), rel=1e-9)
        else:
            assert not math.isfinite(projected_mean)
        if coordinates and math.isfinite(frozen.var()):
            assert float(variance[i]) == pytest.approx(frozen.var(), rel=1e-8)


def test_cdf_and_icdf_match_scipy(family: LatentFamily):
    equivalent = scipy_equivalent(family)
    q = family.posterior(example_raw(family, latent_dim_for(family, 3)))
    base = getattr(q, "base_dist", q)
    marginals = equivalent.marginals(q)
    if len(marginals) != q.event_shape[0] or base.event_shape:
        pytest.skip(f"{family.name}: not a product of scalar laws")
    u = torch.linspace(0.01, 0.99, 21, dtype=torch.float64)[:, None].expand(21, len(marginals))
    try:
        x = base.icdf(u)
    except NotImplementedError:
        x = None
    if x is not None:
        expected = np.stack([frozen.ppf(u[:, 0].numpy()) for _, frozen in marginals], axis=1)
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-7)
    points = torch.as_tensor(
        np.stack([frozen.ppf(u[:, 0].numpy()) for _, frozen in marginals], axis=1)
    )
    try:
        cdf = base.cdf(points)
    except NotImplementedError:
        if x is None:
            pytest.skip(f"{family.name}: neither cdf nor icdf in closed form")
        return
    np.testing.assert_allclose(cdf.numpy(), u.numpy(), rtol=1e-7, atol=1e-10)
