"""vi_vae.optim: one torch optimizer, bitwise the parameters of Pyro's per-parameter optimizers."""

import copy

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim.clipped_adam import ClippedAdam as PyroClippedAdam
from test_train import binary_data, params_of, small_vae

from vi_vae import InputError, fit
from vi_vae.app.run_directory import RunDirectory
from vi_vae.checkpoint import load_checkpoint
from vi_vae.optim import Adam, SingleOptimizer

STEPS = 8


def model(x, step):
    """Three parameters: ``a`` in every step, ``b`` in all but every third, ``c`` from step 3 on."""
    loc = pyro.param("a", torch.zeros(3)).sum()
    if step % 3 != 2:
        loc = loc + pyro.param("b", torch.ones(2)).sum()
    if step >= 3:
        loc = loc * pyro.param("c", torch.tensor(0.5), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def guide(x, step):
    pass


def train(optimizer, steps=range(STEPS)):
    """SVI steps on :func:`model`; the param store's values after each step."""
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    x = torch.linspace(-1.0, 3.0, 10)
    values = []
    for step in steps:
        svi.step(x, step)
        values.append(
            {name: value.detach().clone() for name, value in pyro.get_param_store().items()}
        )
    return values


def bitwise_equal(tensor, other):
    """Equal to the bit (``torch.equal`` holds 0.0 and -0.0 equal)."""
    integers = {torch.float32: torch.int32, torch.float64: torch.int64}
    return tensor.dtype == other.dtype and torch.equal(
        tensor.view(integers[tensor.dtype]), other.view(integers[other.dtype])
    )


def assert_bitwise_equal(first, second):
    assert len(first) == len(second)
    for one, other in zip(first, second, strict=True):
        assert one.keys() == other.keys()
        for name in one:
            assert bitwise_equal(one[name], other[name]), name


def assert_same_state(state, other):
    """Two ``get_state()`` dicts: the same settings and equal state, parameter by parameter."""
    assert state.keys() == other.keys()
    for name in state:
        assert state[name]["param_groups"] == other[name]["param_groups"], name
        assert state[name]["state"].keys() == other[name]["state"].keys(), name
        for index, values in state[name]["state"].items():
            others = other[name]["state"][index]
            assert values.keys() == others.keys()
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    assert bitwise_equal(value, others[key]), (name, key)
                else:  # ClippedAdam counts its steps in a Python int
                    assert value == others[key], (name, key)


def per_parameter_learning_rate(name):
    return {"lr": 0.2 if name == "b" else 0.05}


#: Pyro's optimizer and the torch optimizer, optim_args and clip_args of the same one in vi_vae
PAIRS = {
    "adam": (pyro.optim.Adam, torch.optim.Adam, {"lr": 0.1}, None),
    "clipped-adam-decaying": (
        pyro.optim.ClippedAdam,
        PyroClippedAdam,
        {"lr": 0.1, "lrd": 0.9, "clip_norm": 1.0},
        None,
    ),
    "per-parameter-args": (pyro.optim.Adam, torch.optim.Adam, per_parameter_learning_rate, None),
    "clipped-gradients": (pyro.optim.Adam, torch.optim.Adam, {"lr": 0.1}, {"clip_norm": 0.5}),
    "sgd-momentum": (pyro.optim.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}, None),
}


@pytest.mark.parametrize("set_to_none", [True, False], ids=["grad-none", "grad-zeroed"])
@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_same_parameters_and_state_as_pyros_per_parameter_optimizers(pair, set_to_none):
    # b is left out of steps 2 and 5 and c joins late: neither may move when not stepped, and
    # a step of a alone must not decay b's learning rate (ClippedAdam's lrd)
    pyros, constructor, optim_args, clip_args = pair
    pyro.clear_param_store()
    pyro_optimizer = pyros(optim_args) if clip_args is None else pyros(optim_args, clip_args)
    expected = train(pyro_optimizer)
    expected_state = pyro_optimizer.get_state()
    pyro.clear_param_store()
    optimizer = SingleOptimizer(constructor, optim_args, clip_args, set_to_none=set_to_none)
    assert_bitwise_equal(train(optimizer), expected)
    assert_same_state(optimizer.get_state(), expected_state)
    assert len({id(torch_optimizer) for torch_optimizer in optimizer.optim_objs.values()}) == 1


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_parameter_left_out_of_a_step_does_not_move(set_to_none):
    pyro.clear_param_store()
    values = train(
        SingleOptimizer(torch.optim.Adam, {"lr": 0.1}, set_to_none=set_to_none), [0, 2, 5]
    )
    assert not torch.equal(values[0]["a"], values[1]["a"])
    assert torch.equal(values[0]["b"], values[1]["b"])  # b has a zero or no gradient, no step
    assert torch.equal(values[1]["b"], values[2]["b"])


