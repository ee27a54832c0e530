"""The model/guide contract (vi_vae.contract): each clause refused, saying what to change.

Issue #20 items 1-7 and the API part of item 17. The pairs are written the way
Pyro's examples write theirs (our code, in their spirit): ``examples/vae/vae.py``
(an ``nn.Module`` with an encoder and a decoder, ``pyro.module`` in model and
guide) and the semi-supervised VAE of ``examples/vae/ss_vae_M2.py``
(``pyro.module`` of the whole module in the model only, a size-less
``pyro.plate("data")``, the labels ``ys=`` observed in the model).
"""

import contextlib
import math
import warnings
from dataclasses import replace
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from torch import nn
from torch.nn import functional

from vi_vae import (
    VAE,
    ExecutionOptions,
    annealed_importance_sampling,
    bdmc,
    fit,
    inference_gaps,
    log_marginal_likelihood,
)
from vi_vae.contract import PairLayout, check_pair, per_point_keywords, rows_of
from vi_vae.errors import GuideSupportWarning, InputError, TF32Warning, UnobservedPointsWarning
from vi_vae.estimators import (
    CIWAE,
    ELBO,
    ESTIMATOR_SPECS,
    IWAE,
    MIWAE,
    PIWAE,
    STL,
    DReG,
    ParticleEstimator,
    RenyiVR,
    parse_estimator,
)
from vi_vae.evaluated_pair import check_evaluated_pair
from vi_vae.evaluation import bounds, to_inference_data
from vi_vae.precision import warn_of_tf32

FEATURES, LATENT, HIDDEN, CLASSES = 6, 2, 8, 3

#: every registered estimator that is vi_vae's own (Pyro's own ELBOs check their own pairs)
OWN_ESTIMATORS = [
    name
    for name, spec in ESTIMATOR_SPECS.items()
    if isinstance(parse_estimator(spec.example), ParticleEstimator)
]


class Encoder(nn.Module):
    def __init__(self, inputs=FEATURES):
        super().__init__()
        self.fc1 = nn.Linear(inputs, HIDDEN)
        self.fc21 = nn.Linear(HIDDEN, LATENT)
        self.fc22 = nn.Linear(HIDDEN, LATENT)

    def forward(self, x):
        hidden = functional.softplus(self.fc1(x))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, inputs=LATENT):
        super().__init__()
        self.fc1 = nn.Linear(inputs, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, FEATURES)

    def forward(self, z):
        return torch.sigmoid(self.fc2(functional.softplus(self.fc1(z))))


class PyroStyleVAE(nn.Module):
    """A VAE as Pyro's examples/vae/vae.py writes one; ``variant`` breaks one clause."""

    def __init__(self, variant="plain", encoder_in="guide"):
        super().__init__()
        torch.manual_seed(0)
        self.encoder, self.decoder = Encoder(), Decoder()
        self.variant, self.encoder_in = variant, encoder_in

    def plate(self, x):
        if self.variant == "subsampled":
            return pyro.plate("data", x.shape[0], subsample_size=x.shape[0] // 2)
        return pyro.plate("batch" if self.variant == "other_name" else "data", x.shape[0])

    def model(self, x):
        pyro.module("decoder", self.decoder)
        if self.encoder_in == "model":
            pyro.module("encoder", self.encoder)
        if self.variant == "sequential":
            for i in pyro.plate("data", x.shape[0]):
                z = pyro.sample(f"latent_{i}", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
                pyro.sample(f"obs_{i}", dist.Bernoulli(self.decoder(z)).to_event(1), obs=x[i])
            return
        with self.plate(x) as rows:
            shape = (len(rows), 1, LATENT) if self.variant == "shapes" else (len(rows), LATENT)
            prior = dist.Normal(x.new_zeros(shape), 1.0).to_event(len(shape) - 1)
            z = pyro.sample("latent", prior)
            probs = self.decoder(z.flatten(-2) if self.variant == "shapes" else z)
            obs = x[rows] if self.variant == "subsampled" else x
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=obs)

    def guide(self, x):
        if self.encoder_in == "guide":
            pyro.module("encoder", self.encoder)
        if self.variant == "sequential":
            for i in pyro.plate("data", x.shape[0]):
                loc, scale = self.encoder(x[i])
                pyro.sample(f"latent_{i}", dist.Normal(loc, scale).to_event(1))
            return
        with self.plate(x) as rows:
            loc, scale = self.encoder(x[rows] if self.variant == "subsampled" else x)
            if self.variant == "shapes":
                loc, scale = loc.unsqueeze(-1), scale.unsqueeze(-1)
                pyro.sample("latent", dist.Normal(loc, scale).to_event(2))
            else:
                pyro.sample("latent", dist.Normal(loc, scale).to_event(1))
            if self.variant == "extra_site":
                pyro.sample("extra", dist.Normal(loc, scale).to_event(1))


class PyroStyleSSVAE(nn.Module):
    """The supervised half of Pyro's ss_vae_M2 example: labels ``ys`` observed in the model.

    ``pyro.module`` registers everything in the model only, and the plate has no size.
    With ``expand_labels=False`` the decoder concatenates z and ys as Pyro's example
    does, which fails once z has a leading particle dimension.
    """

    def __init__(self, expand_labels=True):
        super().__init__()
        torch.manual_seed(0)
        self.encoder_z = Encoder(FEATURES + CLASSES)
        self.decoder = Decoder(LATENT + CLASSES)
        self.expand_labels = expand_labels

    def model(self, xs, ys):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(len(xs), LATENT), 1.0).to_event(1))
            prior = dist.OneHotCategorical(xs.new_ones(len(xs), CLASSES) / CLASSES)
            ys = pyro.sample("y", prior, obs=ys)
            if self.expand_labels:
                ys = ys.expand(zs.shape[:-1] + ys.shape[-1:])
            probs = self.decoder(torch.cat([zs, ys], -1))
            pyro.sample("x", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=xs)

    def guide(self, xs, ys):
        with pyro.plate("data"):
            loc, scale = self.encoder_z(torch.cat([xs, ys], -1))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def data(num_points=10, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((num_points, FEATURES), 0.4), generator=generator)
    labels = torch.randint(CLASSES, (num_points,), generator=generator)
    return x, functional.one_hot(labels, CLASSES).float()


