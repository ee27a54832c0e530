"""The compiled evaluator gives the eager estimates; ``chunk_size="auto"`` is CPU's default here.

Tolerances as in test_compiled_estimators.py: relative 1e-9 for the float64
linear Gaussian, 1e-5 for the float32 VAE (the same draws, summed in another
order). Pareto k̂ is a fit to the few largest weights (6 of K = 30), which
magnifies their rounding: 1e-8 absolute in float64, 1e-4 in float32 (seen: 6e-6).
"""

import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from linear_gaussian import LinearGaussian
from torch.testing import assert_close

from vi_vae import InputError, bounds, importance_sampling, log_marginal_likelihood
from vi_vae.evaluation import DEFAULT_CHUNK_SIZE, auto_chunk_size
from vi_vae.weights import guess_plates


def assert_same_estimates(eager, compiled, rtol, pareto_atol):
    (estimate, table), (compiled_estimate, compiled_table) = eager, compiled
    for field in ("log_likelihood", "monte_carlo_standard_error", "effective_sample_size"):
        assert_close(getattr(compiled_estimate, field), getattr(estimate, field), rtol=rtol, atol=0)
    assert_close(
        compiled_estimate.pareto_k, estimate.pareto_k, rtol=0, atol=pareto_atol, equal_nan=True
    )
    for bound, compiled_bound in zip(table, compiled_table, strict=True):
        assert_close(compiled_bound.per_point, bound.per_point, rtol=rtol, atol=0)


def test_compiled_evaluator_equals_eager_on_the_linear_gaussian():
    lg = LinearGaussian()
    x = lg.sample(40)
    run = {"num_particles": 50, "bound_particles": (1, 5), "seed": 3}
    eager = importance_sampling(lg.model, lg.mean_field_guide, x, **run)
    compiled = importance_sampling(lg.model, lg.mean_field_guide, x, **run, compile=True)
    assert_same_estimates(eager, compiled, rtol=1e-9, pareto_atol=1e-8)


def test_compiled_evaluator_equals_eager_on_the_vae_template():
    vae, x = tiny_vae(), binary_data(16)
    # 30 particles, 8 points per pass of 240 pairs: two passes of one shape
    run = {"num_particles": 30, "bound_particles": (1, 5), "seed": 4, "chunk_size": 240}
    eager = importance_sampling(vae.model, vae.guide, x, **run)
    compiled = importance_sampling(vae.model, vae.guide, x, **run, compile=True)
    assert_same_estimates(eager, compiled, rtol=1e-5, pareto_atol=1e-4)
    again = log_marginal_likelihood(
        vae.model, vae.guide, x, 30, seed=4, chunk_size=240, compile=True
    )
    assert torch.equal(
        again.log_likelihood, compiled[0].log_likelihood
    )  # the same, recompiled or not


def test_auto_chunk_size_on_cpu_is_the_measured_default():
    lg = LinearGaussian()
    x = lg.sample(40)
    plate_nesting, _ = guess_plates(lg.model, lg.mean_field_guide, (x,), {})
    assert (
        auto_chunk_size(lg.model, lg.mean_field_guide, x, 5000, plate_nesting) == DEFAULT_CHUNK_SIZE
    )
    auto = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 300, seed=0, chunk_size="auto")
    fixed = log_marginal_likelihood(
        lg.model, lg.mean_field_guide, x, 300, seed=0, chunk_size=DEFAULT_CHUNK_SIZE
    )
    assert torch.equal(auto.log_likelihood, fixed.log_likelihood)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer .* or 'auto'; got 0"),
        ({"chunk_size": "big"}, "chunk_size must be .* got 'big'"),
        ({"chunk_size": True}, "chunk_size must be"),
        ({"compile": "yes"}, "compile must be True or False; got 'yes'"),
    ],
)
def test_bad_evaluation_arguments_are_refused(arguments, message):
    lg = LinearGaussian()
    x = lg.sample(3)
    with pytest.raises(InputError, match=message):
        log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 10, **arguments)
    with pytest.raises(InputError, match=message):
        bounds(lg.model, lg.mean_field_guide, x, [1], 10, **arguments)
