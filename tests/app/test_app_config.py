"""The run config: every field checked, each error naming its field; defaults are the library's."""

import dataclasses

import pytest

from vi_vae.app.config import RunConfig
from vi_vae.app.fingerprint import changed_setting, fingerprint
from vi_vae.app.schema import SchemaError, stored_fields
from vi_vae.cli.flags import FLAGS
from vi_vae.evaluation import DEFAULT_BOUND_PARTICLES, DEFAULT_NUM_PARTICLES


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
        ("model", {"likelihood_options": {"sigma": 0.1}}, "model.likelihood"),
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
