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

AOTAutograd's on-disk cache does not key on the decompositions, so it could hand
a graph compiled with the default ``log1p`` to this backend or the reverse; it is
off for these compilations (inductor's own cache, keyed on the decomposed graph,
still serves them); a torch without that cache needs nothing turned off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
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
    with without_autograd_cache(functorch_config):
        return compile_fx(graph, inputs, decompositions=table)


def without_autograd_cache(config: Any) -> contextlib.AbstractContextManager:
    """AOTAutograd's on-disk cache off, where torch's functorch ``config`` has one."""
    if not hasattr(config, "enable_autograd_cache"):
        return contextlib.nullcontext()
    return config.patch(enable_autograd_cache=False)
