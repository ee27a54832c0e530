r"""A pure tensor function from Pyro code: trace it once, make every input it reads explicit.

A model/guide pair is Python that builds distributions, draws and sums log
densities through Pyro's stack of handlers. Run once under ``torch.fx``'s
``make_fx`` on real tensors, every tensor operation it performs is recorded as
an ATen graph, while the Python around it (handlers, plates, traces) runs once
and is gone. Three kinds of tensors enter that graph from outside, and each
becomes an explicit input:

- the function's arguments (the data; coefficients);
- captured tensors: parameters from the param store or a module, and any
  other tensor the code reads; they are passed by reference at every call, so
  an optimizer's in-place updates are seen;
- noise: every random operation whose value does not depend on those inputs
  (``empty(...).normal_()``, ``rand``, ``randn_like(loc)``: the base noise ε of
  a reparameterized draw z = g_φ(ε)) is cut out into a separate noise graph.
  The noise graph runs eagerly before each call and makes the same ATen calls
  in the same order as eager Pyro, so it consumes torch's generator exactly as
  eager Pyro does: the same seed gives the same ε, bit for bit, whatever the
  latent family, without knowing how any family samples.

What remains is a pure function ``(arguments, captured, noise) -> outputs``
for ``torch.compile``. What cannot be made pure raises :class:`NotCompilable`
with the reason: Python control flow on tensor values (``if x.sum() > 0``,
``.item()``); random operations whose draw depends on the inputs (torch's
implicitly reparameterized ``_standard_gamma``, behind the gamma, beta,
Dirichlet, χ² and F families, or dropout), since their noise cannot be drawn
apart from the parameters; operations whose output shape depends on values.

Everything else the Python decides is fixed at trace time, as under
``jax.jit``: shapes, and Python numbers the code reads (a float KL weight, a
flag). Hold such a setting in a tensor to change it without tracing again.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import pyro
import torch
from torch import Tensor, fx
from torch.fx.experimental.proxy_tensor import make_fx

from vi_vae.keys import get_rng_state, set_rng_state

__all__ = ["NotCompilable", "PureFunction", "trace_pure"]

#: in-place random fills and ``*_like``/``new_*`` factories: their first argument
#: contributes its shape, dtype and device, never its values
_METADATA_FIRST_ARGUMENT = {
    "normal_",
    "uniform_",
    "exponential_",
    "cauchy_",
    "log_normal_",
    "geometric_",
    "random_",
    "bernoulli_",
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "new_empty",
    "new_empty_strided",
    "new_zeros",
    "new_ones",
    "new_full",
}
#: in-place fills among them: the lifted draw replaces the filled tensor
_IN_PLACE_FILLS = {"normal_", "uniform_", "exponential_", "cauchy_", "log_normal_", "geometric_"}
_IN_PLACE_FILLS |= {"random_", "bernoulli_"}
#: messages of make_fx when Python asks a traced tensor for its value
_DATA_DEPENDENT_MARKERS = ("_local_scalar_dense", "data-dependent", "data dependent")
#: where the machinery lives: a failure is reported at the innermost frame outside these
_MACHINERY = (
    *(str(Path(module.__file__).parent) for module in (torch, pyro) if module.__file__),
    *(str(Path(__file__).parents[1] / part) for part in ("compiled", "estimators", "weights.py")),
    str(Path(__file__).parents[1] / "evaluation"),
)


class NotCompilable(Exception):
    """The function cannot be traced into a pure tensor function; the message says why."""


@dataclass
class PureFunction:
    """``outputs = graph(*arguments, *captured, *noise())``: a traced function made pure.

    Attributes:
        graph: the pure graph; its placeholders are the arguments, then the
            captured tensors, then the noise.
        noise: a graph of no inputs returning the noise tensors, in draw order.
        captured: the tensors the traced code read from outside, by reference.
        info: what the traced function returned beside its tensors (static
            facts of the trace, e.g. which parameters its gradients belong to).
        random_draws: how many random operations were lifted into ``noise``.
    """

    graph: fx.GraphModule
    noise: fx.GraphModule
    captured: tuple[Tensor, ...]
    info: Any
    random_draws: int

    def __call__(
        self, arguments: Sequence[Tensor], graph: Callable | None = None
    ) -> tuple[Tensor, ...]:
        """Draw fresh noise and run ``graph`` (default: the traced graph, uncompiled)."""
        noise = self.noise() if self.random_draws else ()
        return (self.graph if graph is None else graph)(*arguments, *self.captured, *noise)


def trace_pure(
    function: Callable[..., tuple[tuple[Tensor, ...], Any]], arguments: Sequence[Tensor]
) -> PureFunction:
    """Trace ``function(*arguments) -> (tensors, info)`` into a :class:`PureFunction`.

    The function runs once, for real, with Pyro's and torch's argument validation
    off (its checks are Python branches on tensor values); torch's random state
    is restored afterwards, so tracing consumes no random numbers.

    Raises:
        NotCompilable: naming the reason (module docstring).
    """
    report: dict[str, Any] = {}

    def flat(*tensors: Tensor) -> tuple[Tensor, ...]:
        outputs, report["info"] = function(*tensors)
        return tuple(outputs)

    state = get_rng_state()
    try:
        with pyro.validation_enabled(False):
            traced = make_fx(flat, tracing_mode="real")(*arguments)
    except Exception as error:  # every failure means: run eagerly, and say why
        raise NotCompilable(_describe_failure(error)) from error
    finally:
        set_rng_state(state)
    graph, captured = _lift_captured(traced)
    noise, random_draws = _lift_noise(graph)
    graph.eliminate_dead_code()
    graph.lint()
    return PureFunction(
        fx.GraphModule(traced, graph),
        fx.GraphModule(traced, noise),
        captured,
        report["info"],
        random_draws,
    )


def _describe_failure(error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if any(marker in str(error) for marker in _DATA_DEPENDENT_MARKERS):
        return (
            "the model or guide branches on a tensor value (Python `if`, `bool()` or `.item()` "
            f"on a tensor){_user_frame(error)}, so no single graph describes every call"
        )
    return f"tracing failed{_user_frame(error)}: {type(error).__name__}: {message[:200]}"


def _user_frame(error: BaseException) -> str:
    """`` at file:line (code)`` of the innermost frame of the model or guide, if any."""
    frames = [
        frame
        for frame in traceback.extract_tb(_this_call(error.__traceback__))
        if not frame.filename.startswith(_MACHINERY)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {Path(frame.filename).name}:{frame.lineno} ({(frame.line or '').strip()})"


def _this_call(entry: TracebackType | None) -> TracebackType | None:
    """The part of a traceback that this call raised through, without stale entries.

    An exception object that a library kept and raises again carries the entries of
    its first raise behind the new ones; reporting the innermost of those would name a
    line of an earlier, unrelated call. An entry belongs to this call when one of its
    callers is an entry before it (an exception re-raised with ``with_traceback``, as
    Pyro's trace handler does, skips a caller but stays in the call).
    """
    entries: list[TracebackType] = []
    seen: set[int] = set()
    while entry is not None:
        if entries and not _called_from(entry.tb_frame, seen):
            break
        entries.append(entry)
        seen.add(id(entry.tb_frame))
        entry = entry.tb_next
    chain = None
    for kept in reversed(entries):  # a copy that ends at the last entry of this call
        chain = TracebackType(chain, kept.tb_frame, kept.tb_lasti, kept.tb_lineno)
    return chain


def _called_from(frame: FrameType, frames: set[int]) -> bool:
    """Whether a caller of ``frame`` (up the ``f_back`` chain) is one of ``frames``."""
    caller = frame.f_back
    while caller is not None:
        if id(caller) in frames:
            return True
        caller = caller.f_back
    return False


def _lift_captured(traced: fx.GraphModule) -> tuple[fx.Graph, tuple[Tensor, ...]]:
    """Turn every tensor the trace read from outside (``get_attr``) into a placeholder.

    Tensor literals the code creates (``torch.tensor(5.0)``, which the trace records
    as a constant copied by ``lift_fresh_copy``) stay constants of the graph.
    """
    graph = traced.graph
    captured: list[Tensor] = []
    for node in list(graph.nodes):
        if node.op != "get_attr" or _is_literal(node):
            continue
        placeholder = _append_placeholder(graph, f"captured_{len(captured)}", node)
        captured.append(getattr(traced, node.target))
        node.replace_all_uses_with(placeholder)
        graph.erase_node(node)
    return graph, tuple(captured)


def _is_literal(node: fx.Node) -> bool:
    return bool(node.users) and all(
        user.target is torch.ops.aten.lift_fresh_copy.default for user in node.users
    )


def _append_placeholder(graph: fx.Graph, name: str, like: fx.Node) -> fx.Node:
    """A new placeholder after the existing ones, with the metadata of ``like``."""
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    if placeholders:
        context = graph.inserting_after(placeholders[-1])
    else:
        context = graph.inserting_before(next(iter(graph.nodes)))
    with context:
        placeholder = graph.placeholder(name)
    placeholder.meta = dict(like.meta)
    return placeholder


def _operation_name(node: fx.Node) -> str | None:
    packet = getattr(node.target, "overloadpacket", None)
    return packet.__name__ if packet is not None else None


def _has_tag(node: fx.Node, tag: torch.Tag) -> bool:
    return node.op == "call_function" and tag in getattr(node.target, "tags", ())


def _static_indexing(node: fx.Node) -> bool:
    """Indexing by integer tensors: its output shape is the indices' (only masks are dynamic)."""
    if node.target is not torch.ops.aten.index.Tensor:
        return False
    indices = [index for index in node.args[1] if isinstance(index, fx.Node)]
    return all(
        not index.meta["val"].dtype.is_floating_point
        and index.meta["val"].dtype not in (torch.bool, torch.uint8)
        for index in indices
    )


def _value_arguments(node: fx.Node) -> list[fx.Node]:
    """The node's inputs whose values (not only metadata) its value depends on."""
    positional = list(node.args)
    if _operation_name(node) in _METADATA_FIRST_ARGUMENT and positional:
        positional = positional[1:]
    found: list[fx.Node] = []
    fx.node.map_arg((tuple(positional), node.kwargs), found.append)
    return found


def _lift_noise(graph: fx.Graph) -> tuple[fx.Graph, int]:
    """Cut the random operations independent of the inputs out into a noise graph.

    Returns the noise graph (no inputs; a tuple of the draws in graph order) and
    the number of draws; ``graph`` gets one placeholder per draw in their place.
    """
    depends: dict[fx.Node, bool] = {}
    draws: list[fx.Node] = []
    for node in graph.nodes:
        if node.op == "placeholder":
            depends[node] = True
            continue
        if _has_tag(node, torch.Tag.dynamic_output_shape) and not _static_indexing(node):
            raise NotCompilable(
                f"operation {node.target} has an output shape that depends on tensor values"
            )
        depends[node] = any(depends.get(argument, False) for argument in _value_arguments(node))
        if _has_tag(node, torch.Tag.nondeterministic_seeded):
            if depends[node]:
                raise NotCompilable(
                    f"a random draw ({node.target}) depends on the parameters or data, so its "
                    "noise cannot be drawn apart from them (implicit reparameterization, as "
                    "torch's gamma sampler behind the gamma, beta, Dirichlet, chi2 and F "
                    "families, or dropout)"
                )
            draws.append(node)
    noise = fx.Graph()
    copies: dict[fx.Node, fx.Node] = {}
    needed = _independent_cone(draws)
    for node in graph.nodes:
        if node in needed:
            copies[node] = _copy_into(noise, node, copies)
    noise.output(tuple(copies[draw] for draw in draws))
    for index, draw in enumerate(draws):
        if _operation_name(draw) in _IN_PLACE_FILLS:
            filled = draw.args[0]
            if isinstance(filled, fx.Node) and len(filled.users) > 1:
                raise NotCompilable(
                    f"a random fill ({draw.target}) writes into a tensor that is also used "
                    "elsewhere, so its draw cannot be cut out"
                )
        placeholder = _append_placeholder(graph, f"noise_{index}", draw)
        draw.replace_all_uses_with(placeholder)
        graph.erase_node(draw)
    return noise, len(draws)


def _independent_cone(draws: list[fx.Node]) -> set[fx.Node]:
    """The draws and the nodes their values are computed from."""
    needed: set[fx.Node] = set()
    pending = list(draws)
    while pending:
        node = pending.pop()
        if node not in needed:
            needed.add(node)
            pending.extend(_value_arguments(node))
    return needed


def _copy_into(noise: fx.Graph, node: fx.Node, copies: dict[fx.Node, fx.Node]) -> fx.Node:
    """Copy ``node`` into ``noise``; an argument used for its metadata becomes an empty tensor."""
    args = list(node.args)
    stub = None
    if _operation_name(node) in _METADATA_FIRST_ARGUMENT and args and isinstance(args[0], fx.Node):
        like = args[0].meta["val"]
        stub = noise.call_function(
            torch.ops.aten.empty_strided.default,
            (list(like.shape), list(like.stride())),
            {"dtype": like.dtype, "device": like.device},
        )
        args = args[1:]
    if node.op == "get_attr":  # a tensor literal
        copy = noise.get_attr(node.target)
        copy.meta = dict(node.meta)
        return copy
    mapped_args, mapped_kwargs = fx.node.map_arg((tuple(args), node.kwargs), lambda n: copies[n])
    if stub is not None:
        mapped_args = (stub, *mapped_args)
    copy = noise.call_function(node.target, mapped_args, mapped_kwargs)
    copy.meta = dict(node.meta)
    return copy
