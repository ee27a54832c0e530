"""The IAF inverse by incremental hidden updates: Pyro's inverse up to the order of float sums."""

import pyro
import pytest
import torch
from float_rounding import up_to_reduction_order
from pyro.distributions.transforms import AffineAutoregressive, ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN

import vi_vae.flows as flows
from vi_vae import VAE
from vi_vae.flows import ConditionalIAF, IncrementalInverseIAF


def inverse_and_log_det(transform, y):
    x = transform.inv(y)
    return x, transform.log_abs_det_jacobian(x, y)


@pytest.mark.parametrize("latent_dim", [1, 7])
def test_inverse_is_pyros_up_to_float_rounding_with_its_gradients(latent_dim):
    # points [5, K=3] scored under K=3 contexts, as a VampPrior scores them
    torch.manual_seed(0)
    flow = ConditionalIAF(latent_dim, 4, num_layers=2)
    context = torch.randn(3, 4, requires_grad=True)
    y = torch.randn(5, 3, latent_dim)
    results = []
    for conditioned in (
        [flows._condition(layer, context) for layer in flow._layers],
        [layer.condition(context) for layer in flow._layers],
    ):
        flow.zero_grad()
        context.grad = None
        outputs = [inverse_and_log_det(transform, y) for transform in conditioned]
        total = sum(x.square().sum() + log_det.sum() for x, log_det in outputs)
        total.backward()
        gradients = [context.grad.clone()] + [p.grad.clone() for p in flow.parameters()]
        results.append((outputs, gradients, type(conditioned[0])))
    (new, new_gradients, new_type), (old, old_gradients, old_type) = results
    assert new_type is IncrementalInverseIAF and old_type is AffineAutoregressive
    for (x, log_det), (x_old, log_det_old) in zip(new, old, strict=True):
        assert x.flatten().tolist() == up_to_reduction_order(x_old.flatten().tolist())
        assert log_det.flatten().tolist() == up_to_reduction_order(log_det_old.flatten().tolist())
        assert not torch.equal(x, torch.zeros_like(x))
    for gradient, old_gradient in zip(new_gradients, old_gradients, strict=True):
        assert torch.allclose(gradient, old_gradient, rtol=1e-4, atol=1e-6)


def test_the_inverse_inverts_the_layer():
    torch.manual_seed(1)
    flow = ConditionalIAF(6, 6, num_layers=1)
    context, x = torch.randn(4, 6), torch.randn(4, 6)
    y = flows._condition(flow._layers[0], context)(x)
    uncached = flows._condition(flow._layers[0], context)  # a fresh cache: the inverse runs
    assert uncached.inv(y).flatten().tolist() == pytest.approx(x.flatten().tolist(), abs=1e-5)


def test_another_made_falls_back_to_pyros_loop():
    torch.manual_seed(2)
    made = ConditionalAutoRegressiveNN(5, 3, [10, 10])  # two hidden layers
    layer = ConditionalAffineAutoregressive(made, stable=True)
    context, y = torch.randn(4, 3), torch.randn(4, 5)
    expected = layer.condition(context).inv(y)
    fast = IncrementalInverseIAF(layer.condition(context).arn, stable=True)
    assert torch.equal(fast.inv(y), expected)


def test_the_template_vamp_prior_through_a_flow_scores_as_with_pyros_inverse(monkeypatch):
    vae = VAE(20, latent_dims=(6, 3), flow="iaf", prior="vamp", num_pseudo_inputs=4, seed=0)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = vae.prior(torch.device("cpu"), torch.float32).log_prob(z)
        monkeypatch.setattr(flows, "_condition", lambda layer, context: layer.condition(context))
        slow = vae.prior(torch.device("cpu"), torch.float32).log_prob(z)
    assert fast.tolist() == up_to_reduction_order(slow.tolist())
    pyro.clear_param_store()
