"""The evaluators' passes: log weights of a chunk of points, eager or compiled.

:func:`log_weight_chunks` runs them over many points, keyed by point when seeded.
A pass draws ``num_particles`` particles for a chunk of points in one
vectorized trace (:func:`vi_vae.weights.trace_log_weights`), without gradients.
Its size, ``chunk_size`` (particle, point) pairs, bounds the evaluators' memory;
``"auto"`` keeps the CPU default and fills a GPU (:func:`auto_chunk_size`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.compiled import CompiledCache
from vi_vae.contract import EVALUATOR_SUBSAMPLING, check_pair, rows_of
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import keyed_log_weight_chunks, seeded
from vi_vae.support import check_points
from vi_vae.weights import DEFAULT_CHUNK_SIZE, guess_plates, trace_log_weights

__all__ = [
    "AUTO_MEMORY_FRACTION",
    "AUTO_TRIAL_PAIRS",
    "DEFAULT_CHUNK_SIZE",
    "auto_chunk_size",
    "check_chunk_size",
    "log_weight_chunks",
    "pass_log_weights",
]

#: share of a GPU's free memory one pass may take; the rest absorbs the kept
#: per-point results, the allocator's fragmentation and other work on the device
AUTO_MEMORY_FRACTION = 0.5
#: pairs in the trial pass that measures the memory of one pair on a GPU
AUTO_TRIAL_PAIRS = 4096
#: the compiled passes of every evaluation in this process (keyed by model/guide/shape)
_COMPILED = CompiledCache()


def check_chunk_size(chunk_size: Any) -> None:
    """Refuse a ``chunk_size`` that is neither a positive integer nor ``"auto"``."""
    ExecutionOptions(chunk_size=chunk_size)


def auto_chunk_size(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int,
    plate_nesting: int,
    data_plate: str = "data",
    kwargs: dict[str, Any] | None = None,
) -> int:
    r"""Pairs per pass for ``chunk_size="auto"``: CPU's default, or what fits a GPU.

    On CPU (and any device but CUDA) this is :data:`DEFAULT_CHUNK_SIZE`. On a CUDA
    device, one trial pass of :data:`AUTO_TRIAL_PAIRS` pairs (seeded apart from
    the global stream) measures the peak memory per pair, b, and

    .. math::
        \text{chunk\_size} = \Big\lfloor \frac{f \cdot (\text{free} + \text{cached})}{b}
        \Big\rfloor, \qquad f = \text{AUTO\_MEMORY\_FRACTION},

    with free the driver's free memory and cached what torch's allocator holds
    unused; never less than the trial itself.
    """
    device = x.device
    if device.type != "cuda":
        return DEFAULT_CHUNK_SIZE
    torch.cuda.synchronize(device)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    particles = min(num_particles, AUTO_TRIAL_PAIRS)
    points = min(x.shape[0], max(1, AUTO_TRIAL_PAIRS // particles))
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    trial_x, trial_kwargs = rows_of(x, kwargs or {}, slice(0, points))
    with torch.no_grad(), seeded(0, device):
        log_weights = pass_log_weights(
            model, guide, trial_x, trial_kwargs, particles, plate_nesting, data_plate
        )
    del log_weights
    per_pair = max(1, torch.cuda.max_memory_allocated(device) - before) / (particles * points)
    return max(particles * points, int(AUTO_MEMORY_FRACTION * free / per_pair))


def pass_log_weights(
    model: Callable,
    guide: Callable,
    x: Tensor,
    kwargs: dict[str, Any],
    num_particles: int,
    plate_nesting: int,
    data_plate: str = "data",
    compile: bool = False,
) -> Tensor:
    """Unscaled log weights ``[num_particles, len(x)]`` of one pass, without gradients."""

    def traced(call_x: Tensor, call_kwargs: dict[str, Any]) -> Tensor:
        traces = trace_log_weights(
            model,
            guide,
            (call_x,),
            call_kwargs,
            num_particles=num_particles,
            plate_nesting=plate_nesting,
            data_plate=data_plate,
            scaled=False,
        )
        return traces.log_weights.detach()

    if compile:
        group = ("log weights", model, guide, data_plate, plate_nesting)
        result = _COMPILED.run_call(
            "the log-weight pass of the evaluator",
            group,
            num_particles,
            lambda call_args, call_kwargs: ((traced(*call_args, call_kwargs),), None),
            (x,),
            kwargs,
        )
        if result is not None:
            return result[0][0]
    return traced(x, kwargs)


def log_weight_chunks(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int,
    *,
    data_plate: str = "data",
    chunk_size: int | str = "auto",
    seed: int | None = None,
    first_index: int = 0,
    compile: bool = False,
    **kwargs: Any,
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, log_weights)``: unscaled log weights ``[num_particles, len(rows)]``.

    Draws are made in passes of at most ``chunk_size`` (particle, point) pairs
    (``"auto"``: :func:`auto_chunk_size`), without gradients; model and guide are
    called as ``model(x[rows], **kwargs[rows])``, per-point keyword arguments split by
    rows with ``x`` (:func:`vi_vae.contract.rows_of`). With ``compile`` each pass shape
    is traced and compiled once (:func:`pass_log_weights`).
    The pair's contract, and the data against the support of every observed site, are
    checked first (:func:`vi_vae.contract.check_pair`). The log weights stay on the
    data's device. With
    ``seed`` the draws are keyed by (seed, global point index; ``x[0]`` has index
    ``first_index``), so a point's log weights depend neither on ``chunk_size`` nor on
    the shard it is in (:mod:`vi_vae.keys`), and the global RNG is left alone.
    """
    check_positive_int("num_particles", num_particles)
    ExecutionOptions(compile=compile, chunk_size=chunk_size)
    check_points(x)
    check_pair(
        model,
        guide,
        (x,),
        kwargs,
        data_plate=data_plate,
        subsampling_refusal=EVALUATOR_SUBSAMPLING,
        support=True,
    )
    # the probe of the plates draws too: from the caller's stream, or apart when seeded
    devices = [x.device] if x.device.type == "cuda" else []
    probe = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
    with torch.no_grad(), probe:
        first_x, first_kwargs = rows_of(x, kwargs, slice(0, 1))
        plate_nesting, _ = guess_plates(model, guide, (first_x,), first_kwargs, data_plate)
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(
            model, guide, x, num_particles, plate_nesting, data_plate, kwargs
        )
    one_pass = partial(
        pass_log_weights,
        model,
        guide,
        kwargs=kwargs,
        plate_nesting=plate_nesting,
        data_plate=data_plate,
        compile=compile,
    )
    if seed is not None:
        yield from keyed_log_weight_chunks(
            model,
            guide,
            x,
            num_particles,
            seed=seed,
            first_index=first_index,
            data_plate=data_plate,
            chunk_size=chunk_size,
            plate_nesting=plate_nesting,
            one_pass=one_pass,
            **kwargs,
        )
        return
    particles_per_pass = min(num_particles, chunk_size)
    points_per_pass = max(1, chunk_size // particles_per_pass)
    with torch.no_grad():
        for start in range(0, x.shape[0], points_per_pass):
            rows = slice(start, min(start + points_per_pass, x.shape[0]))
            parts = []
            for first in range(0, num_particles, particles_per_pass):
                count = min(particles_per_pass, num_particles - first)
                rows_x, rows_kwargs = rows_of(x, kwargs, rows)
                parts.append(one_pass(rows_x, num_particles=count, kwargs=rows_kwargs))
            yield rows, torch.cat(parts)
