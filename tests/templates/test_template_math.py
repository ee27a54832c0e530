"""The templates' densities against computations written out by hand."""

import math

import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from template_cases import INPUT_DIM, binary_data, make_template, single_thread

from vi_vae import VAE
from vi_vae.estimators import IWAE
from vi_vae.estimators.elbo import analytic_kl_terms
from vi_vae.flows import supported_families
from vi_vae.priors import UniformMixture
from vi_vae.weights import trace_log_weights


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


#: float32 sums of a few dozen terms of order 1-10 nats
TOLERANCE = 1e-4
#: Pyro's stable IAF adds this to the MADE's logit of σ (AffineAutoregressive's default)
SIGMOID_BIAS = 2.0


def normal_log_density(z, loc, scale):
    """Σ_i log N(z_i; loc_i, scale_i²), written out."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def bernoulli_log_probability(x, logits):
    """Σ_i x_i log σ(l_i) + (1 − x_i) log(1 − σ(l_i)) = Σ_i x_i l_i − softplus(l_i)."""
    return (x * logits - F.softplus(logits)).sum(-1)


def normal_parameters(vae, raw):
    """loc and scale of the normal family from raw encoder outputs (its parameter maps)."""
    base = vae.latent_family.posterior(raw).base_dist
    return base.loc, base.scale


def flow_vae(latent_family="normal"):
    return VAE(
        input_dim=INPUT_DIM,
        latent_dim=3,
        hidden_sizes=(16,),
        latent_family=latent_family,
        flow="iaf",
        flow_layers=1,
        seed=0,
    )


def test_flow_log_density_is_the_change_of_variables_of_one_iaf_layer():
    # u ~ N(μ(x), σ(x)²); (m, s) = MADE(u, h); z = sigmoid(s + 2)·u + (1 − sigmoid(s + 2))·m;
    # log q(z) = log N(u) − Σ log sigmoid(s + 2) (Kingma et al. 2016, eq. 14).
    vae = flow_vae()
    x = binary_data(4)
    with torch.no_grad():
        raw, context = vae.encoder(x).split([6, 3], dim=-1)
        loc, scale = normal_parameters(vae, raw)
        u = loc + scale * torch.randn(4, 3)
        made = vae.flows[0].networks[0]
        shift, logit = made(u, context=context)
        gate = torch.sigmoid(logit + SIGMOID_BIAS)
        z = gate * u + (1 - gate) * shift
        by_hand = normal_log_density(u, loc, scale) - gate.log().sum(-1)
        q = vae.layer_posterior(0, x)
        assert torch.allclose(q.log_prob(z), by_hand, atol=TOLERANCE)  # through the inverse

    # The Jacobian of u -> z (by autograd) is triangular with that diagonal.
    def layer(point, index=0):
        shift, logit = made(point, context=context[index])
        gate = torch.sigmoid(logit + SIGMOID_BIAS)
        return gate * point + (1 - gate) * shift

    jacobian = torch.autograd.functional.jacobian(layer, u[0])
    assert torch.allclose(jacobian.triu(1), torch.zeros(3, 3))
    assert torch.allclose(jacobian.det().abs().log(), gate[0].log().sum(), atol=TOLERANCE)


def test_a_draw_scores_the_same_through_the_cache_and_through_the_inverse():
    vae = make_template("iaf")
    x = binary_data(5)
    q = vae.encode(x)
    z = q.rsample((3,))
    assert torch.allclose(q.log_prob(z), q.log_prob(z.clone()), atol=TOLERANCE)


@pytest.mark.parametrize("latent_family", supported_families())
def test_flow_on_every_family_it_supports_is_exact(latent_family):
    # z = T(u) for u from the family; log q(z) = log q_family(u) − log |det ∂T/∂u|, with
    # the Jacobian of the whole map (biject_to in and out, the IAF between) by autograd.
    # Every supported family, not three: each brings its own support and bijection (a
    # lower bound of 1 for pareto, (0.1, 10) for reciprocal). Tolerance TOLERANCE: the
    # float32 differences are ≤ 2e-6 over every family, while log |det ∂T/∂u| is 0.1–0.7
    # nats here, so a dropped or halved Jacobian term is ≥ 0.05 nats off.
    vae = flow_vae(latent_family)
    x = binary_data(3)
    q = vae.layer_posterior(0, x)
    with torch.no_grad():
        u = q.base_dist.sample()
        z = q.push(u)
        assert vae.latent_family.support.check(z).all()
        scored = q.log_prob(z.clone())
    for index in range(3):
        context = vae.encoder(x[index : index + 1]).split([vae._num_raw[0], 3], dim=-1)[1].detach()
        transforms = vae.flows[0].transforms(context[0])

        def push(point, transforms=transforms):
            for transform in transforms:
                point = transform(point)
            return point

        jacobian = torch.autograd.functional.jacobian(push, u[index])
        expected = q.base_dist.log_prob(u)[index] - jacobian.det().abs().log()
        assert torch.allclose(scored[index], expected, atol=TOLERANCE), latent_family


def test_two_layer_log_weights_are_the_hand_written_joint_over_the_guide():
    # log w = log N(z2; 0, I) + log p(z1 | z2) + log p(x | z1) − log q(z1 | x) − log q(z2 | z1)
    vae = make_template("two-layer")
    x = binary_data(6)
    traces = trace_log_weights(vae.model, vae.guide, (x,), num_particles=5, plate_nesting=1)
    z1 = traces.guide_trace.nodes["z1"]["value"]
    z2 = traces.guide_trace.nodes["z2"]["value"]
    assert z1.shape == (5, 6, 3) and z2.shape == (5, 6, 2)
    with torch.no_grad():
        log_prior = normal_log_density(z2, torch.zeros(2), torch.ones(2))
        log_conditional = normal_log_density(
            z1, *normal_parameters(vae, vae.decoder.conditionals[0](z2))
        )
        log_likelihood = bernoulli_log_probability(x, vae.decoder.observation(z1))
        log_q1 = normal_log_density(z1, *normal_parameters(vae, vae.encoder(x)))
        log_q2 = normal_log_density(z2, *normal_parameters(vae, vae.upper_encoders[0](z1)))
    by_hand = log_prior + log_conditional + log_likelihood - log_q1 - log_q2
    assert torch.allclose(traces.log_weights, by_hand, atol=TOLERANCE)


def test_analytic_elbo_of_two_layers_keeps_the_sampled_terms_of_z1():
    # p(z1 | z2) depends on z2 ~ q(z2 | z1), drawn after z1: only z2's KL is closed form.
    # term = log p(x|z1) + log p(z1|z2) − log q(z1|x) − KL(q(z2|z1) ‖ N(0, I))
    vae = make_template("two-layer")
    x = binary_data(6)
    traces = trace_log_weights(vae.model, vae.guide, (x,), num_particles=4, plate_nesting=1)
    z1 = traces.guide_trace.nodes["z1"]["value"]
    z2 = traces.guide_trace.nodes["z2"]["value"]
    with torch.no_grad():
        loc, scale = normal_parameters(vae, vae.upper_encoders[0](z1))
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
        by_hand = (
            bernoulli_log_probability(x, vae.decoder.observation(z1))
            + normal_log_density(z1, *normal_parameters(vae, vae.decoder.conditionals[0](z2)))
            - normal_log_density(z1, *normal_parameters(vae, vae.encoder(x)))
            - kl
        )
        assert torch.allclose(analytic_kl_terms(traces), by_hand, atol=TOLERANCE)


def test_vamp_prior_is_the_mixture_of_q_over_the_pseudo_inputs():
    # log p(z) = logsumexp_k log q(z | u_k) − log K
    vae = make_template("vamp")
    num_pseudo_inputs = vae.vamp_prior.pseudo_inputs.shape[0]
    z = torch.randn(4, 7, 2)
    with torch.no_grad():
        loc, scale = normal_parameters(vae, vae.encoder(vae.vamp_prior.pseudo_inputs))
        components = normal_log_density(z.unsqueeze(-2), loc, scale)
        by_hand = components.logsumexp(-1) - math.log(num_pseudo_inputs)
        assert torch.allclose(vae.prior().log_prob(z), by_hand, atol=TOLERANCE)
        # as the model's site sees it, broadcast over particles and points
        assert torch.allclose(vae.prior().expand([4, 7]).log_prob(z), by_hand, atol=TOLERANCE)


def test_uniform_mixture_draws_each_component_half_the_time():
    # Components at ±10 with sd 0.1: every draw is within 1 (10 sd) of one of them,
    # and 2000 draws split 1000 ± 3·22 (binomial sd √(2000/4) ≈ 22).
    mixture = UniformMixture(dist.Normal(torch.tensor([-10.0, 10.0]), 0.1))
    draws = mixture.sample((2000,))
    assert draws.shape == (2000,)
    assert ((draws.abs() - 10).abs() < 1).all()
    assert abs(int((draws > 0).sum()) - 1000) < 3 * 22
    batched = UniformMixture(dist.Normal(torch.zeros(3, 2, 4), 1.0).to_event(1))
    assert batched.sample((5,)).shape == (5, 3, 4)


@pytest.mark.parametrize("latent_family", supported_families())
def test_every_family_a_flow_supports_gives_finite_weights_and_gradients(latent_family):
    vae = VAE(
        input_dim=INPUT_DIM,
        latent_dim=2,
        hidden_sizes=(8,),
        latent_family=latent_family,
        flow="iaf",
        seed=0,
    )
    x = binary_data(8)
    traces = trace_log_weights(vae.model, vae.guide, (x,), num_particles=3, plate_nesting=1)
    assert torch.isfinite(traces.log_weights).all()
    loss = IWAE(3).loss_and_grads(vae.model, vae.guide, x)
    assert math.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_the_normal_mixture_shortcut_equals_the_componentwise_mixture():
    # Diagonal-normal components are scored through matrix products; the result must
    # match scoring each component, here in float64, even for sharp components
    # (σ = 1e-3, where z², 2zμ and μ² cancel) and far-away values.
    generator = torch.Generator().manual_seed(0)
    loc = torch.randn(6, 3, generator=generator)
    scale = torch.cat([torch.full((3, 3), 1e-3), torch.rand(3, 3, generator=generator) + 0.1])
    z = torch.cat([loc[:2] + 1e-3 * torch.randn(2, 3, generator=generator), 5 * torch.ones(1, 3)])
    shortcut = UniformMixture(dist.Normal(loc, scale).to_event(1)).log_prob(z)
    # a [1, K] batch takes the general path
    general = UniformMixture(dist.Normal(loc.double(), scale.double()).to_event(1).expand([1, 6]))
    reference = general.log_prob(z.double()).squeeze(0)
    assert torch.allclose(shortcut.double(), reference, rtol=1e-6, atol=1e-3)
