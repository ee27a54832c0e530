"""A VAE from parts: a Template's choices, given parts, and the keywords as its shortcuts."""

import pytest
import torch
from template_cases import IMAGE_SHAPE, INPUT_DIM, TEMPLATES, make_template, single_thread

from vi_vae import VAE, InputError
from vi_vae.priors import VampPrior
from vi_vae.templates import Template


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def _same_weights(first: VAE, second: VAE) -> bool:
    one, two = first.state_dict(), second.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_template_object_builds_the_weights_its_keywords_build(name):
    options = dict(TEMPLATES[name])
    latent = {key: options.pop(key) for key in ("latent_dim", "prior") if key in options}
    template = Template(image_shape=IMAGE_SHAPE, **options)
    built = VAE(INPUT_DIM, seed=4, template=template, **latent)
    assert built.template == template
    assert _same_weights(built, make_template(name, seed=4))
    assert not _same_weights(built, make_template(name, seed=5))  # the check can fail


def test_a_shortcut_beside_the_template_replaces_its_field():
    template = Template(hidden_sizes=(8,), activation="tanh")
    edited = VAE(INPUT_DIM, 2, hidden_sizes=(4,), template=template, seed=0)
    assert edited.template == Template(hidden_sizes=(4,), activation="tanh")
    assert _same_weights(edited, VAE(INPUT_DIM, 2, template=edited.template, seed=0))
    assert VAE(INPUT_DIM, 2, hidden_sizes=None, template=template).template == template
    with pytest.raises(InputError, match="template must be an instance of Template"):
        VAE(INPUT_DIM, 2, template={"hidden_sizes": (8,)})


def test_a_bad_choice_is_refused_by_the_template_itself():
    with pytest.raises(InputError, match="unknown flow 'planar'; accepted values: None, iaf"):
        Template(flow="planar")
    with pytest.raises(InputError, match=r"latent_dims must be integers >= 1"):
        Template(latent_dims=(3, 0))


def test_a_given_prior_part_is_the_prior_and_the_other_weights_are_drawn_as_before():
    torch.manual_seed(0)
    part = VampPrior(3, INPUT_DIM)
    vae = VAE(INPUT_DIM, 2, hidden_sizes=(16,), prior=part, seed=1)
    built = make_template("vamp", seed=1)
    assert vae.vamp_prior is part
    z = torch.zeros(4, 2)
    assert torch.equal(vae.prior().log_prob(z), part(vae.encode).log_prob(z))
    without_prior = {k: v for k, v in vae.state_dict().items() if not k.startswith("vamp")}
    expected = {k: v for k, v in built.state_dict().items() if not k.startswith("vamp")}
    assert without_prior.keys() == expected.keys()
    assert all(torch.equal(without_prior[k], expected[k]) for k in expected)
