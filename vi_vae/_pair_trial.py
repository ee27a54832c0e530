"""A model/guide pair run once without particles, and why it failed, for :mod:`vi_vae.contract`.

:func:`run_without_particles` is the first call's trial; when it fails inside the
pair, the cause it can name (a wrong dtype or width of ``x``, a data plate of
another size than the rows of ``x``) becomes an :class:`~vi_vae.errors.InputError`
that says what to change. :func:`particle_dimension_error` does the same for a pass
with particles that fails only because of the particle dimension.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae.errors import InputError

__all__ = [
    "PARTICLE_HINT",
    "ROWS_RULE",
    "first_line",
    "forked_stream",
    "particle_dimension_error",
    "replayed",
    "run_without_particles",
]

#: what to change when a pair fails under the particle dimension (clause 4)
PARTICLE_HINT = (
    "vi_vae draws all num_particles particles of a point in one vectorized pass, so every "
    "sample site gets a leading particle dimension (even at num_particles=1). Write the "
    "pair for any leading batch dimensions: index and concatenate from the right "
    "(x[..., i], torch.cat(..., dim=-1)), expand tensors that lack the particle dimension "
    "to the draws' shape (e.g. y.expand(z.shape[:-1] + y.shape[-1:])), flatten the "
    "leading dimensions around a layer that reads dimension 1 as features (BatchNorm1d: "
    "h.reshape(-1, h.shape[-1]) in, and back), and declare batch dimensions with "
    "pyro.plate instead of fixed sizes (docs/howto/custom-model.md); importance sampling "
    "(log_marginal_likelihood, bounds) can instead draw the particles one after another, "
    "each a run of the pair as written: execution=ExecutionOptions(vectorize_particles=False)"
)

#: what to change when the data plate is not the rows of x (clause 2)
ROWS_RULE = (
    "the data plate must run over the rows of x, one point per row: "
    "pyro.plate(data_plate, x.shape[0])"
)
#: words of torch's messages for tensors whose shapes do not fit together
_SHAPE_WORDS = ("shape", "size", "dimension", "mat1 and mat2", "out of bounds", "elements")


def particle_dimension_error(
    model: Callable, guide: Callable, args: tuple, kwargs: dict[str, Any], error: Exception
) -> InputError | None:
    """An :class:`InputError` for ``error``, raised under the particle dimension (clause 4).

    Only a shape error is a candidate (not, e.g., a distribution refusing NaN
    parameters of a diverging fit). It runs the pair once without the particle
    dimension (random stream forked, without gradients): if that works, the particle
    dimension is what broke the pair, and the returned error says what to change; if
    not, ``None`` (``error`` has another cause and should propagate as it is).
    """
    if not _is_shape_error(error):
        return None
    try:
        with forked_stream(args), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    except Exception:
        return None
    return InputError(
        f"the model/guide fail with a leading particle dimension but run without one "
        f"({type(error).__name__}: {first_line(error)}). {PARTICLE_HINT}"
    )


def run_without_particles(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    x: Tensor | None,
    data_plate: str,
    fork: bool,
    gradients: bool,
) -> tuple[Trace, Trace]:
    """Guide and model (replayed) traces of one run without particles; failures explained."""
    guide_handler = poutine.trace(guide)
    model_handler = None
    stream = forked_stream(args) if fork else contextlib.nullcontext()
    try:
        with stream, torch.set_grad_enabled(gradients), poutine.block():
            guide_trace = guide_handler.get_trace(*args, **kwargs)
            model_handler = poutine.trace(poutine.replay(model, trace=guide_trace))
            model_trace = model_handler.get_trace(*args, **kwargs)
    except (InputError, NotImplementedError):
        raise
    except Exception as error:
        partial = [guide_handler.trace] + ([model_handler.trace] if model_handler else [])
        explained = _explain_failure(error, partial, x, data_plate)
        if explained is None:
            raise
        raise explained from error
    return model_trace, guide_trace


def forked_stream(args: tuple) -> contextlib.AbstractContextManager:
    """Torch's random stream forked for a run on ``args`` (and their CUDA device's, if any)."""
    devices = [a.device for a in args if isinstance(a, Tensor) and a.device.type == "cuda"]
    return torch.random.fork_rng(devices=devices[:1])


def replayed(fn: Callable, trace: Trace, args: tuple, kwargs: dict[str, Any]) -> Trace:
    """``fn`` run again on ``args``, its sample sites at the values of ``trace``."""
    return poutine.trace(poutine.replay(fn, trace=trace)).get_trace(*args, **kwargs)


def _explain_failure(
    error: Exception, partial: list[Trace], x: Tensor | None, data_plate: str
) -> InputError | None:
    """Say what to change when the pair fails on ``x`` without particles, if the cause is known."""
    if x is None:
        return None
    what = f"{type(error).__name__}: {first_line(error)}"
    for trace in partial:
        for name, site in trace.nodes.items():
            if name == data_plate and site_is_subsample(site) and site["fn"].size != x.shape[0]:
                return InputError(
                    f"pyro.plate({data_plate!r}) has size {site['fn'].size} but x has "
                    f"{x.shape[0]} rows, and the model/guide failed ({what}); {ROWS_RULE}"
                )
    dtypes = {
        site["value"].dtype
        for trace in partial
        for site in trace.nodes.values()
        if site["type"] == "param" and site["value"].is_floating_point()
    }
    expected = dtypes.pop() if len(dtypes) == 1 else torch.get_default_dtype()
    if not x.is_floating_point() or x.dtype != expected:
        return InputError(
            f"x has dtype {x.dtype} and the model/guide failed on it ({what}); x must be a "
            f"floating-point tensor of the parameters' dtype {expected} (e.g. x.to({expected}))"
        )
    if _is_shape_error(error):
        return InputError(
            f"x has shape {list(x.shape)} and the model/guide failed on it with a shape error "
            f"({what}); the rows of x are the data points, and x's width "
            f"{list(x.shape[1:])} (its shape after the first dimension) does not fit the model"
        )
    return None


def _is_shape_error(error: BaseException) -> bool:
    """Whether torch or Pyro raised ``error`` for tensors whose shapes do not fit together."""
    if isinstance(error, InputError) or not isinstance(
        error, (RuntimeError, IndexError, ValueError)
    ):
        return False
    line = first_line(error).lower()
    # a distribution's argument check names the shape of the values it refuses
    return not line.startswith("expected parameter") and any(w in line for w in _SHAPE_WORDS)


def first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 300 characters."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""
