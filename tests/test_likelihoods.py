import math

import pytest
import torch

from vi_vae import InputError, get_likelihood
from vi_vae.likelihoods import LIKELIHOODS


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_shapes_and_mean(name):
    likelihood = get_likelihood(name)
    torch.manual_seed(0)  # the same raw parameters on every machine and run
    raw = torch.randn(4, 3, likelihood.num_outputs(5))
    p = likelihood.distribution(raw)
    assert p.batch_shape == (4, 3)
    assert p.event_shape == (5,)
    assert likelihood.mean(raw).shape == (4, 3, 5)
    # the mean shown for reconstructions and samples is E[x|z] of the distribution that
    # scores x: each likelihood writes it by hand (sigmoid, a half of raw, …), torch's
    # distributions compute it on their own (float32, same formula up to rounding)
    torch.testing.assert_close(likelihood.mean(raw), p.mean)
    x = torch.rand(3, 5).round()
    assert p.log_prob(x).shape == (4, 3)
    assert torch.isfinite(p.log_prob(x)).all()


def test_gaussian_is_the_squared_error_form():
    sigma = 0.3
    likelihood = get_likelihood("gaussian", scale=sigma)
    mean, x = torch.randn(6), torch.randn(6)
    expected = -((x - mean) ** 2).sum() / (2 * sigma**2) - 6 * math.log(
        sigma * math.sqrt(2 * math.pi)
    )
    torch.testing.assert_close(likelihood.distribution(mean).log_prob(x), expected)


def test_continuous_bernoulli_is_normalized():
    likelihood = get_likelihood("continuous-bernoulli")
    grid = torch.linspace(0, 1, 20001).unsqueeze(-1)
    for logit in (-4.0, -0.3, 0.0, 2.5):
        density = likelihood.distribution(torch.full((1,), logit)).log_prob(grid).exp()
        assert torch.trapezoid(density, grid.squeeze(-1)).item() == pytest.approx(1.0, abs=1e-4)


def test_learned_gaussian_scale_has_a_floor():
    likelihood = get_likelihood("gaussian-learned", min_scale=0.01)
    raw = torch.cat([torch.zeros(1, 3), torch.full((1, 3), -1e4)], dim=-1)
    log_density = likelihood.distribution(raw).log_prob(torch.zeros(1, 3))
    cap = -3 * math.log(0.01 * math.sqrt(2 * math.pi))
    assert log_density.item() == pytest.approx(cap, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "x", "message"),
    [
        (
            "bernoulli",
            torch.tensor([[0.0, 1.5]]),
            r"values in \[0, 1.5\].*accepts values in \[0, 1\]",
        ),
        ("bernoulli", torch.tensor([[0.0, 0.5]]), "not binary.*dynamic, static or threshold"),
        ("bernoulli", torch.tensor([[0.0, float("nan")]]), "NaN or infinite"),
        ("continuous-bernoulli", torch.tensor([[-0.1, 0.5]]), r"accepts values in \[0, 1\]"),
        ("gaussian", torch.tensor([[float("inf")]]), "NaN or infinite"),
    ],
)
def test_data_outside_the_support_is_refused(name, x, message):
    with pytest.raises(InputError, match=message):
        get_likelihood(name).validate(x)


def test_unknown_likelihood_lists_the_accepted_ones():
    with pytest.raises(
        InputError, match="unknown likelihood 'poisson'; accepted values: bernoulli"
    ):
        get_likelihood("poisson")
    with pytest.raises(InputError, match="scale must be a positive number"):
        get_likelihood("gaussian", scale=0.0)


def test_unknown_options_name_the_accepted_ones():
    # issue 13: likelihood_options={"sigma": ...} raised a raw TypeError
    with pytest.raises(InputError, match=r"options \['sigma'\]; accepted options: scale"):
        get_likelihood("gaussian", sigma=0.1)
    with pytest.raises(InputError, match="accepted options: none"):
        get_likelihood("bernoulli", scale=0.1)