def evaluators(model, guide, x, **kwargs):
    """Each evaluator and each registered estimator's loss, as a call of no arguments."""
    calls = {
        "log_marginal_likelihood": lambda: log_marginal_likelihood(model, guide, x, 20, **kwargs),
        "bounds": lambda: bounds(model, guide, x, (1, 5), 10, **kwargs),
        "to_inference_data": lambda: to_inference_data(
            model, guide, x, [0, len(x) - 1], 8, num_chains=2, **kwargs
        ),
    }
    for name in OWN_ESTIMATORS:
        estimator = parse_estimator(ESTIMATOR_SPECS[name].example)
        calls[name] = lambda e=estimator: e.loss(model, guide, x, **kwargs)
    return calls


def numbers(result):
    """The numbers of an evaluator's or a loss's result, as one tensor."""
    if isinstance(result, float):
        return torch.tensor([result])
    if isinstance(result, list):
        return torch.cat([bound.per_point for bound in result])
    if hasattr(result, "sample_stats"):  # the ArviZ export
        return torch.as_tensor(result.sample_stats["log_weight"].values)
    return result.log_likelihood


def test_the_pyro_style_pairs_keep_the_contract():
    """The control: unbroken pairs give finite numbers through every call."""
    x, ys = data()
    for pair, kwargs in ((PyroStyleVAE(), {}), (PyroStyleSSVAE(), {"ys": ys})):
        for name, call in evaluators(pair.model, pair.guide, x, **kwargs).items():
            assert torch.isfinite(numbers(call())).all(), name


# -- item 1: a guide site the model lacks ------------------------------------------------


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", *OWN_ESTIMATORS]
)
def test_a_guide_site_the_model_lacks_is_refused(call):
    pair = PyroStyleVAE("extra_site")
    with pytest.raises(InputError, match=r"guide samples site\(s\) \['extra'\]"):
        evaluators(pair.model, pair.guide, data()[0])[call]()


@pytest.mark.parametrize(
    ("wrong", "got"),
    [("model", "None"), ("guide", "'guide'"), ("model", r"a tensor of shape \[10, 6\]")],
    ids=["model-None", "guide-a-string", "model-the-data"],
)
@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", *OWN_ESTIMATORS, "fit"]
)
def test_a_model_or_guide_that_is_not_a_function_is_refused_naming_it(call, wrong, got):
    # Pyro's "... is not callable, did you mean to pass it as a keyword arg?" printed the
    # whole data tensor, not which argument was wrong
    pair, x = PyroStyleVAE(), data()[0]
    value = {"None": None, "'guide'": "guide"}.get(got, x)
    model = value if wrong == "model" else pair.model
    guide = value if wrong == "guide" else pair.guide
    calls = {**evaluators(model, guide, x), "fit": lambda: fit(model, guide, x, epochs=1)}
    with pytest.raises(InputError, match=rf"^{wrong} must be a Pyro {wrong} function.*got {got}"):
        calls[call]()


@pytest.mark.parametrize("autoguide", ["AutoNormal", "AutoDiagonalNormal"])
@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", *OWN_ESTIMATORS]
)
def test_pyro_s_autoguides_are_refused_naming_their_auxiliary_site(autoguide, call):
    # Pyro's own guides (code we did not write): an auxiliary draw and a Delta at "z"
    x = torch.randn(6, 3)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1).to_event(1))
            pyro.sample("x", dist.Normal(z, 1).to_event(1), obs=x)

    pyro.clear_param_store()
    guide = getattr(pyro.infer.autoguide, autoguide)(model)
    site = {"AutoNormal": "z_unconstrained", "AutoDiagonalNormal": "_AutoDiagonalNormal_latent"}
    with pytest.raises(InputError, match=rf"auxiliary site\(s\) \['{site[autoguide]}'\]"):
        evaluators(model, guide, x)[call]()


def test_a_guide_sized_by_the_whole_data_set_is_refused_saying_how_to_pass_it_by_rows():
    # a guide that is not amortized: one pyro.param row per data point; it runs on all of
    # x but not on the parts of it that the evaluators' passes and shards are
    x = torch.randn(8, 3)
    exact = dist.Normal(0, 2**0.5).log_prob(x).sum(-1)  # z ~ N(0, 1), x | z ~ N(z, 1)

    def model(x, loc=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1).to_event(1))
            pyro.sample("x", dist.Normal(z, 1).to_event(1), obs=x)

    def guide(x, loc=None):
        loc = pyro.param("loc", x.detach() / 2) if loc is None else loc
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 0.5**0.5).to_event(1))  # the exact posterior

    pyro.clear_param_store()
    for call in ("log_marginal_likelihood", "bounds", "to_inference_data"):
        with pytest.raises(InputError, match=r"run on all 8 rows of x but fail on its first row"):
            evaluators(model, guide, x)[call]()
    # what the message says to do: the per-point values as a keyword argument, split with x
    estimate = log_marginal_likelihood(model, guide, x, 10, seed=0, chunk_size=20, loc=x / 2)
    torch.testing.assert_close(estimate.log_likelihood, exact.double(), atol=1e-5, rtol=0)


def test_a_guide_whose_network_needs_several_rows_is_refused_until_put_in_eval_mode():
    # BatchNorm in training mode: its numbers would depend on which rows share a pass
    x = torch.randn(8, 3)
    encoder = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 6))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1).to_event(1))
            pyro.sample("x", dist.Normal(z, 1).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        h = encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(h[..., :3], h[..., 3:].exp()).to_event(1))

    pyro.clear_param_store()
    with pytest.raises(InputError, match=r"fail on its first row alone .*BatchNorm"):
        log_marginal_likelihood(model, guide, x, 10)
    encoder.eval()
    assert log_marginal_likelihood(model, guide, x, 10, seed=0).log_likelihood.isfinite().all()


# -- item 2: one site, two shapes ---------------------------------------------------------


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "dreg", "elbo"]
)
def test_a_site_shaped_differently_by_model_and_guide_is_refused(call):
    pair = PyroStyleVAE("shapes")
    with pytest.raises(InputError, match=r"'latent'.*\(1, 2\) in the model.*\(2, 1\) in the guide"):
        evaluators(pair.model, pair.guide, data()[0])[call]()


# -- item 3: the data plate is the rows of x ----------------------------------------------


