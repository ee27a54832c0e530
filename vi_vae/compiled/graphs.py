"""Compiled graphs shared by the whole process, keyed by what they compute, and what they cost.

Every estimator, :func:`vi_vae.fit` call and evaluator keeps its own traces
(:class:`~vi_vae.compiled.CompiledCache`: tracing reads the Python state of its
model and guide, so a new one traces again), but two traces that compute the
same function share one compiled graph: a second ``fit(compile=True)``, a new
estimator, an evaluation of another model of the same shapes compile nothing.

The key is the traced graph itself, not the model or guide it came from: its
code (every operation, every shape and every Python number fixed at trace
time), the metadata of its inputs, the values of the tensor literals it holds,
the noise graph's code, the backend and the thread count inductor generates
kernels for. The model's parameters are inputs of the graph (captured tensors,
:mod:`vi_vae.compiled.purify`), passed at every call, so two models with the
same structure and different parameters share a graph and each computes with
its own parameters; two that differ in anything the graph computes get two.

:func:`~vi_vae.compiled.compile_stats` says what compiling cost the process so far, apart from
the run time: graphs compiled and their seconds, graphs reused, traces and
their seconds.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import fx

from vi_vae._digest import tensor_sha256
from vi_vae.compiled.purify import PureFunction

__all__ = [
    "MAX_SHARED_GRAPHS",
    "CompileStats",
    "clear_shared_graphs",
    "compile_stats",
    "graph_key",
    "keep_graph",
    "record_costs",
    "shared_graph",
]

#: compiled graphs the process keeps for reuse; the least recently used goes. Sized
#: for a session's worth of passes: a fit (2 shapes) and its evaluations (4 shapes)
#: for a few models, estimators and AIS settings, each a few MB of generated code.
MAX_SHARED_GRAPHS = 64


@dataclass(frozen=True)
class CompileStats:
    """What ``compile=True`` has cost this process, apart from running the compiled code.

    Subtract an earlier snapshot to get what happened in between:
    ``compile_stats() - before``.

    Attributes:
        compilations: graphs handed to the compiler (each is compiled on its first call).
        compile_seconds: the first calls of those graphs: compiling, plus one run.
        reuses: traces that found their graph already compiled in this process.
        traces: functions traced into pure graphs (:func:`vi_vae.compiled.trace_pure`).
        trace_seconds: time spent tracing.
    """

    compilations: int = 0
    compile_seconds: float = 0.0
    reuses: int = 0
    traces: int = 0
    trace_seconds: float = 0.0

    def __sub__(self, earlier: CompileStats) -> CompileStats:
        """The costs between ``earlier`` and this snapshot."""
        return CompileStats(
            *(
                getattr(self, field.name) - getattr(earlier, field.name)
                for field in dataclasses.fields(self)
            )
        )


_STATS = CompileStats()
_GRAPHS: collections.OrderedDict[Hashable, Callable] = collections.OrderedDict()


def compile_stats() -> CompileStats:
    """A snapshot of the process's compile costs so far (:class:`~vi_vae.compiled.CompileStats`)."""
    return _STATS


def record_costs(**costs: float) -> None:
    """Add ``costs`` (fields of :class:`~vi_vae.compiled.CompileStats`) to the process's counts."""
    global _STATS
    _STATS = CompileStats(
        *(
            getattr(_STATS, field.name) + costs.get(field.name, 0)
            for field in dataclasses.fields(CompileStats)
        )
    )


def shared_graph(key: Hashable, compile: Callable[[], Callable]) -> tuple[Callable, bool]:
    """The process's compiled graph for ``key``: ``(graph, reused)``; ``compile()`` makes one.

    A new graph is kept only after its first call succeeds
    (:func:`~vi_vae.compiled.graphs.keep_graph`), so a graph the compiler fails on
    is never handed out again.
    """
    graph = _GRAPHS.get(key)
    if graph is not None:
        _GRAPHS.move_to_end(key)
        return graph, True
    return compile(), False


def keep_graph(key: Hashable, graph: Callable) -> None:
    """Keep ``graph`` for reuse under ``key``, dropping the least recently used beyond the bound."""
    _GRAPHS[key] = graph
    _GRAPHS.move_to_end(key)
    while len(_GRAPHS) > MAX_SHARED_GRAPHS:
        _GRAPHS.popitem(last=False)


def clear_shared_graphs() -> None:
    """Forget every shared compiled graph (the next trace of each compiles again)."""
    _GRAPHS.clear()


def graph_key(pure: PureFunction, backend: str) -> Hashable:
    """What ``pure.graph`` computes, as a hashable value (module docstring).

    Two traces with equal keys are the same function of (arguments, captured
    tensors, noise), so one compiled graph serves both.
    """
    threads = torch.get_num_threads() if backend != "none" else None
    return (
        backend,
        threads,
        pure.graph.code,
        pure.noise.code,
        tuple(_describe_placeholder(node) for node in pure.graph.graph.nodes),
        _literals(pure.graph),
        _literals(pure.noise),
        _globals(pure.graph.graph),
        _globals(pure.noise.graph),
    )


def _describe_placeholder(node: fx.Node) -> tuple | None:
    if node.op != "placeholder":
        return None
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return (node.name, repr(value))
    return (
        node.name,
        tuple(value.shape),
        tuple(value.stride()),
        value.dtype,
        str(value.device),
        value.requires_grad,
    )


def _literals(module: fx.GraphModule) -> tuple:
    """The tensor constants a graph holds (``torch.tensor(5.0)`` in the code), by value."""
    found = []
    for node in module.graph.nodes:
        if node.op != "get_attr":
            continue
        value = getattr(module, node.target)
        if not isinstance(value, torch.Tensor):
            found.append((node.target, type(value).__qualname__, id(value)))  # never equal
            continue
        digest = tensor_sha256(value)
        found.append((node.target, tuple(value.shape), value.dtype, str(value.device), digest))
    return tuple(found)


def _globals(graph: fx.Graph) -> tuple:
    """The names the generated code reads besides torch's ops, with what they stand for."""
    names = graph.python_code("self").globals
    return tuple(
        sorted((name, type(value).__qualname__, repr(value)) for name, value in names.items())
    )
