import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from vi_vae import VAE, InputError


def test_model_and_guide_follow_the_plate_contract():
    vae = VAE(input_dim=6, latent_dim=3, hidden_sizes=[8])
    x = torch.randint(0, 2, (5, 6)).float()
    guide_trace = pyro.poutine.trace(vae.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(vae.model, guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        z = trace.nodes["z"]
        assert [frame.name for frame in z["cond_indep_stack"]] == ["data"]
        assert z["value"].shape == (5, 3)
    assert model_trace.nodes["x"]["is_observed"]
    # the guide touches only encoder parameters, the model only decoder ones
    guide_params = {n for n, s in guide_trace.nodes.items() if s["type"] == "param"}
    model_params = {n for n, s in model_trace.nodes.items() if s["type"] == "param"}
    assert guide_params and all(name.startswith("encoder.") for name in guide_params)
    assert model_params and all(name.startswith("decoder.") for name in model_params)


def test_plain_pyro_svi_trains_the_template():
    vae = VAE(input_dim=6, latent_dim=2, hidden_sizes=[8])
    x = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]] * 8).float()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(150)]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 10


def test_encode_decode_sample_reconstruct_shapes():
    vae = VAE(
        input_dim=10, latent_dim=4, hidden_sizes=[16, 8], activation="tanh", image_shape=(2, 5)
    )
    x = torch.rand(7, 10).round()
    q = vae.encode(x)
    assert q.batch_shape == (7,) and q.event_shape == (4,)
    assert vae.decode(q.rsample()).event_shape == (10,)
    assert vae.sample(3).shape == (3, 10)
    assert set(vae.sample(3, mean=False).unique().tolist()) <= {0.0, 1.0}
    reconstruction = vae.reconstruct(x)
    assert reconstruction.shape == (7, 10)
    assert ((reconstruction > 0) & (reconstruction < 1)).all()


def test_custom_encoder_and_decoder():
    encoder = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
    decoder = nn.Sequential(nn.Linear(2, 10))
    vae = VAE(input_dim=10, latent_dim=2, encoder=encoder, decoder=decoder)
    x = torch.rand(3, 10).round()
    trace = pyro.poutine.trace(vae.guide).get_trace(x)
    assert "encoder.0.weight" in trace.nodes  # registered with Pyro, so SVI trains it


def test_encoder_of_the_wrong_size_is_a_clear_error():
    vae = VAE(input_dim=10, latent_dim=2, encoder=nn.Linear(10, 3))
    with pytest.raises(InputError, match="encoder returned 3 values.*needs 4"):
        vae.encode(torch.zeros(1, 10))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(3, 5), r"shape \[3, 5\]; expected \[N, 6\]"),
        (torch.zeros(6), r"shape \[6\]; expected \[N, 6\]"),
        (torch.zeros(3, 6, dtype=torch.long), "floating point"),
        ([[0.0] * 6], "must be a torch.Tensor"),
        (torch.full((2, 6), 2.0), r"accepts values in \[0, 1\]"),
    ],
)
def test_check_data(x, message):
    vae = VAE(input_dim=6, latent_dim=2)
    with pytest.raises(InputError, match=message):
        vae.check_data(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_family": "poisson"}, "unknown latent family 'poisson'; accepted values:"),
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
        ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
        ({"activation": "sigmoidal"}, "unknown activation 'sigmoidal'; accepted values: relu"),
        # a VAE with pyro.plate(3) or pyro.plate(None) was built, and refused at its first use
        ({"data_plate": 3}, "data_plate must be a plate name, a non-empty string; got 3"),
        ({"data_plate": ""}, "data_plate must be a plate name, a non-empty string; got ''"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        VAE(input_dim=6, **kwargs)


def test_a_second_vae_with_the_same_names_traces_its_own_parameters():
    # two VAEs in one process (two runs loaded) share parameter names; Pyro's param store
    # kept the first one's tensors, so the second's traces recorded tensors its loss does
    # not depend on: its gradient SNR came out NaN and SVI stepped the first VAE
    from vi_vae.evaluation import gradient_snr

    pyro.clear_param_store()
    x = torch.randint(0, 2, (8, 6), generator=torch.Generator().manual_seed(0)).float()
    first = VAE(input_dim=6, latent_dim=2, hidden_sizes=[5], seed=0)
    second = VAE(input_dim=6, latent_dim=2, hidden_sizes=[5], seed=1)

    def snr(vae):
        return gradient_snr(vae.model, vae.guide, Trace_ELBO(), x, num_draws=3, seed=0)

    alone = snr(second)
    pyro.clear_param_store()
    snr(first)
    after_first = snr(second)
    assert (after_first.guide, after_first.model) == (alone.guide, alone.model)
    snr(first)  # and back: the first takes its names back when it runs
    before = [p.detach().clone() for p in first.parameters()]
    svi = SVI(first.model, first.guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(x)
    assert all(not torch.equal(a, p) for a, p in zip(before, first.parameters(), strict=True))
