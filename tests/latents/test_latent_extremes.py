"""Extreme encoder outputs and parameters: finite values and gradients, or a clear error."""

import itertools
import re

import pytest
import torch
from latent_cases import latent_dim_for

from vi_vae.latents import LatentFamily
from vi_vae.latents.distributions import (
    Erlang,
    Gompertz,
    Rayleigh,
    Reciprocal,
    Triangular,
)

#: Raw encoder outputs from "diverged" to "typical": every combination over the raw
#: outputs of a 2-dimensional latent, so every parameter reaches both ends of its
#: box (tiny and huge scales, shapes at their floors and ceilings) with every other.
EXTREME_RAW = (-1e4, -30.0, 0.0, 30.0, 1e4)


def test_extreme_raw_outputs_give_finite_values_and_gradients(family: LatentFamily):
    d = latent_dim_for(family, 2)
    combinations = itertools.product(EXTREME_RAW, repeat=family.num_raw_parameters(d))
    raw = torch.tensor(list(combinations), dtype=torch.float32, requires_grad=True)
    q, p = family.posterior(raw), family.prior(d)
    torch.manual_seed(0)
    z = q.rsample((16,))
    assert torch.isfinite(z).all()
    assert family.support.check(z).all() and q.support.check(z).all()
    log_q, log_p = q.log_prob(z), p.log_prob(z)
    assert torch.isfinite(log_q).all(), raw[~torch.isfinite(log_q).all(0)][:3]
    assert torch.isfinite(log_p).all(), raw[~torch.isfinite(log_p).all(0)][:3]
    kl = family.kl_divergence(q, p, num_particles=16)
    assert torch.isfinite(kl).all(), raw[~torch.isfinite(kl)][:3]
    assert torch.isfinite(family.center(q)).all()
    for value in (log_q.mean(), log_p.mean(), kl.mean(), z.mean()):
        if not value.requires_grad:  # e.g. a uniform prior's constant log-density
            continue
        (gradient,) = torch.autograd.grad(value, raw, retain_graph=True)
        assert torch.isfinite(gradient).all()


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda v: Rayleigh(v), "scale"),
        (lambda v: Gompertz(v, 1.0), "concentration"),
        (lambda v: Gompertz(1.0, v), "scale"),
        (lambda v: Reciprocal(v, 2.0), "low"),
        (lambda v: Erlang(2, v), "rate"),
        (lambda v: Triangular(0.0, 1.0, v - 1.0), "peak"),
    ],
)
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_invalid_parameters_raise_a_clear_error(make, parameter, value):
    with pytest.raises(ValueError, match=parameter):
        make(torch.tensor(value))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Reciprocal(2.0, 1.0), "Reciprocal needs low < high"),
        (lambda: Triangular(1.0, 1.0), "Triangular needs low < high"),
        (lambda: Erlang(0, 1.0), "Erlang shape must be a positive integer; got 0"),
        (lambda: Erlang(1.5, 1.0), "Erlang shape must be a positive integer; got 1.5"),
    ],
    ids=["reciprocal-low>high", "triangular-empty", "erlang-k=0", "erlang-k=1.5"],
)
def test_invalid_shapes_and_intervals_raise(make, message):
    # the message names the parameter and the condition it broke, not just any ValueError
    # (torch's own validation would also raise one, naming a different constraint)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_out_of_support_values_raise_under_validation():
    with pytest.raises(ValueError, match="support"):
        Reciprocal(1.0, 2.0).log_prob(torch.tensor(3.0))
    with pytest.raises(ValueError, match="support"):
        Rayleigh(1.0).log_prob(torch.tensor(-1.0))
