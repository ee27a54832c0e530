import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from ais_cases import poor_guide
from linear_gaussian import LinearGaussian

from vi_vae import (
    VAE,
    AISConvergenceWarning,
    InputError,
    annealed_importance_sampling,
    bdmc,
    log_marginal_likelihood,
)
from vi_vae.evaluation import AISSettings, BDMCResult


@pytest.fixture
def lg():
    return LinearGaussian()


def assert_sandwich(result, exact):
    # Stochastic bounds hold in expectation, so the mean over points may cross the
    # exact value by Monte Carlo noise: allow 3 standard errors of the mean deviation.
    for bound, sign in ((result.lower, 1), (result.upper, -1)):
        deviation = sign * (bound.log_likelihood - exact)
        assert deviation.mean() < 3 * deviation.std() / deviation.numel() ** 0.5


def test_bdmc_sandwiches_the_exact_log_marginal_and_the_gap_shrinks(lg):
    shape = torch.zeros(20, 3, dtype=torch.float64)
    results = {
        steps: bdmc(
            lg.model, poor_guide(lg), shape, num_steps=steps, num_chains=8, leapfrog_steps=4, seed=0
        )
        for steps in (3, 100)
    }
    for result in results.values():
        assert isinstance(result, BDMCResult)
        assert_sandwich(result, lg.log_marginal(result.x))
    short, long = results[3].mean_gap, results[100].mean_gap
    # From a guide 2 sds off, 3 steps leave a gap of nats, 100 steps close most of it
    # (measured 5.3 and 0.15 nats).
    assert short > 1.0
    assert 0 <= long < short / 5


@pytest.mark.parametrize("num_steps", [2, 10, 100])
def test_the_upper_bound_is_above_the_lower_in_expectation(lg, num_steps):
    # E[log ŵ_forward] ≤ log p(x) ≤ −E[log ŵ_reverse] (Jensen on both unbiased estimators),
    # so the mean gap over points is ≥ 0 up to Monte Carlo noise: allow 3 standard errors
    # of the mean gap (over points: each point has its own simulated z*, x and chains).
    # At T = 2 the bounds are many nats apart, at T = 100 a fraction of a nat.
    shape = torch.zeros(30, 3, dtype=torch.float64)
    result = bdmc(
        lg.model, poor_guide(lg), shape, num_steps=num_steps, num_chains=4, leapfrog_steps=2,
        seed=3,
    )  # fmt: skip
    assert result.mean_gap_standard_error > 0
    assert result.mean_gap >= -3 * result.mean_gap_standard_error
    assert result.upper.mean >= result.lower.mean - 3 * result.mean_gap_standard_error


def test_bdmc_from_the_prior(lg):
    shape = torch.zeros(10, 3, dtype=torch.float64)
    result = bdmc(
        lg.model, None, shape, num_steps=60, num_chains=4, leapfrog_steps=4, initial="prior", seed=0
    )
    assert result.lower.settings.initial == result.upper.settings.initial == "prior"
    assert_sandwich(result, lg.log_marginal(result.x))
    # 60 steps from the prior: gaps of 0.4–1.5 nats over 4 seeds
    assert 0 < result.mean_gap < 3.0