@pytest.mark.parametrize("call", ["log_marginal_likelihood", "bounds", "to_inference_data"])
def test_the_evaluators_refuse_a_subsampled_data_plate_saying_what_to_change(call):
    pair = PyroStyleVAE("subsampled")
    with pytest.raises(InputError, match=r"subsamples 5 of its 10 points.*without subsample_size"):
        evaluators(pair.model, pair.guide, data()[0])[call]()


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "elbo"]
)
def test_a_sequential_data_plate_is_refused_saying_what_to_change(call):
    pair = PyroStyleVAE("sequential")
    with pytest.raises(
        InputError, match=r"sequential loop.*with pyro.plate\('data', x.shape\[0\]\)"
    ):
        evaluators(pair.model, pair.guide, data()[0])[call]()


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "elbo"]
)
def test_a_data_plate_of_another_name_is_refused_naming_it_and_data_plate(call):
    pair = PyroStyleVAE("other_name")
    x = data()[0]
    with pytest.raises(InputError, match=r"plates are \['batch'\].*data_plate="):
        evaluators(pair.model, pair.guide, x)[call]()
    # and the hint works: the plate's name is only a name, so the seeded numbers are those
    # of the same pair with its plate named "data" (the same operations: compared exactly)
    renamed = log_marginal_likelihood(pair.model, pair.guide, x, 5, data_plate="batch", seed=0)
    usual = PyroStyleVAE()
    expected = log_marginal_likelihood(usual.model, usual.guide, x, 5, seed=0)
    assert torch.equal(renamed.log_likelihood, expected.log_likelihood)


def test_a_data_plate_of_another_size_than_the_rows_of_x_is_refused():
    def model(x):
        with pyro.plate("data", 3):
            pyro.sample("obs", dist.Normal(0.0, 1.0).expand([3, FEATURES]).to_event(1), obs=x[:3])

    def guide(x):
        pass

    with pytest.raises(InputError, match=r"pyro.plate\('data'\) has 3 points but x has 10 rows"):
        log_marginal_likelihood(model, guide, data()[0], 10)


# -- item 4: which parameters are the guide's ---------------------------------------------


def encoder_gradients(estimator, encoder_in):
    pyro.clear_param_store()
    pair = PyroStyleVAE(encoder_in=encoder_in)
    pyro.set_rng_seed(3)
    estimator.loss_and_grads(pair.model, pair.guide, data()[0])
    return torch.cat([p.grad.flatten() for p in pair.encoder.parameters()])


def relative_difference(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_dreg_finds_the_guide_parameters_when_the_model_alone_registers_them():
    """Pyro's SS-VAE registers its encoder with pyro.module in the model only.

    With the same seed the draws are the same, so DReG's encoder gradient must not
    depend on where the encoder is registered (1e-6: float rounding of the same
    operations), and must differ from IWAE's as much as with the usual registration
    (which differs by ~0.1-0.5 here; IWAE's gradient in DReG's place differs by 0).
    """
    usual = encoder_gradients(DReG(5), "guide")
    model_only = encoder_gradients(DReG(5), "model")
    iwae = encoder_gradients(IWAE(5), "model")
    assert relative_difference(model_only, usual) < 1e-6
    assert relative_difference(model_only, iwae) > 0.05
    assert relative_difference(usual, iwae) > 0.05


def test_piwae_routes_the_guide_objective_to_an_encoder_registered_in_the_model():
    usual = encoder_gradients(PIWAE(2, 3), "guide")
    model_only = encoder_gradients(PIWAE(2, 3), "model")
    assert relative_difference(model_only, usual) < 1e-6


# -- item 5: per-point keyword arguments are split with x ---------------------------------


class LabelsInX(PyroStyleSSVAE):
    """The same pair with the labels as the last columns of x: the reference for ys=."""

    def model(self, xs):
        super().model(xs[:, :FEATURES], xs[:, FEATURES:])

    def guide(self, xs):
        super().guide(xs[:, :FEATURES], xs[:, FEATURES:])


@pytest.mark.parametrize("seed", [None, 0])
def test_per_point_keyword_arguments_are_split_by_rows_with_x(seed):
    """K = 2000 puts 4 of the 10 points in a pass: ys must be split with x.

    Seeded, the draws are keyed by point, so the numbers equal those of the same pair
    reading its labels from x's columns (the same operations: compared exactly).
    """
    x, ys = data()
    pair = PyroStyleSSVAE()
    estimate = log_marginal_likelihood(pair.model, pair.guide, x, 2000, seed=seed, ys=ys)
    assert estimate.log_likelihood.shape == (10,)
    table = bounds(pair.model, pair.guide, x, (1, 50), 2000, seed=seed, ys=ys)
    assert [bound.per_point.shape for bound in table] == [(10,), (10,)]
    if seed is not None:
        reference = LabelsInX()
        joined = torch.cat([x, ys], -1)
        expected = log_marginal_likelihood(
            reference.model, reference.guide, joined, 2000, seed=seed
        )
        assert torch.equal(estimate.log_likelihood, expected.log_likelihood)


def test_the_per_point_rule_is_a_tensor_whose_first_dimension_is_the_rows_of_x():
    x = torch.zeros(4, 2)
    kwargs = {"ys": torch.arange(4), "table": torch.ones(3, 4), "scale": 2.0, "items": [1, 2, 3, 4]}
    assert per_point_keywords(kwargs, 4) == {"ys"}
    rows, sliced = rows_of(x, kwargs, slice(2, 4))
    assert rows.shape == (2, 2) and sliced["ys"].tolist() == [2, 3]
    assert sliced["table"] is kwargs["table"] and sliced["items"] is kwargs["items"]


# -- item 6: the particle dimension -------------------------------------------------------


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "elbo", "ais"]
)
def test_a_pair_that_fails_under_the_particle_dimension_is_told_what_to_change(call):
    """Pyro's SS-VAE concatenates z (with the particle dim) and ys (without): a raw torch error.

    AIS's chains are the same leading dimension; it raised the raw error.
    """
    x, ys = data()
    pair = PyroStyleSSVAE(expand_labels=False)
    calls = evaluators(pair.model, pair.guide, x, ys=ys)
    calls["ais"] = lambda: annealed_importance_sampling(
        pair.model, pair.guide, x, num_steps=2, num_chains=2, seed=0, ys=ys
    )
    with pytest.raises(InputError, match=r"leading particle dimension.*expand") as caught:
        calls[call]()
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    "call", ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "elbo", "ais"]
)
def test_a_batchnorm_that_takes_the_particles_for_channels_is_told_what_to_change(call):
    """Pyro's scANVI example: BatchNorm1d on z reads a leading particle dimension as the
    batch and the points as channels. torch says "running_mean should contain 10 elements
    not 8", which named no shape, so the raw error reached the user.
    """
    decoder = nn.Sequential(
        nn.Linear(LATENT, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.Linear(HIDDEN, FEATURES)
    )
    decoder.eval()

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))

    x = data()[0]
    calls = evaluators(model, guide, x)
    calls["ais"] = lambda: annealed_importance_sampling(
        model, guide, x, num_steps=2, num_chains=2, seed=0
    )
    with pytest.raises(InputError, match=r"leading particle dimension.*elements not") as caught:
        calls[call]()
    assert isinstance(caught.value.__cause__, RuntimeError)


