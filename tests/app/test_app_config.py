"""The run config: every field checked, each error naming its field; defaults are the library's."""

import dataclasses
import json

import pytest
import torch

from vi_vae import VAE, ImportanceSettings, fit
from vi_vae.app.config import EvaluationConfig, RunConfig
from vi_vae.app.fingerprint import FINGERPRINT_TRAINING_FIELDS, changed_setting, fingerprint
from vi_vae.app.schema import SchemaError, stored_fields
from vi_vae.cli.flags import FLAGS
from vi_vae.evaluation import DEFAULT_BOUND_PARTICLES, DEFAULT_NUM_PARTICLES
from vi_vae.templates import Template
from vi_vae.train import TrainSettings


def test_defaults_are_the_library_s():
    evaluation = RunConfig().evaluation
    assert evaluation.num_particles == DEFAULT_NUM_PARTICLES
    assert evaluation.bound_particles == DEFAULT_BOUND_PARTICLES


def test_binarization_is_resolved_and_recorded():
    assert RunConfig().validated().data.binarization == "dynamic"
    continuous = RunConfig().replace("model", likelihood="gaussian").validated()
    assert continuous.data.binarization == "none"


@pytest.mark.parametrize(
    ("section", "changes", "field"),
    [
        ("data", {"dataset": "cifar"}, "data.dataset"),
        ("data", {"max_train": 0}, "data.max_train"),
        ("model", {"latent_family": "hyperbolic"}, "model.latent_family"),
        ("model", {"latent_dim": 0}, "model.latent_dim"),
        ("model", {"hidden_sizes": ()}, "model.hidden_sizes"),
        ("model", {"likelihood_options": {"sigma": 0.1}}, "model.likelihood_options"),
        ("training", {"estimator": "iwae:x"}, "training.estimator"),
        ("training", {"epochs": -5}, "training.epochs"),
        ("training", {"learning_rate": 0.0}, "training.learning_rate"),
        ("training", {"kl_weight": float("inf")}, "training.kl_weight"),
        ("training", {"seed": -1}, "training.seed"),
        ("training", {"seed": 2**40}, "training.seed"),
        ("training", {"device": "tpu"}, "training.device"),
        ("evaluation", {"num_particles": 0}, "evaluation.num_particles"),
        ("evaluation", {"num_points": 0}, "evaluation.num_points"),
        ("evaluation", {"bound_particles": (1, 0)}, "evaluation.bound_particles"),
    ],
)
def test_bad_values_name_their_field(section, changes, field):
    with pytest.raises(SchemaError) as caught:
        RunConfig().replace(section, **changes).validated()
    assert caught.value.field == field


def test_every_config_field_has_exactly_one_flag():
    fields = {
        f"{section.name}.{item.name}"
        for section in dataclasses.fields(RunConfig)
        for item in stored_fields(type(getattr(RunConfig(), section.name)))
    }  # the keys of config.json (a section leaves out what the run decides itself)
    assert sorted(field for flag in FLAGS for field in flag.fields) == sorted(fields)
    assert len({flag.flag("train") for flag in FLAGS}) == len(FLAGS)


def test_a_flat_version_1_config_is_refused_naming_the_sections():
    # 0.3 reads no 0.1 run directory (its checkpoint loads only unverified): the flat
    # keys of 0.1 are unknown fields, and the message lists the sections accepted
    flat = {"dataset": "mnist", "latent": "laplace", "eval_samples": 100}
    with pytest.raises(SchemaError) as refused:
        RunConfig.from_json(flat)
    assert str(refused.value) == (
        "config has unknown fields ['dataset', 'eval_samples', 'latent']; "
        "accepted fields: data, model, training, evaluation, ais"
    )


def test_changed_setting_names_the_first_edited_setting_and_skips_unrecorded_ones():
    config = RunConfig()
    stored = fingerprint(config, 784)
    assert changed_setting(config, 784, stored) is None
    edited = config.replace("training", seed=7)
    assert changed_setting(edited, 784, stored) == ("training.seed", 7, config.training.seed)
    del stored["training"]  # an older checkpoint recorded no training settings
    assert changed_setting(edited, 784, stored) is None


def test_an_estimator_is_stored_in_its_one_spelling_and_checked_against_any_spelling():
    # `train --estimator iwae:05` kept "iwae:05" in config.json and the report, where
    # `compare` calls the same estimator "iwae:5"
    config = RunConfig().replace("training", estimator=" iwae:05")
    assert config.training.estimator == "iwae:5"
    assert json.loads(json.dumps(config.to_json()))["training"]["estimator"] == "iwae:5"
    assert RunConfig().replace("training", estimator="vr:0.50:5").training.estimator == "vr:0.5:5"
    stored = fingerprint(config, 784)
    stored["training"]["estimator"] = "iwae:05"  # a checkpoint that kept it as typed
    assert changed_setting(config, 784, stored) is None
    stored["training"]["estimator"] = "iwae:6"
    assert changed_setting(config, 784, stored) == ("training.estimator", "iwae:5", "iwae:6")


