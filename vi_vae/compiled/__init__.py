"""Compiled passes: Pyro code traced once into pure tensor functions and ``torch.compile``-d.

- :mod:`~vi_vae.compiled.purify`: trace a function that runs Pyro into a pure
  function of (arguments, captured tensors, noise), or say why it cannot be;
- :mod:`~vi_vae.compiled.cache`: compile it once per input shape, bounded, and
  fall back to eager with one warning;
- :mod:`~vi_vae.compiled.graphs`: share the compiled graphs across the process,
  keyed by what they compute, and count what compiling cost
  (:func:`~vi_vae.compiled.compile_stats`);
- :mod:`~vi_vae.compiled.inductor`: the ``"inductor"`` backend they compile with,
  ``log1p`` lowered to one ``log`` on CPU (eight times faster, a few ulps).

The estimators (``IWAE(5, compile=True)``), :func:`vi_vae.fit` and the
evaluators (``log_marginal_likelihood(..., compile=True)``) use them.
"""

from vi_vae.compiled.cache import (
    MAX_COMPILED_GROUPS,
    MAX_COMPILED_SHAPES,
    CompiledCache,
    compile_backend,
    split_arguments,
)
from vi_vae.compiled.graphs import (
    MAX_SHARED_GRAPHS,
    CompileStats,
    clear_shared_graphs,
    compile_stats,
)
from vi_vae.compiled.purify import NotCompilable, PureFunction, trace_pure

__all__ = [
    "MAX_COMPILED_GROUPS",
    "MAX_COMPILED_SHAPES",
    "MAX_SHARED_GRAPHS",
    "CompileStats",
    "CompiledCache",
    "NotCompilable",
    "PureFunction",
    "clear_shared_graphs",
    "compile_backend",
    "compile_stats",
    "split_arguments",
    "trace_pure",
]
