"""Compiled pure functions by input shape, bounded, with one clear warning when it runs eagerly.

Shapes are fixed at trace time (:mod:`vi_vae.compiled.purify`), so a function
is traced and compiled once per input signature (shapes, strides, dtypes,
devices and the static arguments) and the compiled code is cached per shape:
a training run has two (full batches and the last, short one), an evaluation
at most four (full passes and a last short pass of points, each possibly with
a last short chunk of particles). Nothing is padded, so the numbers never
depend on padding and the draws match eager Pyro's. A group (one kind of pass
of one model/guide pair) compiles at most :data:`MAX_COMPILED_SHAPES` shapes;
further shapes run eagerly, after one warning.

A cache keeps its own traces, but the compiled code is shared by the process:
a trace that computes the same function as an earlier one (another estimator,
a second :func:`vi_vae.fit`, another model of the same shapes) runs the graph
compiled for it (:mod:`vi_vae.compiled.graphs`), so only tracing is repeated.

Which compiler: ``torch.compile`` with the backend named by the environment
variable ``VI_VAE_COMPILE_BACKEND`` (default ``"inductor"``: C++ kernels on
CPU, with a faster ``log1p`` (:mod:`vi_vae.compiled.inductor`), Triton on GPU).
``"none"`` runs the traced pure graph as it is, without ``torch.compile``: it
separates tracing problems from compiler problems, and the tests of the tracing
use it.

A *replaying* cache (``CompiledCache(replay=True)``) runs its traces that way
whatever the environment says, without a word: it is how eager training skips
Pyro's per-step bookkeeping (``vi_vae._replay``), where the graph makes the
same ATen calls in the same order as eager Pyro, the same bits. A pair it cannot
trace runs eagerly without a warning (nobody asked for ``compile``), and
``trace_after`` calls of a signature run eagerly before it is traced, so that
only work long enough to repay a trace pays for one.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from torch import Tensor

from vi_vae.compiled.graphs import graph_key, keep_graph, record_costs, shared_graph
from vi_vae.compiled.inductor import inductor_backend
from vi_vae.compiled.purify import NotCompilable, PureFunction, trace_pure
from vi_vae.errors import CompileWarning
from vi_vae.keys import get_rng_state, set_rng_state

__all__ = [
    "MAX_COMPILED_GROUPS",
    "MAX_COMPILED_SHAPES",
    "CompiledCache",
    "compile_backend",
    "split_arguments",
]

logger = logging.getLogger(__name__)

#: input shapes compiled per group before new shapes run eagerly: twice the four
#: that an evaluation or a training run needs (module docstring)
MAX_COMPILED_SHAPES = 8
#: groups (model/guide pairs and pass kinds) a cache keeps; the least recently used goes
MAX_COMPILED_GROUPS = 16
#: signatures a group counts the calls of (``trace_after``) before it forgets them all
_MAX_COUNTED = 64


def compile_backend() -> str:
    """The ``torch.compile`` backend: ``$VI_VAE_COMPILE_BACKEND``, default ``"inductor"``."""
    return os.environ.get("VI_VAE_COMPILE_BACKEND", "inductor")


@dataclass
class _Entry:
    pure: PureFunction
    compiled: Callable
    #: (name, tensor) of the captured tensors that were param-store entries at trace time
    parameters: tuple[tuple[str, Tensor], ...]
    #: calls in a row that found the param store without those tensors
    misses: int = 0

    def is_current(self, store: dict[str, Tensor]) -> bool:
        """Whether the param store still holds the very tensors the graph was traced with."""
        return all(store.get(name) is tensor for name, tensor in self.parameters)

    def __call__(self, arguments: Sequence[Tensor]) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return self.pure(arguments, self.compiled)


@dataclass
class _Group:
    entries: dict[Hashable, _Entry]
    eager_reason: str | None = None
    warned_full: bool = False
    #: eager calls so far of each signature not traced yet (``trace_after``)
    calls: dict[Hashable, int] = dataclasses.field(default_factory=dict)


class CompiledCache:
    """Traced and compiled versions of a function, one per group and input signature.

    Attributes:
        num_compiled: input signatures traced so far and run compiled, whether their
            graph was compiled for them or shared with an equal earlier trace
            (:mod:`vi_vae.compiled.graphs`; :func:`~vi_vae.compiled.compile_stats`
            counts the compilations of the whole process).
        compile_seconds: time spent tracing them and in their first calls.
        replay: run the traces as they are (backend ``"none"``), warning of nothing
            (module docstring); their traces count in ``compile_stats``, as traces.
        trace_after: eager calls of a signature before it is traced.
        max_groups: groups kept, the least recently used dropped first (a group's
            key holds its model and guide, and so whatever they hold).
    """

    def __init__(
        self,
        max_shapes: int = MAX_COMPILED_SHAPES,
        *,
        replay: bool = False,
        trace_after: int = 0,
        max_groups: int = MAX_COMPILED_GROUPS,
    ) -> None:
        self.max_shapes = max_shapes
        self.max_groups = max_groups
        self.replay = replay
        self.trace_after = trace_after
        self._groups: collections.OrderedDict[Hashable, _Group] = collections.OrderedDict()
        self.num_compiled = 0
        self.compile_seconds = 0.0

    def clear(self) -> None:
        """Forget every compiled function (e.g. after changing a Python setting the code reads)."""
        self._groups.clear()

    def __len__(self) -> int:
        return sum(len(group.entries) for group in self._groups.values())

    def refuse(self, what: str, group: Hashable, reason: str) -> None:
        """Run ``group`` eagerly from now on, after one warning naming ``reason``."""
        try:
            entry_group = self._group(group)
        except TypeError:  # an unhashable group is never cached: warn every time
            if not self.replay:
                _warn(what, reason)
            return
        if entry_group.eager_reason is None:
            self._run_eagerly(what, entry_group, reason)

    def _group(self, group: Hashable) -> _Group:
        entry_group = self._groups.get(group)
        if entry_group is None:
            entry_group = self._groups[group] = _Group({})
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        self._groups.move_to_end(group)
        return entry_group

    def run(
        self,
        what: str,
        group: Hashable,
        key: Hashable,
        function: Callable[..., tuple[tuple[Tensor, ...], Any]],
        arguments: Sequence[Tensor],
    ) -> tuple[tuple[Tensor, ...], Any] | None:
        """``function(*arguments)``, compiled; ``None`` when the caller must run it eagerly.

        Args:
            what: what the function computes, for the warning (e.g. ``"IWAE's gradient"``).
            group: what is traced (the kind of pass and the model/guide pair); a
                failure to trace sends the whole group to eager, with one warning.
            key: the static arguments the trace depends on besides the tensors.
            function: ``function(*arguments) -> (tensors, info)``, run eagerly once to trace.
            arguments: the tensor arguments.

        Returns:
            ``(tensors, info)`` from the compiled function, ``info`` as at trace time.
        """
        entry_group = self._group(group)
        if entry_group.eager_reason is not None:
            return None
        signature = (key, tuple(_describe(tensor) for tensor in arguments))
        store = dict(pyro.get_param_store().named_parameters())
        entry = entry_group.entries.get(signature)
        if entry is not None:
            if entry.is_current(store):
                entry.misses = 0
                return entry(arguments), entry.pure.info
            entry.misses += 1
            if entry.misses == 1:
                # The store lost the parameters (pyro.clear_param_store()): one eager call
                # lets the code register them again; a module registers the very same
                # tensors, and the compiled function is current again.
                return None
        if entry is None and self.trace_after:
            if signature not in entry_group.calls and len(entry_group.calls) >= _MAX_COUNTED:
                entry_group.calls.clear()  # signatures that came and went, never traced
            calls = entry_group.calls[signature] = entry_group.calls.get(signature, 0) + 1
            if calls <= self.trace_after:
                return None
        if entry is None and len(entry_group.entries) >= self.max_shapes:
            if not entry_group.warned_full and not self.replay:
                entry_group.warned_full = True
                _warn(
                    what,
                    f"it has already been compiled for {self.max_shapes} input shapes; shapes "
                    "beyond those run eagerly (keep batch and chunk sizes fixed)",
                )
            return None
        return self._compile(what, entry_group, signature, function, arguments)

    def run_call(
        self,
        what: str,
        group: Hashable,
        key: Hashable,
        traced: Callable[..., tuple[tuple[Tensor, ...], Any]],
        args: tuple,
        kwargs: dict[str, Any],
        extra: Sequence[Tensor] = (),
    ) -> tuple[tuple[Tensor, ...], Any] | None:
        """``traced(args, kwargs, *extra)``, compiled; ``None`` when it must run eagerly.

        The call's tensor arguments (:func:`split_arguments`) and ``extra`` are the
        traced inputs; everything else in ``args`` and ``kwargs`` joins ``key``. An
        unhashable ``group`` or call sends the group to eager, with one warning.
        """
        try:
            hash(group)
            tensors, static, rebuild = split_arguments(args, kwargs)
        except (TypeError, NotCompilable) as error:
            self.refuse(what, group, str(error))
            return None

        def function(*inputs: Tensor) -> tuple[tuple[Tensor, ...], Any]:
            call_args, call_kwargs = rebuild(inputs[: len(tensors)])
            return traced(call_args, call_kwargs, *inputs[len(tensors) :])

        return self.run(what, group, (key, static), function, [*tensors, *extra])

    def _compile(
        self,
        what: str,
        group: _Group,
        signature: Hashable,
        function: Callable[..., tuple[tuple[Tensor, ...], Any]],
        arguments: Sequence[Tensor],
    ) -> tuple[tuple[Tensor, ...], Any] | None:
        started = time.perf_counter()
        try:
            pure = trace_pure(function, arguments)
        except NotCompilable as error:
            self._run_eagerly(what, group, str(error))
            return None
        finally:
            traced_seconds = time.perf_counter() - started
            record_costs(traces=1, trace_seconds=traced_seconds)
        store = {id(tensor): name for name, tensor in pyro.get_param_store().named_parameters()}
        parameters = tuple(
            (store[id(tensor)], tensor) for tensor in pure.captured if id(tensor) in store
        )
        if self.replay:  # nothing to compile or share: the trace is the graph
            key, compiled, reused = None, pure.graph, False
        else:
            backend = compile_backend()
            key = graph_key(pure, backend)
            compiled, reused = shared_graph(key, lambda: _compiler(pure, backend))
        entry = _Entry(pure, compiled, parameters)
        started = time.perf_counter()
        state = get_rng_state()
        try:
            with warnings.catch_warnings():
                # inductor's own lowering calls a torch helper it deprecated (torch 2.14)
                warnings.filterwarnings(
                    "ignore", message=r".*torch\._prims_common\.check", category=FutureWarning
                )
                outputs = entry(arguments)
        except Exception as error:  # a compiler failure: run eagerly, and say why
            set_rng_state(state)
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            self._run_eagerly(
                what, group, f"torch.compile failed: {type(error).__name__}: {message}"
            )
            return None
        seconds = time.perf_counter() - started
        if reused:
            record_costs(reuses=1)
        elif not self.replay:
            keep_graph(key, compiled)
            record_costs(compilations=1, compile_seconds=seconds)
        self.compile_seconds += traced_seconds + seconds
        self.num_compiled += 1
        group.entries[signature] = entry
        logger.info(
            "%s %s for %s: traced in %.1f s, first call %.1f s",
            "replays" if self.replay else "reused the compiled graph of" if reused else "compiled",
            what,
            signature,
            traced_seconds,
            seconds,
        )
        return outputs, pure.info

    def _run_eagerly(self, what: str, group: _Group, reason: str) -> None:
        group.eager_reason = reason
        if not self.replay:
            _warn(what, reason)


def _compiler(pure: PureFunction, backend: str) -> Callable:
    """``pure.graph`` for ``backend``: as it is for ``"none"``, else ``torch.compile``-d."""
    if backend == "none":
        return pure.graph
    chosen = inductor_backend if backend == "inductor" else backend
    return torch.compile(pure.graph, backend=chosen, fullgraph=True, dynamic=False)


def _warn(what: str, reason: str) -> None:
    warnings.warn(
        f"compile=True: {what} runs eagerly (uncompiled) because {reason}",
        CompileWarning,
        stacklevel=5,
    )


@dataclass(frozen=True)
class _TensorSlot:
    index: int


def split_arguments(
    args: tuple, kwargs: dict[str, Any]
) -> tuple[list[Tensor], Hashable, Callable[[Sequence[Tensor]], tuple[tuple, dict[str, Any]]]]:
    """Separate a call's tensor arguments (traced inputs) from the rest (part of the key).

    Returns:
        ``(tensors, static, rebuild)``: the top-level tensor arguments, a hashable
        description of everything else, and ``rebuild(tensors) -> (args, kwargs)``.

    Raises:
        NotCompilable: when a non-tensor argument is unhashable or holds tensors
            (a tensor inside a list would be read at trace time only).
    """
    tensors: list[Tensor] = []

    def slot(value: Any) -> Any:
        if isinstance(value, Tensor):
            tensors.append(value)
            return _TensorSlot(len(tensors) - 1)
        if _holds_tensor(value):
            raise NotCompilable("a model argument holds tensors inside a container")
        return value

    template_args = tuple(slot(value) for value in args)
    template_kwargs = tuple((name, slot(value)) for name, value in sorted(kwargs.items()))
    static = (template_args, template_kwargs)
    try:
        hash(static)
    except TypeError as error:
        raise NotCompilable(f"a model argument is not hashable ({error})") from None

    def rebuild(values: Sequence[Tensor]) -> tuple[tuple, dict[str, Any]]:
        def fill(value: Any) -> Any:
            return values[value.index] if isinstance(value, _TensorSlot) else value

        return (
            tuple(fill(value) for value in template_args),
            {name: fill(value) for name, value in template_kwargs},
        )

    return tensors, static, rebuild


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_tensor(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_tensor(item) for item in value.values())
    return False


def _describe(tensor: Tensor) -> tuple:
    return (tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, tensor.device)
