"""Values: each estimate's expectation is the bound it names, on a model with closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from estimator_cases import ESTIMATORS
from gaussian_pair import GaussianPair
from torch.testing import assert_close

from vi_vae.estimators import CIWAE, ELBO, IWAE, MIWAE, PIWAE, STL, DReG, RenyiVR

#: copies of each data point per call: that many independent estimates, so the
#: standard error of their mean is ~0.002-0.06 nats here.
REPEATS = 2000
#: a mean within 4.5 standard errors: with fixed seeds the outcome is fixed; were the
#: seeds free, 48 comparisons would fail together with probability ~3e-4.
Z_LIMIT = 4.5


def per_point_estimates(estimator, pair, x, repeats=REPEATS):
    copies = x.repeat(repeats, 1)
    return estimator.per_point_bound(pair.model, pair.guide, copies).reshape(repeats, len(x))


def mean_and_error(estimates):
    return estimates.mean(0), estimates.std(0) / math.sqrt(estimates.shape[0])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_expected_value_is_the_named_bound(name):
    make, reference = ESTIMATORS[name]
    pair = GaussianPair()
    x = pair.sample(4)
    estimator = make()
    mean, error = mean_and_error(per_point_estimates(estimator, pair, x))
    if reference is None:
        target, target_error = pair.elbo(x).detach(), torch.zeros(len(x), dtype=x.dtype)
    else:
        log_weights = pair.independent_log_weights(
            x.repeat(REPEATS, 1), estimator.num_particles, seed=123
        )
        target, target_error = mean_and_error(reference(log_weights).reshape(REPEATS, len(x)))
    z = (mean - target) / (error.square() + target_error.square()).sqrt()
    assert z.abs().max() < Z_LIMIT, (mean, target)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_loss_is_minus_the_bound_summed_over_the_batch(name):
    pair = GaussianPair()
    x = pair.sample(5)
    make, _ = ESTIMATORS[name]
    pyro.set_rng_seed(3)
    bound = make().per_point_bound(pair.model, pair.guide, x)
    pyro.set_rng_seed(3)
    loss = make().loss(pair.model, pair.guide, x)
    pyro.set_rng_seed(3)
    loss_with_gradients = make().loss_and_grads(pair.model, pair.guide, x)
    assert bound.shape == (5,)
    assert loss == pytest.approx(-bound.sum().item(), rel=1e-12)
    assert loss_with_gradients == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("name", [name for name, case in ESTIMATORS.items() if case[1] is not None])
def test_every_estimate_is_log_px_when_the_guide_is_the_posterior(name):
    # With q = p(z|x), w = p(x) for every draw: each bound is log p(x), without noise.
    # (Not the analytic-KL ELBO: log p(x|z) − KL varies with z; only its mean is log p(x).)
    pair = GaussianPair()
    x = pair.sample(6)
    pair.model_parameters()
    pair.guide_parameters()
    pair.set_exact_guide()
    bound = ESTIMATORS[name][0]().per_point_bound(pair.model, pair.guide, x)
    assert_close(bound, pair.log_marginal(x).detach(), rtol=0, atol=1e-10)


def test_bounds_are_ordered_up_to_log_px():
    # ELBO <= IWAE-5 <= IWAE-50 <= log p(x) (Burda et al. 2016, Theorem 1), on average
    # over 32 points; each gap here is > 0.2 nats, over 10 standard errors.
    pair = GaussianPair()
    x = pair.sample(32)
    values = []
    for estimator in (ELBO(1), IWAE(5), IWAE(50)):
        estimates = per_point_estimates(estimator, pair, x, repeats=200).mean(1)
        values.append(mean_and_error(estimates))
    values.append((pair.log_marginal(x).detach().mean(), torch.tensor(0.0)))
    for (lower, lower_error), (upper, upper_error) in zip(values[:-1], values[1:], strict=True):
        assert upper - lower > 3 * (lower_error**2 + upper_error**2).sqrt()


@pytest.mark.parametrize(
    ("make", "make_same"),
    [
        (lambda: IWAE(1), lambda: ELBO(1)),
        (lambda: MIWAE(1, 5), lambda: IWAE(5)),
        (lambda: MIWAE(4, 1), lambda: ELBO(4)),
        (lambda: CIWAE(1.0, 5), lambda: ELBO(5)),
        (lambda: CIWAE(0.0, 5), lambda: IWAE(5)),
        (lambda: RenyiVR(0.0, 5), lambda: IWAE(5)),
        (lambda: RenyiVR(1.0, 5), lambda: ELBO(5)),
        (lambda: PIWAE(1, 5), lambda: IWAE(5)),
        (lambda: PIWAE(2, 3, 3), lambda: MIWAE(2, 3)),
        (lambda: DReG(5), lambda: IWAE(5)),
        (lambda: STL(5), lambda: ELBO(5)),
    ],
    ids=[
        "IWAE(1)=ELBO",
        "MIWAE(1,K)=IWAE(K)",
        "MIWAE(M,1)=ELBO(M)",
        "CIWAE(1)=ELBO",
        "CIWAE(0)=IWAE",
        "VR(0)=IWAE",
        "VR(1)=ELBO",
        "PIWAE(1,K)=IWAE(K)",
        "PIWAE(M,L,L)=MIWAE(M,L)",
        "DReG=IWAE",
        "STL=ELBO",
    ],
)
def test_identities_on_the_same_draws(make, make_same):
    pair = GaussianPair()
    x = pair.sample(6)
    pyro.set_rng_seed(7)
    first = make().per_point_bound(pair.model, pair.guide, x)
    pyro.set_rng_seed(7)
    second = make_same().per_point_bound(pair.model, pair.guide, x)
    assert_close(first, second, rtol=0, atol=1e-12)


def test_renyi_bound_tends_to_the_elbo_as_alpha_tends_to_one():
    # On the same draws, L_α − ELBO ≈ (1 − α)/2 · Var_k(log w): linear in 1 − α.
    pair = GaussianPair()
    x = pair.sample(6)
    gaps = []
    for alpha in (0.9, 0.99, 0.999, 1.0):
        pyro.set_rng_seed(11)
        renyi = RenyiVR(alpha, 10).per_point_bound(pair.model, pair.guide, x)
        pyro.set_rng_seed(11)
        elbo = ELBO(10).per_point_bound(pair.model, pair.guide, x)
        gaps.append((renyi - elbo).abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] == 0.0
    assert gaps[2] < 0.02 and gaps[1] / gaps[2] == pytest.approx(10, rel=0.1)


def test_analytic_kl_falls_back_to_sampling_where_none_is_registered():
    # The prior is an Independent Normal, the guide a MultivariateNormal: torch has no KL
    # between them, so the analytic ELBO is the sampled one, draw for draw.
    pair = GaussianPair(prior="normal")
    x = pair.sample(6)
    pyro.set_rng_seed(5)
    analytic = ELBO(3, analytic_kl=True).per_point_bound(pair.model, pair.guide, x)
    pyro.set_rng_seed(5)
    sampled = ELBO(3).per_point_bound(pair.model, pair.guide, x)
    assert_close(analytic, sampled, rtol=0, atol=1e-12)


def test_analytic_kl_uses_the_closed_form_where_registered():
    pair = GaussianPair()
    x = pair.sample(6)
    pyro.set_rng_seed(5)
    analytic = ELBO(3, analytic_kl=True).per_point_bound(pair.model, pair.guide, x)
    pyro.set_rng_seed(5)
    sampled = ELBO(3).per_point_bound(pair.model, pair.guide, x)
    assert not torch.allclose(analytic, sampled)


def test_bounds_are_per_data_point_with_nested_plates():
    # x_nd ~ N(z_nd, 1), z_nd ~ N(0, 1), features in a plate inside the data plate:
    # p(x_nd) = N(0, 2) and the exact guide N(x/2, 1/2) makes every estimate log p(x_n).
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))

    x = torch.randn(5, 3)
    log_px = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum(-1)
    for estimator in (ELBO(4), IWAE(4), DReG(4), PIWAE(2, 2)):
        assert_close(estimator.per_point_bound(model, guide, x), log_px, rtol=0, atol=1e-5)
