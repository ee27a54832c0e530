"""AISSettings: declared once, taken by AIS and BDMC, carried by results, embedded by the app."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from linear_gaussian import LinearGaussian

from vi_vae import InputError, annealed_importance_sampling, bdmc
from vi_vae.app.config import AISConfig, RunConfig
from vi_vae.app.metrics import AISSummary, RunMetrics
from vi_vae.app.schema import from_json, to_json
from vi_vae.evaluation import AISSettings

LG = LinearGaussian()
X = LG.sample(3)
DOCS = Path(__file__).parents[2] / "docs"


def test_settings_are_frozen_and_checked_once_at_construction():
    settings = AISSettings(num_steps=5, num_chains=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.num_steps = 6
    with pytest.raises(InputError, match="leapfrog_steps must be an integer >= 1"):
        AISSettings(leapfrog_steps=0)
    with pytest.raises(InputError, match="settings must be an instance of AISSettings"):
        annealed_importance_sampling(LG.model, LG.mean_field_guide, X, {"num_steps": 3})


def test_a_settings_object_and_its_keyword_shortcuts_give_the_same_run():
    settings = AISSettings(num_steps=6, num_chains=3, leapfrog_steps=2)
    given = annealed_importance_sampling(LG.model, LG.mean_field_guide, X, settings, seed=0)
    shortcuts = annealed_importance_sampling(
        LG.model, LG.mean_field_guide, X, num_steps=6, num_chains=3, leapfrog_steps=2, seed=0
    )
    assert given.settings == shortcuts.settings == settings
    assert torch.equal(given.log_weights, shortcuts.log_weights)
    # a shortcut replaces that setting of the object given
    longer = annealed_importance_sampling(
        LG.model, LG.mean_field_guide, X, settings, num_steps=7, seed=0
    )
    assert longer.settings == dataclasses.replace(settings, num_steps=7)


def test_keywords_that_are_not_settings_reach_the_model():
    seen = []

    def model(x, scale=1.0):
        seen.append(scale)
        LG.model(x)

    settings = AISSettings(num_steps=2, num_chains=2, initial="prior")
    annealed_importance_sampling(model, None, X, settings, scale=3)
    assert seen and set(seen) == {3}


def test_bdmc_results_carry_their_settings():
    settings = AISSettings(num_steps=4, num_chains=2, leapfrog_steps=2)
    result = bdmc(LG.model, LG.mean_field_guide, torch.zeros(2, 3, dtype=torch.float64), settings)
    assert result.lower.settings == result.upper.settings == settings


def test_the_app_config_embeds_the_library_settings():
    config = RunConfig().replace("ais", num_points=3, num_steps=50)
    assert isinstance(config.ais, AISSettings)
    assert config.ais.settings == AISSettings(num_steps=50)
    with pytest.raises(InputError, match="ais.num_chains must be an integer >= 1"):
        RunConfig().replace("ais", num_chains=0)
    with pytest.raises(InputError, match="ais.num_points must be an integer >= 1"):
        AISConfig(num_points=0)


def test_stored_json_of_earlier_versions_still_loads():
    # config.json and comparison.json held the AIS section flat (no step_size,
    # target_acceptance): those take their defaults
    stored = json.loads((DOCS / "compare-mnist-5k" / "comparison.json").read_text())
    config = RunConfig.from_json(stored["settings"])
    assert config.ais.settings == AISSettings(num_steps=1000, num_chains=16, leapfrog_steps=10)
    # metrics.json held the settings flat in the AIS summary: they are nested now
    estimate = {
        "method": "ais",
        "log_likelihood": -90.0,
        "standard_error": 1.0,
        "monte_carlo_standard_error": 0.1,
        "mean_effective_sample_size": 3.0,
        "share_pareto_k_above": None,
        "pareto_k_reason": None,
        "num_particles": 4,
        "num_points": 3,
    }
    old = {
        "estimate": estimate,
        "importance_sampling": {**estimate, "method": "importance-sampling"},
        "gap": 0.5,
        "gap_standard_error": 0.2,
        "max_gap": 1.0,
        "mean_acceptance_rate": 0.7,
        "num_steps": 20,
        "num_chains": 4,
        "leapfrog_steps": 2,
        "schedule": "sigmoid",
        "initial": "guide",
    }
    metrics = from_json(RunMetrics, {"ais": old}, "metrics")
    assert isinstance(metrics.ais, AISSummary)
    assert metrics.ais.settings == AISSettings(num_steps=20, num_chains=4, leapfrog_steps=2)
    assert from_json(RunMetrics, to_json(metrics), "metrics") == metrics
