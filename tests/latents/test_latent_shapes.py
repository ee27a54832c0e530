"""Shapes, expand, plates and supports of every family's posterior and prior."""

import pyro
import torch
from latent_cases import example_raw, latent_dim_for

from vi_vae.latents import LatentFamily


def test_posterior_and_prior_shapes(family: LatentFamily):
    d = latent_dim_for(family, 3)
    q = family.posterior(example_raw(family, d, batch_shape=(2, 4)))
    assert (q.batch_shape, q.event_shape) == ((2, 4), (d,))
    assert q.has_rsample
    z = q.rsample((5,))
    assert z.shape == (5, 2, 4, d) and z.dtype == torch.float64
    assert q.log_prob(z).shape == (5, 2, 4)
    assert family.center(q).shape == (2, 4, d)

    p = family.prior(d, dtype=torch.float64)
    assert (p.batch_shape, p.event_shape) == ((), (d,))
    assert p.log_prob(z).shape == (5, 2, 4)
    assert p.sample((3,)).shape == (3, d)


def test_expand(family: LatentFamily):
    d = latent_dim_for(family, 2)
    q = family.posterior(example_raw(family, d, batch_shape=(4,)))
    expanded = q.expand((3, 4))
    assert (expanded.batch_shape, expanded.event_shape) == ((3, 4), (d,))
    z = expanded.rsample((2,))
    assert z.shape == (2, 3, 4, d)
    # Every copy along the new dimension is the same distribution.
    same = z[:, :1].expand(2, 3, 4, d)
    expected = q.log_prob(z[:, 0]).unsqueeze(1).expand(2, 3, 4)
    torch.testing.assert_close(expanded.log_prob(same), expected)


def test_prior_and_posterior_broadcast_in_a_plate(family: LatentFamily):
    d = latent_dim_for(family, 2)
    with pyro.plate("data", 6):
        z = pyro.sample("z", family.prior(d))
        assert z.shape == (6, d)
        raw = example_raw(family, d, batch_shape=(6,), dtype=torch.float32)
        assert pyro.sample("z_q", family.posterior(raw)).shape == (6, d)


def test_samples_lie_in_the_supports(family: LatentFamily):
    # The posterior's support must lie inside the prior's, or KL(q ‖ p) is infinite.
    d = latent_dim_for(family, 3)
    raw = 3 * example_raw(family, d, batch_shape=(64,), dtype=torch.float32, seed=1)
    q = family.posterior(raw)
    z = q.rsample((200,))
    assert torch.isfinite(z).all()
    assert q.support.check(z).all()
    assert family.support.check(z).all()
    assert torch.isfinite(family.prior(d).log_prob(z)).all()
    assert torch.isfinite(q.log_prob(z)).all()
    center = family.center(q)
    assert torch.isfinite(center).all() and family.support.check(center).all()


def test_center_is_the_mean_where_finite(family: LatentFamily):
    d = latent_dim_for(family, 2)
    q = family.posterior(example_raw(family, d))
    try:
        mean = q.mean
    except NotImplementedError:
        mean = None
    if mean is not None and torch.isfinite(mean).all():
        torch.testing.assert_close(family.center(q), mean)
    else:  # Cauchy: the location; Gompertz: the median. Both are medians.
        base = q.base_dist
        half = torch.full(base.batch_shape, 0.5, dtype=torch.float64)
        torch.testing.assert_close(base.cdf(family.center(q)), half)
