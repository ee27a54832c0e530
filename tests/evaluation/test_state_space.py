"""A sequential pair shaped like Pyro's deep Markov model, against the Kalman-exact log p(x).

Pyro's ``examples/dmm.py`` samples one latent site per time step inside the data plate,
``z_t`` given ``z_{t-1}`` under ``pyro.markov``, and masks the steps a sequence lacks
(``.mask(mini_batch_mask[:, t - 1 : t])``); its guide runs over the observed sequence.
Here the transition and emission are linear Gaussian (our code, in its spirit), so
log p(x) of each sequence is a multivariate normal density: x = z + noise with
Cov(z_s, z_t) = a^|s-t| Var(z_min(s,t)). Masked steps drop out of that density.

Tolerances: 4 Monte Carlo standard errors of the estimate's mean (a fixed seed; a
4-SE miss has probability < 1e-4 for a correct estimator).
"""

import math
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch

from vi_vae import fit, log_marginal_likelihood
from vi_vae.errors import AISConvergenceWarning, InputError
from vi_vae.evaluation import annealed_importance_sampling
from vi_vae.evaluation.passes import log_weight_chunks

STEPS, DECAY, TRANSITION_SCALE, NOISE = 6, 0.8, 0.5, 0.4


def model(x, mask=None, mask_latents=False):
    """``mask_latents``: mask the latent steps too, as Pyro's DMM does (clause 8 refuses it)."""
    with pyro.plate("data", x.shape[0]):
        z = None
        for t in pyro.markov(range(STEPS)):
            prior = (
                dist.Normal(x.new_zeros(()), 1.0)
                if z is None
                else dist.Normal(DECAY * z, TRANSITION_SCALE)
            )
            z = pyro.sample(f"z_{t}", prior.mask(mask[:, t]) if mask_latents else prior)
            emission = dist.Normal(z, NOISE)
            pyro.sample(
                f"x_{t}", emission if mask is None else emission.mask(mask[:, t]), obs=x[:, t]
            )


def guide(x, mask=None, mask_latents=False):
    """q(z_t | x) = N(0.8 x_t, 0.6) where x_t is observed, N(0, 1.2) where it is masked."""
    observed = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    with pyro.plate("data", x.shape[0]):
        for t in pyro.markov(range(STEPS)):
            loc = torch.where(observed[:, t], 0.8 * x[:, t], 0.0)
            scale = torch.where(observed[:, t], 0.6, 1.2)
            with pyro.poutine.mask(mask=observed[:, t] if mask_latents else True):
                pyro.sample(f"z_{t}", dist.Normal(loc, scale))


def exact_log_likelihood(x, mask):
    variances = [1.0]
    for _ in range(STEPS - 1):
        variances.append(DECAY**2 * variances[-1] + TRANSITION_SCALE**2)
    steps = torch.arange(STEPS)
    lag = (steps[:, None] - steps[None, :]).abs()
    earlier = torch.minimum(steps[:, None], steps[None, :])
    covariance = DECAY**lag * torch.tensor(variances, dtype=torch.float64)[earlier]
    covariance = covariance + NOISE**2 * torch.eye(STEPS, dtype=torch.float64)
    return torch.stack(
        [
            dist.MultivariateNormal(x.new_zeros(int(m.sum())), covariance[m][:, m]).log_prob(row[m])
            for row, m in zip(x, mask, strict=True)
        ]
    )


