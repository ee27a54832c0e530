"""Compiled estimators give the eager numbers: values, gradients and the draws behind them.

Every registered estimator is checked on its traced graph (what torch.compile
is given), and the three the benchmark times (ELBO, IWAE, DReG) compiled by
inductor too: each inductor compile costs seconds of the suite's budget.

Tolerances: the compiled graph performs the same operations, but inductor may
fuse and reorder floating-point sums, so values agree to rounding: relative
1e-9 in float64 (the linear Gaussian pair; eager is ~1e-16 from itself) and
1e-5 in float32 (the VAE; float32's epsilon is 1.2e-7 and sums run over a few
hundred terms). The same seed draws the same noise on both paths, so the
comparison is of numbers, not of distributions.
"""

import dataclasses
import math

import pyro
import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from gaussian_pair import GaussianPair, gradients
from pyro.infer import SVI, Trace_ELBO
from torch.testing import assert_close

from vi_vae import InputError
from vi_vae.bounds import elbo_bound
from vi_vae.compiled import CompiledCache
from vi_vae.compiled.purify import NotCompilable, trace_pure
from vi_vae.errors import CompileWarning
from vi_vae.estimators import (
    ESTIMATOR_SPECS,
    IWAE,
    DReG,
    compiled_passes,
    parse_estimator,
    with_compile,
)

#: Pyro's own ELBOs: they have no compiled path (compile=True refuses them)
PYRO_ELBOS = ("pyro-trace-elbo", "pyro-meanfield-elbo")
COMPILED_SPECS = [name for name in ESTIMATOR_SPECS if name not in PYRO_ELBOS]
#: compiled by inductor as well: the estimators of benchmarks/compiled.py
INDUCTOR_SPECS = ["elbo", "iwae", "dreg"]
FLOAT64 = {"rtol": 1e-9, "atol": 1e-10}
FLOAT32 = {"rtol": 1e-5, "atol": 1e-5}


def two_steps(estimator, model, guide, x, seed=5):
    """Loss and gradients of two calls from one seed (the second from the RNG the first left)."""
    pyro.set_rng_seed(seed)
    first = gradients(estimator, model, guide, x)
    second = gradients(estimator, model, guide, x)
    return first, second, torch.get_rng_state()


def assert_same_steps(eager, compiled, tolerance):
    for (loss, grads), (compiled_loss, compiled_grads) in zip(eager[:2], compiled[:2], strict=True):
        assert compiled_loss == pytest.approx(loss, rel=tolerance["rtol"])
        assert grads.keys() == compiled_grads.keys()
        for name, gradient in grads.items():
            assert_close(compiled_grads[name], gradient, **tolerance)
    # the compiled path consumed the random stream exactly as eager Pyro did
    assert torch.equal(compiled[2], eager[2])


def check_linear_gaussian(name):
    pair = GaussianPair()
    x = pair.sample(8)
    spelling = ESTIMATOR_SPECS[name].example
    eager = two_steps(parse_estimator(spelling), pair.model, pair.guide, x)
    compiled_estimator = parse_estimator(spelling, compile=True)
    compiled = two_steps(compiled_estimator, pair.model, pair.guide, x)
    assert_same_steps(eager, compiled, FLOAT64)
    assert compiled_estimator._compiled.num_compiled == 1  # the second call reused the first


@pytest.mark.parametrize("name", COMPILED_SPECS)
def test_traced_step_equals_eager_on_the_linear_gaussian(name, traced_only):
    check_linear_gaussian(name)


@pytest.mark.parametrize("name", INDUCTOR_SPECS)
def test_compiled_step_equals_eager_on_the_linear_gaussian(name):
    check_linear_gaussian(name)


@pytest.fixture(scope="module")
def vae_run():
    """Eager and compiled DReG on the VAE template, shared by the tests that read them.

    DReG because it is the most involved step: two parameter groups, the path
    derivative, two gradients from one graph.
    """
    pyro.clear_param_store()
    vae, x = tiny_vae(), binary_data(8)
    estimator = DReG(3, compile=True)
    eager = two_steps(DReG(3), vae.model, vae.guide, x)
    return vae, x, estimator, eager, two_steps(estimator, vae.model, vae.guide, x)


def test_compiled_step_equals_eager_on_the_vae_template(vae_run):
    assert_same_steps(vae_run[3], vae_run[4], FLOAT32)


def test_compiled_estimator_works_with_pyro_svi(vae_run):
    vae, x, estimator = vae_run[:3]
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), loss=estimator)
    before = [parameter.detach().clone() for parameter in vae.parameters()]
    losses = [svi.step(x) for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    # SVI saw the parameters (the compiled step replays their param sites) and moved them
    assert all(not torch.equal(old, new) for old, new in zip(before, vae.parameters(), strict=True))
    assert estimator._compiled.num_compiled == 1


def test_recompilation_is_bounded_when_the_batch_size_changes(vae_run):
    vae, x, estimator = vae_run[:3]
    for batch in (8, 5, 8, 5, 8):  # a full and a last short batch, epoch after epoch
        gradients(estimator, vae.model, vae.guide, x[:batch])
    assert estimator._compiled.num_compiled == 2
    # past the bound new shapes run eagerly, after one warning, and give eager's numbers
    estimator._compiled.max_shapes = 2
    eager = DReG(3)
    gradients(eager, vae.model, vae.guide, x[:3])  # its first call guesses the plates
    pyro.set_rng_seed(3)
    with pytest.warns(CompileWarning, match="already been compiled for 2 input shapes"):
        loss, _ = gradients(estimator, vae.model, vae.guide, x[:3])
    pyro.set_rng_seed(3)
    assert loss == gradients(eager, vae.model, vae.guide, x[:3])[0]
    assert estimator._compiled.num_compiled == 2


def branching_model(x):
    loc = pyro.param("loc", torch.zeros(2))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))
        if x.sum() > 0:  # a Python branch on the data: no single graph describes it
            z = z * 2
        pyro.sample("x", pyro.distributions.Normal(z, 1.0).to_event(1), obs=x)


