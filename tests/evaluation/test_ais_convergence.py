"""The convergence verdict AIS and BDMC results carry (issue 20 item 8)."""

import warnings

import pytest
import torch
from ais_cases import poor_guide
from linear_gaussian import LinearGaussian

from vi_vae import AISConvergenceWarning, annealed_importance_sampling, bdmc
from vi_vae.evaluation import Convergence
from vi_vae.evaluation.convergence import (
    BDMC_GAP_TOLERANCE,
    EQUAL_WEIGHTS_MIN_CHAINS,
    HALF_SCHEDULE_TOLERANCE,
    equal_weights_check,
    half_schedule_check,
)

DOUBLE = torch.float64
LG = LinearGaussian()
X = LG.sample(10)


def failed(convergence):
    return {check.name for check in convergence.failed}


def test_too_few_steps_fail_the_acceptance_check_and_warn_what_to_raise():
    # 3 steps from a guide 2 sds off: the estimate is ~2 nats low, and the step
    # sizes cannot adapt in 1 transition (acceptance ~0.99 against 0.65)
    with pytest.warns(AISConvergenceWarning, match="AIS has not converged: .*raise num_steps"):
        estimate = annealed_importance_sampling(
            LG.model, poor_guide(LG), X, num_steps=3, num_chains=8, leapfrog_steps=4, seed=0
        )
    assert (estimate.log_likelihood - LG.log_marginal(X)).mean() < -1.0
    assert not estimate.convergence.converged
    assert "acceptance" in failed(estimate.convergence)


@pytest.mark.parametrize("target_acceptance", [None, 0.65])
@pytest.mark.parametrize(
    ("num_steps", "num_chains", "remedy"), [(1, 8, "num_steps"), (200, 1, "num_chains")]
)
def test_a_run_nothing_checks_in_t_is_not_called_converged(
    num_steps, num_chains, remedy, target_acceptance
):
    # T = 1 (no half schedule) or one chain (no paired SE): with nothing to check whether
    # T was enough, the verdict must not read "converged". With a target acceptance it
    # did: one chain at T = 200 read "converged (acceptance check passed)"
    with pytest.warns(AISConvergenceWarning, match=f"settled in T applies.*{remedy}"):
        estimate = annealed_importance_sampling(
            LG.model,
            poor_guide(LG),
            X,
            num_steps=num_steps,
            num_chains=num_chains,
            leapfrog_steps=2,
            target_acceptance=target_acceptance,
            seed=0,
        )
    assert not estimate.convergence.converged
    assert "checkable" in failed(estimate.convergence)
    assert remedy in estimate.convergence.remedies


def test_enough_steps_converge_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", AISConvergenceWarning)
        estimate = annealed_importance_sampling(
            LG.model, poor_guide(LG), X, num_steps=150, num_chains=8, leapfrog_steps=4, seed=0
        )
    convergence = estimate.convergence
    assert convergence.converged, convergence.summary
    assert {check.name for check in convergence.checks} == {"acceptance", "half-schedule"}
    # the same chains along half the schedule agree with T within the tolerance
    half = estimate.half_schedule_log_likelihood
    assert abs((estimate.log_likelihood - half).mean()) < HALF_SCHEDULE_TOLERANCE


@pytest.mark.parametrize("run", [annealed_importance_sampling, bdmc])
def test_an_exact_guide_converges_at_any_t_by_its_equal_weights(run):
    # from the exact posterior every increment is log p(x): the estimate is exact at T = 3,
    # where the step sizes cannot adapt (acceptance ~1); the verdict is then "converged",
    # and the same T from the mean-field guide still fails the acceptance check
    with warnings.catch_warnings():
        warnings.simplefilter("error", AISConvergenceWarning)
        result = run(LG.model, LG.exact_guide, X, num_steps=3, num_chains=8, seed=0)
    # BDMC's data are simulated: its exact bounds meet, where AIS's estimate is log p(X)
    lower, exact = (
        (result, LG.log_marginal(X))
        if run is annealed_importance_sampling
        else (
            result.lower,
            result.upper.log_likelihood,
        )
    )
    assert torch.allclose(lower.log_likelihood, exact, rtol=0, atol=1e-10)
    assert result.convergence.converged, result.convergence.summary
    assert "equal-weights" in {check.name for check in result.convergence.checks}
    assert "acceptance" not in {check.name for check in result.convergence.checks}
    with pytest.warns(AISConvergenceWarning, match="acceptance"):
        result = run(LG.model, LG.mean_field_guide, X, num_steps=3, num_chains=8, seed=0)
    assert "acceptance" in failed(result.convergence)
    assert "equal-weights" not in {check.name for check in result.convergence.checks}


