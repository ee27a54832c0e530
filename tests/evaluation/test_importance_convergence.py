"""Importance sampling says when its log p(x) has not converged in K.

The Monte Carlo standard error √(1/ESS − 1/K) measures the spread of the estimate, not
its bias: from a guide too narrow for the posterior, importance sampling sits far below
log p(x) with a small error bar. The verdict (``estimate.convergence``) has two checks,
each naming ``num_particles``: Pareto k̂ (more than a tenth of the points above 0.7, or
K too small to fit k̂) and half particles (the estimate at K against the mean of the
estimates from each half of the weights, more than 0.1 nats per point + 2 SEs apart),
and a third, finite points, where a point has no finite estimate.

The model is the linear Gaussian of tests/linear_gaussian.py, whose log p(x) is exact.
"""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian

from vi_vae import (
    AISConvergenceWarning,
    ConvergenceWarning,
    InputError,
    annealed_importance_sampling,
    auto_annealed_importance_sampling,
    log_marginal_likelihood,
)
from vi_vae.evaluation import bounds
from vi_vae.evaluation.importance_convergence import (
    PARETO_K_SHARE_TOLERANCE,
    half_particles_check,
)

LG = LinearGaussian(latent_dim=2, data_dim=3, noise=0.5, seed=0)
X = LG.sample(100, seed=1)
EXACT = LG.log_marginal(X).mean().item()


def narrow_guide(x):
    """The posterior mean with a quarter of the mean-field scale: heavy-tailed weights."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(LG.posterior_mean(x), 0.25 * LG.mean_field_scale).to_event(1))


def wide_guide(x):
    """The posterior mean with 1.5 times the posterior's marginal scales: light-tailed weights."""
    scale = 1.5 * LG.posterior_covariance.diagonal().sqrt()
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(LG.posterior_mean(x), scale).to_event(1))


