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

Each returns ``None`` (or ``False``) when the pass must run eagerly: the pair
cannot be traced (a warning says why), or the call's arguments are not
tensors and hashable values. The key of a compiled pass holds the estimator's
public settings (``num_particles``, ``alpha``, ...), so changing one compiles
again rather than running a stale graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import pyro
from pyro.poutine.runtime import am_i_wrapped
from torch import Tensor

if TYPE_CHECKING:
    from vi_vae.estimators.particle_estimator import GradientTerm, ParticleEstimator

__all__ = ["chunk_gradients", "step", "values"]


def step(
    estimator: ParticleEstimator, model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> float | None:
    """Run the one-pass gradient step compiled; its loss, or ``None`` to run it eagerly."""

    def traced(call_args: tuple, call_kwargs: dict) -> tuple[tuple[Tensor, ...], Any]:
        traces = estimator._trace(model, guide, call_args, call_kwargs, estimator.num_particles)
        surrogates, log_weights = estimator._step_surrogates(traces)
        parameters, gradients = estimator._gradients(traces, surrogates)
        loss = -estimator._bound(log_weights).sum()
        return (loss, *gradients), _info(traces, parameters)

    outputs = _run(estimator, "gradient step", ("step", model, guide), (), traced, args, kwargs)
    if outputs is None:
        return None
    _replay_param_sites(outputs[1])
    loss, *gradients = outputs[0]
    _add_gradients(outputs[1]["parameters"], gradients)
    estimator._batch_size = outputs[1]["batch_size"]
    return loss.item()


def values(
    estimator: ParticleEstimator,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
) -> Tensor | None:
    """``num_particles`` particle values ``[num_particles, batch]``, compiled, without gradients."""

    def traced(call_args: tuple, call_kwargs: dict) -> tuple[tuple[Tensor, ...], Any]:
        traces = estimator._trace(model, guide, call_args, call_kwargs, num_particles)
        return (estimator._particle_values(traces).detach(),), _info(traces, [])

    key = ("values", model, guide)
    outputs = _run(estimator, "bound", key, (num_particles,), traced, args, kwargs)
    if outputs is None:
        return None
    _replay_param_sites(outputs[1])
    estimator._batch_size = outputs[1]["batch_size"]
    return outputs[0][0]


def chunk_gradients(
    estimator: ParticleEstimator,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    terms: list[GradientTerm],
) -> bool:
    """Add a chunk's Σ c ∇ log w to ``.grad``, compiled; ``False`` to run it eagerly."""
    layout = tuple((term.parameters, term.path_derivative) for term in terms)
    coefficients = [term.coefficients for term in terms]

    def traced(call_args: tuple, call_kwargs: dict, *given: Tensor) -> tuple[tuple, Any]:
        traces = estimator._trace(model, guide, call_args, call_kwargs, num_particles)
        chunk_terms = [
            dataclasses.replace(term, coefficients=value)
            for term, value in zip(terms, given, strict=True)
        ]
        parameters, gradients = estimator._gradients(
            traces, estimator._surrogates(traces, chunk_terms)
        )
        return tuple(gradients), _info(traces, parameters)

    key = ("chunk", model, guide)
    outputs = _run(
        estimator,
        "chunk gradient",
        key,
        (num_particles, layout),
        traced,
        args,
        kwargs,
        coefficients,
    )
    if outputs is None:
        return False
    _replay_param_sites(outputs[1])
    _add_gradients(outputs[1]["parameters"], list(outputs[0]))
    return True


def _run(
    estimator: ParticleEstimator,
    what: str,
    group: Hashable,
    static: Hashable,
    traced: Callable[..., tuple[tuple[Tensor, ...], Any]],
    args: tuple,
    kwargs: dict,
    extra: list[Tensor] | None = None,
) -> tuple[tuple[Tensor, ...], Any] | None:
    label = f"{type(estimator).__name__}'s {what}"
    key = (static, _settings(estimator))
    return estimator._compiled.run_call(label, group, key, traced, args, kwargs, extra or ())


def _settings(estimator: ParticleEstimator) -> tuple:
    """The estimator's public attributes that are plain values: part of every trace's key."""
    return tuple(
        (name, value)
        for name, value in sorted(vars(estimator).items())
        if not name.startswith("_") and isinstance(value, (bool, int, float, str, type(None)))
    )


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
