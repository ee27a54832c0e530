"""One rule for every settings object and its keyword shortcuts (vi_vae.settings).

Every settings class, and every entry point that takes one, behaves alike: a shortcut
replaces its field (and the result is checked again), a declared keyword left at None
changes nothing, an unknown name is a TypeError that lists the accepted names, and a
settings argument of another type is an InputError.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from tiny_pair import VAE_4, X

from vi_vae import (
    VAE,
    ExecutionOptions,
    GapSettings,
    ImportanceSettings,
    InputError,
    TrainSettings,
    annealed_importance_sampling,
    auto_annealed_importance_sampling,
    bdmc,
    fit,
    importance_sampling,
    inference_gaps,
)
from vi_vae.evaluation import AISSettings, AutoAISSettings
from vi_vae.settings import merge
from vi_vae.templates import Template

# (base settings, a field, a new valid value, an invalid value): one per settings class
CLASSES = {
    "train": (TrainSettings(epochs=1), "epochs", 3, 0),
    "importance": (ImportanceSettings(num_particles=10), "num_particles", 20, 0),
    "ais": (AISSettings(num_steps=5), "num_steps", 7, 0),
    "gaps": (GapSettings(local_steps=5), "local_steps", 9, 1),
    "execution": (ExecutionOptions(chunk_size=64), "chunk_size", 8, 0),
    "template": (Template(hidden_sizes=(8,)), "hidden_sizes", (4,), (0,)),
}


@pytest.mark.parametrize("name", CLASSES)
def test_a_shortcut_replaces_its_field_and_is_checked_again(name):
    base, field, value, bad = CLASSES[name]
    kind = type(base)
    built = kind.build(base, {field: value})
    assert built == dataclasses.replace(base, **{field: value}) != base
    assert kind.build(base, {}) is base
    assert kind.build(None, {field: value}) == dataclasses.replace(kind(), **{field: value})
    with pytest.raises(InputError, match=field):
        kind.build(base, {field: bad})


@pytest.mark.parametrize("name", CLASSES)
def test_split_takes_the_shortcuts_out_of_the_model_keywords(name):
    # an entry point whose **kwargs hold both (annealed_importance_sampling's)
    base, field, value, bad = CLASSES[name]
    built, rest = type(base).split(base, {field: value, "ys": 1})
    assert built == dataclasses.replace(base, **{field: value})
    assert rest == {"ys": 1}
    assert type(base).split(base, {"ys": 1}) == (base, {"ys": 1})
    with pytest.raises(InputError, match=field):
        type(base).split(base, {field: bad})


@pytest.mark.parametrize("name", CLASSES)
def test_an_unknown_name_is_a_type_error_naming_the_function_and_the_fields(name):
    base, *_ = CLASSES[name]
    kind = type(base)
    with pytest.raises(TypeError, match=r"^train\(\) got unexpected keyword arguments \['nope'\]"):
        kind.build(base, {"nope": 1}, owner="train")
    with pytest.raises(TypeError) as error:
        kind.build(base, {"nope": 1})
    message = str(error.value)
    assert message.startswith(f"{kind.__name__}.build()")
    assert all(f.name in message for f in dataclasses.fields(kind))


@pytest.mark.parametrize("name", CLASSES)
def test_settings_of_another_type_are_refused_naming_the_argument(name):
    base, *_ = CLASSES[name]
    argument = {"execution": "execution", "template": "template"}.get(name, "settings")
    expected = f"{argument} must be an instance of {type(base).__name__} or None"
    with pytest.raises(InputError, match=expected):
        type(base).build(dataclasses.asdict(base), {})


@pytest.mark.parametrize(
    ("base", "field"),
    [(ExecutionOptions(chunk_size=64), "chunk_size"), (Template(flow="iaf"), "flow")],
    ids=["execution", "template"],
)
def test_a_declared_keyword_left_at_none_is_not_passed(base, field):
    # their shortcuts are keywords with the default None: None cannot mean "set to None"
    assert type(base).build(base, {field: None}) == base


@pytest.mark.parametrize(
    ("base", "field"),
    [(AISSettings(), "target_acceptance"), (TrainSettings(patience=3), "patience")],
    ids=["ais", "train"],
)
def test_a_keyword_collected_by_kwargs_sets_none(base, field):
    assert getattr(base, field) is not None
    assert getattr(type(base).build(base, {field: None}), field) is None


def test_a_nested_settings_object_takes_its_own_fields_as_shortcuts():
    base = GapSettings(ais=AISSettings(num_chains=5, leapfrog_steps=3))
    built = GapSettings.build(base, {"num_chains": 2, "local_steps": 4})
    assert built.ais == AISSettings(num_chains=2, leapfrog_steps=3)
    assert built.local_steps == 4
    replaced = GapSettings.build(base, {"ais": AISSettings(num_steps=9), "num_chains": 2})
    assert replaced.ais == AISSettings(num_steps=9, num_chains=2)
    assert merge(GapSettings, None, {}) == GapSettings()


SMALL_AIS = AISSettings(num_steps=2, num_chains=2, leapfrog_steps=1)


def _pair():
    vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    return vae.model, vae.guide


def _ran_with(estimate, table):
    """The ImportanceSettings an importance-sampling result ran with: its K and its k."""
    return ImportanceSettings(estimate.num_particles, tuple(b.num_particles for b in table))


def _carried(run, settings, shortcut):
    """The settings the entry point ran with, given ``settings`` and one shortcut."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a two-step AIS is rightly called unconverged
        return run(settings, shortcut)


