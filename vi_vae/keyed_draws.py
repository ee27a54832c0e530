r"""Draws keyed by (seed, data point): per-point log weights that do not depend on the split.

Pyro draws from torch's global random stream, so what a vectorized pass draws for
one point depends on everything else in the pass: how many points and particles
it holds and what ran before it. To give each point the same draws whether it is
evaluated alone, with any ``chunk_size``, or in a shard on one of several ranks
(:mod:`vi_vae.distributed`), the points are cut by their global index into fixed
*key blocks* of

.. math::
    G(K) = \max(1, \lfloor P_{\mathrm{key}} / K \rfloor)

consecutive points, :math:`P_{\mathrm{key}} =` :data:`KEYED_PAIRS`, the particles of
a block into groups of at most :data:`KEYED_PAIRS`, and each (block, particle group) is
drawn from torch's stream seeded by :func:`point_seed` of (seed, the global index of
the block's first point, the group). Everything that runs on a block (the guide's
draws, the model, the reductions) sees the same tensors whatever else is evaluated,
so the per-point numbers are bitwise the same for every rank count.

The cost. For K ≥ :data:`KEYED_PAIRS` / 2, which includes the default K = 5000, a
block is one point and one pass, exactly the passes of the unkeyed default
(``chunk_size`` = 8192 also puts one point per pass); seeding a generator costs
microseconds against a pass of thousands of particles. For small K a block keeps
the pass as large as that default (K = 1: 8192 points per pass) instead of
seeding every point, which would cost one Pyro trace per point; the price is that
a point's draws depend on its block, so the blocks are the unit of sharding
(:func:`vi_vae.distributed.shard` with ``block=G(K)``) and a point's draws for small
K also depend on where ``x`` ends (the last block is shorter).

``chunk_size`` still bounds memory: when a block holds more (particle, point)
pairs than ``chunk_size``, the guide draws the block once and the model is
replayed on slices of at most ``chunk_size`` pairs: the same draws, in smaller
passes, so the numbers agree up to float rounding (matrix products of other
shapes may round differently); at ``chunk_size`` ≥ a block's pairs (the default)
they are bitwise the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._validation import check_positive_int, check_seed
from vi_vae.contract import per_point_keywords, rows_of
from vi_vae.errors import InputError
from vi_vae.weights import DEFAULT_CHUNK_SIZE, PARTICLE_PLATE, trace_log_weights

__all__ = ["KEYED_PAIRS", "key_block_size", "keyed_log_weight_chunks", "point_seed"]

#: (particle, point) pairs drawn from one seeded stream: the evaluators' default
#: chunk_size, so that keyed passes are as large as the default unkeyed ones
KEYED_PAIRS = DEFAULT_CHUNK_SIZE

_MASK64 = (1 << 64) - 1


def key_block_size(num_particles: int) -> int:
    """G(K): the consecutive points whose draws share one seeded stream.

    Example:
        >>> key_block_size(5000), key_block_size(50), key_block_size(1)
        (1, 163, 8192)
    """
    check_positive_int("num_particles", num_particles)
    return max(1, KEYED_PAIRS // num_particles)


def _mix(value: int) -> int:
    """SplitMix64's finalizer (Steele, Lea & Flood 2014): a bijection of 64-bit integers."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def point_seed(seed: int, index: int, group: int = 0) -> int:
    """The seed of the draws of the block starting at global point ``index``.

    SplitMix64 mixes (seed, index, group) into 32 bits, because torch's CPU
    generator (a Mersenne Twister) keeps only the low 32 bits of its seed. Two
    blocks get the same stream with probability about n² / 2³³ for n blocks, which
    correlates their noise but biases nothing.

    Args:
        seed: the evaluation's seed.
        index: global index of the block's first point.
        group: the particle group within the block (0 unless K > :data:`KEYED_PAIRS`).

    Example:
        >>> point_seed(0, 7) == point_seed(0, 7), point_seed(0, 7) == point_seed(0, 8)
        (True, False)
    """
    value = _mix(_mix(_mix(check_seed(seed)) ^ index) ^ group)
    return (value ^ (value >> 32)) & 0xFFFFFFFF


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

    Call it through :func:`vi_vae.evaluation.passes.log_weight_chunks` with a ``seed``,
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
    particles_per_group = min(num_particles, KEYED_PAIRS)
    per_point = per_point_keywords(kwargs, x.shape[0])
    with torch.no_grad(), torch.random.fork_rng(devices=_cuda(x.device)):
        for start in range(0, x.shape[0], block):
            rows = slice(start, min(start + block, x.shape[0]))
            parts = []
            for group, first in enumerate(range(0, num_particles, particles_per_group)):
                _seed_stream(point_seed(seed, first_index + start, group), x.device)
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


def _cuda(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []


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

    def log_weights(guide: Callable, points: slice, num_particles: int) -> Tensor:
        points_x, points_kwargs = rows_of(x, kwargs, points, per_point)
        return trace_log_weights(
            model,
            guide,
            (points_x,),
            points_kwargs,
            num_particles=num_particles,
            plate_nesting=plate_nesting,
            data_plate=data_plate,
            scaled=False,
        ).log_weights

    # The guide draws the whole block (its draws must not depend on chunk_size); the
    # model, which holds most of the memory, is replayed on slices of those draws.
    particle_plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))
    draws = poutine.trace(particle_plate(guide)).get_trace(x, **kwargs)
    particles_per_pass = min(num_particles, chunk_size)
    points_per_pass = max(1, chunk_size // particles_per_pass)
    rows = []
    for start in range(0, x.shape[0], points_per_pass):
        points = slice(start, min(start + points_per_pass, x.shape[0]))
        parts = []
        for first in range(0, num_particles, particles_per_pass):
            particles = slice(first, min(first + particles_per_pass, num_particles))
            sliced = _slice_draws(
                draws, particles, points, num_particles, x.shape[0], plate_nesting, data_plate
            )
            count = particles.stop - particles.start
            parts.append(log_weights(poutine.replay(guide, trace=sliced), points, count))
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
