"""Command-line spellings build the estimators they name, and refuse what they cannot."""

import math

import pytest
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO as PyroELBO

from vi_vae import InputError
from vi_vae.estimators import (
    CIWAE,
    ELBO,
    ESTIMATOR_SPECS,
    IWAE,
    MIWAE,
    PIWAE,
    STL,
    DReG,
    RenyiVR,
    canonical_spelling,
    parse_estimator,
    with_num_particles,
)

#: one valid value per argument type, to build every registered spelling
EXAMPLE_VALUES = {int: "2", float: "0.5"}


@pytest.mark.parametrize("name", ESTIMATOR_SPECS)
def test_every_registered_spelling_builds_a_pyro_elbo(name):
    spec = ESTIMATOR_SPECS[name]
    spelling = ":".join([name] + [EXAMPLE_VALUES[kind] for _, kind in spec.arguments])
    assert isinstance(parse_estimator(spelling), PyroELBO)
    assert isinstance(parse_estimator(spec.example), PyroELBO)
    assert spec.example.split(":")[0] == name


@pytest.mark.parametrize("name", ESTIMATOR_SPECS)
def test_every_spelling_of_an_estimator_has_one_canonical_form(name):
    # compare trained "iwae:05" beside "iwae:5" as two estimators, in two rows
    spec = ESTIMATOR_SPECS[name]
    padded = {int: "02", float: "0.50"}
    other = ":".join([f" {name}"] + [padded[kind] for _, kind in spec.arguments])
    plain = ":".join([name] + [EXAMPLE_VALUES[kind] for _, kind in spec.arguments])
    assert canonical_spelling(other) == canonical_spelling(plain) == plain
    assert canonical_spelling(spec.example) == spec.example


def test_vr_at_minus_infinity_is_spelled_vrmax():
    # compare trained "vr:-inf:5" beside "vrmax:5", the same estimator, as two
    assert canonical_spelling("vr:-inf:5") == canonical_spelling("vrmax:05") == "vrmax:5"
    assert canonical_spelling("vr:-1:5") == "vr:-1.0:5"


@pytest.mark.parametrize("name", ESTIMATOR_SPECS)
def test_with_num_particles_sets_the_inner_k(name):
    estimator = with_num_particles(ESTIMATOR_SPECS[name].example, 7)
    inner = getattr(estimator, "num_inner", estimator.num_particles)
    assert inner == 7
    assert estimator.num_particles % 7 == 0


def test_the_0_1_chunking_keyword_is_gone():
    with pytest.raises(TypeError, match="max_pairs_per_pass"):
        IWAE(4, max_pairs_per_pass=10)


def test_the_0_1_names_of_ciwae_are_gone():
    # 0.3 removed CIWAE's ``beta`` (CHANGELOG.md): β is the KL weight everywhere else
    with pytest.raises(TypeError, match="beta"):
        CIWAE(0.5, 3, beta=0.25)
    assert not hasattr(CIWAE(0.5, 3), "beta")


@pytest.mark.parametrize(
    ("spelling", "kind", "attributes"),
    [
        ("elbo", ELBO, {"num_particles": 1, "analytic_kl": False}),
        ("elbo-analytic", ELBO, {"num_particles": 1, "analytic_kl": True}),
        ("pyro-trace-elbo", Trace_ELBO, {}),
        ("pyro-meanfield-elbo", TraceMeanField_ELBO, {}),
        ("iwae:5", IWAE, {"num_particles": 5}),
        ("vr:0.5:5", RenyiVR, {"alpha": 0.5, "num_particles": 5}),
        ("vr:-inf:4", RenyiVR, {"alpha": -math.inf, "num_particles": 4}),
        ("vrmax:5", RenyiVR, {"alpha": -math.inf, "num_particles": 5}),
        ("stl:1", STL, {"num_particles": 1}),
        ("dreg:5", DReG, {"num_particles": 5}),
        ("miwae:8:8", MIWAE, {"num_outer": 8, "num_inner": 8, "num_particles": 64}),
        ("ciwae:0.5:5", CIWAE, {"elbo_weight": 0.5, "num_particles": 5}),
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
        ("ciwae:1.5:5", r"elbo_weight must lie in \[0, 1\]"),
        ("miwae:0:5", "num_outer must be an integer >= 1"),
        ("piwae:2:3:4", "must divide num_outer"),
        ("dreg:5:5", "must be spelled dreg:NUM_PARTICLES"),
        (
            "drag:5",
            "unknown estimator 'drag:5'; accepted values: elbo, elbo-analytic, pyro-trace-elbo",
        ),
    ],
)
def test_bad_spellings_say_what_is_accepted(spelling, message):
    with pytest.raises(InputError, match=message):
        parse_estimator(spelling)


def test_every_registered_estimator_has_a_reference():
    from estimator_cases import REFERENCE_BOUNDS, REGISTERED

    missing = sorted(set(REGISTERED) - set(REFERENCE_BOUNDS))
    assert not missing, f"add the bound of {missing} to tests/estimators/estimator_cases.py"