def _tiny_fit(settings):
    """Train a small VAE on fixed random bits with ``settings``: its loss per epoch."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 6, generator=generator) > 0.5).float()
    vae = VAE(input_dim=6, latent_dim=2, hidden_sizes=[4], seed=0)
    return [record.train_loss for record in fit(vae.model, vae.guide, x, settings).history]


def test_the_training_and_model_sections_are_the_library_s_settings():
    # issue 17: the sections embed the library's objects, so fit takes the section itself;
    # it trains to the same bits as the library's settings with the same values
    config = RunConfig().replace("training", estimator="iwae:3", epochs=2, batch_size=16)
    assert isinstance(config.training, TrainSettings) and isinstance(config.model, Template)
    library = TrainSettings(loss="iwae:3", epochs=2, batch_size=16, device="cpu")
    assert _tiny_fit(config.training) == _tiny_fit(library)
    assert config.training.make_loss().num_particles == 3


@pytest.mark.parametrize(
    ("section", "name", "value", "message"),
    [
        ("training", "batch_size", 0, "training.batch_size must be an integer >= 1; got 0"),
        ("training", "kl_warmup_epochs", -1, "training.kl_warmup_epochs must be an integer >= 0"),
        ("training", "compile", "yes", "config.training.compile must be true or false"),
        ("model", "flow_layers", 0, "model.flow_layers must be an integer >= 1; got 0"),
        ("model", "latent_dims", [3, 0], "model.latent_dims must be integers >= 1"),
        ("model", "activation", "sigmoidal", "unknown activation 'sigmoidal'; accepted values"),
    ],
)
def test_a_stored_value_the_library_refuses_names_its_config_field(section, name, value, message):
    stored = RunConfig().to_json()
    stored[section][name] = value
    with pytest.raises(SchemaError) as refused:
        RunConfig.from_json(stored, "config")
    assert refused.value.field.removeprefix("config.") == f"{section}.{name}"
    assert message in str(refused.value)


def test_settings_the_run_decides_are_not_stored():
    stored = RunConfig().to_json()
    assert {"loss", "data_plate", "validation_num_particles"}.isdisjoint(stored["training"])
    assert "image_shape" not in stored["model"]
    stored["training"]["loss"] = "iwae:5"  # the loss is spelled by estimator alone
    with pytest.raises(SchemaError, match=r"config.training has unknown fields \['loss'\]"):
        RunConfig.from_json(stored, "config")


#: config.json as vi_vae 0.3.0 wrote it before the sections became library objects
#: (its keys in its order), with a deep IWAE run's values
STORED_BEFORE_THE_SECTIONS_WERE_SETTINGS = {
    "data": {"dataset": "mnist-5k", "data_dir": None, "binarization": "dynamic", "max_train": 512},
    "model": {
        "latent_family": "normal", "latent_dim": 4, "likelihood": "bernoulli",
        "likelihood_options": {}, "hidden_sizes": [32, 16], "activation": "relu",
        "architecture": "mlp", "latent_dims": [8, 4], "flow": None, "flow_layers": 2,
        "prior": "standard", "num_pseudo_inputs": 500,
    },
    "training": {
        "estimator": "iwae:3", "epochs": 2, "batch_size": 128, "learning_rate": 0.001,
        "kl_weight": 1.0, "kl_warmup_epochs": 2, "patience": None, "seed": 0,
        "device": "cpu", "compile": False,
    },
    "evaluation": {"num_particles": 20, "bound_particles": [1, 5, 50], "num_points": 64,
                   "compile": False},
    "ais": {"num_steps": 1000, "num_chains": 16, "schedule": "sigmoid", "leapfrog_steps": 10,
            "step_size": 0.05, "target_acceptance": 0.65, "initial": "guide", "num_points": None},
}  # fmt: skip


def test_a_config_json_written_before_the_sections_were_settings_loads_as_it_was():
    stored = STORED_BEFORE_THE_SECTIONS_WERE_SETTINGS
    config = RunConfig.from_json(json.loads(json.dumps(stored)), "config").validated()
    # the same values, written again with the same keys: nothing lost or added
    assert config.to_json() == stored
    # the fingerprint that version stored in the checkpoint, built from the stored values
    trained = {
        "model": stored["model"],
        "data": {"dataset": "mnist-5k", "binarization": "dynamic", "input_dim": 784,
                 "max_train": 512},
        "training": {name: stored["training"][name] for name in FINGERPRINT_TRAINING_FIELDS},
    }  # fmt: skip
    assert json.loads(json.dumps(fingerprint(config, 784))) == trained
    assert changed_setting(config, 784, trained) is None
    assert config.training.validation_num_particles == TrainSettings().validation_num_particles


def test_the_evaluation_section_is_the_settings_and_names_its_fields():
    section = RunConfig().evaluation
    assert isinstance(section, ImportanceSettings)
    assert ImportanceSettings.names() == ("num_particles", "bound_particles")
    assert [f.name for f in dataclasses.fields(EvaluationConfig)] == [
        "num_particles",
        "bound_particles",
        "num_points",
        "compile",
    ]
    stored = RunConfig().to_json()
    for field, value in [("num_particles", 0), ("bound_particles", [1, 0]), ("num_points", 0)]:
        bad = {**stored, "evaluation": {**stored["evaluation"], field: value}}
        with pytest.raises(SchemaError) as caught:
            RunConfig.from_json(bad)
        assert caught.value.field == f"evaluation.{field}"
        assert str(caught.value).startswith(f"evaluation.{field} must be")
