"""How an estimator's gradient is written, terms Σ c ∇ log w, and how each reaches its parameters.

See :mod:`vi_vae.estimators.particle_estimator` for where the terms come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pyro.poutine.trace_struct import Trace
from torch import Tensor

from vi_vae.weights import WeightedTraces

__all__ = [
    "GradientTerm",
    "ParameterGroup",
    "accumulate",
    "bound_coefficients",
    "check_reparameterized",
    "group_gradients",
    "group_parameters",
    "group_surrogates",
    "trace_parameters",
]

ParameterGroup = Literal["all", "guide", "model"]


@dataclass(frozen=True)
class GradientTerm:
    r"""One part of an estimator's gradient: :math:`\sum_{k,n} c_{k,n} \nabla \log w_{k,n}`.

    Attributes:
        coefficients: :math:`c`, ``[num_particles, batch]``, without gradients.
        parameters: which parameters receive it: ``"all"``, ``"guide"`` or ``"model"``.
        path_derivative: differentiate log w with the guide's score term dropped
            (only the path through z reaches the guide's parameters).
    """

    coefficients: Tensor
    parameters: ParameterGroup = "all"
    path_derivative: bool = False


def bound_coefficients(bound: Callable[[Tensor], Tensor], log_weights: Tensor) -> Tensor:
    """∂ (Σ_n bound_n) / ∂ log w: each draw's weight in the bound's own gradient."""
    with torch.enable_grad():
        variable = log_weights.detach().requires_grad_()
        (coefficients,) = torch.autograd.grad(bound(variable).sum(), variable)
    return coefficients


def trace_parameters(trace: Trace) -> dict[str, Tensor]:
    """The unconstrained leaf tensors of the trace's ``param`` sites, by site name."""
    leaves = {}
    for name, site in trace.nodes.items():
        if site["type"] == "param":
            value = site["value"]
            leaves[name] = value.unconstrained() if hasattr(value, "unconstrained") else value
    return leaves


def group_parameters(
    traces: WeightedTraces, group: ParameterGroup, guide_names: frozenset[str] | None = None
) -> list[Tensor]:
    """The leaf tensors of a group: the guide's parameters, the others, or all.

    Args:
        traces: the pass's traces; their ``param`` sites are the candidates.
        group: ``"guide"``, ``"model"`` or ``"all"``.
        guide_names: names of the guide's parameters, those its distributions depend
            on (:func:`vi_vae.contract.check_pair`); ``None``: the guide trace's
            ``param`` sites.
    """
    guide = trace_parameters(traces.guide_trace)
    model = trace_parameters(traces.model_trace)
    every = {**guide, **{name: leaf for name, leaf in model.items() if name not in guide}}
    if group == "all":
        return list(every.values())
    names = set(guide) if guide_names is None else guide_names
    return [leaf for name, leaf in every.items() if (name in names) == (group == "guide")]


def check_reparameterized(guide_trace: Trace) -> None:
    """Refuse a guide site without ``rsample``: the estimators differentiate through draws."""
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
            raise NotImplementedError(
                f"guide site {name!r} ({type(site['fn']).__name__}) has no rsample; vi_vae's "
                "estimators differentiate through reparameterized draws z = g(ε, φ). Use "
                "pyro.infer.TraceGraph_ELBO for score-function gradients"
            )


def group_surrogates(
    traces: WeightedTraces,
    terms: list[GradientTerm],
    particle_values: Callable[[WeightedTraces, bool], Tensor],
) -> dict[ParameterGroup, Tensor]:
    """Σ c log w of each parameter group, for the groups whose sum has a gradient.

    ``particle_values(traces, path_derivative)`` gives the values the coefficients
    multiply: the estimator's log weights, or their path derivative.
    """
    check_reparameterized(traces.guide_trace)
    values: dict[bool, Tensor] = {}
    sums: dict[ParameterGroup, Tensor] = {}
    for term in terms:
        if term.path_derivative not in values:
            values[term.path_derivative] = particle_values(traces, term.path_derivative)
        part = (term.coefficients * values[term.path_derivative]).sum()
        group = term.parameters
        sums[group] = sums[group] + part if group in sums else part
    return {group: s for group, s in sums.items() if s.requires_grad}


def group_gradients(
    traces: WeightedTraces,
    group: ParameterGroup,
    surrogate: Tensor,
    guide_names: frozenset[str] | None,
    *,
    retain: bool,
) -> list[tuple[Tensor, Tensor]]:
    """``(parameter, −∇ surrogate)`` for each trainable parameter of ``group`` it reaches.

    ``guide_names`` as in :func:`group_parameters`.
    """
    leaves = [p for p in group_parameters(traces, group, guide_names) if p.requires_grad]
    if not leaves:
        return []
    found = torch.autograd.grad(-surrogate, leaves, retain_graph=retain, allow_unused=True)
    return [(p, g) for p, g in zip(leaves, found, strict=True) if g is not None]


def accumulate(
    traces: WeightedTraces,
    surrogates: dict[ParameterGroup, Tensor],
    guide_names: frozenset[str] | None,
    *,
    retain_graph: bool,
) -> None:
    """Accumulate −∇ of each group's surrogate into the ``.grad`` of its parameters.

    ``retain_graph`` keeps the graph after the last group (Pyro's ``ELBO.retain_graph``).
    """
    pending = list(surrogates.items())
    for index, (group, surrogate) in enumerate(pending):
        retain = index < len(pending) - 1 or retain_graph
        if group == "all":
            (-surrogate).backward(retain_graph=retain)
            continue
        for parameter, gradient in group_gradients(
            traces, group, surrogate, guide_names, retain=retain
        ):
            parameter.grad = gradient if parameter.grad is None else parameter.grad + gradient
