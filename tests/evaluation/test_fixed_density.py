"""Contract clause 8: an evaluator refuses a model whose log p(x_n, z) is not fixed per point.

Two ways a user's pair gave a wrong log p(x) that nothing flagged:

- a decoder with dropout, left in training mode (torch's default): every call scores the
  same (x, z) with another dropout mask, and importance sampling estimated the log of an
  average over masks, far from the model's log p(x) (below: the exact value of the
  linear Gaussian model);
- a model that normalizes x by statistics of the batch (or BatchNorm in training mode):
  a point's number depended on which rows shared its pass, i.e. on ``chunk_size``.

Each evaluator now refuses both, saying what to change; the same networks in eval mode
(or the statistic computed outside the model) are accepted and give the exact value.
"""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from torch import nn

from vi_vae import fit, log_marginal_likelihood
from vi_vae.errors import (
    GuideSupportWarning,
    InputError,
    RandomDensityWarning,
    UnobservedPointsWarning,
)
from vi_vae.evaluation import annealed_importance_sampling, bdmc, bounds, inference_gaps
from vi_vae.evaluation.passes import log_weight_chunks

LG = LinearGaussian(latent_dim=2, data_dim=3, noise=0.5, seed=0)
X = LG.sample(40, seed=1)
DROPOUT_SAYS = r"model's log density of the same x and z changed between two calls"
ROWS_SAYS = r"depends on the other rows it is called with"
SMALL_AIS = dict(num_steps=4, num_chains=2, leapfrog_steps=1, seed=0)

EVALUATORS = {
    "importance sampling": lambda model, guide, x: log_marginal_likelihood(
        model, guide, x, num_particles=20, seed=0
    ),
    "bounds": lambda model, guide, x: bounds(
        model, guide, x, num_particles=20, bound_particles=(1,), seed=0
    ),
    "AIS from the guide": lambda model, guide, x: annealed_importance_sampling(
        model, guide, x, **SMALL_AIS
    ),
    "AIS from the prior": lambda model, guide, x: annealed_importance_sampling(
        model, None, x, initial="prior", **SMALL_AIS
    ),
    "BDMC": lambda model, guide, x: bdmc(model, guide, x[:4], **SMALL_AIS),
    "inference gaps": lambda model, guide, x: inference_gaps(
        model, guide, x[:4], num_steps=2, num_particles=4, seed=0
    ),
}


class DropoutModel:
    """The linear Gaussian model with dropout on W z: exact in eval mode."""

    def __init__(self):
        self.dropout = nn.Dropout(0.3)

    def __call__(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LG.latent_dim), 1.0).to_event(1))
            loc = self.dropout(z @ LG.weight.T) + LG.bias
            pyro.sample("x", dist.Normal(loc, LG.noise).to_event(1), obs=x)


def centred_model(x):
    """The linear Gaussian model of x − mean(x over the pass) + mean(X): batch-dependent."""
    x = x - x.mean(0) + X.mean(0)
    LG.model(x)


def dropout_guide(x):
    """A mean-field guide with dropout on its mean: a random proposal (3x wider than the
    optimal mean-field scale, so that a dropped mean still covers the posterior)."""
    mean = nn.functional.dropout(LG.posterior_mean(x), 0.2, training=True)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(mean, 3 * LG.mean_field_scale).to_event(1))


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_evaluator_refuses_a_model_with_dropout_in_training_mode(evaluator):
    with pytest.raises(InputError, match=DROPOUT_SAYS + r".*module\.eval\(\)"):
        EVALUATORS[evaluator](DropoutModel(), LG.mean_field_guide, X)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_evaluator_refuses_a_model_that_depends_on_the_other_rows(evaluator):
    with pytest.raises(InputError, match=ROWS_SAYS + r".*depend on chunk_size"):
        EVALUATORS[evaluator](centred_model, LG.mean_field_guide, X)


def test_the_refused_number_was_wrong_and_the_accepted_one_is_exact():
    """What the refusals prevent, and that eval mode is the fix.

    With dropout active (the check only warning, as for fit's validation), importance
    sampling lands far from the exact log p(x), more than 10 of its own SEs; in eval mode it
    is within 4 SEs (K = 2000 from the mean-field guide: the SE is a few 0.001 nats).
    """
    exact = LG.log_marginal(X).mean().item()
    model = DropoutModel()
    with pytest.warns(RandomDensityWarning, match="averages over that randomness"):
        chunks = log_weight_chunks(model, LG.mean_field_guide, X, 2000, seed=0, fixed_density=False)
        weights = torch.cat([w for _, w in chunks], dim=1)
    per_point = weights.logsumexp(0) - torch.log(torch.tensor(2000.0, dtype=weights.dtype))
    wrong = per_point.mean().item()
    model.dropout.eval()
    estimate = log_marginal_likelihood(model, LG.mean_field_guide, X, num_particles=2000, seed=0)
    se = estimate.mean_monte_carlo_standard_error
    assert abs(estimate.mean - exact) < 4 * se
    assert abs(wrong - exact) > 10 * se + 0.05


