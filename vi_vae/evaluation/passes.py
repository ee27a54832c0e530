"""The evaluators' passes over many points: log weights chunk by chunk, keyed when seeded.

:func:`log_weight_chunks` runs the passes of :mod:`vi_vae.evaluation.one_pass` (whose
names it re-exports) over many points, keyed by point when seeded. A pass draws
``num_particles`` particles for a chunk of points in one vectorized trace, without
gradients. Its size, ``chunk_size`` (particle, point) pairs, bounds the evaluators'
memory; ``"auto"`` keeps the CPU default and fills a GPU (:func:`auto_chunk_size`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.contract import per_point_keywords, rows_of
from vi_vae.errors import InputError
from vi_vae.evaluated_pair import check_evaluated_pair
from vi_vae.evaluation.one_pass import (
    AUTO_MEMORY_FRACTION,
    AUTO_TRIAL_PAIRS,
    auto_chunk_size,
    pass_log_weights,
)
from vi_vae.execution import ExecutionOptions, release_freed_memory
from vi_vae.keys import KEYED_PAIRS, RandomKey, forked, key_block_size
from vi_vae.support import check_points
from vi_vae.weights import (
    DEFAULT_CHUNK_SIZE,
    PARTICLE_PLATE,
    guess_plates,
)

__all__ = [
    "AUTO_MEMORY_FRACTION",
    "AUTO_TRIAL_PAIRS",
    "DEFAULT_CHUNK_SIZE",
    "auto_chunk_size",
    "keyed_log_weight_chunks",
    "log_weight_chunks",
    "pass_log_weights",
]


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
    fixed_density: bool = True,
    vectorize_particles: bool = True,
    **kwargs: Any,
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, log_weights)``: unscaled log weights ``[num_particles, len(rows)]``.

    Draws are made in passes of at most ``chunk_size`` (particle, point) pairs
    (``"auto"``: :func:`auto_chunk_size`), without gradients; model and guide are
    called as ``model(x[rows], **kwargs[rows])``, per-point keyword arguments split by
    rows with ``x`` (:func:`vi_vae.contract.rows_of`). With ``compile`` each pass shape
    is traced and compiled once (:func:`pass_log_weights`).
    The pair's contract, and the data against the support of every observed site, are
    checked first (:func:`vi_vae.evaluated_pair.check_evaluated_pair`; ``fixed_density``
    false leaves out clause 8, for ``fit``'s validation ELBO). The log weights stay on the
    data's device. With ``seed`` the draws are keyed by (seed, global point index;
    ``x[0]`` has index ``first_index``), so a point's log weights depend neither on
    ``chunk_size`` nor on the shard it is in (:mod:`vi_vae.keys`), and the global RNG is
    left alone. With ``vectorize_particles`` false the particles of a pass are drawn one
    after another (:func:`pass_log_weights`), each over all the pass's points,
    and ``chunk_size`` is not used.
    """
    check_positive_int("num_particles", num_particles)
    ExecutionOptions(
        compile=compile, chunk_size=chunk_size, vectorize_particles=vectorize_particles
    )
    check_points(x)
    checks = {"fixed_density": fixed_density, "vectorized": vectorize_particles}
    check_evaluated_pair(model, guide, x, kwargs, data_plate, **checks)
    # the probe of the plates draws too: from the caller's stream, or apart when seeded
    fork = forked(x.device)
    probe = fork if seed is not None else contextlib.nullcontext()
    with torch.no_grad(), probe:
        first_x, first_kwargs = rows_of(x, kwargs, slice(0, 1))
        plate_nesting, _ = guess_plates(model, guide, (first_x,), first_kwargs, data_plate)
    chunk_size = _pairs_per_pass(
        (model, guide, x, num_particles, plate_nesting, data_plate, kwargs),
        chunk_size,
        vectorize_particles,
    )
    one_pass = partial(
        pass_log_weights,
        model,
        guide,
        kwargs=kwargs,
        plate_nesting=plate_nesting,
        data_plate=data_plate,
        compile=compile,
        vectorize_particles=vectorize_particles,
    )
    if seed is not None:
        chunks = keyed_log_weight_chunks(
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
    else:
        chunks = _unkeyed_chunks(one_pass, x, kwargs, num_particles, chunk_size)
    for chunk in chunks:
        release_freed_memory()  # the chunk's transients are freed by now
        yield chunk


def _pairs_per_pass(evaluation: tuple, chunk_size: int | str, vectorize_particles: bool) -> int:
    """The pairs of one pass: ``chunk_size``, measured where it is ``"auto"``.

    ``evaluation`` is ``(model, guide, x, num_particles, plate_nesting, data_plate,
    kwargs)``, :func:`auto_chunk_size`'s arguments. Drawn one after another, a pass holds
    one particle of its points at a time: every key block (all of ``x`` unkeyed) is one.
    """
    _, _, x, num_particles, *_ = evaluation
    if not vectorize_particles:
        return num_particles * max(x.shape[0], key_block_size(num_particles))
    return auto_chunk_size(*evaluation) if chunk_size == "auto" else int(chunk_size)


@torch.no_grad()
def _unkeyed_chunks(
    one_pass: Callable, x: Tensor, kwargs: dict, num_particles: int, chunk_size: int
) -> Iterator[tuple[slice, Tensor]]:
    """The passes of :func:`log_weight_chunks` drawn from the caller's random stream."""
    for rows, particle_slices in _passes(num_particles, x.shape[0], chunk_size):
        rows_x, rows_kwargs = rows_of(x, kwargs, rows)
        counts = [particles.stop - particles.start for particles in particle_slices]
        parts = [one_pass(rows_x, num_particles=n, kwargs=rows_kwargs) for n in counts]
        yield rows, torch.cat(parts)


def _passes(
    num_particles: int, num_points: int, chunk_size: int
) -> Iterator[tuple[slice, list[slice]]]:
    """Passes of at most ``chunk_size`` pairs: each group of points with its particle slices."""
    per_pass = min(num_particles, chunk_size)
    particles = [
        slice(i, min(i + per_pass, num_particles)) for i in range(0, num_particles, per_pass)
    ]
    points_per_pass = max(1, chunk_size // per_pass)
    for start in range(0, num_points, points_per_pass):
        yield slice(start, min(start + points_per_pass, num_points)), particles


# -- importance sampling's keyed passes (the key blocks: :mod:`vi_vae.keys`) ----------


def _seed_stream(seed: int, device: torch.device) -> None:
    """Seed the generator(s) Pyro's draws on ``device`` consume."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def keyed_log_weight_chunks(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int,
    *,
    seed: int,
    first_index: int = 0,
    data_plate: str = "data",
    chunk_size: int,
    plate_nesting: int,
    one_pass: Callable[..., Tensor],
    **kwargs: Any,
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, log_weights)`` per key block, log weights ``[num_particles, len(rows)]``.

    Call it through :func:`log_weight_chunks` with a ``seed``,
    which checks the arguments and the data first. The global RNG is left untouched.

    Args:
        model: Pyro model ``model(x[rows], **kwargs)`` (per-point keyword arguments
            split by rows, :func:`vi_vae.contract.rows_of`).
        guide: Pyro guide with the same signature.
        x: the data points ``[N, ...]``, global indices ``first_index ...``.
        num_particles: K.
        seed: the evaluation's seed.
        first_index: global index of ``x[0]``; a multiple of :func:`key_block_size`.
        data_plate: name of the data plate.
        chunk_size: most (particle, point) pairs per pass of the model.
        plate_nesting: plate dims the model/guide use.
        one_pass: ``one_pass(x_rows, num_particles=K, kwargs=kwargs_rows)``, the log
            weights of a pass drawn from the current stream (eager or compiled).
        **kwargs: passed to model and guide.

    Raises:
        InputError: when ``first_index`` is not at a block boundary.
    """
    block = key_block_size(num_particles)
    check_positive_int("first_index", first_index, minimum=0)
    if first_index % block:
        raise InputError(
            f"first_index must be a multiple of the key block size {block} for "
            f"num_particles = {num_particles}; got {first_index} "
            "(use vi_vae.distributed.shard(..., block=key_block_size(num_particles)))"
        )
    key = RandomKey(seed)
    particles_per_group = min(num_particles, KEYED_PAIRS)
    per_point = per_point_keywords(kwargs, x.shape[0])
    with torch.no_grad(), forked(x.device):
        for start in range(0, x.shape[0], block):
            rows = slice(start, min(start + block, x.shape[0]))
            parts = []
            for group, first in enumerate(range(0, num_particles, particles_per_group)):
                _seed_stream(key.seed_for(first_index + start, group), x.device)
                count = min(particles_per_group, num_particles - first)
                rows_x, rows_kwargs = rows_of(x, kwargs, rows, per_point)
                if count * (rows.stop - rows.start) <= chunk_size:
                    parts.append(one_pass(rows_x, num_particles=count, kwargs=rows_kwargs))
                    continue
                parts.append(
                    _block_log_weights(
                        model,
                        guide,
                        rows_x,
                        count,
                        plate_nesting,
                        data_plate,
                        chunk_size,
                        rows_kwargs,
                        per_point,
                    )
                )
            yield rows, torch.cat(parts)


def _block_log_weights(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int,
    plate_nesting: int,
    data_plate: str,
    chunk_size: int,
    kwargs: dict[str, Any],
    per_point: frozenset[str],
) -> Tensor:
    """Log weights ``[num_particles, len(x)]`` of one block, drawn from the current stream.

    ``kwargs`` are the block's; those named in ``per_point`` are split with ``x``.
    """
    # The guide draws the whole block (its draws must not depend on chunk_size); the
    # model, which holds most of the memory, is replayed on slices of those draws.
    particle_plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))
    draws = poutine.trace(particle_plate(guide)).get_trace(x, **kwargs)
    rows = []
    for points, particle_slices in _passes(num_particles, x.shape[0], chunk_size):
        points_x, points_kwargs = rows_of(x, kwargs, points, per_point)
        parts = []
        for particles in particle_slices:
            sliced = _slice_draws(
                draws, particles, points, num_particles, x.shape[0], plate_nesting, data_plate
            )
            replayed = poutine.replay(guide, trace=sliced)
            count = particles.stop - particles.start
            parts.append(
                pass_log_weights(
                    model, replayed, points_x, points_kwargs, count, plate_nesting, data_plate
                )
            )
        rows.append(torch.cat(parts))
    return torch.cat(rows, dim=1)


def _slice_draws(
    trace: Trace,
    particles: slice,
    points: slice,
    num_particles: int,
    num_points: int,
    plate_nesting: int,
    data_plate: str,
) -> Trace:
    """The latent draws of ``trace`` for some particles and points, as a trace to replay."""
    sliced = Trace()
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        value = site["value"]
        batch_dims = value.dim() - site["fn"].event_dim
        index: list[slice] = [slice(None)] * value.dim()
        particle_axis = batch_dims - (plate_nesting + 1)
        if particle_axis >= 0 and value.shape[particle_axis] == num_particles:
            index[particle_axis] = particles
        frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
        if frame is not None and value.shape[batch_dims + frame.dim] == num_points:
            index[batch_dims + frame.dim] = points
        sliced.add_node(
            name, type="sample", is_observed=False, value=value[tuple(index)], infer=site["infer"]
        )
    return sliced