def prodlda_pair(softmax_dim):
    """The shape of Pyro's ProdLDA tutorial: word counts, topics from a softmax over z, and a
    decoder whose softmax normalizes over ``dim=1`` (its words, for a batch of documents).
    """
    torch.manual_seed(0)
    decoder = nn.Linear(LATENT, FEATURES, bias=False)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            probs = functional.softmax(decoder(functional.softmax(z, -1)), dim=softmax_dim)
            pyro.sample("x", dist.Multinomial(int(x.sum(-1).max()), probs), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x[..., :LATENT] / 10, 1.0).to_event(1))

    counts = torch.randint(4, (10, FEATURES), generator=torch.Generator().manual_seed(0))
    return model, guide, counts.float()


CALLS = ["log_marginal_likelihood", "bounds", "to_inference_data", "iwae", "elbo", "ais", "fit"]


def all_calls(model, guide, x):
    """The evaluators, the estimators' losses, AIS and ``fit``, as calls of no arguments."""
    calls = evaluators(model, guide, x)
    calls["ais"] = lambda: annealed_importance_sampling(
        model, guide, x, num_steps=2, num_chains=2, seed=0
    )
    calls["fit"] = lambda: fit(model, guide, x, epochs=1, batch_size=5)
    return calls


@pytest.mark.parametrize("call", CALLS)
def test_a_pair_that_computes_otherwise_under_the_particle_dimension_is_refused(call):
    """ProdLDA's softmax(dim=1) runs under the particle dimension, over the points: no error,
    and every number was of another model (log p(x) changed with chunk_size).
    """
    model, guide, x = prodlda_pair(softmax_dim=1)
    with pytest.raises(InputError, match=r"site 'x' has log density .* at point \d+ .*dim=-1"):
        all_calls(model, guide, x)[call]()


@pytest.mark.parametrize("call", CALLS)
def test_the_same_pair_counting_dimensions_from_the_right_runs(call):
    """The check's other side: softmax(dim=-1) scores each draw alike with particles."""
    model, guide, x = prodlda_pair(softmax_dim=-1)
    all_calls(model, guide, x)[call]()


def test_the_particle_check_is_no_verdict_on_a_pair_random_beyond_its_sample_sites():
    """A model that draws outside its sample sites trains (it is refused for evaluation by
    clause 8, not here): its second score without particles differs from its first.
    """
    model, guide, x = prodlda_pair(softmax_dim=-1)

    def noisy(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1) + torch.randn(()), 1.0), obs=x[:, 0])

    assert fit(noisy, guide, x, epochs=1, batch_size=5).history
    with pytest.raises(InputError, match="random beyond its sample sites"):
        log_marginal_likelihood(noisy, guide, x, 20)


SEQUENTIAL = ExecutionOptions(vectorize_particles=False)


def test_importance_sampling_draws_the_particles_one_after_another_when_asked():
    """A pair not written for a particle dimension is evaluated as it is written: ProdLDA's
    softmax(dim=1) scores as the same model with softmax(dim=-1), vectorized (within 4 SEs
    of their difference; K = 400), and the number depends on no pass size (keyed draws)."""
    model, guide, x = prodlda_pair(softmax_dim=1)
    right_model, right_guide, _ = prodlda_pair(softmax_dim=-1)
    sequential = [
        log_marginal_likelihood(
            model, guide, x, 400, seed=0, execution=replace(SEQUENTIAL, chunk_size=size)
        )
        for size in ("auto", 7)
    ]
    assert sequential[0].mean == sequential[1].mean
    vectorized = log_marginal_likelihood(right_model, right_guide, x, 400, seed=0)
    error = math.hypot(
        sequential[0].mean_monte_carlo_standard_error, vectorized.mean_monte_carlo_standard_error
    )
    assert abs(sequential[0].mean - vectorized.mean) < 4 * error
    assert sequential[0].mean != vectorized.mean  # other draws of the same estimator


@pytest.mark.parametrize("call", ["log_marginal_likelihood", "bounds"])
def test_a_pair_that_fails_under_the_particle_dimension_is_evaluated_one_particle_at_a_time(call):
    """Pyro's SS-VAE concatenates z and ys without expanding ys: refused vectorized (above),
    its numbers drawn one particle at a time."""
    x, ys = data()
    pair = PyroStyleSSVAE(expand_labels=False)
    calls = {
        "log_marginal_likelihood": lambda: log_marginal_likelihood(
            pair.model, pair.guide, x, 20, seed=0, execution=SEQUENTIAL, ys=ys
        ),
        "bounds": lambda: bounds(
            pair.model, pair.guide, x, (1, 5), 10, seed=0, execution=SEQUENTIAL, ys=ys
        ),
    }
    assert torch.isfinite(numbers(calls[call]())).all()


def test_fit_validates_as_its_loss_draws_pyros_own_elbo_one_particle_at_a_time():
    """Pyro's Trace_ELBO trains a pair as written; the validation ELBO, drawn in one
    vectorized pass, refused ProdLDA's softmax(dim=1): it now draws as the loss does."""
    model, guide, x = prodlda_pair(softmax_dim=1)
    result = fit(model, guide, x, epochs=1, batch_size=5, loss="pyro-trace-elbo", validation=x)
    assert math.isfinite(result.history[0].validation_elbo)
    with pytest.raises(InputError, match="score the same draw differently"):
        fit(model, guide, x, epochs=1, batch_size=5, validation=x)


@pytest.mark.parametrize("call", ["ais", "bdmc", "inference_gaps"])
def test_the_evaluators_that_move_a_batch_of_chains_refuse_to_draw_one_at_a_time(call):
    model, guide, x = prodlda_pair(softmax_dim=-1)
    small = dict(num_steps=2, num_chains=2, seed=0, execution=SEQUENTIAL)
    calls = {
        "ais": lambda: annealed_importance_sampling(model, guide, x, **small),
        "bdmc": lambda: bdmc(model, guide, x[:2], **small),
        "inference_gaps": lambda: inference_gaps(
            model, guide, x[:2], num_steps=2, num_particles=2, seed=0, execution=SEQUENTIAL
        ),
    }
    with pytest.raises(InputError, match=r"cannot take execution.vectorize_particles=False"):
        calls[call]()


def test_compiled_passes_are_vectorized():
    with pytest.raises(InputError, match=r"compile=True compiles the vectorized pass"):
        ExecutionOptions(compile=True, vectorize_particles=False)
    with pytest.raises(InputError, match=r"vectorize_particles must be"):
        ExecutionOptions(vectorize_particles="no")