def test_a_model_that_depends_on_its_pass_gave_numbers_that_depend_on_chunk_size():
    """The control of the row refusal: centring by the mean of all of X, outside the model,
    gives one number whatever the pass size (the same keyed draws: equal to 1e-9)."""
    centred = X - X.mean(0) + X.mean(0)
    estimates = [
        log_marginal_likelihood(
            LG.model, LG.mean_field_guide, centred, num_particles=50, seed=0, chunk_size=size
        ).mean
        for size in (50, 2000)
    ]
    assert estimates[0] == pytest.approx(estimates[1], abs=1e-9)


def drifting_model(x, index=None):
    """The linear Gaussian model with a prior mean that drifts with the row's place: its own
    place among the rows it is called with, or the ``index`` it is given (per point)."""
    index = torch.arange(x.shape[0], dtype=x.dtype) if index is None else index
    with pyro.plate("data", x.shape[0]):
        loc = (0.1 * index).unsqueeze(-1).expand(-1, LG.latent_dim)
        z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ LG.weight.T + LG.bias, LG.noise).to_event(1), obs=x)


def drifting_guide(x, index=None):
    LG.mean_field_guide(x)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_evaluator_refuses_a_model_that_reads_the_rows_place_among_the_others(evaluator):
    """Row 0 scores the same alone and among the others (its place is 0 both ways): the last
    of the check's rows is scored alone too. Importance sampling gave -10.21 in one pass and
    -5.51 in passes of 200 pairs (K = 50), without a word."""
    with pytest.raises(InputError, match=r"row [1-9][0-9]* of x .*" + ROWS_SAYS + r".*arange"):
        EVALUATORS[evaluator](drifting_model, drifting_guide, X)


def test_the_rows_place_passed_as_a_per_point_argument_gives_one_number_whatever_the_pass():
    """The remedy the refusal names: the index as a keyword argument, split by rows with x."""
    index = torch.arange(X.shape[0], dtype=X.dtype)
    estimates = [
        log_marginal_likelihood(
            drifting_model, drifting_guide, X, 50, seed=0, chunk_size=size, index=index
        ).mean
        for size in (200, 2000)
    ]
    assert estimates[0] == pytest.approx(estimates[1], abs=1e-9)


def test_importance_sampling_takes_a_random_proposal_and_stays_exact():
    """A guide with dropout is still a proposal (its own density is in each weight): accepted,
    within 4 SEs of the exact log p(x). AIS, whose target contains log q, refuses it."""
    exact = LG.log_marginal(X).mean().item()
    estimate = log_marginal_likelihood(LG.model, dropout_guide, X, num_particles=2000, seed=0)
    assert abs(estimate.mean - exact) < 4 * estimate.mean_monte_carlo_standard_error
    with pytest.raises(InputError, match=r"the guide's log density of the same x and z changed"):
        annealed_importance_sampling(LG.model, dropout_guide, X, **SMALL_AIS)
    prior_start = annealed_importance_sampling(LG.model, None, X[:2], initial="prior", **SMALL_AIS)
    assert prior_start.log_likelihood.isfinite().all()


def test_fit_s_validation_scores_networks_in_training_mode():
    """Training with dropout is legitimate: fit's validation ELBO does not refuse it."""
    decoder = nn.Sequential(nn.Linear(LG.latent_dim, 8), nn.Dropout(0.3), nn.Linear(8, 3))
    decoder = decoder.double()

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LG.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), LG.noise).to_event(1), obs=x)

    pyro.clear_param_store()
    result = fit(model, LG.mean_field_guide, X, validation=X[:8], epochs=1, batch_size=20, seed=0)
    assert torch.isfinite(torch.tensor(result.history[-1].validation_elbo))


