"""Every latent family compiles with the draws of eager Pyro, or says why it cannot.

The compiled path cuts each reparameterized draw's base noise out of the graph
(vi_vae.compiled.purify), without knowing how a family samples. Run on the VAE
template for every registered family, the traced graph must give eager Pyro's
loss and gradients from the same seed; the families that sample with torch's
implicitly reparameterized gamma (noise that depends on the parameters) must
run eagerly instead, after one warning saying so. The traced graphs run
uncompiled (backend "none"): this tests the tracing; inductor is tested in
test_compiled_estimators.py.

Tolerance: the traced graph performs eager's float32 operations, but its
gradients come from one autograd.grad instead of backward(), which may
accumulate in another order: relative 1e-5.
"""

import pyro
import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from gaussian_pair import gradients
from torch.testing import assert_close

from vi_vae.errors import CompileWarning
from vi_vae.estimators import IWAE
from vi_vae.latents import FAMILIES

#: torch draws these through _standard_gamma, whose noise depends on the concentration
IMPLICITLY_REPARAMETERIZED = {"gamma", "beta", "chi2", "f", "dirichlet"}


def two_steps(estimator, vae, x):
    pyro.set_rng_seed(11)
    return [gradients(estimator, vae.model, vae.guide, x) for _ in range(2)]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_compiles_with_eager_numbers_or_falls_back(name, traced_only):
    vae, x = tiny_vae(latent_family=name), binary_data(4)
    eager = two_steps(IWAE(3), vae, x)
    estimator = IWAE(3, compile=True)
    if name in IMPLICITLY_REPARAMETERIZED:
        with pytest.warns(CompileWarning, match="depends on the parameters or data"):
            compiled = two_steps(estimator, vae, x)
        assert estimator._compiled.num_compiled == 0
    else:
        compiled = two_steps(estimator, vae, x)
        assert estimator._compiled.num_compiled == 1
    for (loss, grads), (compiled_loss, compiled_grads) in zip(eager, compiled, strict=True):
        assert compiled_loss == pytest.approx(loss, rel=1e-5)
        for parameter, gradient in grads.items():
            assert_close(compiled_grads[parameter], gradient, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(torch.tensor([loss for loss, _ in compiled])).all()