def test_the_progress_counts_both_directions_from_a_start_at_zero(lg):
    calls = []
    shape = torch.zeros(4, 3, dtype=torch.float64)
    bdmc(
        lg.model, None, shape, num_steps=3, num_chains=2, initial="prior", seed=0,
        on_step=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    # (0, 6) as the run starts, then 3 forward and 3 reverse steps over the one chunk
    assert calls == [(i, 6) for i in range(7)]


def test_forward_run_is_ais_on_the_simulated_data(lg):
    result = bdmc(
        lg.model,
        lg.mean_field_guide,
        torch.zeros(6, 3, dtype=torch.float64),
        num_steps=8,
        num_chains=3,
        seed=4,
    )
    again = annealed_importance_sampling(
        lg.model, lg.mean_field_guide, result.x, num_steps=8, num_chains=3, seed=4
    )
    torch.testing.assert_close(result.lower.log_weights, again.log_weights, atol=1e-10, rtol=0)
    assert result.lower.method == "ais" and result.upper.method == "ais-reverse"


def test_simulation_is_seeded_keyed_by_point_and_shaped_like_x(lg):
    first = bdmc(
        lg.model,
        lg.mean_field_guide,
        torch.zeros(6, 3, dtype=torch.float64),
        num_steps=2,
        num_chains=2,
        seed=1,
        chunk_size=3,
    )
    again = bdmc(
        lg.model,
        lg.mean_field_guide,
        torch.zeros(6, 3, dtype=torch.float64),
        num_steps=2,
        num_chains=2,
        seed=1,
    )
    assert first.x.shape == (6, 3) and first.z["z"].shape == (6, 2)
    assert torch.equal(first.x, again.x) and torch.equal(first.z["z"], again.z["z"])
    torch.testing.assert_close(first.gap, again.gap, atol=1e-10, rtol=0)
    other = bdmc(
        lg.model,
        lg.mean_field_guide,
        torch.zeros(6, 3, dtype=torch.float64),
        num_steps=2,
        num_chains=2,
        seed=2,
    )
    assert not torch.equal(first.x, other.x)


def test_bdmc_on_a_vae_sandwiches_and_its_gap_shrinks_with_the_steps():
    """On a VAE's own simulated data: upper ≥ lower in expectation, and more steps close the gap.

    Both runs share the seed, so the same 100 simulated points (x, z*): the gaps are
    compared point by point. Tolerance 3 standard errors (over points) for the mean gap
    at each T (≥ 0 in expectation) and for the mean drop of the gap from T = 2 to T = 50
    (> 0: AIS with more steps is tighter on both sides). Measured over seeds 0-4: gaps
    1.2-1.8 nats at T = 2 and 0.17-0.23 at T = 50, a drop of 4.2-6.1 standard errors.
    The 20 pixels make the posterior sharp enough for 2 steps to leave a gap. At T = 50
    the true log p(x) must lie between the bounds (assert_sandwich: 3 standard errors;
    measured 0.14 ± 0.04 nats above the lower, 0.03 ± 0.04 below the upper).
    """
    vae = VAE(input_dim=20, latent_dim=2, hidden_sizes=(8,), seed=0)
    results = {
        steps: bdmc(
            vae.model, vae.guide, torch.zeros(100, 20), num_steps=steps, num_chains=4,
            leapfrog_steps=2, seed=0,
        )
        for steps in (2, 50)
    }  # fmt: skip
    short, long = results[2], results[50]
    assert set(short.x.unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws
    assert torch.equal(short.x, long.x)
    for result in (short, long):
        assert result.mean_gap >= -3 * result.mean_gap_standard_error
    drop = short.gap - long.gap
    assert drop.mean() > 3 * drop.std() / len(drop) ** 0.5, (short.mean_gap, long.mean_gap)
    # and log p(x) is between them: importance sampling from the prior (the model with x
    # hidden as the proposal, 1,000 draws; standard errors ≤ 0.031 nats), a method apart from AIS
    prior_proposal = poutine.block(vae.model, hide=["x"])
    reference = log_marginal_likelihood(vae.model, prior_proposal, long.x, 1000, seed=1)
    assert_sandwich(long, reference.log_likelihood)


def test_model_with_two_observed_sites_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("a", dist.Normal(z, 1.0), obs=x[:, 0])
            pyro.sample("b", dist.Normal(z, 1.0), obs=x[:, 1])

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(InputError, match="exactly one"):
        bdmc(model, guide, torch.zeros(3, 2), num_steps=2, num_chains=2, seed=0)


def test_a_guide_narrower_than_the_prior_starts_bdmc_from_the_prior():
    # The "uniform" family's q lives on a sub-interval of its prior's support; a
    # prior draw outside it could not start a reverse chain toward q.
    vae = VAE(input_dim=6, latent_dim=2, latent_family="uniform", hidden_sizes=(8,), seed=0)
    x = torch.zeros(20, 6)
    with pytest.warns(AISConvergenceWarning, match="starts from the prior"):
        result = bdmc(vae.model, vae.guide, x, num_steps=2, num_chains=2, seed=0)
    assert result.lower.settings.initial == result.upper.settings.initial == "prior"
    again = bdmc(vae.model, vae.guide, x, num_steps=2, num_chains=2, initial="prior", seed=0)
    assert torch.equal(result.gap, again.gap)


#: N simulated points in chunks of 7, 7 and 6 (every chunk's reverse chains must start
#: at the z* of its own rows, not of the first rows)
NUM_SPREAD_POINTS, POINTS_PER_CHUNK = 20, 7
#: the bounds' per-point tolerance, nats: the weights are unbiased (E[mean w] = p(x)
#: forward, 1/p(x) reverse), so by Markov's inequality a bound crosses log p(x) by more
#: than t nats with probability ≤ e^(−t); t = log(2N / 0.001) makes all 2N checks hold
#: together with probability ≥ 0.999, whatever the weights' spread
PER_POINT_TOLERANCE = math.log(2 * NUM_SPREAD_POINTS / 1e-3)


@pytest.fixture
def far_apart():
    """σ = 0.1: posterior sds 0.03–0.06, while the points' posterior means spread over
    the prior's sd of 1, so another point's z* lies tens of posterior sds off this
    point's posterior (with σ = 0.5 and on an untrained VAE they overlap)."""
    return LinearGaussian(noise=0.1)


def spread_bdmc(lg, guide, **settings):
    chains = AISSettings(num_chains=4, leapfrog_steps=2, **settings)
    return bdmc(
        lg.model, guide, torch.zeros(NUM_SPREAD_POINTS, 3, dtype=torch.float64), chains,
        chunk_size=POINTS_PER_CHUNK * (chains.num_chains + chains.num_pilot_chains), seed=0,
    )  # fmt: skip


def assert_each_point_sandwiched(result, exact):
    assert (result.lower.log_likelihood <= exact + PER_POINT_TOLERANCE).all()
    assert (result.upper.log_likelihood >= exact - PER_POINT_TOLERANCE).all()


def test_reverse_chains_from_each_points_own_z_close_the_sandwich(far_apart):
    """From a poor guide, at T = 50, the bounds sandwich the exact log p(x_sim) tightly.

    Tolerances: each point's bounds within PER_POINT_TOLERANCE (Markov, above); the mean
    deviation of each bound from log p(x_sim) within 3 standard errors over points
    (assert_sandwich); the mean gap under 1 nat (measured 0.11, 0.45, 0.33 nats ± 0.12,
    0.08, 0.17 over seeds 0–2). Reverse chains started at another point's z* (z* rolled
    by a row, row 0's for all, or each chunk reading the first chunk's rows) or at a
    fresh prior draw begin tens of posterior sds off, where the poor guide, narrower than
    the posterior, is far below p(x, z): the mean gap was 28–69 nats (measured).
    """
    result = spread_bdmc(far_apart, poor_guide(far_apart), num_steps=50)
    exact = far_apart.log_marginal(result.x)
    assert_each_point_sandwiched(result, exact)
    assert_sandwich(result, exact)
    assert 0 < result.mean_gap < 1.0, result.mean_gap


def test_reverse_chains_from_each_points_own_z_stay_above_log_p_x_from_the_prior(far_apart):
    """From the prior, the upper bound stays above the exact log p(x_sim), point by point.

    Tolerances as above: PER_POINT_TOLERANCE (10.6 nats) per point, 3 standard errors
    over points on average. 10 steps from the prior to posteriors this sharp leave the
    lower bound 31–37 nats low on average and the upper 3.6–4.2 high, every point's at
    least 0.5 nats high (measured over seeds 0–2). A reverse chain started at another
    point's z*, or at a fresh prior draw, starts where p(x | z) is tiny, and its first
    steps toward the prior gain weight p(x | z)^(−Δβ): some point's upper bound fell
    68–404 nats below log p(x) (measured under each of the four wrong starts of the test
    above).
    """
    result = spread_bdmc(far_apart, None, num_steps=10, initial="prior")
    exact = far_apart.log_marginal(result.x)
    assert_each_point_sandwiched(result, exact)
    assert_sandwich(result, exact)
