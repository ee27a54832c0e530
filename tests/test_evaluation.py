import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian

from vi_vae import (
    InputError,
    PairedDifference,
    bounds,
    importance_sampling,
    log_marginal_likelihood,
)
from vi_vae.app.metrics import EstimateSummary, RunMetrics
from vi_vae.cli.printing import print_metrics


@pytest.fixture
def problem():
    lg = LinearGaussian()
    return lg, lg.sample(40)


def test_exact_posterior_guide_gives_exact_log_marginal(problem):
    # With q = p(z|x) every weight equals p(x): the estimate is exact for any K,
    # the Monte Carlo error is 0 and the effective sample size is K.
    lg, x = problem
    estimate = log_marginal_likelihood(lg.model, lg.exact_guide, x, num_particles=50, seed=0)
    assert estimate.log_likelihood.shape == (40,)
    torch.testing.assert_close(estimate.log_likelihood, lg.log_marginal(x), atol=1e-8, rtol=0)
    assert estimate.monte_carlo_standard_error.max() < 1e-6
    torch.testing.assert_close(
        estimate.effective_sample_size, torch.full((40,), 50.0, dtype=torch.float64)
    )


def test_mean_field_guide_matches_analytic_value_within_standard_error(problem):
    # Tolerance: 4 Monte Carlo standard errors of the mean plus the Jensen bias
    # of log-mean-exp, which is at most se² / 2 per point; fixed seed.
    lg, x = problem
    estimate = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, num_particles=2000, seed=0)
    exact = lg.log_marginal(x)
    mc_se = estimate.mean_monte_carlo_standard_error
    bias = (estimate.monte_carlo_standard_error.pow(2) / 2).mean().item()
    assert mc_se > 0
    assert abs(estimate.mean - exact.mean().item()) < 4 * mc_se + bias
    # per point: 5 standard errors (40 points, so a 5σ miss anywhere is < 1e-4 likely)
    per_point_error = (estimate.log_likelihood - exact).abs()
    assert (per_point_error < 5 * estimate.monte_carlo_standard_error + 1e-3).all()
    assert 1 <= estimate.effective_sample_size.min() <= estimate.effective_sample_size.max() <= 2000
    assert estimate.pareto_k.shape == (40,)
    assert torch.isfinite(estimate.pareto_k).all()


def test_estimates_are_kept_per_point(problem):
    # Evaluating points one at a time gives the same numbers as a batch: the
    # batch dimension is never summed away (exact guide, so no Monte Carlo noise).
    lg, x = problem
    batch = log_marginal_likelihood(lg.model, lg.exact_guide, x[:5], num_particles=3)
    single = torch.cat(
        [
            log_marginal_likelihood(
                lg.model, lg.exact_guide, x[i : i + 1], num_particles=3
            ).log_likelihood
            for i in range(5)
        ]
    )
    torch.testing.assert_close(batch.log_likelihood, single)


def test_chunking_does_not_change_the_estimator(problem):
    # Small chunks (many passes) and one pass estimate the same quantity:
    # agreement within 4 combined Monte Carlo standard errors.
    lg, x = problem
    small = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 1000, chunk_size=64, seed=1)
    large = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 1000, seed=2)
    combined = math.hypot(
        small.mean_monte_carlo_standard_error, large.mean_monte_carlo_standard_error
    )
    assert abs(small.mean - large.mean) < 4 * combined


def test_seed_makes_draws_reproducible_and_leaves_global_rng_alone(problem):
    lg, x = problem
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = log_marginal_likelihood(
        lg.model, lg.mean_field_guide, x, 100, seed=7, compute_pareto_k=False
    )
    assert torch.equal(torch.get_rng_state(), before)
    second = log_marginal_likelihood(
        lg.model, lg.mean_field_guide, x, 100, seed=7, compute_pareto_k=False
    )
    assert torch.equal(first.log_likelihood, second.log_likelihood)
    assert torch.isnan(first.pareto_k).all()