def branching_guide(x):
    scale = pyro.param("scale", torch.ones(2), constraint=torch.distributions.constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", pyro.distributions.Normal(x, scale).to_event(1))


def test_data_dependent_control_flow_falls_back_to_eager_with_one_warning(traced_only):
    x = torch.randn(4, 2)
    pyro.set_rng_seed(0)
    eager = gradients(IWAE(3), branching_model, branching_guide, x)
    compiled = IWAE(3, compile=True)
    pyro.set_rng_seed(0)
    with pytest.warns(
        CompileWarning, match=r"branches on a tensor value .*x\.sum\(\) > 0"
    ) as record:
        fallback = gradients(compiled, branching_model, branching_guide, x)
        gradients(compiled, branching_model, branching_guide, x)
    assert len([w for w in record if issubclass(w.category, CompileWarning)]) == 1
    assert fallback[0] == eager[0]
    for name, gradient in eager[1].items():
        assert torch.equal(fallback[1][name], gradient)


def _fail_in_an_earlier_call():
    raise RuntimeError("data-dependent value, kept by a library")


def test_a_kept_exception_is_reported_at_the_line_of_this_call():
    # torch keeps some tracing failures and raises the same object again: its traceback
    # then ends in the call that first raised it. The warning must name this call's line
    # (it named an unrelated earlier test's line, on some machines and thread counts).
    try:
        _fail_in_an_earlier_call()
    except RuntimeError as error:
        kept = error

    def model(x):
        raise kept  # the line to report

    with pytest.raises(
        NotCompilable, match=r"branches on a tensor value.*\(raise kept  # the line to report\)"
    ):
        trace_pure(lambda x: ((model(x),), None), [torch.zeros(2)])


def test_chunked_compiled_passes_equal_eager(traced_only):
    pair = GaussianPair()
    x = pair.sample(8)
    eager, compiled = DReG(5), DReG(5, compile=True)
    eager.chunk_size = compiled.chunk_size = 2 * 8  # two particles per pass
    assert_same_steps(
        two_steps(eager, pair.model, pair.guide, x),
        two_steps(compiled, pair.model, pair.guide, x),
        FLOAT64,
    )
    assert compiled._compiled.num_compiled == 4  # values and chunk passes, 2 and 1 particles


def test_bad_compile_values_are_refused():
    with pytest.raises(InputError, match="compile must be True or False; got 'yes'"):
        IWAE(5, compile="yes")
    with pytest.raises(InputError, match="compile must be True or False"):
        parse_estimator("iwae:5", compile=1)
    with pytest.raises(InputError, match="Trace_ELBO has no compiled path"):
        with_compile(Trace_ELBO())
    with pytest.raises(InputError, match="no compiled path"):
        parse_estimator("pyro-trace-elbo", compile=True)


def test_compiled_passes_compute_what_their_pass_functions_say(traced_only):
    # The passes are pure: they read nothing of an estimator but the PassFunctions
    # they are given. IWAE's functions with the ELBO's bound give minus the mean log
    # weight of the eager draws of the same seed (to float64 rounding, as above).
    pair = GaussianPair()
    x = pair.sample(8)
    iwae = IWAE(4, compile=True)
    iwae.loss(pair.model, pair.guide, x)  # guesses the plates, compiles a values pass
    own = iwae._compiled.num_compiled
    passes = dataclasses.replace(iwae._passes(), bound=elbo_bound, cache=CompiledCache())
    call = compiled_passes.PassCall(pair.model, pair.guide, (x,), {}, 4)
    pyro.set_rng_seed(3)
    loss, batch_size = compiled_passes.step(passes, call)
    pyro.set_rng_seed(3)
    eager = iwae._trace(pair.model, pair.guide, (x,), {}, 4).log_weights.detach()
    assert loss == pytest.approx(-elbo_bound(eager).sum().item(), rel=FLOAT64["rtol"])
    assert loss != pytest.approx(-iwae._bound(eager).sum().item(), rel=1e-3)
    assert batch_size == 8 and passes.cache.num_compiled == 1
    assert iwae._compiled.num_compiled == own  # the estimator's own cache was not used
    pyro.set_rng_seed(3)
    values, batch_size = compiled_passes.values(passes, call)
    assert values.shape == (4, 8) and batch_size == 8
    assert -elbo_bound(values).sum().item() == pytest.approx(loss, rel=FLOAT64["rtol"])
