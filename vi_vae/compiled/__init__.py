"""Compiled passes: Pyro code traced once into pure tensor functions and ``torch.compile``-d.

- :mod:`~vi_vae.compiled.purify`: trace a function that runs Pyro into a pure
  function of (arguments, captured tensors, noise), or say why it cannot be;
- :mod:`~vi_vae.compiled.cache`: compile it once per input shape, bounded, and
  fall back to eager with one warning.

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
from vi_vae.compiled.purify import NotCompilable, PureFunction, trace_pure

__all__ = [
    "MAX_COMPILED_GROUPS",
    "MAX_COMPILED_SHAPES",
    "CompiledCache",
    "NotCompilable",
    "PureFunction",
    "compile_backend",
    "split_arguments",
    "trace_pure",
]
