"""Gradients: each estimator follows the gradient it names, checked against closed forms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from estimator_cases import ESTIMATORS
from gaussian_pair import GUIDE_PARAMETERS, MODEL_PARAMETERS, GaussianPair, flat, gradients
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.testing import assert_close

from vi_vae.estimators import CIWAE, ELBO, IWAE, MIWAE, PIWAE, STL, DReG, RenyiVR

ALL_PARAMETERS = GUIDE_PARAMETERS + MODEL_PARAMETERS


def repeated_gradients(estimator, pair, x, calls):
    """[calls, num parameter elements]: one gradient per call, over all parameters."""
    return torch.stack(
        [
            flat(gradients(estimator, pair.model, pair.guide, x)[1], ALL_PARAMETERS)
            for _ in range(calls)
        ]
    )


def standardized_difference(mean, expected, error):
    """|mean − expected| / error, elementwise; elements without noise must match exactly."""
    exact = error == 0
    assert_close(mean[exact], expected[exact], rtol=1e-9, atol=1e-9)
    return ((mean - expected).abs() / error)[~exact]


def closed_form_elbo_gradient(pair, x):
    store = pyro.get_param_store()
    for _, parameter in store.named_parameters():
        parameter.grad = None
    (-pair.elbo(x).sum()).backward()
    result = {name: parameter.grad.clone() for name, parameter in store.named_parameters()}
    for _, parameter in store.named_parameters():
        parameter.grad = None
    return flat(result, ALL_PARAMETERS)


@pytest.mark.parametrize(
    "make",
    [lambda: ELBO(3), lambda: ELBO(3, analytic_kl=True), lambda: STL(2)],
    ids=["elbo", "elbo-analytic", "stl"],
)
def test_elbo_gradients_match_the_closed_form_gradient(make):
    # 20 calls on 250 copies of 4 points: the mean gradient has a standard error of a
    # few percent; each of the 16 elements must lie within 5 of them (t with 19 df).
    pair = GaussianPair()
    x = pair.sample(4)
    copies = x.repeat(250, 1)
    draws = repeated_gradients(make(), pair, copies, calls=20)
    expected = 250 * closed_form_elbo_gradient(pair, x)
    error = draws.std(0) / math.sqrt(len(draws))
    assert standardized_difference(draws.mean(0), expected, error).max() < 5


def test_dreg_and_iwae_gradients_have_the_same_expectation_and_dreg_less_variance():
    pair = GaussianPair()
    x = pair.sample(4)
    copies = x.repeat(100, 1)
    iwae = repeated_gradients(IWAE(5), pair, copies, calls=30)
    dreg = repeated_gradients(DReG(5), pair, copies, calls=30)
    error = (iwae.var(0) / len(iwae) + dreg.var(0) / len(dreg)).sqrt()
    assert standardized_difference(iwae.mean(0), dreg.mean(0), error).max() < 5
    guide = slice(0, sum(pyro.param(name).numel() for name in GUIDE_PARAMETERS))
    assert dreg[:, guide].var(0).sum() < 0.5 * iwae[:, guide].var(0).sum()


def test_stl_and_dreg_guide_gradients_vanish_at_the_exact_posterior():
    # At q = p(z|x), log w = log p(x) for every z, so each draw's path derivative is 0:
    # STL's (and DReG's) guide gradient has zero variance. The reparameterized ELBO
    # gradient keeps the score term, which is zero only on average.
    pair = GaussianPair()
    x = pair.sample(8)
    pair.model_parameters()
    pair.guide_parameters()
    pair.set_exact_guide()
    for estimator in (STL(1), STL(4), DReG(4)):
        for _ in range(3):
            _, grads = gradients(estimator, pair.model, pair.guide, x)
            assert flat(grads, GUIDE_PARAMETERS).abs().max() < 1e-10
            assert flat(grads, MODEL_PARAMETERS).abs().max() > 1e-3
    _, grads = gradients(ELBO(1), pair.model, pair.guide, x)
    assert flat(grads, GUIDE_PARAMETERS).abs().max() > 1e-2


def same_seed_gradients(make, pair, x, seed=7):
    pyro.set_rng_seed(seed)
    return gradients(make(), pair.model, pair.guide, x)


@pytest.mark.parametrize(
    ("make", "make_same", "names"),
    [
        (lambda: IWAE(1), lambda: ELBO(1), ALL_PARAMETERS),
        (lambda: MIWAE(1, 5), lambda: IWAE(5), ALL_PARAMETERS),
        (lambda: CIWAE(1.0, 5), lambda: ELBO(5), ALL_PARAMETERS),
        (lambda: RenyiVR(0.0, 5), lambda: IWAE(5), ALL_PARAMETERS),
        (lambda: PIWAE(1, 5), lambda: IWAE(5), ALL_PARAMETERS),
        (lambda: DReG(1), lambda: STL(1), ALL_PARAMETERS),
        (lambda: DReG(5), lambda: IWAE(5), MODEL_PARAMETERS),
        (lambda: STL(5), lambda: ELBO(5), MODEL_PARAMETERS),
        (lambda: PIWAE(2, 3), lambda: IWAE(6), MODEL_PARAMETERS),
        (lambda: PIWAE(2, 3), lambda: MIWAE(2, 3), GUIDE_PARAMETERS),
        (lambda: PIWAE(2, 3, 3), lambda: MIWAE(2, 3), ALL_PARAMETERS),
    ],
    ids=[
        "IWAE(1)=ELBO",
        "MIWAE(1,K)=IWAE(K)",
        "CIWAE(1)=ELBO",
        "VR(0)=IWAE",
        "PIWAE(1,K)=IWAE(K)",
        "DReG(1)=STL(1)",
        "DReG-model=IWAE",
        "STL-model=ELBO",
        "PIWAE-model=IWAE(ML)",
        "PIWAE-guide=MIWAE",
        "PIWAE(M,L,L)=MIWAE(M,L)",
    ],
)
def test_gradient_identities_on_the_same_draws(make, make_same, names):
    pair = GaussianPair()
    x = pair.sample(6)
    loss, grads = same_seed_gradients(make, pair, x)
    same_loss, same_grads = same_seed_gradients(make_same, pair, x)
    assert_close(flat(grads, names), flat(same_grads, names), rtol=1e-10, atol=1e-12)
    if names == ALL_PARAMETERS:
        assert loss == pytest.approx(same_loss, rel=1e-12)


@pytest.mark.parametrize(
    ("make", "make_pyro"),
    [
        (lambda: ELBO(3), lambda: Trace_ELBO(3, vectorize_particles=True)),
        (
            lambda: ELBO(3, analytic_kl=True),
            lambda: TraceMeanField_ELBO(3, vectorize_particles=True),
        ),
        (lambda: IWAE(5), lambda: RenyiELBO(0.0, 5, vectorize_particles=True)),
        (lambda: RenyiVR(0.5, 5), lambda: RenyiELBO(0.5, 5, vectorize_particles=True)),
        (lambda: RenyiVR(-1.0, 5), lambda: RenyiELBO(-1.0, 5, vectorize_particles=True)),
    ],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "RenyiELBO(0)", "RenyiELBO(0.5)", "RenyiELBO(-1)"],
)
def test_agrees_with_pyro_where_pyro_has_the_estimator(make, make_pyro):
    # Pyro's vectorized particles draw the same numbers as ours: an independent
    # implementation of the same value and gradient, to rounding.
    pair = GaussianPair()
    x = pair.sample(6)
    loss, grads = same_seed_gradients(make, pair, x)
    pyro_loss, pyro_grads = same_seed_gradients(make_pyro, pair, x)
    assert loss == pytest.approx(pyro_loss, rel=1e-12)
    assert_close(flat(grads, ALL_PARAMETERS), flat(pyro_grads, ALL_PARAMETERS))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_differentiable_loss_has_the_loss_value_and_the_estimator_gradient(name):
    pair = GaussianPair()
    x = pair.sample(6)
    make = ESTIMATORS[name][0]
    loss, grads = same_seed_gradients(make, pair, x)
    pyro.set_rng_seed(7)
    estimator = make()
    if name.startswith(("dreg", "piwae")):
        with pytest.raises(NotImplementedError, match="loss_and_grads"):
            estimator.differentiable_loss(pair.model, pair.guide, x)
        return
    value = estimator.differentiable_loss(pair.model, pair.guide, x)
    store = pyro.get_param_store()
    names = [name for name, _ in store.named_parameters()]
    differentiated = torch.autograd.grad(value, [p for _, p in store.named_parameters()])
    assert value.item() == pytest.approx(loss, rel=1e-12)
    for parameter, gradient in zip(names, differentiated, strict=True):
        assert_close(gradient, grads[parameter], rtol=1e-10, atol=1e-12)


def test_a_guide_without_rsample_is_refused_for_gradients_but_evaluated():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        probability = pyro.param("probability", torch.tensor(0.3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(probability))

    x = torch.randn(4)
    assert math.isfinite(IWAE(3).loss(model, guide, x))
    with pytest.raises(NotImplementedError, match="rsample"):
        IWAE(3).loss_and_grads(model, guide, x)
