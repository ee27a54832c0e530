"""The registry holds exactly the issue's families, each described correctly."""

import pytest
import torch

from vi_vae.errors import InputError
from vi_vae.latents import CATEGORIES, FAMILIES, LatentFamily, get_family, register_family

#: Kingma & Welling (2014, §2.4), as the issue lists them; logistic is in two categories.
EXPECTED_CATEGORIES = {
    "exponential": ("inverse_cdf",),
    "cauchy": ("inverse_cdf",),
    "logistic": ("inverse_cdf", "location_scale"),
    "rayleigh": ("inverse_cdf",),
    "pareto": ("inverse_cdf",),
    "weibull": ("inverse_cdf",),
    "reciprocal": ("inverse_cdf",),
    "gompertz": ("inverse_cdf",),
    "gumbel": ("inverse_cdf",),
    "erlang": ("inverse_cdf",),
    "laplace": ("location_scale",),
    "elliptical": ("location_scale",),
    "studentt": ("location_scale",),
    "uniform": ("location_scale",),
    "triangular": ("location_scale",),
    "normal": ("location_scale",),
    "lognormal": ("composition",),
    "gamma": ("composition",),
    "dirichlet": ("composition",),
    "beta": ("composition",),
    "chi2": ("composition",),
    "f": ("composition",),
}

#: Pairs (posterior, default prior) with a closed-form KL registered with torch.
EXPECTED_ANALYTIC_KL = {
    "exponential",
    "cauchy",
    "rayleigh",
    "pareto",
    "weibull",
    "reciprocal",
    "gumbel",
    "erlang",
    "laplace",
    "elliptical",
    "uniform",
    "normal",
    "lognormal",
    "gamma",
    "dirichlet",
    "beta",
    "chi2",
}


def test_registry_holds_every_family_of_kingma_and_welling_with_its_categories():
    # a registry may grow: every family of the paper's list must be there, as listed
    missing = sorted(set(EXPECTED_CATEGORIES) - set(FAMILIES))
    assert not missing, missing
    for name, categories in EXPECTED_CATEGORIES.items():
        assert FAMILIES[name].categories == categories, name


def test_families_are_listed_in_kingma_order():
    order = [CATEGORIES.index(family.categories[0]) for family in FAMILIES.values()]
    assert order == sorted(order)


def test_analytic_kl_flags():
    analytic = {name for name, family in FAMILIES.items() if family.has_analytic_kl}
    assert analytic == EXPECTED_ANALYTIC_KL


def test_register_family_refuses_what_it_cannot_register_naming_why():
    # anything but a LatentFamily failed with "'object' object has no attribute 'name'"
    with pytest.raises(InputError, match="family must be a vi_vae.LatentFamily; got <object"):
        register_family(object())
    with pytest.raises(InputError, match="latent family 'normal' is already registered"):
        register_family(FAMILIES["normal"])
    assert FAMILIES["normal"] is get_family("normal")


def test_get_family():
    assert get_family("gompertz") is FAMILIES["gompertz"]
    assert get_family(FAMILIES["beta"]) is FAMILIES["beta"]
    with pytest.raises(InputError, match="accepted values"):
        get_family("gausian")


def test_summary_row(family: LatentFamily):
    row = family.summary()
    assert list(row) == ["name", "category", "support", "prior", "kl", "parameters", "description"]
    assert all(isinstance(value, str) and value for value in row.values()), row
    assert row["kl"] in ("analytic", "sampled")
    # The support is written as a set, never as a constraint's class name.
    assert (
        row["support"] in ("real", "real vector", "simplex", "(0, 1)") or row["support"][0] in "[("
    ), row
    # The prior is written with its parameters, e.g. "Gompertz(concentration=1, scale=1)".
    assert row["prior"].endswith(")") and "=" in row["prior"], row
    assert "raw" in row["parameters"]


@pytest.mark.parametrize(
    ("name", "support", "prior"),
    [
        ("uniform", "[-1, 1]", "Uniform(low=-1, high=1)"),
        ("reciprocal", "[0.1, 10]", "Reciprocal(low=0.1, high=10)"),
        ("pareto", "[1, inf)", "Pareto(alpha=3, scale=1)"),
        ("erlang", "[0, inf)", "Erlang(shape=2, rate=1)"),
        ("studentt", "real", "StudentT(df=5, loc=0, scale=1)"),
        ("dirichlet", "simplex", "Dirichlet(concentration=1)"),
        ("elliptical", "real vector", "MultivariateNormal(loc=0, scale_tril=I)"),
    ],
)
def test_summary_of_bounded_and_fixed_shape_families(name, support, prior):
    row = FAMILIES[name].summary()
    assert (row["support"], row["prior"]) == (support, prior)


def test_logistic_shows_both_categories():
    assert FAMILIES["logistic"].summary()["category"] == "inverse_cdf, location_scale"


def test_raw_size_is_checked():
    with pytest.raises(InputError, match="multiple of 2"):
        FAMILIES["normal"].posterior(torch.zeros(3, 5))
    with pytest.raises(InputError, match="d\\(d \\+ 3\\)/2"):
        FAMILIES["elliptical"].posterior(torch.zeros(3, 4))
    with pytest.raises(InputError, match="latent_dim >= 2"):
        FAMILIES["dirichlet"].num_raw_parameters(1)
