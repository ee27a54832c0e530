"""fit's replayed eager steps (vi_vae._replay): the same bits as Pyro's eager step, or no replay.

Each case trains twice from the same seed, once with the step replayed after
two eager steps and once with replay switched off, and requires every parameter
equal to the last bit (``torch.equal``: no tolerance, the graph makes the same
ATen calls in the same order) and the replay to have run.
"""

import gc
import weakref

import pytest
import torch
from torch import nn

import vi_vae._replay as replay
import vi_vae.train
from vi_vae import VAE, fit
from vi_vae.compiled import CompiledCache
from vi_vae.estimators import ESTIMATOR_SPECS, ParticleEstimator, parse_estimator

#: 60 points in batches of 16: three full batches and a short one, two shapes to replay
DATA = (torch.rand(60, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float()
#: every registered estimator with per-point weights, by its example spelling
SPELLINGS = [
    spec.example
    for spec in ESTIMATOR_SPECS.values()
    if isinstance(parse_estimator(spec.example), ParticleEstimator)
]


@pytest.fixture
def replays(monkeypatch):
    """A fresh replay cache that traces a (pair, shape) after its second eager step."""
    cache = CompiledCache(replay=True, trace_after=2, max_groups=replay._REPLAYED.max_groups)
    monkeypatch.setattr(replay, "_REPLAYED", cache)
    return cache


def train(vae_options, replayed, monkeypatch, **settings):
    """The parameters after ``fit`` of a fresh VAE, with or without replay."""
    if not replayed:
        monkeypatch.setattr(vi_vae.train, "replaying", lambda loss, model, guide: loss)
    vae = VAE(12, seed=0, **vae_options)
    fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16, **settings)
    return [parameter.detach().clone() for parameter in vae.parameters()]


def assert_bitwise_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_estimator_s_replayed_fit_is_its_eager_fit_to_the_bit(spelling, replays, monkeypatch):
    options = {"latent_dim": 2, "hidden_sizes": (8,)}
    replayed = train(options, True, monkeypatch, loss=spelling)
    assert replays.num_compiled == 2  # the full batch and the short one were replayed
    assert_bitwise_equal(replayed, train(options, False, monkeypatch, loss=spelling))


@pytest.mark.parametrize(
    "options",
    [
        {"latent_dims": (3, 2), "hidden_sizes": (8,), "prior": "vamp"},
        {"latent_dim": 2, "hidden_sizes": (8,), "likelihood": "continuous-bernoulli"},
        {"latent_dim": 2, "hidden_sizes": (8,), "latent_family": "laplace"},
        {"latent_dim": 2, "hidden_sizes": (8,), "flow": "iaf"},
    ],
    ids=["two-layers-vamp", "continuous-bernoulli", "laplace", "iaf"],
)
def test_the_templates_replayed_fits_are_their_eager_fits_to_the_bit(options, replays, monkeypatch):
    replayed = train(options, True, monkeypatch, loss="iwae:3")
    assert replays.num_compiled == 2
    assert_bitwise_equal(replayed, train(options, False, monkeypatch, loss="iwae:3"))


def test_a_kl_warm_up_is_replayed_to_the_bit(replays, monkeypatch):
    # the weight is a tensor the trace reads by reference: one trace per shape serves
    # every epoch's weight
    options = {"latent_dim": 2, "hidden_sizes": (8,)}
    replayed = train(options, True, monkeypatch, kl_warmup_epochs=3)
    assert replays.num_compiled == 2
    assert_bitwise_equal(replayed, train(options, False, monkeypatch, kl_warmup_epochs=3))


def test_a_second_fit_of_the_same_vae_replays_without_tracing_again(replays):
    vae = VAE(12, 2, hidden_sizes=(8,), seed=0)
    fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
    traced = replays.num_compiled
    fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
    assert traced == 2 and replays.num_compiled == traced


@pytest.mark.parametrize(
    "options",
    [
        {"latent_dim": 2, "hidden_sizes": (8,), "latent_family": "gamma"},
        {"latent_dims": (3, 2), "hidden_sizes": (8,), "flow": "iaf", "prior": "vamp"},
    ],
    ids=["gamma", "two-layers-iaf-vamp"],
)
def test_a_pair_that_cannot_be_traced_steps_eagerly_without_a_word(options, replays, monkeypatch):
    # gamma draws by torch's _standard_gamma, which cannot be lifted out of a trace, and
    # the upper layers' IAF reads its permutation as Python ints; nobody asked for
    # compile, so no CompileWarning (warnings are errors here)
    replayed = train(options, True, monkeypatch)
    assert replays.num_compiled == 0
    assert_bitwise_equal(replayed, train(options, False, monkeypatch))


class OwnVAE(VAE):
    def model(self, x):
        super().model(x)


class Counter(nn.Module):
    """A network with Python state: a replayed step would freeze it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(12, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def pairs_vi_vae_cannot_prove():
    vae = VAE(12, 2, hidden_sizes=(8,), seed=0)
    subclass = OwnVAE(12, 2, hidden_sizes=(8,), seed=0)
    dropout = VAE(12, 2, encoder=nn.Sequential(nn.Linear(12, 4), nn.Dropout(0.5)), seed=0)
    stateful = VAE(12, 2, encoder=Counter(), seed=0)

    def model(x):
        vae.model(x)

    def guide(x):
        vae.guide(x)

    return {
        "a user's functions": (model, guide),
        "a subclass's model": (subclass.model, subclass.guide),
        "another VAE's guide": (vae.model, subclass.guide),
        "a dropout encoder": (dropout.model, dropout.guide),
        "a user's module": (stateful.model, stateful.guide),
    }


@pytest.mark.parametrize("case", list(pairs_vi_vae_cannot_prove()))
def test_a_pair_whose_steps_vi_vae_cannot_prove_alike_is_not_replayed(case):
    model, guide = pairs_vi_vae_cannot_prove()[case]
    assert not replay.replayable(model, guide)
    loss = parse_estimator("elbo")
    assert replay.replaying(loss, model, guide) is loss


def test_the_templates_are_replayable_and_a_compiled_loss_is_left_alone():
    vae = VAE(12, 2, hidden_sizes=(8,), seed=0)
    assert replay.replayable(vae.model, vae.guide)
    replayed = replay.replaying(parse_estimator("elbo"), vae.model, vae.guide)
    assert replayed._replay is replay._REPLAYED
    compiled = parse_estimator("elbo", compile=True)
    assert replay.replaying(compiled, vae.model, vae.guide) is compiled


def test_a_setting_changed_between_fits_is_seen_not_replayed_over(replays, monkeypatch):
    # the likelihood's scale is a Python float the trace took as a constant: the second
    # fit must not replay the first one's graph
    def train_twice():
        vae = VAE(12, 2, hidden_sizes=(8,), likelihood="gaussian", seed=0)
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
        vae.likelihood.scale = 0.5
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
        return [parameter.detach().clone() for parameter in vae.parameters()]

    replayed = train_twice()
    assert replays.num_compiled == 4  # two shapes under each scale
    monkeypatch.setattr(vi_vae.train, "replaying", lambda loss, model, guide: loss)
    assert_bitwise_equal(replayed, train_twice())


def test_a_hook_registered_after_the_trace_runs_on_every_step(replays, monkeypatch):
    def calls_of_a_hook_registered_between_fits():
        vae = VAE(12, 2, hidden_sizes=(8,), seed=0)
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
        calls = []
        vae.decoder.register_forward_hook(lambda module, inputs, output: calls.append(1))
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
        return len(calls)

    replayed = calls_of_a_hook_registered_between_fits()
    monkeypatch.setattr(vi_vae.train, "replaying", lambda loss, model, guide: loss)
    assert replayed == calls_of_a_hook_registered_between_fits() >= 12


def test_the_replay_cache_keeps_no_more_than_two_models_alive(replays):
    # the cache lives as long as the process; its groups hold their model and guide
    models = []
    for seed in range(3):
        vae = VAE(12, 2, hidden_sizes=(8,), seed=seed)
        fit(vae.model, vae.guide, DATA, epochs=3, batch_size=16)
        models.append(weakref.ref(vae))
        del vae
    gc.collect()
    assert replays.num_compiled == 6
    assert models[0]() is None and models[2]() is not None
