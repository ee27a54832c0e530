"""Bad template arguments get one InputError naming the argument and what it accepts."""

import pytest
import torch
from template_cases import single_thread
from torch import nn

from vi_vae import VAE, InputError, parse_flow, parse_latent_dims, parse_prior


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"architecture": "transformer"},
            r"unknown architecture 'transformer'; accepted values: mlp, conv",
        ),
        ({"latent_dims": (100, 0)}, r"latent_dims must be integers >= 1.*got \[100, 0\]"),
        ({"latent_dims": ()}, r"latent_dims must be integers >= 1"),
        ({"latent_dims": "100,50"}, r"latent_dims must be a sequence of integers >= 1"),
        ({"latent_dim": 0}, r"latent_dim must be an integer >= 1; got 0"),
        (
            {"latent_dim": 3, "latent_dims": (4, 2)},
            r"latent_dim \(3\) .* must equal latent_dims\[-1\] \(2\)",
        ),
        ({"flow": "iaf", "flow_layers": 0}, r"flow_layers must be an integer >= 1; got 0"),
        ({"flow": "planar"}, r"unknown flow 'planar'; accepted values: None, iaf"),
        (
            {"flow": "iaf", "latent_family": "dirichlet"},
            r"latent_family .dirichlet. is neither.*Accepted values of latent_family with a "
            r"flow: .*normal",
        ),
        ({"prior": "mixture"}, r"unknown prior 'mixture'; accepted values: standard, vamp"),
        (
            {"prior": "vamp", "num_pseudo_inputs": 0},
            r"num_pseudo_inputs must be an integer >= 1; got 0",
        ),
        (
            {"architecture": "conv", "image_shape": (5, 5)},
            r"image_shape \[5, 5\] has 25 values but input_dim is 12",
        ),
        ({"architecture": "conv"}, r"architecture 'conv' needs image_shape"),
        (
            {"architecture": "conv", "image_shape": (1, 2, 2, 3)},
            r"image_shape must be \(channels, height, width\) or \(height, width\)",
        ),
    ],
)
def test_bad_template_arguments(options, message):
    with pytest.raises(InputError, match=message):
        VAE(input_dim=12, **options)


def test_flow_families_in_the_message_are_the_ones_that_work():
    with pytest.raises(InputError) as error:
        VAE(input_dim=12, flow="iaf", latent_family="dirichlet")
    named = str(error.value).rsplit(": ", 1)[1].split(", ")
    assert {"normal", "gamma", "beta", "elliptical"} <= set(named)
    assert "dirichlet" not in named
    for name in named:
        VAE(input_dim=12, latent_dim=2, hidden_sizes=(4,), latent_family=name, flow="iaf")


def test_custom_encoder_of_a_flow_template_must_add_the_context():
    vae = VAE(input_dim=12, latent_dim=2, encoder=nn.Linear(12, 4), flow="iaf")
    with pytest.raises(InputError, match="returned 4 values.*needs 4 plus 2 flow context features"):
        vae.encode(torch.zeros(1, 12))


@pytest.mark.parametrize(
    ("parse", "spelling", "expected"),
    [
        (parse_flow, "iaf", ("iaf", 2)),
        (parse_flow, "iaf:3", ("iaf", 3)),
        (parse_flow, "none", (None, 2)),
        (parse_prior, "standard", ("standard", 500)),
        (parse_prior, "vamp", ("vamp", 500)),
        (parse_prior, "vamp:100", ("vamp", 100)),
        (parse_latent_dims, "100,50", (100, 50)),
        (parse_latent_dims, "20", (20,)),
    ],
)
def test_parse_helpers(parse, spelling, expected):
    assert parse(spelling) == expected


@pytest.mark.parametrize(
    ("parse", "spelling", "message"),
    [
        (parse_flow, "iaf:0", r"flow 'iaf:0': the number of layers must be an integer >= 1"),
        (parse_flow, "iaf:two", r"flow 'iaf:two'.*accepted values: none, iaf, iaf:K"),
        (parse_flow, "maf:2", r"unknown flow 'maf:2'; accepted values: none, iaf, iaf:K"),
        (parse_prior, "vamp:0", r"prior 'vamp:0': the number of pseudo-inputs must be"),
        (parse_prior, "standard:3", r"unknown prior 'standard:3'; accepted values: standard"),
        (parse_prior, "flat", r"unknown prior 'flat'; accepted values: standard, vamp, vamp:K"),
        (parse_latent_dims, "100,0", r"latent_dims '100,0' is not valid; accepted values"),
        (parse_latent_dims, "100,,50", r"latent_dims '100,,50' is not valid"),
        (parse_latent_dims, "", r"latent_dims '' is not valid"),
    ],
)
def test_parse_helpers_refuse_bad_spellings(parse, spelling, message):
    with pytest.raises(InputError, match=message):
        parse(spelling)