def test_a_guide_whose_flow_scores_only_its_own_last_draw_is_not_broken_by_the_check():
    """Pyro's Planar flow has no inverse: it scores the draw it made last, from its cache.
    The particle check, which draws and scores again, gives no verdict on such a guide and
    runs after the trial's draws are scored (the guide's parameters are found from them).
    """
    import pyro.distributions.transforms as transforms

    torch.manual_seed(0)
    flow = transforms.Planar(LATENT)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)

    def guide(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            base = dist.Normal(0.8 * x, 0.5).to_event(1)
            pyro.sample("z", dist.TransformedDistribution(base, [flow]))

    x = torch.randn(10, LATENT, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(log_marginal_likelihood(model, guide, x, 20, seed=0).mean)
    assert math.isfinite(fit(model, guide, x, epochs=1, batch_size=5).history[0].train_loss)


def cevae_pair():
    """Pyro's CEVAE (pyro.contrib.cevae): its guide observes t and y as an auxiliary model."""
    from pyro.contrib.cevae import Guide, Model

    torch.manual_seed(0)
    config = dict(
        feature_dim=FEATURES,
        latent_dim=2,
        hidden_dim=8,
        num_layers=2,
        num_samples=4,
        outcome_dist="normal",
    )
    x = torch.randn(12, FEATURES, generator=torch.Generator().manual_seed(0))
    labels = {"t": (x[:, 0] > 0).float(), "y": x[:, 1] + x[:, 2]}
    return Model(config), Guide(config), x, labels


def test_a_guides_auxiliary_model_is_left_out_of_q_by_the_evaluators():
    # the guide's observed sites were refused everywhere; those marked is_auxiliary are
    # no part of q: the evaluators' log weights equal those of the guide without them
    model, guide, x, labels = cevae_pair()
    without = pyro.poutine.block(guide, hide=["t", "y"])
    for evaluate in (
        lambda pair_guide: log_marginal_likelihood(model, pair_guide, x, 20, seed=0, **labels),
        lambda pair_guide: annealed_importance_sampling(
            model, pair_guide, x, num_steps=3, num_chains=2, seed=0, **labels
        ),
    ):
        kept, left_out = evaluate(guide), evaluate(without)
        assert torch.equal(kept.log_likelihood, left_out.log_likelihood)
        assert torch.isfinite(kept.log_likelihood).all()


def test_a_guides_auxiliary_model_is_refused_by_the_estimators_and_trained_by_its_own_loss():
    from pyro.contrib.cevae import TraceCausalEffect_ELBO

    model, guide, x, labels = cevae_pair()
    says = (
        r"the guide observes site\(s\) \['t', 'y'\] as an auxiliary model .*TraceCausalEffect_ELBO"
    )
    with pytest.raises(InputError, match=says):
        fit(model, guide, x, model_kwargs=labels, epochs=1)
    with pytest.raises(InputError, match=says):
        IWAE(3).loss(model, guide, x, **labels)
    result = fit(model, guide, x, model_kwargs=labels, epochs=1, loss=TraceCausalEffect_ELBO())
    assert math.isfinite(result.history[0].train_loss)


def test_a_failure_that_is_not_the_particle_dimension_is_left_as_it_is():
    def model(x):
        raise RuntimeError("a bug of the user's own")

    def guide(x):
        pass

    with pytest.raises(RuntimeError, match="a bug of the user's own"):
        log_marginal_likelihood(model, guide, data()[0], 5)


# -- item 7: IWAE-type losses under a subsampled data plate -------------------------------

#: estimators whose bound is a log-mean-exp of K > 1 scaled log weights (biased under
#: subsampling); the others are linear in the plate's scale
BIASED_UNDER_SUBSAMPLING = {"iwae", "vr", "dreg", "miwae", "ciwae", "piwae"}


@pytest.mark.parametrize("name", sorted(BIASED_UNDER_SUBSAMPLING))
def test_iwae_type_losses_refuse_a_subsampled_data_plate(name):
    pair = PyroStyleVAE("subsampled")
    estimator = parse_estimator(ESTIMATOR_SPECS[name].example)
    with pytest.raises(InputError, match=r"subsamples 5 of its 10 points.*biased"):
        estimator.loss(pair.model, pair.guide, data()[0])


class SubsampledLinearGaussian(LinearGaussian):
    """A linear Gaussian with one latent dimension whose data plate subsamples ``batch`` rows.

    With one latent dimension the mean-field guide is the exact posterior, so every log
    weight is log p(x_n) whatever z is drawn: a loss's only randomness is the subsample.
    """

    def __init__(self, batch):
        super().__init__(latent_dim=1)
        self.batch = batch

    def model(self, x):
        with pyro.plate("data", len(x), subsample_size=self.batch) as rows:
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
            likelihood = dist.Normal(z @ self.weight.T + self.bias, self.noise).to_event(1)
            pyro.sample("x", likelihood, obs=x[rows])

    def guide(self, x):
        with pyro.plate("data", len(x), subsample_size=self.batch) as rows:
            posterior = dist.Normal(self.posterior_mean(x[rows]), self.mean_field_scale)
            pyro.sample("z", posterior.to_event(1))


@pytest.mark.parametrize("name", sorted(set(OWN_ESTIMATORS) - BIASED_UNDER_SUBSAMPLING))
def test_a_linear_loss_of_a_subsampled_plate_is_unbiased_for_the_full_plate(name):
    """The plate scales each log weight by N/B = 10/5, so over subsamples the loss averages
    −Σ_n log p(x_n) over all N points (exact guide: each log weight is log p(x_n)).

    Mean of 200 seeded losses against the closed form, within 4 standard errors of that
    mean (its spread is the subsample's, and for elbo-analytic the z draws'; ~0.2 nats).
    A loss that ignored the scale would average half the target, ~15 nats away.
    """
    pair = SubsampledLinearGaussian(batch=5)
    x = pair.sample(10, seed=2)
    estimator = parse_estimator(ESTIMATOR_SPECS[name].example)
    losses = []
    for seed in range(200):
        pyro.set_rng_seed(seed)
        losses.append(estimator.loss(pair.model, pair.guide, x))
    losses = torch.tensor(losses, dtype=torch.float64)
    target = -pair.log_marginal(x).sum()
    standard_error = losses.std() / len(losses) ** 0.5
    assert (losses.mean() - target).abs() < 4 * standard_error, (losses.mean(), target)


@pytest.mark.parametrize(
    ("estimator", "biased"),
    [
        (IWAE(1), False),
        (DReG(1), False),
        (STL(3), False),
        (ELBO(3), False),
        (RenyiVR(float("-inf"), 4), False),
        (MIWAE(3, 1), False),
        (CIWAE(1.0, 4), False),
        (IWAE(2), True),
        (RenyiVR(0.5, 3), True),
        (PIWAE(2, 2, 1), True),
    ],
    ids=str,
)
def test_which_estimators_are_biased_under_subsampling(estimator, biased):
    """K = 1, and bounds linear in the log weights, are unbiased; a log-mean-exp is not."""
    assert (estimator._subsampling_refusal() is not None) == biased


# -- item 17: x the pair cannot take ------------------------------------------------------


def template_and_pyro_style():
    vae = VAE(input_dim=FEATURES, latent_dim=LATENT, hidden_sizes=(HIDDEN,))
    pair = PyroStyleVAE()
    return {"template": (vae.model, vae.guide), "pyro-style": (pair.model, pair.guide)}


@pytest.mark.parametrize("pair", ["template", "pyro-style"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.bool])
def test_x_of_a_dtype_the_pair_cannot_take_is_refused_naming_x(pair, dtype):
    model, guide = template_and_pyro_style()[pair]
    x = data()[0].to(dtype)
    for call in (
        lambda: log_marginal_likelihood(model, guide, x, 10),
        lambda: bounds(model, guide, x, (1, 5), 10),
    ):
        with pytest.raises(InputError, match=rf"x has dtype {dtype}.*torch.float32"):
            call()


@pytest.mark.parametrize("precision", ["bfloat16", "float16", "autocast"])
@pytest.mark.parametrize("call", ["log_marginal_likelihood", "bounds", "to_inference_data", "ais"])
def test_a_pair_whose_log_densities_come_in_half_precision_is_refused(precision, call):
    # in bfloat16 a 784-pixel Bernoulli near -1074 nats is stored as a multiple of 8: the
    # estimate came out with a standard error of hundredths and digits off by nats
    vae = VAE(input_dim=FEATURES, latent_dim=LATENT, hidden_sizes=(HIDDEN,), seed=0)
    x = data()[0]
    dtype = torch.bfloat16 if precision == "autocast" else getattr(torch, precision)
    context = torch.autocast("cpu", dtype=dtype)
    if precision != "autocast":
        vae.to(dtype)
        x = x.to(dtype)
        context = contextlib.nullcontext()
    calls = evaluators(vae.model, vae.guide, x)
    calls["ais"] = lambda: annealed_importance_sampling(
        vae.model, vae.guide, x, num_steps=2, num_chains=2, seed=0
    )
    with context, pytest.raises(InputError, match=rf"computed in {dtype}.*float32 or float64"):
        calls[call]()


@pytest.mark.parametrize(
    ("device", "cudnn", "precision", "layers", "message"),
    [
        ("cuda", True, "highest", "conv", "the pair's convolutions run in TF32"),
        ("cuda", False, "highest", "conv", None),
        ("cuda", True, "highest", "mlp", None),
        ("cuda", False, "high", "mlp", "the pair's matrix products run in TF32"),
        ("cuda", True, "high", "conv", "matrix products and convolutions run in TF32"),
        ("cpu", True, "high", "conv", None),
    ],
)
def test_the_evaluators_warn_where_a_gpu_would_compute_the_pair_in_tf32(
    monkeypatch, device, cudnn, precision, layers, message
):
    # torch lets cuDNN convolve in TF32 by default: a conv model's log p(x) on a GPU
    # carried 10-bit rounding without a word (no GPU here: the check reads flags and layers)
    modules = {"conv": [nn.Conv2d(1, 2, 3), nn.Linear(4, 2)], "mlp": [nn.Linear(4, 2)]}[layers]
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", cudnn)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_of_tf32(torch.device(device), modules)
    finally:
        torch.set_float32_matmul_precision(before)
    found = [str(w.message) for w in caught if issubclass(w.category, TF32Warning)]
    assert found == [] if message is None else (len(found) == 1 and message in found[0])


@pytest.mark.parametrize("pair", ["template", "pyro-style"])
@pytest.mark.parametrize(
    "shape", [(FEATURES,), (10, 2, 3), (10, FEATURES + 1)], ids=["1-D", "3-D", "wide"]
)
def test_x_of_a_shape_the_pair_cannot_take_is_refused_naming_x(pair, shape):
    model, guide = template_and_pyro_style()[pair]
    x = torch.bernoulli(torch.full(shape, 0.5))
    with pytest.raises(InputError, match=r"(x has shape|data observed at site) .*\[.*\]"):
        log_marginal_likelihood(model, guide, x, 10)


# -- the checks no pair above breaks: one pair each, breaking that check alone ----------

#: z ~ N(0, I_2), x | z ~ N(z W, I_3), q(z|x) = N(x A, 0.8² I): fixed W and A
_WEIGHTS = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
_ENCODER = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))