def quietly(**options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return log_marginal_likelihood(LG.model, narrow_guide, X, seed=0, **options)


def test_a_biased_estimate_with_a_small_error_bar_is_called_unconverged():
    """At K = 10 the estimate lies more than 10 of its own Monte Carlo SEs below log p(x),
    and K is too small to fit k̂: the verdict fails, warns and names num_particles."""
    with pytest.warns(
        ConvergenceWarning, match=r"importance sampling has not converged.*num_particles"
    ):
        estimate = log_marginal_likelihood(LG.model, narrow_guide, X, num_particles=10, seed=0)
    assert EXACT - estimate.mean > 10 * estimate.mean_monte_carlo_standard_error
    assert not estimate.convergence.converged
    assert estimate.convergence.remedies == ("num_particles",)
    assert [check.name for check in estimate.convergence.failed] == ["pareto-k"]


def test_heavy_tails_fail_the_verdict_where_the_estimate_has_stopped_moving():
    """K = 20,000 from the narrow guide: the estimate moves by less than 0.1 nats from K/2,
    yet lies over half a nat below log p(x); the k̂ check is what fails."""
    estimate = quietly(num_particles=20_000)
    checks = {check.name: check for check in estimate.convergence.checks}
    assert checks["half-particles"].passed and not checks["pareto-k"].passed
    assert checks["pareto-k"].value > PARETO_K_SHARE_TOLERANCE
    assert EXACT - estimate.mean > 0.5


@pytest.mark.parametrize("num_particles", [100, 1000])
def test_the_verdict_holds_where_the_estimate_has_reached_log_p_x(num_particles):
    """A guide wider than the posterior: light-tailed weights, and the estimate within 4 of
    its Monte Carlo SEs of the exact value; no warning (the suite's filter is lifted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        estimate = log_marginal_likelihood(
            LG.model, wide_guide, X, num_particles=num_particles, seed=0
        )
    assert estimate.convergence.converged
    assert abs(estimate.mean - EXACT) < 4 * estimate.mean_monte_carlo_standard_error


@pytest.mark.parametrize("num_particles", [10, 100, 1000])
def test_what_the_estimate_moved_is_no_more_than_what_it_lacks(num_particles):
    """The Richardson argument: the move from K/2 to K estimates the bias left at K, or
    less of it (within 3 SEs of the move)."""
    estimate = quietly(num_particles=num_particles)
    check = estimate.convergence.checks[-1]
    moves = estimate.log_likelihood - estimate.half_particles_log_likelihood
    error = (moves.std() / moves.numel() ** 0.5).item()
    assert check.value <= EXACT - estimate.mean + 3 * error


def test_an_exact_guide_converges_and_one_particle_never_does():
    """Weights all equal to p(x): nothing moves, and no k̂ to fit (no tail). K = 1 leaves no
    halves and no k̂: not converged."""
    estimate = log_marginal_likelihood(LG.model, LG.exact_guide, X, num_particles=50, seed=0)
    assert estimate.convergence.converged
    assert estimate.convergence.checks[-1].value == pytest.approx(0.0, abs=1e-12)
    with pytest.warns(ConvergenceWarning, match="K = 1 leaves no halves"):
        single = log_marginal_likelihood(LG.model, LG.exact_guide, X, num_particles=1, seed=0)
    assert not single.convergence.converged


def _conjugate_float32_pair():
    """z ~ N(0, I_3), x | z ~ N(z, I_3) in float32, with its exact posterior as the guide."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def exact_guide(x):  # p(z | x) = N(x / 2, 1/2)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 0.5**0.5).to_event(1))

    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    return model, exact_guide, x


def test_an_exact_guide_in_float32_converges():
    """float32 rounds the exact posterior's equal weights apart by ~1e-6 nats: no tail for
    k̂ to fit (it fitted that noise, and 3 of 20 points came out k̂ = inf: "not converged")."""
    model, exact_guide, x = _conjugate_float32_pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        estimate = log_marginal_likelihood(model, exact_guide, x, num_particles=100, seed=0)
    assert estimate.convergence.converged and torch.isnan(estimate.pareto_k).all()
    exact = dist.Normal(0.0, 2**0.5).log_prob(x.double()).sum(-1)
    assert torch.allclose(estimate.log_likelihood, exact, atol=1e-5)  # float32 rounding


def test_ais_sums_float32_increments_in_float64_and_judges_them_in_float32():
    """AIS from the exact posterior: every increment is log p(x) up to float32 rounding, summed
    in float64; k̂ fitted that rounding (0.2 to 0.5 at 32 chains) before it was judged in the
    density's float32."""
    model, exact_guide, x = _conjugate_float32_pair()
    with warnings.catch_warnings():  # acceptance 1 at every β: a step-size finding, not k̂'s
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimate = annealed_importance_sampling(
            model, exact_guide, x, num_steps=50, num_chains=32, seed=0
        )
    assert torch.isnan(estimate.pareto_k).all() and "all equal" in estimate.pareto_k_reason
    assert "pareto-k" not in [check.name for check in estimate.convergence.checks]


def test_the_verdict_is_the_same_whatever_the_pass_size_and_bounds_do_not_warn():
    small = quietly(num_particles=64, chunk_size=30)  # a pass holds part of a point's K
    whole = quietly(num_particles=64, chunk_size=10**6)
    assert small.convergence.checks[0].value == pytest.approx(
        whole.convergence.checks[0].value, abs=1e-12
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        bounds(LG.model, narrow_guide, X, num_particles=10, bound_particles=(1, 5), seed=0)


def test_half_particles_check_of_one_point_has_no_standard_error():
    check = half_particles_check(torch.tensor([-1.0]), torch.tensor([-1.3]), 8)
    assert not check.passed and check.value == pytest.approx(0.3)


def overflowing_model(nan=False):
    """The linear Gaussian whose likelihood scale overflows to inf where |x| > 40.

    Its density of such a point is 0 (log density -inf) at every z; with ``nan`` the
    location is NaN there instead.
    """

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            loc = z @ LG.weight.T + LG.bias
            if nan:
                loc = torch.where(x.abs() > 40, torch.nan, loc)
            scale = torch.exp(x.abs() * 20) * 1e-300 + LG.noise  # inf where |x| > 40
            likelihood = dist.Normal(loc, scale, validate_args=False)
            pyro.sample("x", likelihood.to_event(1), obs=x)

    return model


def test_a_point_with_no_finite_estimate_fails_the_verdict_naming_it():
    # every log weight of point 3 is -inf: the mean over the points is -inf, and the
    # half-particles check read "+nan ± nan" where it now judges the other points; the
    # density check read the equal -inf scores as a density that changes between calls
    x = X[:20].clone()
    x[3, 0] = 50.0
    with pytest.warns(ConvergenceWarning, match="1 point"):
        estimate = log_marginal_likelihood(overflowing_model(), LG.mean_field_guide, x, 200, seed=0)
    assert torch.isneginf(estimate.log_likelihood[3])
    assert torch.isfinite(estimate.log_likelihood[torch.arange(20) != 3]).all()
    checks = {check.name: check for check in estimate.convergence.checks}
    assert not checks["finite-points"].passed and checks["finite-points"].value == 1 / 20
    assert "the first at point 3 (-inf)" in checks["finite-points"].message
    assert torch.isfinite(torch.tensor(checks["half-particles"].value))


def test_a_nan_log_density_is_refused_as_nan_and_not_as_a_random_one():
    x = X[:20].clone()
    x[3, 0] = 50.0
    with pytest.raises(InputError, match=r"log density is NaN at point\(s\) \[3\] of x \(site"):
        log_marginal_likelihood(overflowing_model(nan=True), LG.mean_field_guide, x, 20, seed=0)


def test_ais_names_a_point_with_no_finite_estimate_and_judges_the_others():
    # as importance sampling above: the half-schedule check read "+nan ± nan"
    x = X[:20].clone()
    x[3, 0] = 50.0
    with pytest.warns(AISConvergenceWarning, match="1 point"):
        estimate = annealed_importance_sampling(
            overflowing_model(), LG.mean_field_guide, x, num_steps=20, num_chains=4, seed=0
        )
    assert torch.isneginf(estimate.log_likelihood[3])
    checks = {check.name: check for check in estimate.convergence.checks}
    assert not checks["finite-points"].passed and checks["finite-points"].remedy == "num_chains"
    assert "the first at point 3 (-inf)" in checks["finite-points"].message
    assert torch.isfinite(torch.tensor(checks["half-schedule"].value))


def test_auto_ais_stops_at_a_point_with_no_finite_estimate_saying_more_steps_cannot_help():
    # it doubled T up to max_num_steps (10,000) for a point whose chains all have log
    # weight -inf, which no T changes, and then advised raising max_num_steps
    x = X[:20].clone()
    x[3, 0] = 50.0
    with pytest.warns(
        AISConvergenceWarning, match="stopped at T = 64: .*more steps cannot .*, raise num_chains"
    ):
        result = auto_annealed_importance_sampling(
            overflowing_model(), LG.mean_field_guide, x, num_chains=4, seed=0
        )
    assert [round_.num_steps for round_ in result.rounds] == [64]
    assert not result.converged