def point_mass_guide(x):
    """A deterministic encoder as a Pyro guide: q(z|x) = δ(z − posterior mean)."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(LG.posterior_mean(x), event_dim=1))


def empirical_guide(x):
    """q(z|x) uniform over three fixed points: a discrete proposal for a continuous z."""
    points = LG.posterior_mean(x).unsqueeze(-2) + torch.tensor([[-0.1], [0.0], [0.1]])
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Empirical(points, torch.zeros(points.shape[:-1])))


@pytest.mark.parametrize("guide", [point_mass_guide, empirical_guide])
@pytest.mark.parametrize("evaluator", [name for name in EVALUATORS if "prior" not in name])
def test_every_evaluator_that_uses_the_guide_refuses_a_point_mass_guide(evaluator, guide):
    # before: importance sampling returned log p(x, z) at the encoder's point, with a
    # "converged" verdict, 16 nats below the exact log p(x) (Delta at z = 0.1 in a probe);
    # AIS failed with torch's "element 0 of tensors does not require grad"
    with pytest.raises(InputError, match=r"latent site 'z' from a point mass .*has none"):
        EVALUATORS[evaluator](LG.model, guide, X)


def test_ais_from_the_prior_and_fit_take_a_pair_whose_guide_is_a_point_mass():
    # the guide is not evaluated in either: AIS from the prior never calls it, and fit
    # with a point mass is MAP training (an autoencoder's), which stays allowed
    estimate = annealed_importance_sampling(LG.model, None, X, initial="prior", **SMALL_AIS)
    assert estimate.log_likelihood.isfinite().all()
    with pytest.warns(GuideSupportWarning, match=r"\['z'\] from a point mass .*not a lower bound"):
        result = fit(LG.model, point_mass_guide, X, epochs=1, batch_size=20, validation=X)
    # the validation "ELBO" is log p(x, z) at the point: here above the exact log p(x)
    # (the posterior mean is the posterior's mode), which no lower bound can be
    assert result.history[0].validation_elbo > LG.log_marginal(X).mean().item()


#: rows 2 and 5 observe nothing; row 7 only its first coordinate
OBSERVED = torch.ones(X.shape, dtype=torch.bool)
OBSERVED[2] = OBSERVED[5] = False
OBSERVED[7, 1:] = False


def entry_masked_model(x, observed):
    """The linear Gaussian model, each missing coordinate masked inside the likelihood."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(LG.latent_dim), 1.0).to_event(1))
        loc = z @ LG.weight.T + LG.bias
        pyro.sample("x", dist.Normal(loc, LG.noise).mask(observed).to_event(1), obs=x)


def row_masked_model(x, observed):
    """The same, each point's observation kept or dropped whole by poutine.mask."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(LG.latent_dim), 1.0).to_event(1))
        with pyro.poutine.mask(mask=observed.any(-1)):
            pyro.sample("x", dist.Normal(z @ LG.weight.T + LG.bias, LG.noise).to_event(1), obs=x)


def mean_field_guide(x, observed):
    """LG's mean-field guide, with a learnable shift (0) for the inference gaps' q*."""
    shift = pyro.param("shift", torch.zeros(LG.latent_dim, dtype=x.dtype))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(LG.posterior_mean(x) + shift, LG.mean_field_scale).to_event(1))


@pytest.mark.parametrize("model", [entry_masked_model, row_masked_model])
@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_evaluator_warns_of_points_whose_every_observed_entry_is_masked(evaluator, model):
    # before: those points' log p(x) came out near 0 (the probability of observing
    # nothing), raising the mean over points, with nothing said
    def pair(function):
        return lambda x, **kwargs: function(x, OBSERVED[: x.shape[0]])

    with pytest.warns(UnobservedPointsWarning, match=r"masked: [12] of (40|4); .*log p\(x\) is 0"):
        EVALUATORS[evaluator](pair(model), pair(mean_field_guide), X)


def test_the_points_warned_of_score_0_and_a_partly_observed_point_is_no_warning():
    def exact_guide(x, observed):  # the posterior: the prior where nothing is observed
        seen = observed.any(-1, keepdim=True)
        mean = torch.where(seen, LG.posterior_mean(x), 0.0)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "z", dist.Normal(mean, torch.where(seen, LG.mean_field_scale, 1.0)).to_event(1)
            )

    with pytest.warns(UnobservedPointsWarning):
        estimate = log_marginal_likelihood(
            entry_masked_model, exact_guide, X, 50, seed=0, observed=OBSERVED
        )
    assert estimate.log_likelihood[[2, 5]].abs().max() < 1e-12  # every weight p(z)/q(z) = 1
    partly = OBSERVED.clone()
    partly[2, 0] = partly[5, 2] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnobservedPointsWarning)
        log_marginal_likelihood(
            entry_masked_model, mean_field_guide, X, 20, seed=0, observed=partly
        )


def test_an_estimator_warns_of_a_point_mass_guide_at_its_first_call():
    # before: only fit's validation warned, so fit without validation data and SVI with
    # vi_vae's estimators called log p(x, z) at the point an ELBO without a word
    from pyro.infer import SVI
    from pyro.optim import Adam

    from vi_vae import IWAE

    with pytest.warns(GuideSupportWarning, match=r"\['z'\] from a point mass .*not a lower bound"):
        fit(LG.model, point_mass_guide, X, epochs=1, batch_size=20)
    svi = SVI(LG.model, point_mass_guide, Adam({"lr": 1e-3}), IWAE(num_particles=5))
    with pytest.warns(GuideSupportWarning, match=r"\['z'\] from a point mass"):
        svi.step(X)
    with warnings.catch_warnings():  # a guide with a density: no warning
        warnings.simplefilter("error", GuideSupportWarning)
        SVI(LG.model, LG.mean_field_guide, Adam({"lr": 1e-3}), IWAE(num_particles=5)).step(X)