def gaussian_model(x, plate=True, observed=None, likelihood=None):
    likelihood = likelihood or (lambda loc: dist.Normal(loc, 1.0))
    with pyro.plate("data", len(x)) if plate else contextlib.nullcontext():
        z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
        value = x if observed is None else observed(x)
        pyro.sample("obs", likelihood(z @ _WEIGHTS).to_event(1), obs=value)


def gaussian_guide(x, plate=True, plate_size=None):
    with pyro.plate("data", plate_size or len(x)) if plate else contextlib.nullcontext():
        pyro.sample("z", dist.Normal(x @ _ENCODER, 0.8).to_event(1))


def no_sites(x):
    pass


def factor_guide(x):
    # Pyro's Trace_ELBO subtracts a guide's factor (here: an ELBO 3 nats lower), vi_vae's
    # weights took q at the latent sites alone: the two gave different numbers silently
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x @ _ENCODER, 0.8).to_event(1))
        pyro.factor("shift", x.new_full((len(x),), 3.0), has_rsample=True)


def deterministic_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x @ _ENCODER, 0.8).to_event(1))
        pyro.deterministic("norm", x.norm(dim=-1))


def global_scale_model(x):
    # a Bayesian model's global latent beside the data plate (Pyro's tutorials' shape)
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(z @ _WEIGHTS, scale).to_event(1), obs=x)


def global_scale_guide(x):
    pyro.sample("scale", dist.LogNormal(0.0, 0.5))
    gaussian_guide(x)


def gaussian_x(num_points=10):
    return torch.randn(num_points, 3, generator=torch.Generator().manual_seed(2))


def with_nan(x):
    x = x.clone()
    x[3, 1] = torch.nan
    return x


