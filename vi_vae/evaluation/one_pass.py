"""One pass of the evaluators: the log weights of some particles of some points.

:func:`pass_log_weights` draws ``num_particles`` particles for a chunk of points in one
vectorized trace (:func:`vi_vae.weights.trace_log_weights`), eager or compiled, or one
particle after another for a pair not written for a particle dimension; without
gradients. :func:`auto_chunk_size` measures how many (particle, point) pairs a pass may
hold on a GPU. :mod:`vi_vae.evaluation.passes` runs the passes over many points and
re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from vi_vae.compiled import CompiledCache
from vi_vae.contract import rows_of
from vi_vae.keys import seeded
from vi_vae.weights import DEFAULT_CHUNK_SIZE, trace_log_weights

__all__ = ["AUTO_MEMORY_FRACTION", "AUTO_TRIAL_PAIRS", "auto_chunk_size", "pass_log_weights"]

#: share of a GPU's free memory one pass may take; the rest absorbs the kept
#: per-point results, the allocator's fragmentation and other work on the device
AUTO_MEMORY_FRACTION = 0.5
#: pairs in the trial pass that measures the memory of one pair on a GPU
AUTO_TRIAL_PAIRS = 4096
#: the compiled passes of every evaluation in this process (keyed by model/guide/shape)
_COMPILED = CompiledCache()


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
    vectorize_particles: bool = True,
) -> Tensor:
    """Unscaled log weights ``[num_particles, len(x)]`` of one pass, without gradients.

    ``vectorize_particles`` false draws the particles one after another, each a run of
    the guide and of the model replayed on its draws as the pair is written (no particle
    dimension): for a pair that does not take a leading batch dimension
    (``ExecutionOptions(vectorize_particles=False)``; not compiled).
    """
    if not vectorize_particles:
        one = {"num_particles": 1, "plate_nesting": plate_nesting, "data_plate": data_plate}
        particles = [  # each run's log weights only: its traces are freed as it ends
            trace_log_weights(
                model, guide, (x,), kwargs, **one, scaled=False, vectorized=False
            ).log_weights.detach()
            for _ in range(num_particles)
        ]
        return torch.cat(particles)

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
