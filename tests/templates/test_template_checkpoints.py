"""A checkpoint of every template resumes exactly; constructor arguments survive JSON."""

import json

import pyro
import pytest
import torch
from template_cases import (
    IMAGE_SHAPE,
    INPUT_DIM,
    TEMPLATE_NAMES,
    TEMPLATES,
    binary_data,
    make_template,
    single_thread,
)

from vi_vae import VAE, fit
from vi_vae.app.run_directory import RunDirectory
from vi_vae.checkpoint import load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _fit(vae, run_dir, epochs):
    # a run directory that holds a checkpoint resumes from it
    x = binary_data()
    return fit(
        vae.model,
        vae.guide,
        x,
        validation=x[:8],
        epochs=epochs,
        batch_size=16,
        sink=RunDirectory(run_dir).checkpoint_sink(),
        seed=0,
    )


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_a_checkpoint_resumes_exactly(template, tmp_path):
    # Two epochs straight, or one epoch and then a resumed run to two (in a model built
    # with other initial weights, which the checkpoint replaces): the same numbers.
    straight = _fit(make_template(template, seed=0), tmp_path / "straight", epochs=2)
    _fit(make_template(template, seed=0), tmp_path / "split", epochs=1)
    pyro.set_rng_seed(99)
    resumed = _fit(make_template(template, seed=99), tmp_path / "split", epochs=2)

    def timeless(history):
        return [{k: v for k, v in row.to_dict().items() if k != "seconds"} for row in history]

    assert timeless(resumed.history) == timeless(straight.history)
    reference = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["params"]
    last = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["params"]
    assert reference.keys() == last.keys()
    for name, value in reference.items():
        assert torch.equal(value, last[name]), name


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_constructor_arguments_survive_json(template):
    # A run directory stores the arguments as JSON (tuples come back as lists).
    options = {"input_dim": INPUT_DIM, "image_shape": IMAGE_SHAPE, "seed": 3, **TEMPLATES[template]}
    rebuilt = VAE(**json.loads(json.dumps(options)))
    original = VAE(**options)
    for (name, value), (_, other) in zip(
        original.state_dict().items(), rebuilt.state_dict().items(), strict=True
    ):
        assert torch.equal(value, other), name
