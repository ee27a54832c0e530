r"""The inductor backend of the compiled passes, with a vectorized ``log1p`` on CPU.

Torch's CPU ``log1p`` (eager, and the vectorized one inductor's C++ kernels call)
costs about eight times an ``exp`` or a ``log`` per element, and it sits in every
Bernoulli log-likelihood: ``binary_cross_entropy_with_logits`` and ``log_sigmoid``
decompose to ``log1p(exp(-|x|))``, over all ``K × batch × 784`` logits of an MLP
VAE's step, about a fifth of a compiled IWAE-5 step on one CPU thread.

On CPU graphs this backend lowers ``log1p`` with Goldberg's formula instead,

.. math::
    \operatorname{log1p}(x) = \log(u) \cdot \frac{x}{u - 1}, \quad u = 1 + x
    \qquad (x \text{ where } u = 1 \text{ or } u = \infty),

one ``log``, a division and a select: accurate to a few units in the last place
over the whole domain (Goldberg, "What every computer scientist should know
about floating-point arithmetic", 1991, Theorem 4; 1.4 ε measured on float32,
``tests/torch_compile/test_compiled_inductor.py``), with log1p's ``-1``,
``∞``, ``-0`` and NaN cases. Graphs on other devices keep inductor's own
lowering, and so does every ``torch.compile`` outside vi_vae.

The ``exp(-|x|)`` under that ``log1p`` is read three times by the formula, and
inductor's CPU heuristic stores any reused value containing an ``exp`` to memory
before the kernel that reads it: a write and a read of all ``K × 784`` floats in a
separate loop, about half of the Bernoulli log-likelihood's kernel. This backend
keeps such a value inline when ``exp`` is its only costly operation, as it is here
(computed once per element inside the consuming kernel; a consumer in another
kernel computes the ``exp`` again instead of loading it). The values are the
same operations on the same inputs, so the numbers do not change, only where the
``exp`` is evaluated.

AOTAutograd's on-disk cache does not key on the decompositions, so it could hand
a graph compiled with the default ``log1p`` to this backend or the reverse; it is
off for these compilations (inductor's own cache, keyed on the decomposed graph,
still serves them); a torch without that cache needs nothing turned off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, fx

__all__ = ["inductor_backend", "log1p", "without_autograd_cache"]


def log1p(x: Tensor) -> Tensor:
    """``log(1 + x)`` from one ``log``: Goldberg's formula (module docstring)."""
    u = x + 1
    approximate = torch.log(u) * (x / (u - 1))
    return torch.where((u == 1) | (u == float("inf")), x, approximate)


def inductor_backend(graph: fx.GraphModule, inputs: Sequence[Any]) -> Callable:
    """``torch.compile``'s ``"inductor"``, with :func:`log1p` on graphs of CPU tensors."""
    from torch._functorch import config as functorch_config
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    devices = {value.device.type for value in inputs if isinstance(value, Tensor)}
    if devices - {"cpu"}:
        return compile_fx(graph, inputs)
    table = {**select_decomp_table(), torch.ops.aten.log1p.default: log1p}
    with without_autograd_cache(functorch_config), _exp_inline():
        return compile_fx(graph, inputs, decompositions=table)


_COSTLY = frozenset({"exp", "log", "log10", "log1p", "log2", "sigmoid", "tanh"})


def _only_costly_op_is_exp(used_ops: Any) -> bool:
    return "exp" in used_ops and not _COSTLY.intersection(used_ops) - {"exp"}


@contextlib.contextmanager
def _exp_inline() -> Iterator[None]:
    """Inductor's reuse heuristic without ``exp`` among its costly operations (docstring)."""
    from torch._inductor import config as inductor_config
    from torch._inductor import ir

    box = getattr(ir, "StorageBox", None)
    original = getattr(box, "should_realize_on_reuse", None)
    if original is None:  # another torch: its own heuristic, unchanged
        yield
        return

    def should_realize_on_reuse(self: Any, users: int, **options: Any) -> bool:
        try:
            data = self.data
            inline = (
                isinstance(data, ir.Pointwise)
                and data.get_device_or_error().type == "cpu"
                and _only_costly_op_is_exp(data.inner_fn_opcount().used_ops)
                and not self.has_large_inner_fn()
                and self.num_reads() <= inductor_config.realize_reads_threshold
            )
        except Exception:  # another torch's IR: its own heuristic
            inline = False
        return False if inline else original(self, users, **options)

    box.should_realize_on_reuse = should_realize_on_reuse
    try:
        yield
    finally:
        box.should_realize_on_reuse = original


def without_autograd_cache(config: Any) -> contextlib.AbstractContextManager:
    """AOTAutograd's on-disk cache off, where torch's functorch ``config`` has one."""
    if not hasattr(config, "enable_autograd_cache"):
        return contextlib.nullcontext()
    return config.patch(enable_autograd_cache=False)
