"""Every template: the plate contract, shapes and finite values, figures and active units."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from template_cases import (
    IMAGE_SHAPE,
    INPUT_DIM,
    TEMPLATE_NAMES,
    TEMPLATES,
    binary_data,
    make_template,
    single_thread,
)

from vi_vae import active_units, log_marginal_likelihood
from vi_vae.app import plots
from vi_vae.evaluation import ACTIVE_UNIT_THRESHOLD, importance_sampling
from vi_vae.nets import ConvDecoder, ConvEncoder


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_model_and_guide_follow_the_plate_contract(template):
    vae = make_template(template)
    x = binary_data(5)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, guide_trace)).get_trace(x)
    sites = ("z",) if vae.num_layers == 1 else ("z1", "z2")
    assert vae.latent_sites == sites
    for site, width in zip(sites, vae.latent_dims, strict=True):
        for trace in (guide_trace, model_trace):
            node = trace.nodes[site]
            assert [frame.name for frame in node["cond_indep_stack"]] == ["data"]
            assert node["value"].shape == (5, width)
            log_prob = node["fn"].log_prob(node["value"])
            assert log_prob.shape == (5,) and torch.isfinite(log_prob).all()
    assert model_trace.nodes["x"]["is_observed"]


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_parameter_is_in_the_param_store_and_gets_a_gradient(template):
    # SVI trains what the traces register: a parameter missing from Pyro's param
    # store (e.g. pseudo-inputs read outside a module call) would silently stay put.
    vae = make_template(template)
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, binary_data(8))
    loss.backward()
    names = {name for name, _ in vae.named_parameters()}
    assert set(pyro.get_param_store().keys()) == names
    for name, parameter in vae.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_pieces_have_their_shapes_and_finite_values(template):
    vae = make_template(template)
    x = binary_data(7)
    q = vae.encode(x)
    assert q.batch_shape == (7,) and q.event_shape == (vae.latent_dim,)
    centre = vae.latent_family.center(q)
    assert centre.shape == (7, vae.latent_dim) and torch.isfinite(centre).all()
    assert vae.prior().event_shape == (vae.latent_dim,)
    assert vae.decode(q.rsample()).event_shape == (INPUT_DIM,)
    assert vae.decoder(centre).shape == (7, INPUT_DIM)
    samples = vae.sample(3)
    assert samples.shape == (3, INPUT_DIM) and ((samples > 0) & (samples < 1)).all()
    assert set(vae.sample(3, mean=False).unique().tolist()) <= {0.0, 1.0}
    for sample_latent in (False, True):
        reconstruction = vae.reconstruct(x, sample_latent=sample_latent)
        assert reconstruction.shape == (7, INPUT_DIM)
        assert ((reconstruction > 0) & (reconstruction < 1)).all()


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_log_marginal_likelihood_sits_between_the_elbo_and_an_evaluator_without_the_guide(
    template,
):
    """ELBO ≤ log p̂ (Jensen), both ≤ log p(x) from a proposal that does not use the guide.

    The reference samples z from the model's own prior (the model with x hidden is a
    guide: log w = log p(x|z)), 2,000 draws per point; the 12-pixel decoders of these
    untrained templates vary little with z, so its standard error is ~0.005 nats. On
    the same 200 guide draws, the log-mean-exp of the weights is at least their mean
    (exactly, up to float rounding: 1e-9) and is the IWAE-200 entry of the bound table.
    Against the reference, per point ELBO − log p(x) ≤ 4 combined standard errors (it
    is −KL(q‖p(z|x)) ≤ 0: −0.01 to −3 nats here), and over the 7 points the mean of
    log p̂ − log p(x) ≤ 4 standard errors of that mean (log p̂ is a stochastic lower
    bound; measured −0.02 to −0.14 nats). A log weight scored too high (a prior or a
    flow density off by a constant, a log-sum-exp without −log K) breaks them.
    """
    vae = make_template(template)
    x = binary_data(7)
    estimate, (elbo, iwae) = importance_sampling(
        vae.model, vae.guide, x, num_particles=200, bound_particles=(1, 200), seed=0
    )
    assert estimate.log_likelihood.shape == (7,)
    assert (estimate.log_likelihood >= elbo.per_point - 1e-9).all()
    torch.testing.assert_close(iwae.per_point, estimate.log_likelihood, rtol=0, atol=1e-9)

    prior_proposal = poutine.block(vae.model, hide=["x"])
    reference = log_marginal_likelihood(vae.model, prior_proposal, x, 2000, seed=1)
    exact, exact_error = reference.log_likelihood, reference.monte_carlo_standard_error
    elbo_error = (elbo.monte_carlo_standard_error.pow(2) + exact_error.pow(2)).sqrt()
    assert (elbo.per_point - exact <= 4 * elbo_error).all(), elbo.per_point - exact
    errors = estimate.monte_carlo_standard_error.pow(2) + exact_error.pow(2)
    mean_error = errors.sum().sqrt() / len(x)
    excess = (estimate.log_likelihood - exact).mean()
    assert excess <= 4 * mean_error, (excess, mean_error)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_figure_functions_draw_every_template(template):
    # The run directory's figures use encode / decode / decoder / prior / centre.
    vae = make_template(template)
    x = binary_data(20)
    labels = torch.arange(20) % 4
    centres = vae.latent_family.center(vae.encode(x))
    drawn = [
        plots.plot_latent_scatter(centres, labels),
        plots.plot_samples(vae.sample(16), IMAGE_SHAPE),
        plots.plot_reconstructions(x[:10], vae.reconstruct(x[:10]), IMAGE_SHAPE),
        plots.plot_interpolation(vae, x[0], x[1]),
    ]
    manifold = plots.plot_manifold(vae, grid_size=4)
    # A VampPrior has no inverse CDF: the manifold on prior quantiles is skipped.
    assert (manifold is None) == (TEMPLATES[template].get("prior") == "vamp")
    assert all(png.startswith(b"\x89PNG") for png in drawn)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_active_units_count_every_layer(template):
    vae = make_template(template)
    result = active_units(vae, binary_data(40), num_mean_draws=20)
    assert result.layer_sizes == vae.latent_dims
    assert result.variances.shape == (sum(vae.latent_dims),)
    if vae.num_layers == 1 and TEMPLATES[template].get("flow") is None:
        # q has a closed-form mean: A_u = Var_x(E_q[z_u]) directly (float32 rounding)
        expected = vae.encode(binary_data(40)).mean.double().var(0)
        torch.testing.assert_close(result.variances, expected, rtol=1e-5, atol=1e-7)
    # each layer's count is that of its own units' variances above the threshold
    active = result.variances > ACTIVE_UNIT_THRESHOLD
    per_layer = [int(units.sum()) for units in active.split(list(vae.latent_dims))]
    assert list(result.num_active_per_layer) == per_layer
    assert result.num_active == int(active.sum())


def test_an_upper_layer_that_ignores_the_one_below_has_no_active_units():
    # q(z2|z1) with zero output weights has the same mean for every x: 0 of its 2
    # units are active, while z1 (which sees x) varies.
    vae = make_template("two-layer")
    output = vae.upper_encoders[0][-1]
    with torch.no_grad():
        output.weight.zero_()
    result = active_units(vae, binary_data(40), threshold=1e-6)
    assert result.num_active_per_layer[1] == 0
    assert result.variances[3:].max() < 1e-12  # float32 rounding of the mean over draws
    assert result.num_active_per_layer[0] > 0


@pytest.mark.parametrize("image_shape", [(3, 4), (1, 5, 3), (2, 7, 2), (1, 1)])
@pytest.mark.parametrize("parameters_per_pixel", [1, 2])
def test_conv_nets_keep_any_image_size(image_shape, parameters_per_pixel):
    pixels = math.prod(image_shape)
    encoder = ConvEncoder(image_shape, 6, hidden_sizes=(8,))
    decoder = ConvDecoder(3, image_shape, parameters_per_pixel * pixels, hidden_sizes=(8,))
    assert encoder(torch.rand(4, pixels)).shape == (4, 6)
    assert encoder(torch.rand(2, 4, pixels)).shape == (2, 4, 6)
    assert decoder(torch.randn(2, 4, 3)).shape == (2, 4, parameters_per_pixel * pixels)


def test_conv_decoder_lays_out_one_parameter_after_another():
    # Pixel (c, h, w)'s j-th parameter sits at j·C·H·W + c·H·W + h·W + w, the layout
    # the likelihood heads split with chunk(m): changing one output channel of the
    # last convolution changes exactly that parameter's block.
    decoder = ConvDecoder(2, (2, 3, 5), 2 * 30)
    z = torch.randn(4, 2)
    before = decoder(z)
    last = decoder.convolutions[-1]
    with torch.no_grad():
        last.bias[3] += 1.0  # parameter 1 (the second), channel 1
    changed = (decoder(z) - before).abs().sum(0) > 0
    assert changed.nonzero().flatten().tolist() == list(range(45, 60))


def test_learned_gaussian_likelihood_on_a_conv_template():
    vae = make_template("conv", likelihood="gaussian-learned")
    x = torch.rand(5, INPUT_DIM)
    assert vae.decode(vae.encode(x).rsample()).event_shape == (INPUT_DIM,)
    assert vae.reconstruct(x).shape == (5, INPUT_DIM)