@pytest.mark.parametrize("set_to_none", [True, False])
def test_the_stepped_gradients_are_set_to_none_or_left_to_svi_to_zero(set_to_none):
    pyro.clear_param_store()
    train(SingleOptimizer(torch.optim.Adam, {"lr": 0.1}, set_to_none=set_to_none), [0])
    for name, value in pyro.get_param_store().named_parameters():
        if set_to_none:
            assert value.grad is None, name
        else:
            assert torch.equal(value.grad, torch.zeros_like(value)), name


def test_one_torch_optimizer_step_per_svi_step():
    pyro.clear_param_store()
    optimizer = Adam({"lr": 0.1})
    train(optimizer, steps=[0])
    steps = []
    optimizer.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    train(optimizer, steps=[3, 5, 6])
    assert len(steps) == 3
    # Adam's settings are the same for every parameter: one group holds them all
    assert [len(group["params"]) for group in optimizer.optimizer.param_groups] == [3]


@pytest.mark.parametrize("direction", ["pyro to vi_vae", "vi_vae to pyro"])
def test_state_moves_between_pyro_and_vi_vae_optimizers(direction):
    # Train 5 steps with one kind, hand its get_state() to the other, train 3 more:
    # the same parameters as 8 steps with Pyro's own optimizer.
    pyro.clear_param_store()
    expected = train(pyro.optim.Adam({"lr": 0.1}))
    first, second = (
        (pyro.optim.Adam({"lr": 0.1}), Adam({"lr": 0.1}))
        if direction == "pyro to vi_vae"
        else (Adam({"lr": 0.1}), pyro.optim.Adam({"lr": 0.1}))
    )
    pyro.clear_param_store()
    values = train(first, steps=range(5))
    second.set_state(first.get_state())
    values += train(second, steps=range(5, STEPS))
    assert_bitwise_equal(values, expected)


def test_fit_trains_with_it_by_default_bitwise_as_with_pyros_adam(monkeypatch):
    x = binary_data()
    runs = []
    for optimizer in (pyro.optim.Adam({"lr": 0.01}), None):
        pyro.set_rng_seed(0)
        vae = small_vae()
        settings = {"learning_rate": 0.01, "epochs": 3, "batch_size": 16}
        result = fit(vae.model, vae.guide, x, optimizer=optimizer, **settings)
        runs.append(([record.train_loss for record in result.history], params_of(vae)))
    assert runs[0][0] == runs[1][0]
    for name, value in runs[0][1].items():
        assert bitwise_equal(value, runs[1][1][name]), name

    calls = []
    step = SingleOptimizer.__call__
    counted = lambda *args, **kwargs: calls.append(1) or step(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(SingleOptimizer, "__call__", counted)
    fit(vae.model, vae.guide, x, epochs=1, batch_size=16)
    assert len(calls) == 4  # 64 points in batches of 16


@pytest.mark.parametrize("writer", ["pyro", "vi_vae"])
def test_fit_resumes_from_a_checkpoint_of_either_optimizer(tmp_path, writer):
    # A run whose first epoch was trained (and its optimizer state saved) by one
    # optimizer and resumed by the other ends with the parameters of a straight run.
    x = binary_data()
    pyro.set_rng_seed(0)
    vae = small_vae()
    fit(vae.model, vae.guide, x, optimizer=pyro.optim.Adam({"lr": 0.01}), epochs=2, batch_size=16)
    expected = params_of(vae)

    pyro.set_rng_seed(0)
    vae = small_vae()
    first, then = (
        (pyro.optim.Adam({"lr": 0.01}), None)
        if writer == "pyro"
        else (None, pyro.optim.Adam({"lr": 0.01}))
    )
    run_dir = tmp_path / "run"
    sink = RunDirectory(run_dir).checkpoint_sink()
    settings = {"learning_rate": 0.01, "batch_size": 16, "sink": sink}
    fit(vae.model, vae.guide, x, optimizer=first, epochs=1, **settings)
    saved = load_checkpoint(run_dir / "checkpoint.pt")["optimizer"]
    assert saved.keys() == dict(pyro.get_param_store().named_parameters()).keys()
    result = fit(vae.model, vae.guide, x, optimizer=then, epochs=2, **settings)
    assert result.resumed_from_epoch == 1
    for name, value in params_of(vae).items():
        assert bitwise_equal(value, expected[name]), name


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Adam(0.01), "optim_args must be a dict"),
        (lambda: Adam({"lr": 0.1}, clip_args=[1.0]), "clip_args must be a dict"),
        (
            lambda: SingleOptimizer(
                lambda params, **kwargs: torch.optim.lr_scheduler.StepLR(
                    torch.optim.SGD(params, lr=0.1), step_size=1
                ),
                {},
            ),
            "optim_constructor must build a torch.optim.Optimizer",
        ),
    ],
    ids=["optim-args", "clip-args", "scheduler"],
)
def test_bad_arguments_are_refused(make, message):
    pyro.clear_param_store()
    with pytest.raises(InputError, match=message):
        train(make(), steps=[0])


