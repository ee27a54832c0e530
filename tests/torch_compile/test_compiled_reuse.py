"""Compiled graphs are shared by the process: a second fit, evaluation or AIS compiles nothing.

Counted, not timed (:func:`vi_vae.compiled.compile_stats`). Most tests run the
traced graphs without torch.compile (``traced_only``): the sharing is the same
with any backend, and one test checks it under inductor. Every test starts with
no shared graph, so what it counts is its own.

Tolerances: equal to the bit where the same graph runs the same inputs (a
shared graph against the graph compiled afresh); against eager, relative 1e-9
in float64 and 1e-5 in float32, as in test_compiled_estimators.py.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from gaussian_pair import GaussianPair, gradients
from torch._dynamo.utils import counters
from torch.testing import assert_close

from vi_vae import VAE, annealed_importance_sampling, fit, log_marginal_likelihood
from vi_vae.compiled import clear_shared_graphs, compile_stats, graphs
from vi_vae.errors import CompileWarning
from vi_vae.estimators import IWAE

FIT = {"epochs": 2, "batch_size": 8, "learning_rate": 0.01}


@pytest.fixture(autouse=True)
def _no_shared_graphs():
    clear_shared_graphs()
    yield
    clear_shared_graphs()


def fit_from_start(vae, initial, x):
    """``fit(compile=True)`` of ``vae`` from the parameters ``initial``: losses and parameters."""
    vae.load_state_dict(initial)
    result = fit(vae.model, vae.guide, x, compile=True, **FIT)
    return [row.train_loss for row in result.history], [
        p.detach().clone() for p in vae.parameters()
    ]


def assert_same_fit(first, second):
    assert second[0] == first[0]
    for parameter, other in zip(first[1], second[1], strict=True):
        assert torch.equal(other, parameter)


def test_a_second_fit_compiles_nothing_and_gives_the_same_numbers(traced_only):
    vae, x = tiny_vae(), binary_data(20)  # batches of 8, 8 and 4: two shapes
    initial = {name: value.clone() for name, value in vae.state_dict().items()}
    before = compile_stats()
    first = fit_from_start(vae, initial, x)
    compiled = compile_stats() - before
    assert (compiled.compilations, compiled.reuses, compiled.traces) == (2, 0, 2)
    before = compile_stats()
    second = fit_from_start(vae, initial, x)
    again = compile_stats() - before
    assert (again.compilations, again.reuses, again.traces) == (0, 2, 2)
    assert again.compile_seconds == 0 and again.trace_seconds > 0
    assert_same_fit(first, second)


def test_a_model_of_other_shapes_compiles_its_own_graphs(traced_only):
    x = binary_data(8)
    fit_from_start(tiny_vae(), tiny_vae().state_dict(), x)
    wider = VAE(input_dim=6, latent_dim=2, hidden_sizes=(7,), seed=0)
    before = compile_stats()
    fit_from_start(wider, wider.state_dict(), x)
    assert (compile_stats() - before).compilations == 1


def test_a_shared_graph_computes_with_the_parameters_of_its_caller(traced_only):
    # Same structure, other parameters: the graph is shared and reads the new
    # parameters (inputs of the graph, never constants): it gives what the graph
    # compiled for this model alone gives, to the bit, and what eager gives.
    x = binary_data(20)
    fit_from_start(tiny_vae(seed=0), tiny_vae(seed=0).state_dict(), x)
    other = tiny_vae(seed=3)
    initial = {name: value.clone() for name, value in other.state_dict().items()}
    before = compile_stats()
    shared = fit_from_start(other, initial, x)
    assert (compile_stats() - before).compilations == 0
    clear_shared_graphs()
    alone = fit_from_start(other, initial, x)
    assert_same_fit(alone, shared)
    other.load_state_dict(initial)
    eager = fit(other.model, other.guide, x, **FIT)
    assert shared[0] == pytest.approx([row.train_loss for row in eager.history], rel=1e-5)
    assert shared[0] != pytest.approx(
        fit_from_start(tiny_vae(seed=0), tiny_vae(seed=0).state_dict(), x)[0], rel=1e-3
    )


def test_a_hand_written_pair_with_other_parameter_values_shares_the_graph(traced_only):
    x = GaussianPair().sample(8)
    losses = []
    for seed in (0, 1):
        pyro.clear_param_store()
        pair = GaussianPair(seed=seed)
        pyro.set_rng_seed(4)
        eager = gradients(IWAE(3), pair.model, pair.guide, x)
        pyro.clear_param_store()
        pyro.set_rng_seed(4)
        before = compile_stats()
        compiled = gradients(IWAE(3, compile=True), pair.model, pair.guide, x)
        assert (compile_stats() - before).compilations == (1 if seed == 0 else 0)
        assert compiled[0] == pytest.approx(eager[0], rel=1e-9)
        for name, gradient in eager[1].items():
            assert_close(compiled[1][name], gradient, rtol=1e-9, atol=1e-10)
        losses.append(compiled[0])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def scaled_pair(slope, literal):
    """A pair whose likelihood reads a Python number: a constant of the graph's code, or a
    tensor literal (``torch.tensor(slope)``) the graph holds; either is fixed at trace time."""

    def model(x):
        loc = pyro.param("loc", torch.zeros(2, dtype=torch.float64))
        factor = torch.tensor(slope, dtype=torch.float64) if literal else slope
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z * factor, 1.0).to_event(1), obs=x)

    def guide(x):
        shift = pyro.param("shift", torch.zeros(2, dtype=torch.float64))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x + shift, 0.5).to_event(1))

    return model, guide


@pytest.mark.parametrize("literal", [False, True], ids=["float", "tensor-literal"])
def test_a_number_fixed_at_trace_time_is_part_of_the_key(literal, traced_only):
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    losses = []
    for slope in (1.0, 3.0):
        model, guide = scaled_pair(slope, literal)
        pyro.set_rng_seed(2)
        eager = IWAE(4).loss(model, guide, x)
        before = compile_stats()
        pyro.set_rng_seed(2)
        compiled = IWAE(4, compile=True).loss(model, guide, x)
        assert (compile_stats() - before).compilations == 1  # never the other slope's graph
        assert compiled == pytest.approx(eager, rel=1e-9)
        losses.append(compiled)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_evaluations_of_two_models_share_their_graph(traced_only):
    x = binary_data(12)
    for seed, compilations in ((0, 1), (3, 0)):
        vae = tiny_vae(seed=seed)
        settings = {"num_particles": 7, "seed": 1, "compute_pareto_k": False}
        eager = log_marginal_likelihood(vae.model, vae.guide, x, **settings)
        before = compile_stats()
        compiled = log_marginal_likelihood(vae.model, vae.guide, x, **settings, compile=True)
        assert (compile_stats() - before).compilations == compilations
        assert_close(compiled.log_likelihood, eager.log_likelihood, rtol=1e-5, atol=1e-5)


def test_ais_runs_of_two_models_share_their_graph(traced_only):
    # tolerance: absolute 1e-3 nats, as in test_compiled_ais.py (rounding carried
    # through the leapfrog steps)
    x = binary_data(5)
    run = {"num_steps": 5, "num_chains": 2, "leapfrog_steps": 2, "seed": 5}
    for seed, compilations in ((0, 1), (3, 0)):
        vae = tiny_vae(seed=seed)
        eager = annealed_importance_sampling(vae.model, vae.guide, x, **run)
        before = compile_stats()
        compiled = annealed_importance_sampling(vae.model, vae.guide, x, **run, compile=True)
        assert (compile_stats() - before).compilations == compilations
        assert_close(compiled.log_likelihood, eager.log_likelihood, rtol=0, atol=1e-3)


def test_the_shared_graphs_are_bounded(traced_only, monkeypatch):
    monkeypatch.setattr(graphs, "MAX_SHARED_GRAPHS", 1)
    x = binary_data(8)
    counts = []
    for width in (5, 7, 5):  # the third finds the first's graph dropped for the second's
        vae = VAE(input_dim=6, latent_dim=2, hidden_sizes=(width,), seed=0)
        before = compile_stats()
        fit_from_start(vae, vae.state_dict(), x)
        counts.append((compile_stats() - before).compilations)
    assert counts == [1, 1, 1]
    assert len(graphs._GRAPHS) == 1


def test_a_second_fit_under_inductor_compiles_nothing():
    # a new model with the same initial values: the same numbers, to the bit, from
    # other parameter objects (inputs of the compiled graph, never guarded on by identity)
    x = binary_data(8)
    first = fit_from_start(tiny_vae(), tiny_vae().state_dict(), x)
    dynamo_graphs = counters["stats"]["unique_graphs"]
    before = compile_stats()
    second = fit_from_start(tiny_vae(), tiny_vae().state_dict(), x)
    other = tiny_vae(seed=3)
    initial = {name: value.clone() for name, value in other.state_dict().items()}
    third = fit_from_start(other, initial, x)
    assert (compile_stats() - before).compilations == 0
    assert counters["stats"]["unique_graphs"] == dynamo_graphs  # nor did Dynamo, unseen
    assert_same_fit(first, second)
    other.load_state_dict(initial)
    eager = fit(other.model, other.guide, x, **FIT)
    assert third[0] == pytest.approx([row.train_loss for row in eager.history], rel=1e-5)
    assert third[0] != pytest.approx(first[0], rel=1e-3)


def test_a_graph_the_compiler_fails_on_is_neither_counted_nor_shared(monkeypatch):
    def failing_backend(graph, example_inputs):
        raise RuntimeError("this backend compiles nothing")

    torch._dynamo.register_backend(failing_backend, name="vi_vae_test_failing")
    monkeypatch.setenv("VI_VAE_COMPILE_BACKEND", "vi_vae_test_failing")
    pair = GaussianPair()
    x = pair.sample(8)
    pyro.set_rng_seed(4)
    eager = gradients(IWAE(3), pair.model, pair.guide, x)
    for _ in range(2):  # the second estimator tries again: nothing failed was kept
        before = compile_stats()
        pyro.set_rng_seed(4)
        with pytest.warns(CompileWarning, match="torch.compile failed: BackendCompilerFailed"):
            fallback = gradients(IWAE(3, compile=True), pair.model, pair.guide, x)
        costs = compile_stats() - before
        assert (costs.compilations, costs.reuses, costs.traces) == (0, 0, 1)
        assert not graphs._GRAPHS
        assert fallback[0] == eager[0]