def sequences(num_sequences=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.zeros(num_sequences, STEPS, dtype=torch.float64)
    z[:, 0] = torch.randn(num_sequences, generator=generator, dtype=torch.float64)
    for t in range(1, STEPS):
        innovation = torch.randn(num_sequences, generator=generator, dtype=torch.float64)
        z[:, t] = DECAY * z[:, t - 1] + TRANSITION_SCALE * innovation
    x = z + NOISE * torch.randn(num_sequences, STEPS, generator=generator, dtype=torch.float64)
    mask = torch.rand(num_sequences, STEPS, generator=generator) > 0.3
    mask[:, 0] = True
    return x, mask


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_importance_sampling_matches_the_kalman_log_likelihood(masked):
    x, mask = sequences()
    kwargs = {"mask": mask} if masked else {}
    exact = exact_log_likelihood(x, mask if masked else torch.ones_like(mask)).mean().item()
    estimate = log_marginal_likelihood(model, guide, x, num_particles=5000, seed=0, **kwargs)
    assert abs(estimate.mean - exact) < 4 * estimate.mean_monte_carlo_standard_error


def test_ais_on_the_masked_sequences_matches_the_kalman_log_likelihood_and_says_it_converged():
    x, mask = sequences()
    exact = exact_log_likelihood(x, mask).mean().item()
    estimate = annealed_importance_sampling(
        model, guide, x, num_steps=150, num_chains=4, leapfrog_steps=5, seed=0, mask=mask
    )
    assert estimate.convergence.converged
    assert abs(estimate.mean - exact) < 4 * estimate.mean_monte_carlo_standard_error


def test_ais_too_short_for_the_sequences_says_so():
    """T = 20 is far too short here (T = 50 already lands 4.7 SEs low): a warning and a verdict."""
    x, mask = sequences()
    with pytest.warns(AISConvergenceWarning, match="AIS has not converged"):
        estimate = annealed_importance_sampling(
            model, guide, x, num_steps=20, num_chains=4, leapfrog_steps=5, seed=0, mask=mask
        )
    assert not estimate.convergence.converged


# -- a mask on a latent site (contract clause 8) ---------------------------------------


MASKED_PAIRS = {
    "in the model": (partial(model, mask_latents=True), guide),
    "in the guide": (model, partial(guide, mask_latents=True)),
    "in both": (partial(model, mask_latents=True), partial(guide, mask_latents=True)),
}


@pytest.mark.parametrize("where", MASKED_PAIRS)
@pytest.mark.parametrize("evaluator", ["importance sampling", "AIS"])
def test_a_masked_latent_site_is_refused_by_the_evaluators(where, evaluator):
    model, guide = MASKED_PAIRS[where]
    x, mask = sequences()
    which = "guide" if where == "in the guide" else "model"
    with pytest.raises(InputError, match=rf"latent site 'z_1' is masked in the {which} .*"):
        if evaluator == "AIS":
            annealed_importance_sampling(model, guide, x, num_steps=2, num_chains=2, mask=mask)
        else:
            log_marginal_likelihood(model, guide, x, num_particles=10, seed=0, mask=mask)


def test_the_masked_latent_s_number_was_wrong_and_the_whole_latent_s_is_right():
    """Masked in both (so nothing warned by weight), the mask in the sequence's middle made
    importance sampling miss the exact log p(x) by over 10 SEs; unmasked, within 4 SEs."""
    x, mask = sequences()
    exact = exact_log_likelihood(x, mask).mean().item()
    chunks = log_weight_chunks(
        partial(model, mask_latents=True),
        partial(guide, mask_latents=True),
        x,
        5000,
        seed=0,
        fixed_density=False,
        mask=mask,
    )
    log_weights = torch.cat([w for _, w in chunks], dim=1)
    wrong = (log_weights.logsumexp(0) - math.log(5000)).mean().item()
    whole = log_marginal_likelihood(model, guide, x, num_particles=5000, seed=0, mask=mask)
    se = whole.mean_monte_carlo_standard_error
    assert abs(whole.mean - exact) < 4 * se
    assert abs(wrong - exact) > 10 * se


def test_training_with_masked_latents_and_validation_is_not_refused():
    """The refusal is the evaluators': fit (and its validation ELBO) trains such a pair."""
    x, mask = sequences()
    pyro.clear_param_store()

    def shifted_guide(x, mask):
        shift = pyro.param("shift", torch.zeros((), dtype=torch.float64))
        guide(x + shift, mask, mask_latents=True)

    result = fit(
        partial(model, mask_latents=True),
        shifted_guide,
        x,
        validation=(x, {"mask": mask}),
        model_kwargs={"mask": mask},
        epochs=1,
        batch_size=10,
        seed=0,
    )
    assert math.isfinite(result.history[-1].validation_elbo)