def test_bound_table_matches_closed_form_elbo_and_is_ordered(problem):
    lg, x = problem
    table = bounds(lg.model, lg.mean_field_guide, x, [1, 5, 50], num_particles=2000, seed=0)
    assert [b.name for b in table] == ["ELBO", "IWAE-5", "IWAE-50"]
    covariance = torch.diag(lg.mean_field_scale.pow(2))
    exact_elbo = lg.elbo(x, lg.posterior_mean(x), covariance)
    elbo = table[0]
    # the sampled ELBO of each point averages 2000 draws: 5 standard errors
    assert ((elbo.per_point - exact_elbo).abs() < 5 * elbo.monte_carlo_standard_error).all()
    # Burda et al., Theorem 1: ELBO <= IWAE-5 <= IWAE-50 <= log p(x) on average
    exact = lg.log_marginal(x).mean().item()
    assert table[0].mean < table[1].mean < table[2].mean < exact + 3 * table[2].standard_error


def test_scales_are_ignored_by_the_evaluator(problem):
    # A KL weight (poutine.scale on latent sites) changes training, not the
    # quantity being estimated.
    lg, x = problem

    def scaled_model(x):
        with pyro.poutine.scale(scale=0.1):
            lg.model(x)

    estimate = log_marginal_likelihood(scaled_model, lg.exact_guide, x, 3)
    torch.testing.assert_close(estimate.log_likelihood, lg.log_marginal(x))


def test_bad_arguments_are_refused(problem):
    lg, x = problem
    with pytest.raises(InputError, match="num_particles must be an integer >= 1"):
        log_marginal_likelihood(lg.model, lg.exact_guide, x, num_particles=0)
    with pytest.raises(InputError, match="largest k"):
        bounds(lg.model, lg.exact_guide, x, [1, 100], num_particles=50)
    with pytest.raises(InputError, match="bound_particles must be an integer"):
        bounds(lg.model, lg.exact_guide, x, [0], num_particles=50)


def test_global_latent_site_is_refused_with_its_name():
    def model(x):
        scale = pyro.sample("global_scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale), obs=x)

    def guide(x):
        pyro.sample("global_scale", dist.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError, match="'global_scale' is outside pyro.plate"):
        log_marginal_likelihood(model, guide, torch.zeros(4), 2)


def test_grey_data_under_a_bernoulli_likelihood_is_refused_by_the_library():
    # issue 13: the API used to return a meaningless number (−11.6) for grey pixels
    from vi_vae import VAE

    vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    grey = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match=r"site 'x' lie outside the support .*values 0 or 1"):
        log_marginal_likelihood(vae.model, vae.guide, grey, 10)
    with pytest.raises(InputError, match="NaN or infinite"):
        log_marginal_likelihood(vae.model, vae.guide, torch.full((2, 4), float("nan")), 10)


def test_the_support_check_does_not_change_the_draws(problem):
    lg, x = problem
    first = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 30, seed=4)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    second = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 30, seed=4)
    assert torch.equal(first.log_likelihood, second.log_likelihood)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched


@pytest.mark.parametrize("num_particles", [1, 2, 20])
def test_small_k_gives_an_estimate_with_pareto_k_undefined(problem, num_particles):
    # issue 13: K = 1 crashed inside the k-hat fit; below 21 weights k-hat is undefined
    lg, x = problem
    estimate = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, num_particles, seed=0)
    assert torch.isfinite(estimate.log_likelihood).all()
    assert torch.isnan(estimate.pareto_k).all() and math.isnan(estimate.share_pareto_k_above)
    assert estimate.pareto_k_reason.endswith(f"; there are {num_particles}")
    with_k = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 21, seed=0)
    assert torch.isfinite(with_k.pareto_k).all() and with_k.pareto_k_reason is None


def test_exact_weights_have_no_tail_and_say_so(problem):
    lg, x = problem
    estimate = log_marginal_likelihood(lg.model, lg.exact_guide, x, 50, seed=0)
    assert torch.isnan(estimate.pareto_k).all()
    assert "all equal" in estimate.pareto_k_reason