#: check broken -> (model, guide, x, what the error must say)
BROKEN_CHECKS = {
    "the guide lacks a latent site of the model": (
        gaussian_model,
        no_sites,
        gaussian_x(),
        r"guide has no sample site for the model's latent site\(s\) \['z'\]",
    ),
    "no plate at all": (
        partial(gaussian_model, plate=False),
        partial(gaussian_guide, plate=False),
        gaussian_x(),
        r"site 'z' is outside pyro.plate\('data'\).*uses no pyro.plate",
    ),
    "a global latent beside the data plate": (
        global_scale_model,
        global_scale_guide,
        gaussian_x(),
        r"site 'scale' is outside pyro.plate\('data'\).*other sites are in it: sample 'scale' "
        r"once per data point .* or make it a parameter",
    ),
    "a factor in the guide": (
        gaussian_model,
        factor_guide,
        gaussian_x(),
        r"the guide observes site\(s\) \['shift'\] \(pyro.factor, or obs=\).*put the factor in "
        r"the model .*to estimate log p\(x\), leave a term that only trains",
    ),
    "no sample sites": (no_sites, no_sites, gaussian_x(), r"the model has no sample sites"),
    "a plate of another size than x, on which the pair fails": (
        gaussian_model,
        partial(gaussian_guide, plate_size=4),
        gaussian_x(),
        r"pyro.plate\('data'\) has size 4 but x has 10 rows, and the model/guide failed",
    ),
    "observed data the distribution broadcasts": (
        partial(gaussian_model, observed=lambda x: x[:, :1]),
        gaussian_guide,
        gaussian_x(),
        r"data observed at site 'obs' have shape \[10, 1\].*batch and event shape \[10, 3\]",
    ),
    "observed data with NaN": (  # (in x, the guide's own validation would refuse it first)
        partial(gaussian_model, observed=with_nan),
        gaussian_guide,
        gaussian_x(),
        r"data observed at site 'obs' contain NaN or infinite values",
    ),
    "observed data outside the likelihood's support": (
        partial(gaussian_model, likelihood=lambda loc: dist.Bernoulli(logits=loc)),
        gaussian_guide,
        gaussian_x(),
        r"data observed at site 'obs' lie outside the support .*values 0 or 1",
    ),
}


def test_the_gaussian_pair_passes_every_check():
    """The control of BROKEN_CHECKS: the unbroken pair passes, and its layout is learned."""
    layout = check_evaluated_pair(gaussian_model, gaussian_guide, gaussian_x(), {}, "data")
    assert layout == PairLayout(plate_nesting=1, batch_size=10, plate_size=10)


@pytest.mark.parametrize("check", BROKEN_CHECKS)
def test_a_pair_breaking_one_check_is_refused_naming_it(check):
    model, guide, x, says = BROKEN_CHECKS[check]
    with pytest.raises(InputError, match=says):
        check_evaluated_pair(model, guide, x, {}, "data")


# -- the checks run once -----------------------------------------------------------------


def test_the_contract_is_checked_at_the_first_call_only():
    """After the first call, a step runs the guide and the model once each (one vectorized pass).

    The first runs each four times: the trial, the particle check's run without particles
    and its run with two, and the pass.
    """
    pair = PyroStyleVAE()
    calls = {"model": 0, "guide": 0}

    def counted(name, function):
        def wrapped(x):
            calls[name] += 1
            return function(x)

        return wrapped

    model, guide = counted("model", pair.model), counted("guide", pair.guide)
    estimator = DReG(5)
    x = data()[0]
    estimator.loss_and_grads(model, guide, x)
    first = dict(calls)
    estimator.loss_and_grads(model, guide, x)
    assert first == {"model": 4, "guide": 4}
    assert {name: calls[name] - first[name] for name in calls} == {"model": 1, "guide": 1}


def test_the_guide_parameters_are_found_under_no_grad_too():
    """A first call under torch.no_grad (a loss before the gradient steps) still finds them."""
    estimator = DReG(5)
    pair = PyroStyleVAE(encoder_in="model")
    with torch.no_grad():
        estimator.loss(pair.model, pair.guide, data()[0])
    assert estimator._guide_parameters == {
        f"encoder$$${name}" for name, _ in pair.encoder.named_parameters()
    }


def test_a_mini_batch_scaled_by_the_plate_is_the_elbo_s_and_refused_by_iwae():
    """x holds the subsample (pyro.plate("data", N, subsample=rows)): unbiased for the ELBO.

    With the same seed the draws are the same, so the loss is 40/10 times that of the
    unscaled plate (to float rounding, 1e-6).
    """

    def pair(size):
        def plate(x):
            return pyro.plate("data", size or len(x), subsample=torch.arange(len(x)))

        def model(x):
            with plate(x):
                z = pyro.sample("z", dist.Normal(x.new_zeros(len(x)), 1.0))
                pyro.sample("obs", dist.Normal(z, 1.0), obs=x[:, 0])

        def guide(x):
            with plate(x):
                pyro.sample("z", dist.Normal(x[:, 0] / 2, 0.7))

        return model, guide

    x = data()[0]
    pyro.set_rng_seed(5)
    scaled = ELBO(20).loss(*pair(40), x)
    pyro.set_rng_seed(5)
    unscaled = ELBO(20).loss(*pair(None), x)
    assert scaled == pytest.approx(4 * unscaled, rel=1e-6)
    with pytest.raises(InputError, match="biased"):
        IWAE(5).loss(*pair(40), x)


def test_an_estimator_checks_again_when_its_settings_change():
    """IWAE(1) takes a subsampled plate (K = 1 is the ELBO); set to K = 5 it must refuse."""
    pair = PyroStyleVAE("subsampled")
    estimator = IWAE(1)
    x = data()[0]
    estimator.loss(pair.model, pair.guide, x)
    estimator.num_particles = 5
    with pytest.raises(InputError, match="biased"):
        estimator.loss(pair.model, pair.guide, x)


