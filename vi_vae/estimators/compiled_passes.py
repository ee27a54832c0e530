"""The particle estimators' passes, compiled: what ``ParticleEstimator(compile=True)`` runs.

Three kinds of pass, each traced once per input shape by
:func:`vi_vae.compiled.trace_pure` and compiled by ``torch.compile``:

- ``step``: the one-pass gradient step, log weights to loss *and* gradients in one
  graph (the backward pass is traced too: its operations are recorded as
  ``torch.autograd.grad`` runs them), so the compiled function returns the
  gradients, which are then added to each parameter's ``.grad`` as
  ``backward()`` would;
- ``values``: a chunk of particle values without gradients (``loss``, the first
  pass of the chunked fallback);
- ``chunk``: a chunk's gradient for given coefficients (its second pass).

A compiled pass runs no Pyro code, so under a Pyro handler (``SVI.step``
records the ``param`` sites of ``loss_and_grads`` to know what to optimize) it
replays the pair's ``pyro.param`` statements, by name, for the handler to see.

Each is a pure function of what it is given: a :class:`PassFunctions` (the
estimator's maths, its cache and its settings) and the call. It returns
``None`` (or ``False``) when the pass must run eagerly: the pair cannot be traced
(a warning says why), or the call's arguments are not tensors and hashable
values. The key of a compiled pass holds the estimator's public settings
(``num_particles``, ``alpha``, ...), so changing one compiles again rather than
running a stale graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

import pyro
from pyro.poutine.runtime import am_i_wrapped
from torch import Tensor

from vi_vae.compiled import CompiledCache
from vi_vae.estimators.gradient_terms import GradientTerm, ParameterGroup
from vi_vae.weights import WeightedTraces

__all__ = ["PassCall", "PassFunctions", "chunk_gradients", "step", "values"]

Surrogates = dict[ParameterGroup, Tensor]


@dataclasses.dataclass(frozen=True)
class PassFunctions:
    """An estimator's side of its compiled passes: its maths, traced once per input shape.

    Attributes:
        label: whose passes, as warnings name them (the estimator's class name).
        settings: the estimator's plain settings, part of every compiled pass's key.
        cache: the compiled passes kept so far.
        trace: ``trace(model, guide, args, kwargs, num_particles)``, one vectorized draw.
        particle_values: the per-particle values ``[num_particles, batch]`` of traces.
        bound: the bound's estimate per point ``[batch]`` from particle values.
        step_surrogates: the one-pass step's surrogates and log weights of traces.
        surrogates: Σ c log w of each parameter group, for given gradient terms.
        gradients: ``(parameters, gradients)``, −∇ of each surrogate for its group.
    """

    label: str
    settings: Hashable
    cache: CompiledCache
    trace: Callable[[Callable, Callable, tuple, dict, int], WeightedTraces]
    particle_values: Callable[[WeightedTraces], Tensor]
    bound: Callable[[Tensor], Tensor]
    step_surrogates: Callable[[WeightedTraces], tuple[Surrogates, Tensor]]
    surrogates: Callable[[WeightedTraces, list[GradientTerm]], Surrogates]
    gradients: Callable[[WeightedTraces, Surrogates], tuple[list[Tensor], list[Tensor]]]


@dataclasses.dataclass(frozen=True)
class PassCall:
    """What one pass is run on: the pair, its arguments and the number of particles."""

    model: Callable
    guide: Callable
    args: tuple
    kwargs: dict
    num_particles: int

    def trace(self, passes: PassFunctions, call_args: tuple, call_kwargs: dict) -> WeightedTraces:
        """``passes.trace`` of the pair at the (traced) arguments, one vectorized draw."""
        return passes.trace(self.model, self.guide, call_args, call_kwargs, self.num_particles)


def step(passes: PassFunctions, call: PassCall) -> tuple[float, int] | None:
    """Run the one-pass gradient step compiled: ``(loss, batch size)``, or ``None`` (eager)."""

    def traced(call_args: tuple, call_kwargs: dict) -> tuple[tuple[Tensor, ...], Any]:
        traces = call.trace(passes, call_args, call_kwargs)
        surrogates, log_weights = passes.step_surrogates(traces)
        parameters, gradients = passes.gradients(traces, surrogates)
        loss = -passes.bound(log_weights).sum()
        return (loss, *gradients), _info(traces, parameters)

    outputs = _run(passes, "gradient step", "step", call, (), traced)
    if outputs is None:
        return None
    loss, *gradients = outputs[0]
    _add_gradients(outputs[1]["parameters"], gradients)
    return loss.item(), outputs[1]["batch_size"]


def values(passes: PassFunctions, call: PassCall) -> tuple[Tensor, int] | None:
    """The particle values ``[num_particles, batch]`` without gradients, compiled.

    Returns ``(values, batch size)``, or ``None`` to run the pass eagerly.
    """

    def traced(call_args: tuple, call_kwargs: dict) -> tuple[tuple[Tensor, ...], Any]:
        traces = call.trace(passes, call_args, call_kwargs)
        return (passes.particle_values(traces).detach(),), _info(traces, [])

    outputs = _run(passes, "bound", "values", call, (call.num_particles,), traced)
    if outputs is None:
        return None
    return outputs[0][0], outputs[1]["batch_size"]


def chunk_gradients(passes: PassFunctions, call: PassCall, terms: list[GradientTerm]) -> bool:
    """Add a chunk's Σ c ∇ log w to ``.grad``, compiled; ``False`` to run it eagerly."""
    layout = tuple((term.parameters, term.path_derivative) for term in terms)
    coefficients = [term.coefficients for term in terms]

    def traced(call_args: tuple, call_kwargs: dict, *given: Tensor) -> tuple[tuple, Any]:
        traces = call.trace(passes, call_args, call_kwargs)
        chunk_terms = [
            dataclasses.replace(term, coefficients=value)
            for term, value in zip(terms, given, strict=True)
        ]
        parameters, gradients = passes.gradients(traces, passes.surrogates(traces, chunk_terms))
        return tuple(gradients), _info(traces, parameters)

    static = (call.num_particles, layout)
    outputs = _run(passes, "chunk gradient", "chunk", call, static, traced, coefficients)
    if outputs is None:
        return False
    _add_gradients(outputs[1]["parameters"], list(outputs[0]))
    return True


def _run(
    passes: PassFunctions,
    what: str,
    kind: str,
    call: PassCall,
    static: Hashable,
    traced: Callable[..., tuple[tuple[Tensor, ...], Any]],
    extra: list[Tensor] | None = None,
) -> tuple[tuple[Tensor, ...], Any] | None:
    """``traced`` compiled through the cache, its param sites replayed; ``None``: run eagerly.

    The cache keeps one group of compiled passes per ``kind`` of pass and pair.
    """
    label = f"{passes.label}'s {what}"
    key = (static, passes.settings)
    outputs = passes.cache.run_call(
        label, (kind, call.model, call.guide), key, traced, call.args, call.kwargs, extra or ()
    )
    if outputs is not None:
        _replay_param_sites(outputs[1])
    return outputs


def _info(traces: Any, parameters: list[Tensor]) -> dict[str, Any]:
    """What a compiled pass needs beside its tensors: gradient owners, batch, param names."""
    sites = (
        name
        for trace in (traces.guide_trace, traces.model_trace)
        for name, site in trace.nodes.items()
        if site["type"] == "param"
    )
    return {
        "parameters": parameters,
        "batch_size": traces.log_guide.shape[-1],
        "param_sites": tuple(dict.fromkeys(sites)),
    }


def _replay_param_sites(info: dict[str, Any]) -> None:
    """Let the handlers on Pyro's stack (``SVI.step``'s param capture) see the parameters."""
    if am_i_wrapped():
        for name in info["param_sites"]:
            pyro.param(name)


def _add_gradients(parameters: list[Tensor], gradients: list[Tensor]) -> None:
    """Accumulate into ``.grad`` as ``backward()`` does: set it, or add to it in place."""
    for parameter, gradient in zip(parameters, gradients, strict=True):
        if parameter.grad is None:
            parameter.grad = gradient
        else:
            parameter.grad.add_(gradient)