@pytest.mark.parametrize(
    ("spread", "size", "dtype", "equal"),
    [
        (0.0, 5.0, DOUBLE, True),
        (1e-12, 5.0, DOUBLE, True),  # float64 rounding
        (1e-6, 5.0, DOUBLE, False),  # a spread, however small, that rounding does not make
        (1e-5, 100.0, torch.float32, True),  # 256 float32 epsilons of |log w| = 100: 3e-3
        (1e-2, 100.0, torch.float32, False),
    ],
)
def test_equal_weights_are_equal_to_the_rounding_of_the_density_s_dtype(spread, size, dtype, equal):
    log_weights = torch.full((8, 3), -size, dtype=DOUBLE)
    log_weights[0, 1] += spread
    check = equal_weights_check(log_weights, torch.finfo(dtype).eps)
    assert (check is not None) == equal
    assert check is None or (check.passed and check.value == pytest.approx(spread, rel=1e-3))
    # too few chains to tell equal weights from a coincidence
    assert equal_weights_check(log_weights[: EQUAL_WEIGHTS_MIN_CHAINS - 1], 1.0) is None


def test_an_estimate_still_moving_with_t_fails_the_half_schedule_check():
    # a fixed step size: no acceptance target, so only the half schedule can tell that
    # 8 steps from a poor guide are far too few (the estimate rises by nats from T/2)
    with pytest.warns(AISConvergenceWarning, match="moved by"):
        estimate = annealed_importance_sampling(
            LG.model, poor_guide(LG), X, num_steps=8, num_chains=8, leapfrog_steps=4,
            step_size=0.3, target_acceptance=None, seed=0,
        )  # fmt: skip
    assert failed(estimate.convergence) == {"half-schedule"}
    assert (estimate.log_likelihood - estimate.half_schedule_log_likelihood).mean() > 0.5


def test_half_schedule_check_compares_beyond_two_standard_errors():
    log_weights = torch.randn(64, 20, generator=torch.Generator().manual_seed(0), dtype=DOUBLE)
    # every chain's weight 0.5 nats lower along half the schedule: the estimate moved
    # by exactly 0.5 with no noise in the difference
    moved = half_schedule_check(log_weights, log_weights - 0.5)
    assert not moved.passed and moved.value == pytest.approx(0.5)
    # independent half-schedule weights: differences of ~0.1 with an SE to match
    other = torch.randn(64, 20, generator=torch.Generator().manual_seed(1), dtype=DOUBLE)
    assert half_schedule_check(log_weights, other).passed
    assert half_schedule_check(log_weights, log_weights) is None  # T = 1: the same weights


def test_ais_below_importance_sampling_on_the_same_points_fails():
    # the exact guide's importance sampling is exact; 3 steps from the poor guide are
    # nats below it
    exact = annealed_importance_sampling(
        LG.model, LG.exact_guide, X, num_steps=1, num_chains=16, seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)
        short = annealed_importance_sampling(
            LG.model, poor_guide(LG), X, num_steps=3, num_chains=8, leapfrog_steps=4, seed=0
        )
    with pytest.warns(AISConvergenceWarning, match="below importance sampling"):
        checked = short.checked_against(exact)
    assert "importance-sampling" in failed(checked.convergence)
    assert checked.convergence.checks[-1].value < -1.0
    # a converged run passes the same check
    long = annealed_importance_sampling(
        LG.model, poor_guide(LG), X, num_steps=150, num_chains=8, leapfrog_steps=4, seed=0
    ).checked_against(exact)
    assert long.convergence.converged, long.convergence.summary


def test_a_bdmc_gap_above_the_threshold_fails_and_a_small_one_passes():
    shape = torch.zeros(10, 3, dtype=torch.float64)
    with pytest.warns(AISConvergenceWarning, match="BDMC gap"):
        short = bdmc(
            LG.model, poor_guide(LG), shape, num_steps=3, num_chains=8, leapfrog_steps=4, seed=0
        )
    assert short.mean_gap > BDMC_GAP_TOLERANCE
    assert "bdmc-gap" in failed(short.convergence)
    long = bdmc(
        LG.model, poor_guide(LG), shape, num_steps=150, num_chains=8, leapfrog_steps=4, seed=0
    )
    assert long.convergence.converged, long.convergence.summary
    assert "bdmc-gap" in {check.name for check in long.convergence.checks}


def test_the_verdict_is_data_for_the_results_json():
    verdict = Convergence().with_check(None)
    assert verdict.converged and verdict.checks == ()
    log_weights = torch.zeros(4, 3, dtype=DOUBLE)
    verdict = verdict.with_check(half_schedule_check(log_weights, log_weights - 1))
    assert not verdict.converged and verdict.remedies == ("num_steps",)
    assert verdict.summary.endswith("raise num_steps")


def test_a_passed_check_says_so_and_a_failed_one_says_what_is_wrong():
    # metrics.json keeps every check's message: a passed check must not read as a failure
    from vi_vae.evaluation.convergence import (
        acceptance_check,
        bdmc_gap_check,
        importance_sampling_check,
    )

    assert "within 0.2 of its target" in acceptance_check(torch.tensor([0.64]), 0.65).message
    assert "too few transitions" in acceptance_check(torch.tensor([0.99]), 0.65).message
    assert "within" in bdmc_gap_check(0.1, 0.01).message
    assert "not accurate" in bdmc_gap_check(5.0, 0.01).message
    small, one = torch.full((3,), 0.01), torch.ones(3)
    assert "not below it" in importance_sampling_check(one, small, one - 0.5, small).message
    assert (
        "which converged AIS is not"
        in importance_sampling_check(one, small, one + 1, small).message
    )