def test_a_distribution_refusing_nan_parameters_is_not_blamed_on_the_particle_dimension():
    """Only a particle (of several) with a NaN parameter fails: a divergence, not a shape error."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(x)), 1.0))
            loc = torch.where(z > 3.0, torch.nan, z) if z.dim() > 1 else z
            pyro.sample("obs", dist.Normal(loc, 1.0), obs=x[:, 0])

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x.new_zeros(len(x)), 10.0))

    with pytest.raises(ValueError, match="Expected parameter loc") as caught:
        IWAE(50).loss(model, guide, data()[0])
    assert not isinstance(caught.value, InputError)


def test_gradient_snr_counts_an_encoder_registered_in_the_model_as_the_guide_s():
    # the SNR split by the guide trace alone counted such an encoder as the model's
    from vi_vae import gradient_snr

    snrs = {}
    for encoder_in in ("guide", "model"):
        pyro.clear_param_store()
        pair = PyroStyleVAE(encoder_in=encoder_in)
        snr = gradient_snr(pair.model, pair.guide, IWAE(5), data()[0], num_draws=4, seed=0)
        assert any(name.startswith("encoder") for name in snr.guide_names), encoder_in
        assert not any(name.startswith("encoder") for name in snr.model_names), encoder_in
        snrs[encoder_in] = snr
    # the same draws, the same parameters: the same SNRs wherever the encoder is registered
    assert snrs["model"].guide == pytest.approx(snrs["guide"].guide, rel=1e-6)
    assert snrs["model"].model == pytest.approx(snrs["guide"].model, rel=1e-6)


def _masked_pair(use_obs_mask):
    # z ~ N(0, 1), x_d ~ N(z, 1) for D = 4 dims; a point's mask says whether x is observed.
    # The guide is the exact posterior given what is observed: the prior for a hidden point.
    dims = 4

    def model(x, mask):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            likelihood = dist.Normal(z.expand(z.shape[:-1] + (dims,)), 1.0).to_event(1)
            if use_obs_mask:
                pyro.sample("x", likelihood, obs=x, obs_mask=mask)
            else:
                with pyro.poutine.mask(mask=mask):
                    pyro.sample("x", likelihood, obs=x)

    def guide(x, mask):
        loc = torch.where(mask, x.sum(-1) / (1 + dims), 0.0).unsqueeze(-1)
        scale = torch.where(mask, (1 + dims) ** -0.5, 1.0).unsqueeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide, dims


def test_obs_mask_is_refused_naming_the_mask_that_gives_log_p_of_the_observed_entries():
    # obs_mask makes a latent site of the hidden entries, which the guide does not sample;
    # the refusal says to mask the likelihood instead, which gives log p(x_obs) exactly
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([True, True, True, True, False, False])
    model, guide, dims = _masked_pair(use_obs_mask=True)
    with pytest.raises(InputError, match=r"'x_unobserved'.*poutine\.mask\(mask=\.\.\.\) instead"):
        log_marginal_likelihood(model, guide, x, 10, mask=mask, seed=0)
    model, guide, dims = _masked_pair(use_obs_mask=False)
    with pytest.warns(UnobservedPointsWarning, match=r"masked: 2 of 6; .*log p\(x\) is 0"):
        estimate = log_marginal_likelihood(model, guide, x, 10, mask=mask, seed=0)
    marginal = dist.MultivariateNormal(torch.zeros(dims), torch.eye(dims) + torch.ones(dims, dims))
    exact = torch.where(mask, marginal.log_prob(x), 0.0).double()
    # the exact posterior as guide: every weight is p(x_obs), up to float32 rounding
    torch.testing.assert_close(estimate.log_likelihood, exact, atol=1e-5, rtol=0)


def _wider_guide_pair():
    # z ~ Exponential(1) ≥ 0, x ~ N(z, 1); the guide is a normal on the whole line
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Exponential(torch.ones(1)).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.5 * x, 1.0).to_event(1))

    return model, guide


@pytest.mark.parametrize(
    "entry", ["log_marginal_likelihood", "annealed_importance_sampling", "fit"]
)
def test_a_guide_wider_than_the_prior_is_refused_where_its_draws_would_be_scored_wrongly(entry):
    # with Pyro's validation off, torch scores z < 0 under the exponential as a finite
    # density (log 1 - z): log p(x) came out 1 nat above the exact value, silently
    from vi_vae import annealed_importance_sampling, fit

    model, guide = _wider_guide_pair()
    x = torch.rand(5, 1, generator=torch.Generator().manual_seed(0)) * 2
    calls = {
        "log_marginal_likelihood": lambda: log_marginal_likelihood(model, guide, x, 10, seed=0),
        "annealed_importance_sampling": lambda: annealed_importance_sampling(
            model, guide, x, num_steps=2, num_chains=2, seed=0
        ),
        "fit": lambda: fit(model, guide, x, epochs=1, batch_size=5),
    }
    with pyro.validation_enabled(False):
        with pytest.raises(InputError, match=r"wider than the prior's at latent site\(s\) 'z'"):
            calls[entry]()


def test_a_point_mass_guide_in_the_prior_s_support_is_accepted():
    # AutoDelta declares its event's support (the real line) but proposes one value, which
    # it keeps in the prior's support (it optimizes an unconstrained value mapped into it)
    from pyro.infer.autoguide import AutoDelta

    from vi_vae import fit

    model, _ = _wider_guide_pair()
    x = torch.rand(8, 1, generator=torch.Generator().manual_seed(0))
    pyro.clear_param_store()
    with pytest.warns(GuideSupportWarning, match=r"\['z'\] from a point mass \(Delta\)"):
        result = fit(model, AutoDelta(model), x, epochs=1, batch_size=8)
    assert len(result.history) == 1


def test_a_transformed_guide_is_judged_by_its_draws_not_its_declared_support():
    # torch declares a TransformedDistribution's support as its last transform's codomain:
    # a flow onto the positive line (biject_to ends in an affine map) declares the real
    # line, and is accepted; an affine map of a normal far below 0 is refused by its draws
    from torch.distributions import biject_to, constraints
    from torch.distributions.transforms import AffineTransform

    model, _ = _wider_guide_pair()
    x = torch.rand(5, 1, generator=torch.Generator().manual_seed(0)) * 2

    def guide_of(transform, loc):
        def guide(x):
            with pyro.plate("data", x.shape[0]):
                base = dist.Normal(torch.full_like(x, loc), 1.0)
                pyro.sample("z", dist.TransformedDistribution(base, [transform]).to_event(1))

        return guide

    onto_support = guide_of(biject_to(constraints.nonnegative), 0.0)
    estimate = log_marginal_likelihood(model, onto_support, x, 10, seed=0)
    assert estimate.num_points == 5 and estimate.log_likelihood.isfinite().all()
    below = guide_of(AffineTransform(0.0, 1.0), -5.0)  # P(a draw ≥ 0) = 3e-7 per point
    with pyro.validation_enabled(False):
        with pytest.raises(InputError, match=r"wider than the prior's at latent site\(s\) 'z'"):
            log_marginal_likelihood(model, below, x, 10, seed=0)


def test_a_guide_may_record_a_value_with_pyro_deterministic():
    # the control of "a factor in the guide": a deterministic site is observed too, with
    # log density 0, and stays allowed
    check_pair(gaussian_model, deterministic_guide, (gaussian_x(),), {})
    estimate = log_marginal_likelihood(gaussian_model, deterministic_guide, gaussian_x(), 10)
    assert estimate.log_likelihood.isfinite().all()