ENTRY_POINTS = {
    "fit": (
        TrainSettings(epochs=1, batch_size=2, seed=3),
        {"batch_size": 3},
        lambda s, k: fit(*_pair(), X, s, **k).settings,
    ),
    "importance_sampling": (
        ImportanceSettings(num_particles=10, bound_particles=(1, 5)),
        {"num_particles": 12},
        lambda s, k: _ran_with(
            *importance_sampling(VAE_4.model, VAE_4.guide, X, settings=s, seed=0, **k)
        ),
    ),
    "annealed_importance_sampling": (
        SMALL_AIS,
        {"leapfrog_steps": 2},
        lambda s, k: (
            annealed_importance_sampling(VAE_4.model, VAE_4.guide, X, s, seed=0, **k).settings
        ),
    ),
    "bdmc": (
        SMALL_AIS,
        {"target_acceptance": None},
        lambda s, k: bdmc(VAE_4.model, VAE_4.guide, X, s, seed=0, **k).upper.settings,
    ),
    "auto_annealed_importance_sampling": (
        SMALL_AIS,
        {"num_chains": 3},
        lambda s, k: dataclasses.replace(
            auto_annealed_importance_sampling(
                VAE_4.model,
                VAE_4.guide,
                X,
                s,
                AutoAISSettings(start_num_steps=2, max_num_steps=2, bdmc_num_points=0),
                seed=0,
                **k,
            ).estimate.settings,
            num_steps=2,  # the rounds set T
        ),
    ),  # fmt: skip
    "inference_gaps": (
        GapSettings(local_steps=2, local_particles=1, num_particles=2, ais=SMALL_AIS),
        {"num_particles": 3},
        lambda s, k: inference_gaps(VAE_4.model, VAE_4.guide, X, s, seed=0, **k).settings,
    ),
    "VAE": (
        Template(hidden_sizes=(8,)),
        {"hidden_sizes": (4,)},
        lambda s, k: VAE(4, 2, template=s, seed=0, **k).template,
    ),
}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_entry_point_runs_with_the_settings_its_shortcut_edits(name):
    settings, shortcut, run = ENTRY_POINTS[name]
    carried = _carried(run, settings, shortcut)
    assert carried == dataclasses.replace(settings, **shortcut) != settings


def test_the_execution_shortcuts_edit_the_execution_options():
    # chunk_size decides how many passes AIS makes (one progress call per step per pass):
    # 1 pair per pass is 3 passes for 3 points, where 64 was one
    calls = []

    def count(execution, **shortcuts):
        calls.clear()
        annealed_importance_sampling(
            VAE_4.model, VAE_4.guide, X, num_steps=2, num_chains=1, target_acceptance=None,
            seed=0, execution=execution, on_step=lambda done, total: calls.append(total),
            **shortcuts,
        )  # fmt: skip
        return calls[-1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert count(ExecutionOptions(chunk_size=64)) == 2
        assert count(ExecutionOptions(chunk_size=64), chunk_size=1) == 6
        assert count(ExecutionOptions(chunk_size=64), chunk_size=None) == 2


def test_fit_refuses_an_unknown_keyword_listing_its_settings():
    names = ", ".join(f.name for f in dataclasses.fields(TrainSettings))
    with pytest.raises(TypeError, match=rf"^fit\(\) .*\['run_dir'\].*TrainSettings: {names}$"):
        fit(VAE_4.model, VAE_4.guide, X, run_dir="runs/x")
