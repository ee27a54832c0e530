"""Diagnostics: gradient SNR against closed forms, active units, and the ArviZ export."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from pyro.infer import Trace_ELBO
from torch.testing import assert_close

from vi_vae import VAE, InputError
from vi_vae.estimators import IWAE, STL, DReG
from vi_vae.evaluation import active_units, gradient_snr, snr_noise_floor, to_inference_data

#: one observation x = 2 under z ~ N(0, 1), x | z ~ N(z + b, 1), guide q(z) = N(μ, 1)
X, B, MU = 2.0, 0.3, 0.2


def shift_model(x):
    b = pyro.param("b", torch.tensor(B))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + b, 1.0), obs=x)


def shift_guide(x):
    mu = pyro.param("mu", torch.tensor(MU))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(mu, 1.0))


@pytest.mark.parametrize(
    ("loss", "guide_snr"),
    [
        # z = μ + ε: ∂ELBO/∂μ = x − b − 2μ − 2ε (std 2); STL drops ∂log q/∂μ|_z = ε,
        # leaving x − b − 2μ − ε (std 1). ∂ELBO/∂b = x − b − μ − ε (std 1) for both.
        (Trace_ELBO(), abs(X - B - 2 * MU) / 2),
        (STL(1), abs(X - B - 2 * MU)),
    ],
    ids=["pyro-trace-elbo", "stl"],
)
def test_gradient_snr_matches_the_closed_form(loss, guide_snr):
    # 2000 draws: the SNR estimates have standard errors ≈ √((1 + SNR²/2)/2000) < 0.04.
    result = gradient_snr(shift_model, shift_guide, loss, torch.tensor([X]), num_draws=2000, seed=0)
    assert result.guide_names == ["mu"] and result.model_names == ["b"]
    assert result.guide == pytest.approx(guide_snr, abs=0.15)
    assert result.model == pytest.approx(abs(X - B - MU), abs=0.15)


def test_dreg_has_a_higher_guide_snr_than_iwae():
    x = torch.tensor([X])
    iwae = gradient_snr(shift_model, shift_guide, IWAE(10), x, num_draws=300, seed=0)
    dreg = gradient_snr(shift_model, shift_guide, DReG(10), x, num_draws=300, seed=0)
    assert dreg.guide > 2 * iwae.guide
    assert dreg.model == pytest.approx(iwae.model, rel=1e-6)  # same draws, same model gradient


def test_gradient_snr_splits_encoder_and_decoder_and_leaves_state_alone():
    torch.manual_seed(0)
    vae = VAE(input_dim=6, latent_dim=2, hidden_sizes=(8,))
    x = torch.bernoulli(torch.full((10, 6), 0.5))
    IWAE(2).loss(vae.model, vae.guide, x)  # create the parameters
    for parameter in vae.parameters():
        parameter.grad = torch.full_like(parameter, 7.0)
    values = [p.detach().clone() for p in vae.parameters()]
    rng = torch.get_rng_state()
    result = gradient_snr(vae.model, vae.guide, DReG(3), x, num_draws=10, seed=1)
    again = gradient_snr(vae.model, vae.guide, DReG(3), x, num_draws=10, seed=1)
    assert all(name.startswith("encoder.") for name in result.guide_names)
    assert all(name.startswith("decoder.") for name in result.model_names)
    assert result.guide_elements.numel() == sum(p.numel() for p in vae.encoder.parameters())
    assert result.model_elements.numel() == sum(p.numel() for p in vae.decoder.parameters())
    assert math.isfinite(result.guide) and math.isfinite(result.model)
    assert_close(result.guide_elements, again.guide_elements, equal_nan=True)
    assert torch.equal(torch.get_rng_state(), rng)
    for parameter, value in zip(vae.parameters(), values, strict=True):
        assert torch.equal(parameter, value)
        assert (parameter.grad == 7.0).all()
    assert set(result.summary()) == {
        "snr_guide_mean",
        "snr_guide_median",
        "snr_model_mean",
        "snr_model_median",
    }


def test_a_gradient_with_mean_zero_reads_the_noise_floor():
    # One guide parameter μ_n per point, at μ_n = (x − b)/2, where STL's gradient
    # x − b − 2μ_n − ε_n = −ε_n has mean 0 (see above): every element measures noise
    # alone. The mean over N = 4000 elements of |t₉|/√10 has standard error
    # √((9/70 − floor²)/N) ≈ 0.0036; 0.015 is 4 of them, and the Gaussian approximation
    # √(2/(πR)) = 0.252 lies 6.6 of them away from the t-based floor 0.276.
    num_points, num_draws = 4000, 10

    def guide(x):
        mu = pyro.param("mu", torch.full((x.shape[0],), (X - B) / 2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(mu, 1.0))

    x = torch.full((num_points,), X)
    result = gradient_snr(shift_model, guide, STL(1), x, num_draws=num_draws, seed=0)
    assert result.noise_floor == snr_noise_floor(num_draws)
    assert result.guide == pytest.approx(snr_noise_floor(num_draws), abs=0.015)
    assert abs(result.guide - math.sqrt(2 / (math.pi * num_draws))) > 0.015


def test_the_noise_floor_is_the_mean_of_t_over_root_r_and_infinite_at_two_draws():
    # E|t_ν| for ν = 2 is √2 (closed form), so the floor at R = 3 is √2/√3
    assert snr_noise_floor(3) == pytest.approx(math.sqrt(2 / 3), rel=1e-12)
    assert snr_noise_floor(2) == math.inf  # t with one degree of freedom has no mean
    assert snr_noise_floor(10**6) == pytest.approx(math.sqrt(2 / (math.pi * 10**6)), rel=1e-5)
    with pytest.raises(InputError, match="num_draws"):
        snr_noise_floor(1)


def test_gradient_snr_needs_two_draws():
    with pytest.raises(InputError, match="num_draws"):
        gradient_snr(shift_model, shift_guide, STL(1), torch.tensor([X]), num_draws=1)


def test_gradient_snr_takes_an_estimator_spelling_as_fit_does_and_refuses_other_losses():
    # a spelling, or None, failed with "'str' object has no attribute 'loss'"
    x = torch.tensor([X])
    spelled = gradient_snr(shift_model, shift_guide, "iwae:5", x, num_draws=4, seed=0)
    built = gradient_snr(shift_model, shift_guide, IWAE(5), x, num_draws=4, seed=0)
    assert spelled.guide == built.guide and spelled.model == built.model
    with pytest.raises(InputError, match="loss must be a pyro.infer.ELBO or an estimator spelling"):
        gradient_snr(shift_model, shift_guide, None, x, num_draws=4)
    with pytest.raises(InputError, match="loss: unknown estimator 'nope'"):
        gradient_snr(shift_model, shift_guide, "nope", x, num_draws=4)


def test_gradient_snr_of_a_data_plate_of_another_name():
    # gradient_snr checked the pair over the plate "data" and built a spelled loss over
    # it: a pair whose plate is named "batch" was refused, even with an estimator built
    # over "batch", and data_plate= reached the model as a keyword argument
    x = (torch.rand(32, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    snrs = {}
    for plate in ("data", "batch"):
        vae = VAE(input_dim=12, latent_dim=2, hidden_sizes=[16], data_plate=plate, seed=0)
        for loss in ("iwae:3", IWAE(3, data_plate=plate)):
            result = gradient_snr(
                vae.model, vae.guide, loss, x, num_draws=4, seed=0, data_plate=plate
            )
            snrs.setdefault(plate, []).append(
                torch.cat([result.guide_elements, result.model_elements])
            )
    # the plate's name changes no draw and no number
    for data, batch in zip(snrs["data"], snrs["batch"], strict=True):
        assert torch.equal(data.nan_to_num(-1.0), batch.nan_to_num(-1.0))
    says = r"loss takes the data plate 'batch' but data_plate is 'data': name the same plate"
    with pytest.raises(InputError, match=says):
        gradient_snr(vae.model, vae.guide, IWAE(3, data_plate="batch"), x, num_draws=4)


def test_elements_without_noise_are_counted_apart_from_the_snr_summaries():
    """CEVAE's guide trains auxiliary networks of t and y on the observed values alone:
    their gradient is the same in every draw, SNR infinite, and the guide's mean SNR read
    inf. The summaries describe the noisy elements; the noise-free ones are counted."""
    from pyro.contrib.cevae import Guide, Model, TraceCausalEffect_ELBO

    torch.manual_seed(0)
    config = dict(feature_dim=5, latent_dim=1, hidden_dim=8, num_layers=2, num_samples=4)
    model, guide = (
        Model({**config, "outcome_dist": "normal"}),
        Guide({**config, "outcome_dist": "normal"}),
    )
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=generator)
    labels = {"t": (x[:, 0] > 0).float(), "y": x[:, 1] + x[:, 2]}
    result = gradient_snr(model, guide, TraceCausalEffect_ELBO(), x, num_draws=6, seed=0, **labels)
    infinite = result.guide_elements.isinf()
    assert 0 < result.guide_noise_free == int(infinite.sum()) < result.guide_elements.numel()
    noisy = result.guide_elements[~infinite]
    assert result.guide == pytest.approx(noisy.nanmean().item())
    assert math.isfinite(result.summary()["snr_guide_median"])
    assert result.model_noise_free == 0 and math.isfinite(result.model)


def test_active_units_refuse_an_encoder_that_returns_no_distribution_and_a_negative_threshold():
    # a Pyro guide passed as the encoder returns None: AttributeError from inside
    x = torch.randn(6, 2)
    with pytest.raises(InputError, match="the encoder returned NoneType, not q"):
        active_units(lambda batch: None, x)
    with pytest.raises(InputError, match="threshold must be a finite number >= 0"):
        active_units(lambda batch: batch, x, threshold=-1.0)


def test_active_units_counts_dimensions_whose_mean_varies():
    # E_q[z] = (x₀, 0.05 x₁, 1): variances ≈ 1, 0.0025 and 0 across points.
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))

    def encode(x):
        loc = torch.stack([x[:, 0], 0.05 * x[:, 1], torch.ones(len(x))], -1)
        return dist.Normal(loc, 0.5).to_event(1)

    result = active_units(encode, x)
    assert result.num_active == 1
    assert result.active.tolist() == [True, False, False]
    assert result.variances[0] == pytest.approx(1.0, abs=0.15)
    assert result.variances[1] == pytest.approx(0.0025, abs=0.001)
    assert result.variances[2] == 0
    assert active_units(lambda x: encode(x).mean, x, batch_size=64).num_active == 1


def test_active_units_without_a_finite_mean():
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    # no mean implemented: the mean of draws; no finite mean (Cauchy): the median of draws
    no_mean = active_units(
        lambda x: dist.TransformedDistribution(
            dist.Normal(x, 0.1), [dist.transforms.AffineTransform(0.0, 1.0)]
        ),
        x,
    )
    heavy_tailed = active_units(lambda x: dist.Cauchy(x * torch.tensor([1.0, 0.0]), 0.1), x)
    assert no_mean.num_active == 2
    assert heavy_tailed.num_active == 1 and torch.isfinite(heavy_tailed.variances).all()


def test_active_units_counts_the_units_whose_mean_varies():
    # four units: two vary across x (variances 1/12 and 100/12 for x ~ U(0, 1)), one
    # is constant, one varies by 1e-6/12, far below Burda et al.'s threshold 0.01
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def encoder(batch):
        return torch.stack([batch[:, 0], 10 * batch[:, 1], 0 * batch[:, 0], 1e-3 * batch[:, 2]], 1)

    result = active_units(encoder, x)
    assert result.num_active == 2
    assert result.active.tolist() == [True, True, False, False]
    # sampling error of a variance from 2000 uniform draws: relative SD ≈ 0.03
    assert result.variances[:2].tolist() == pytest.approx([1 / 12, 100 / 12], rel=0.1)


def test_active_units_of_a_vae_use_its_encoder_means():
    vae = VAE(input_dim=6, latent_dim=3, hidden_sizes=(8,), seed=0)
    x = torch.bernoulli(torch.full((40, 6), 0.5))
    result = active_units(vae, x)
    assert torch.allclose(result.variances, vae.encode(x).mean.detach().double().var(0))
    with pytest.raises(InputError, match="at least 2"):
        active_units(vae, torch.zeros(1, 6))


@pytest.mark.parametrize("layer", [torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(2)])
def test_active_units_refuse_an_encoder_in_training_mode_and_count_it_in_eval_mode(layer):
    # unit 0 follows x, unit 1 is constant (inactive); in training mode dropout's masks
    # gave the constant unit a variance of 1.0 and counted it active, and BatchNorm
    # made every mean depend on the rows of its batch
    x = torch.randn(400, 1, generator=torch.Generator().manual_seed(0))
    encoder = torch.nn.Sequential(layer)

    def encode(batch):
        return encoder(torch.cat([batch, torch.ones_like(batch)], -1))

    says = rf"active_units: the encoder calls {type(layer).__name__} in training mode.*eval\(\)"
    with pytest.raises(InputError, match=says):
        active_units(encode, x)
    encoder.eval()
    assert active_units(encode, x).active.tolist() == [True, False]
    assert encoder[0].training is False  # left as the caller put it


def test_inference_data_holds_guide_draws_and_their_log_weights():
    import arviz

    truth = LinearGaussian()
    x = truth.sample(10)
    idata = to_inference_data(truth.model, truth.exact_guide, x, [2, 7], 400, seed=0)
    assert idata.posterior["z"].dims == ("chain", "draw", "point", "z_dim_0")
    assert idata.posterior["z"].shape == (4, 100, 2, 2)
    assert idata.posterior["point"].values.tolist() == [2, 7]
    stats = idata.sample_stats
    assert_close(
        torch.as_tensor(stats["log_weight"].values),
        torch.as_tensor((stats["lp"] - stats["log_guide"]).values),
    )
    # the exact posterior as guide: every weight is p(x), the marginal likelihood
    log_px = truth.log_marginal(x[[2, 7]])
    assert_close(torch.as_tensor(stats["log_weight"].values), log_px.expand(4, 100, 2))
    summary = arviz.summary(idata, var_names=["z"])
    assert len(summary) == 4 and (summary["r_hat"] < 1.05).all()


def test_importance_weights_of_the_export_recover_the_posterior():
    # A mean-field guide is too narrow; reweighting its draws by exp(log_weight) gives
    # the exact posterior variance. 8000 draws: the weighted variance is within 5%.
    truth = LinearGaussian()
    x = truth.sample(3)
    idata = to_inference_data(truth.model, truth.mean_field_guide, x, [1], 8000, seed=0)
    z = torch.as_tensor(idata.posterior["z"].values[:, :, 0]).reshape(-1, 2)
    weights = torch.as_tensor(idata.sample_stats["log_weight"].values[:, :, 0]).reshape(-1)
    weights = weights.softmax(0)
    mean = weights @ z
    variance = weights @ (z - mean).square()
    assert_close(mean, truth.posterior_mean(x[1]), rtol=0, atol=0.05)
    assert_close(variance, truth.posterior_covariance.diagonal(), rtol=0.05, atol=0)
    assert_close(z.var(0), truth.mean_field_scale.square(), rtol=0.05, atol=0)


def test_inference_data_names_inner_plates_and_keeps_the_global_rng():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))

    x = torch.randn(5, 3)
    rng = torch.get_rng_state()
    idata = to_inference_data(model, guide, x, [0, 4], 20, num_chains=2, seed=3)
    again = to_inference_data(model, guide, x, [0, 4], 20, num_chains=2, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert idata.posterior["z"].dims == ("chain", "draw", "point", "features")
    assert idata.posterior["z"].shape == (2, 10, 2, 3)
    assert (idata.posterior["z"].values == again.posterior["z"].values).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_indices": [0], "num_particles": 10, "num_chains": 4}, "multiple of num_chains"),
        ({"point_indices": [12], "num_particles": 8}, "must index the 10 rows"),
        ({"point_indices": [], "num_particles": 8}, "at least one data point"),
        # int() took 1.5 and True as row 1, and a repeat was exported twice
        ({"point_indices": [1.5], "num_particles": 8}, "sequence of integer row numbers"),
        ({"point_indices": [True], "num_particles": 8}, "sequence of integer row numbers"),
        ({"point_indices": [3, 3], "num_particles": 8}, r"names row\(s\) \[3\] more than once"),
        ({"point_indices": [9, -1], "num_particles": 8}, r"names row\(s\) \[9\] more than once"),
    ],
)
def test_inference_data_refuses_bad_requests(kwargs, message):
    truth = LinearGaussian()
    with pytest.raises(InputError, match=message):
        to_inference_data(truth.model, truth.exact_guide, truth.sample(10), **kwargs)


def test_inference_data_takes_per_point_keywords_at_the_chosen_points():
    # a model of x - offset_n: the export of points [3, 0] must see offsets 3 and 0, the
    # same draws (one seed) as the export of those two points and their offsets given
    # alone; it raised torch's shape error, passing all 6 offsets with 2 points. (A model
    # with the two offsets built in by position is refused: it reads a row's place.)
    truth = LinearGaussian()
    x = truth.sample(6)
    offsets = torch.arange(18, dtype=x.dtype).reshape(6, 3)

    def shifted(fn):
        return lambda x, offset: fn(x - offset)

    model, guide = shifted(truth.model), shifted(truth.mean_field_guide)
    idata = to_inference_data(model, guide, x + offsets, [3, 0], 16, seed=0, offset=offsets)
    chosen = offsets[[3, 0]]
    expected = to_inference_data(
        model, guide, x[[3, 0]] + chosen, [0, 1], 16, seed=0, offset=chosen
    )
    for group in ("posterior", "sample_stats"):
        for name, values in getattr(expected, group).items():
            assert (getattr(idata, group)[name].values == values.values).all(), name


def dropout_pair():
    """A decoder with dropout in training mode, and a guide that draws from a point mass."""
    decoder = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)
    )

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)

    def normal_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, :2], 1.0).to_event(1))

    def delta_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(x[:, :2], event_dim=1))

    return decoder, model, {"normal_guide": normal_guide, "delta_guide": delta_guide}


@pytest.mark.parametrize(
    ("guide", "training", "message"),
    [
        ("normal_guide", True, "random beyond its sample sites"),
        ("delta_guide", False, "point mass"),
    ],
    ids=["dropout-in-training-mode", "point-mass-guide"],
)
def test_inference_data_refuses_what_the_evaluators_refuse(guide, training, message):
    # the export's log weights were written as if importance weights of p(z|x): log q = 0
    # for the point mass, a fresh dropout mask per score for the decoder in training mode
    decoder, model, guides = dropout_pair()
    guide = guides[guide]
    decoder.train(training)
    x = torch.randn(5, 3)
    with pytest.raises(InputError, match=message):
        to_inference_data(model, guide, x, [0, 2], 16, seed=0)
    decoder.eval()
    if not training:  # the point mass stays refused; the model in eval mode is exported
        return
    idata = to_inference_data(model, guide, x, [0, 2], 16, seed=0)
    assert idata.sample_stats["log_weight"].shape == (4, 4, 2)


def test_snr_refuses_a_pair_whose_param_sites_hold_other_tensors():
    # two networks registered under one name: Pyro's param store keeps the first one's
    # tensors, which the second pair's param sites then record while it computes with its
    # own; every SNR came out NaN, which the report shows as n/a
    def pair(net):
        def model(x):
            pyro.module("net", net)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
                pyro.sample("x", dist.Normal(net(z), 1.0).to_event(1), obs=x)

        def guide(x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(x[:, :1], 1.0).to_event(1))

        return model, guide

    pyro.clear_param_store()
    torch.manual_seed(0)
    x = torch.randn(6, 2)
    first, second = torch.nn.Linear(1, 2), torch.nn.Linear(1, 2)
    snr = gradient_snr(*pair(first), Trace_ELBO(), x, num_draws=3, seed=0)
    assert snr.model > 0  # the first pair is measured
    with pytest.raises(InputError, match="reaches none of the tensors at the pair's param sites"):
        gradient_snr(*pair(second), Trace_ELBO(), x, num_draws=3, seed=0)
