import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian

from vi_vae import InputError, annealed_importance_sampling, bdmc

LG = LinearGaussian()
X = LG.sample(4)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_steps": 0}, "num_steps must be an integer >= 1"),
        ({"num_chains": 0}, "num_chains must be an integer >= 1"),
        ({"num_steps": 2.5}, "num_steps must be an integer"),
        ({"schedule": "cosine"}, "unknown schedule 'cosine'; accepted values: sigmoid, linear"),
        ({"initial": "posterior"}, "unknown initial 'posterior'; accepted values: guide, prior"),
        ({"leapfrog_steps": 0}, "leapfrog_steps must be an integer >= 1"),
        ({"step_size": -0.1}, "step_size must be a positive finite number"),
        ({"target_acceptance": 1.5}, r"target_acceptance must be a number in \(0, 1\) or None"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"compile": "yes"}, "compile must be"),
        # issue 20 item 17: sizes beyond any run's reach are refused before allocating
        ({"num_steps": 10**12}, "num_steps must be at most 1,000,000; got 1,000,000,000,000"),
        ({"num_steps": 1e12}, "num_steps must be an integer"),
        ({"num_chains": 10**12}, "num_chains must be at most 1,000,000"),
        ({"leapfrog_steps": 10**9}, "leapfrog_steps must be at most 10,000"),
        ({"seed": -1}, "seed must be an integer in"),
    ],
)
@pytest.mark.parametrize("function", [annealed_importance_sampling, bdmc])
def test_bad_settings_name_the_argument_and_what_it_accepts(function, arguments, message):
    settings = {"num_steps": 2, "num_chains": 2, **arguments}
    with pytest.raises(InputError, match=message):
        function(LG.model, LG.mean_field_guide, X, **settings)


def test_nan_data_are_refused():
    x = X.clone()
    x[1, 2] = math.nan
    with pytest.raises(InputError, match="x contains NaN"):
        annealed_importance_sampling(LG.model, LG.mean_field_guide, x, num_steps=2, num_chains=2)


def test_a_guide_is_needed_to_start_from_the_guide():
    with pytest.raises(InputError, match="initial='guide' needs a guide"):
        annealed_importance_sampling(LG.model, None, X, num_steps=2, num_chains=2)


def test_a_discrete_latent_site_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(InputError, match="discrete latent site 'c'.*needs continuous"):
        annealed_importance_sampling(model, guide, torch.zeros(3), num_steps=2, num_chains=2)
    with pytest.raises(InputError, match="discrete latent site 'c'"):
        annealed_importance_sampling(
            model, None, torch.zeros(3), num_steps=2, num_chains=2, initial="prior"
        )


def test_a_guide_missing_a_latent_site_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
            b = pyro.sample("b", dist.Normal(a, 1.0))
            pyro.sample("x", dist.Normal(b, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(0.0, 1.0))

    # the contract's check (vi_vae.contract, clause 3) names the site the guide lacks
    with pytest.raises(
        InputError, match=r"no sample site for the model's latent site\(s\) \['b'\]"
    ):
        annealed_importance_sampling(model, guide, torch.zeros(3), num_steps=2, num_chains=2)


def test_a_global_latent_site_is_refused():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(InputError, match="outside pyro.plate\\('data'\\)"):
        annealed_importance_sampling(model, guide, torch.zeros(3), num_steps=2, num_chains=2)


def test_per_point_keyword_arguments_travel_with_their_rows():
    # contract clause 5: ys (one row per point) is split with x in every chunk, so the
    # chunked run gives each point the numbers of an unchunked one
    def model(x, ys):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(ys, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x, ys):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x + ys) / 2, 0.8))

    x, ys = torch.linspace(-1, 1, 6), torch.arange(6.0)
    options = {"num_steps": 3, "num_chains": 4, "seed": 0}
    whole = annealed_importance_sampling(model, guide, x, ys=ys, chunk_size=10**6, **options)
    chunked = annealed_importance_sampling(model, guide, x, ys=ys, chunk_size=10, **options)
    torch.testing.assert_close(chunked.log_likelihood, whole.log_likelihood)
    # with ys shifted by rows, each point's log p(x) follows its own ys: far from x, lower
    assert (whole.log_likelihood[1:] < whole.log_likelihood[:-1]).sum() >= 4
