"""Compiled AIS and BDMC give the eager numbers; a model that cannot be traced runs eagerly.

The compiled density evaluation has no random draws, so both paths see the same
momenta and accept tests; they differ by the rounding of sums in another order.
Tolerances: relative 1e-9 for the float64 linear Gaussian; for the float32 VAE
absolute 1e-3 nats on log p̂(x) (seen: 1e-5 at T = 30, L = 3: rounding of ~1e-7
per gradient, carried through 90 leapfrog steps) and on acceptance rates. One
rounding-level difference can in principle flip an accept test near its threshold;
these seeds do not.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from linear_gaussian import LinearGaussian
from torch.testing import assert_close

from vi_vae import CompileWarning, InputError, annealed_importance_sampling, bdmc

#: a short path and three leapfrog steps; every point in one chunk, so one compile per
#: model and direction (compiling is what these tests cost)
RUN = {"num_steps": 30, "num_chains": 2, "leapfrog_steps": 3, "seed": 5}


def test_compiled_ais_equals_eager_on_the_linear_gaussian():
    lg = LinearGaussian()
    x = lg.sample(5)
    eager = annealed_importance_sampling(lg.model, lg.mean_field_guide, x, **RUN)
    compiled = annealed_importance_sampling(lg.model, lg.mean_field_guide, x, **RUN, compile=True)
    assert_close(compiled.log_likelihood, eager.log_likelihood, rtol=1e-9, atol=0)
    assert_close(compiled.acceptance_rate, eager.acceptance_rate, rtol=1e-9, atol=0)
    assert_close(compiled.step_size, eager.step_size, rtol=1e-9, atol=0)


def test_compiled_ais_and_bdmc_equal_eager_on_the_vae_template():
    vae, x = tiny_vae(), binary_data(5)
    eager = annealed_importance_sampling(vae.model, vae.guide, x, **RUN)
    compiled = annealed_importance_sampling(vae.model, vae.guide, x, **RUN, compile=True)
    assert_close(compiled.log_likelihood, eager.log_likelihood, rtol=0, atol=1e-3)
    assert_close(compiled.acceptance_rate, eager.acceptance_rate, rtol=0, atol=1e-3)
    assert not torch.equal(compiled.log_weights, torch.zeros_like(compiled.log_weights))
    # 5 points again: the forward runs reuse the compiled density of the AIS above
    eager_check = bdmc(vae.model, vae.guide, torch.zeros(5, 6), **RUN)
    compiled_check = bdmc(vae.model, vae.guide, torch.zeros(5, 6), **RUN, compile=True)
    assert torch.equal(compiled_check.x, eager_check.x)  # the simulation is not compiled
    assert_close(compiled_check.gap, eager_check.gap, rtol=0, atol=1e-3)


def test_a_model_that_branches_on_values_runs_eagerly_with_one_warning():
    x = torch.tensor([0.5, -0.3])

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            if bool((z > 0).any()):  # Python control flow on a drawn value
                z = z * 1.0
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    run = {**RUN, "initial": "prior"}
    eager = annealed_importance_sampling(model, None, x, **run)
    with pytest.warns(CompileWarning, match="annealed density of AIS runs eagerly"):
        compiled = annealed_importance_sampling(model, None, x, **run, compile=True)
    assert torch.equal(compiled.log_likelihood, eager.log_likelihood)


def test_compile_must_be_a_bool():
    lg = LinearGaussian()
    with pytest.raises(InputError, match="compile must be True or False; got 'yes'"):
        annealed_importance_sampling(lg.model, lg.mean_field_guide, lg.sample(2), compile="yes")
