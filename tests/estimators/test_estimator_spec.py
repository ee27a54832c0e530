"""Command-line spellings build the estimators they name, and refuse what they cannot."""

import math

import pytest
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO as PyroELBO

from vi_vae import InputError
from vi_vae.estimators import (
    CIWAE,
    ESTIMATOR_SPECS,
    IWAE,
    MIWAE,
    PIWAE,
    STL,
    DReG,
    RenyiVR,
    parse_estimator,
)

#: one valid value per argument type, to build every registered spelling
EXAMPLE_VALUES = {int: "2", float: "0.5"}


@pytest.mark.parametrize("name", ESTIMATOR_SPECS)
def test_every_registered_spelling_builds_a_pyro_elbo(name):
    spec = ESTIMATOR_SPECS[name]
    spelling = ":".join([name] + [EXAMPLE_VALUES[kind] for _, kind in spec.arguments])
    assert isinstance(parse_estimator(spelling), PyroELBO)


@pytest.mark.parametrize(
    ("spelling", "kind", "attributes"),
    [
        ("elbo", Trace_ELBO, {}),
        ("elbo-analytic", TraceMeanField_ELBO, {}),
        ("iwae:5", IWAE, {"num_particles": 5}),
        ("vr:0.5:5", RenyiVR, {"alpha": 0.5, "num_particles": 5}),
        ("vr:-inf:4", RenyiVR, {"alpha": -math.inf, "num_particles": 4}),
        ("vrmax:5", RenyiVR, {"alpha": -math.inf, "num_particles": 5}),
        ("stl:1", STL, {"num_particles": 1}),
        ("dreg:5", DReG, {"num_particles": 5}),
        ("miwae:8:8", MIWAE, {"num_outer": 8, "num_inner": 8, "num_particles": 64}),
        ("ciwae:0.5:5", CIWAE, {"beta": 0.5, "num_particles": 5}),
        ("piwae:8:8:64", PIWAE, {"num_outer": 8, "num_inner": 8, "model_particles": 64}),
        ("piwae:4:2:4", PIWAE, {"num_particles": 8, "model_particles": 4}),
    ],
)
def test_spellings(spelling, kind, attributes):
    estimator = parse_estimator(spelling)
    assert type(estimator) is kind
    for attribute, value in attributes.items():
        assert getattr(estimator, attribute) == value


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("iwae", "must be spelled iwae:NUM_PARTICLES"),
        ("iwae:0", "num_particles must be an integer >= 1"),
        ("iwae:2.5", "num_particles must be int"),
        ("vr:one:5", "alpha must be float"),
        ("vr:nan:5", "alpha must be a real number or -inf"),
        ("ciwae:1.5:5", r"beta must lie in \[0, 1\]"),
        ("miwae:0:5", "num_outer must be an integer >= 1"),
        ("piwae:2:3:4", "must divide num_outer"),
        ("dreg:5:5", "must be spelled dreg:NUM_PARTICLES"),
        ("drag:5", "unknown estimator 'drag:5'; accepted values: elbo, elbo-analytic, iwae:"),
    ],
)
def test_bad_spellings_say_what_is_accepted(spelling, message):
    with pytest.raises(InputError, match=message):
        parse_estimator(spelling)