def test_the_0_1_keyword_names_are_refused(problem):
    # 0.3 removed num_samples= and the list of k as num_particles (CHANGELOG.md): each is
    # refused instead of being taken as a keyword argument of the model
    lg, x = problem
    with pytest.raises((TypeError, InputError), match="num_samples"):
        log_marginal_likelihood(lg.model, lg.exact_guide, x, num_samples=5, seed=0)
    with pytest.raises((TypeError, InputError), match="num_particles"):
        bounds(lg.model, lg.exact_guide, x, num_particles=[1])


@pytest.mark.parametrize(("seed", "num_particles"), [(0, 5000), (None, 50)])
def test_importance_sampling_reports_its_progress_by_points(problem, seed, num_particles):
    # the progress of a long evaluation (issue 19): passes of points, in order, up to N
    # (seeded, a pass is a key block: one point at K = 5000)
    from vi_vae.evaluation import importance_sampling

    lg, x = problem
    reports = []
    importance_sampling(
        lg.model,
        lg.exact_guide,
        x,
        num_particles=num_particles,
        bound_particles=[1],
        chunk_size=5000 if seed is not None else 100,
        seed=seed,
        on_points=lambda done, total: reports.append((done, total)),
    )
    assert len(reports) > 2 and reports[-1] == (x.shape[0], x.shape[0])
    assert reports[0] == (0, x.shape[0])  # the start: a display's clock starts with the work
    assert [done for done, _ in reports] == sorted({done for done, _ in reports})


def test_the_paired_standard_error_is_the_spread_of_the_differences_over_root_n():
    # d = (1, 2, 2, 3): mean 2, sd √(2/3) with Bessel's correction, SE sd/√4
    difference = PairedDifference.between([1.0, 2.0, 3.0, 4.0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert difference == PairedDifference(2.0, math.sqrt(2 / 3) / 2, 4)
    with pytest.raises(InputError, match="the same points: 4 values against 3"):
        PairedDifference.between([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0])


def test_one_point_has_no_standard_error_over_points(problem, capsys):
    # it read 0, so `vi-vae evaluate --num-points 1` printed "log p(x) = -290.93 ± 0.00",
    # an exact-looking mean of one point; two points have one
    lg, x = problem
    estimate, table = importance_sampling(
        lg.model, lg.mean_field_guide, x[:1], num_particles=20, bound_particles=(1, 5), seed=0
    )
    assert math.isnan(estimate.standard_error)
    assert all(math.isnan(bound.standard_error) for bound in table)
    assert math.isnan(PairedDifference.between([1.0], [0.5]).standard_error)
    two = log_marginal_likelihood(lg.model, lg.mean_field_guide, x[:2], 20, seed=0)
    assert two.standard_error == pytest.approx(two.log_likelihood.std().item() / math.sqrt(2))
    print_metrics(RunMetrics(log_marginal_likelihood=EstimateSummary.of(estimate)), "evaluate")
    assert f"test log p(x) = {estimate.mean:.2f} ± n/a nats" in capsys.readouterr().out


def test_two_guides_differ_point_by_point_with_a_smaller_se_than_unpaired(problem):
    # the same model, its exact-posterior guide against a mean-field one, on the same
    # points: the points' own spread cancels in the differences, so the paired SE is a
    # fraction of either estimate's SE over points, and the mean difference is the
    # difference of the means
    lg, x = problem
    exact = log_marginal_likelihood(lg.model, lg.exact_guide, x, 100, seed=0)
    mean_field = log_marginal_likelihood(lg.model, lg.mean_field_guide, x, 100, seed=0)
    difference = PairedDifference.of(exact, mean_field)
    assert difference.num_points == 40
    assert difference.mean == pytest.approx(
        exact.log_likelihood.mean().item() - mean_field.log_likelihood.mean().item(), abs=1e-9
    )
    assert difference.standard_error < exact.standard_error / 5
