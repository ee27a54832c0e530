import math

import torch

from vi_vae.evaluation.hmc import (
    DEFAULT_TARGET_ACCEPTANCE,
    HMCState,
    adapt_step_size,
    hmc_transition,
    log_density_with_gradient,
)

# a strongly correlated 2-D Gaussian: sds 1 and 0.5, correlation 0.9
COVARIANCE = torch.tensor([[1.0, 0.45], [0.45, 0.25]], dtype=torch.float64)
PRECISION = torch.linalg.inv(COVARIANCE)


def gaussian_log_density(q):
    return -0.5 * ((q @ PRECISION) * q).sum(-1)


def exact_draws(num_chains, seed):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_chains, 2, generator=generator, dtype=torch.float64)
    return noise @ torch.linalg.cholesky(COVARIANCE).T


def test_hmc_leaves_a_correlated_gaussian_invariant():
    # 4000 independent chains started at exact draws, 30 transitions each (fixed ε):
    # the draws must still have the target's mean and covariance. With N = 4000 the
    # standard error of a mean is σ/√N ≤ 0.016 and of a covariance entry
    # √((σ_ii σ_jj + σ_ij²)/N) ≤ 0.026; tolerances are 4 standard errors.
    target = log_density_with_gradient(gaussian_log_density)
    num_chains = 4000
    state = target(exact_draws(num_chains, seed=0))
    step_size = torch.full((num_chains,), 0.2, dtype=torch.float64)
    accepted = []
    torch.manual_seed(1)
    for _ in range(30):
        state, info = hmc_transition(target, state, step_size, leapfrog_steps=8)
        accepted.append(info.accepted.double().mean())
    q = state.position
    mean_error = 4 * COVARIANCE.diagonal().sqrt() / math.sqrt(num_chains)
    assert (q.mean(0).abs() < mean_error).all()
    covariance_error = 4 * ((COVARIANCE.diagonal().outer(COVARIANCE.diagonal())) + COVARIANCE**2)
    covariance_error = (covariance_error / num_chains).sqrt()
    assert ((q.T.cov() - COVARIANCE).abs() < covariance_error).all()
    # the chains moved: not a kernel that rejects everything
    assert 0.5 < torch.stack(accepted).mean() < 1.0


def test_hmc_reaches_the_target_from_a_point():
    # Started all at (3, −3), far in the tails; after 150 transitions the chains
    # have forgotten the start (same 4-standard-error tolerances as above, doubled
    # for the covariance: the chains still carry a little of their start).
    target = log_density_with_gradient(gaussian_log_density)
    num_chains = 2000
    state = target(torch.tensor([3.0, -3.0], dtype=torch.float64).expand(num_chains, 2))
    step_size = torch.full((num_chains,), 0.2, dtype=torch.float64)
    torch.manual_seed(2)
    for _ in range(150):
        state, _ = hmc_transition(target, state, step_size, leapfrog_steps=8)
    q = state.position
    assert (q.mean(0).abs() < 4 * COVARIANCE.diagonal().sqrt() / math.sqrt(num_chains)).all()
    assert ((q.T.cov() - COVARIANCE).abs() < 0.1).all()


def test_divergent_trajectories_are_rejected_and_leave_the_state_finite():
    # log π = −∞ outside the unit disc: every proposal that leaves it is rejected,
    # and no NaN from the rejected trajectory reaches the state.
    def log_density(q):
        inside = q.pow(2).sum(-1) < 1
        return torch.where(inside, -q.pow(2).sum(-1), torch.full_like(q[..., 0], -math.inf))

    target = log_density_with_gradient(log_density)
    state = target(torch.zeros(500, 2, dtype=torch.float64))
    state, info = hmc_transition(
        target, state, torch.full((500,), 1.5, dtype=torch.float64), leapfrog_steps=3
    )
    assert torch.isfinite(state.position).all() and torch.isfinite(state.log_density).all()
    assert (state.position.pow(2).sum(-1) < 1).all()
    assert (info.acceptance_probability[~info.accepted] < 1).all()
    outside = info.acceptance_probability == 0
    assert outside.any() and not info.accepted[outside].any()


def test_given_momenta_and_uniforms_make_a_transition_deterministic():
    target = log_density_with_gradient(gaussian_log_density)
    state = target(exact_draws(10, seed=3))
    momentum = torch.randn(10, 2, dtype=torch.float64)
    uniform = torch.rand(10, dtype=torch.float64)
    step = torch.full((10,), 0.3, dtype=torch.float64)
    first, _ = hmc_transition(target, state, step, 4, momentum=momentum, uniform=uniform)
    second, _ = hmc_transition(target, state, step, 4, momentum=momentum, uniform=uniform)
    assert torch.equal(first.position, second.position)


def test_aux_values_follow_the_accepted_positions():
    def evaluate(q):
        state = log_density_with_gradient(gaussian_log_density)(q)
        return HMCState(state.position, state.log_density, state.gradient, (q.sum(-1),))

    state = evaluate(exact_draws(200, seed=4))
    new, _ = hmc_transition(evaluate, state, torch.full((200,), 0.5, dtype=torch.float64), 3)
    torch.testing.assert_close(new.aux[0], new.position.sum(-1))


def test_step_size_adaptation_moves_toward_the_target_acceptance():
    step = torch.tensor([0.1, 0.1], dtype=torch.float64)
    acceptance = torch.tensor([0.95, 0.05], dtype=torch.float64)
    adapted = adapt_step_size(step, acceptance, DEFAULT_TARGET_ACCEPTANCE)
    assert adapted[0] > 0.1 > adapted[1]
    # a chain stuck at acceptance 0 cannot drive its step size to zero
    stuck = step[:1]
    for _ in range(1000):
        stuck = adapt_step_size(stuck, torch.zeros(1, dtype=torch.float64))
    assert stuck.item() > 0