def test_no_parameters_no_state():
    optimizer = Adam({"lr": 0.1})
    optimizer([])
    assert optimizer.get_state() == {} and optimizer.optimizer is None


def deprecated_two_name_args(module_name, param_name):
    return {"lr": 0.2 if param_name == "b" else 0.05}


#: vi_vae's Adam against Pyro's, with the optim_args and clip_args of both
ADAM_ARGS = {
    "dict": ({"lr": 0.1}, None),
    "per-parameter-args": (per_parameter_learning_rate, None),
    "deprecated-two-name-args": (deprecated_two_name_args, None),
    "clipped-gradients": ({"lr": 0.1, "weight_decay": 0.01}, {"clip_norm": 0.5}),
    "amsgrad": ({"lr": 0.1, "amsgrad": True}, None),
}


@pytest.mark.parametrize("args", ADAM_ARGS.values(), ids=ADAM_ARGS.keys())
def test_adam_steps_multi_tensor_bitwise_as_pyros_adam(args):
    optim_args, clip_args = args
    pyro.clear_param_store()
    expected = train(pyro.optim.Adam(optim_args, clip_args))
    pyro.clear_param_store()
    optimizer = Adam(optim_args, clip_args)
    assert_bitwise_equal(train(optimizer), expected)
    assert {group["foreach"] for group in optimizer.optimizer.param_groups} == {True}


def test_adam_keeps_the_implementation_optim_args_choose():
    pyro.clear_param_store()
    optimizer = Adam({"lr": 0.1, "foreach": False})
    train(optimizer, steps=[0])
    assert optimizer.optimizer.param_groups[0]["foreach"] is False


@pytest.mark.parametrize("direction", ["pyro to vi_vae", "fused to vi_vae"])
def test_loaded_state_keeps_this_optimizers_implementation(direction):
    # a checkpoint of Pyro's Adam (foreach None) or a fused one resumes multi-tensor
    pyro.clear_param_store()
    first = (
        pyro.optim.Adam({"lr": 0.1})
        if direction == "pyro to vi_vae"
        else Adam({"lr": 0.1, "fused": True})
    )
    train(first, steps=range(3))
    second = Adam({"lr": 0.1})
    second.set_state(first.get_state())
    train(second, steps=range(3, 5))
    groups = second.optimizer.param_groups
    assert [(group["foreach"], group["fused"]) for group in groups] == [(True, None)]


def test_fused_adam_is_an_opt_in_within_its_stated_tolerance():
    # One step from the same state: fused and the loop round differently, by at most
    # 4 eps (|theta| + |update|) (vi_vae.optim.Adam's docstring; 1.5 eps measured)
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(20_000, generator=generator).requires_grad_()
    loop = torch.optim.Adam([param], lr=0.1, foreach=True)
    for _ in range(3):
        param.grad = torch.randn(20_000, generator=generator)
        loop.step()
    before, grad = param.detach().clone(), torch.randn(20_000, generator=generator)
    other = param.detach().clone().requires_grad_()
    fused = torch.optim.Adam([other], lr=0.1, fused=True)
    fused.load_state_dict(copy.deepcopy(loop.state_dict()))
    fused.param_groups[0].update(foreach=None, fused=True)  # loading brought the loop's choice
    param.grad, other.grad = grad, grad.clone()
    loop.step()
    fused.step()
    difference = (other - param).detach().abs()
    bound = 4 * torch.finfo(torch.float32).eps * (param.abs() + (param - before).abs()).detach()
    assert (difference <= bound).all()
