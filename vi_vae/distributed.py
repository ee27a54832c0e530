r"""torch.distributed helpers: ranks, contiguous shards, one gather, sums and broadcasts.

Every function works without torch.distributed: with no initialized process
group (or a group of one) the world is one rank, :func:`map_shards` evaluates
all the points in place and the collectives return their input. Under
``torchrun`` (:func:`init_from_environment`), :func:`map_shards` shards any
per-point evaluator:

.. math::
    \{0, \dots, N-1\} = S_0 \cup \dots \cup S_{R-1}, \qquad
    S_r \text{ contiguous, disjoint, unpadded},

each rank evaluates its own :math:`S_r` with no collective in between, and one
gather at the end gives every rank all the results in point order. Unlike
``torch.utils.data.DistributedSampler``, which pads the shards to equal sizes with
repeated points (and so weights them twice in any mean, PyTorch issue 25162), a
shard here may be shorter, or empty, and nothing is repeated. Draws keyed by
point (:mod:`vi_vae.keys`) make each per-point result independent of the
shard it lands in; the shards then start at multiples of the key block size.

Example:
    >>> [shard(10, block=4, rank=r, world_size=3) for r in range(3)]
    [slice(0, 4, None), slice(4, 8, None), slice(8, 10, None)]
    >>> map_shards(lambda rows: list(range(rows.start, rows.stop)), 3, combine=sum)
    [0, 1, 2]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from vi_vae._digest import tensor_sha256
from vi_vae._validation import check_positive_int
from vi_vae.errors import InputError

__all__ = [
    "ShardFailed",
    "all_gather_objects",
    "broadcast_object",
    "broadcast_tensors",
    "data_fingerprint",
    "different_data",
    "init_from_environment",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "local_device",
    "local_rank",
    "map_shards",
    "rank",
    "shard",
    "shutdown",
    "sum_tensors",
    "world_size",
]


class ShardFailed(RuntimeError):
    """Another rank's shard raised; this rank raises this instead of waiting for it."""


def _group_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of ranks (1 without an initialized process group)."""
    return dist.get_world_size() if _group_active() else 1


def rank() -> int:
    """This process's rank (0 without an initialized process group)."""
    return dist.get_rank() if _group_active() else 0


#: the module's rank and world size, under names that shard's arguments do not shadow
_current_rank, _current_world_size = rank, world_size


def is_distributed() -> bool:
    """Whether a process group of more than one rank is initialized."""
    return world_size() > 1


def is_main_process() -> bool:
    """Whether this is rank 0, the one that writes files and prints."""
    return rank() == 0


def local_rank() -> int:
    """This process's rank on its machine (``torchrun``'s ``LOCAL_RANK``; 0 without it)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_by_torchrun() -> bool:
    """Whether the environment describes more than one rank (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(device: torch.device | str) -> torch.device:
    """``cuda`` without an index is this rank's GPU, ``cuda:LOCAL_RANK``, under torchrun.

    One rank per GPU: ``torchrun --nproc-per-node`` as many as the machine has.
    Any other device, or a CUDA device with an explicit index, is returned as is.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", local_rank())
    return device


def init_from_environment(timeout: timedelta | None = None) -> None:
    """Join the process group that ``torchrun`` describes in the environment.

    The backend is Gloo for tensors on the CPU and, where CUDA is available, NCCL
    for tensors on GPUs (``"cpu:gloo,cuda:nccl"``), each rank on its local GPU, so
    the same group serves a CPU and a GPU run. A no-op when the environment has one
    rank or the group is already initialized.

    Args:
        timeout: how long a collective waits for the other ranks (torch's default
            when ``None``: 30 minutes for Gloo, 10 for NCCL).
    """
    if not launched_by_torchrun() or _group_active():
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    options = {"timeout": timeout} if timeout is not None else {}
    dist.init_process_group(backend=backend, init_method="env://", **options)


def shutdown(*, synchronize: bool = False) -> None:
    """Leave the process group, if one is initialized.

    Args:
        synchronize: first wait at a barrier for every rank, so that no rank tears the
            group down while another is still in a collective with it (Gloo can abort
            a process that does). Only where every rank makes this call: after a
            failure, ranks that never arrive would hold the others until the group's
            timeout.
    """
    if _group_active():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def shard(
    num_points: int,
    *,
    block: int = 1,
    rank: int | None = None,
    world_size: int | None = None,
) -> slice:
    """This rank's contiguous, unpadded share of ``num_points`` points.

    The points are cut into blocks of ``block`` (the last may be shorter); rank r
    gets the r-th of ``world_size`` runs of consecutive blocks whose lengths differ
    by at most one block. A rank may get an empty slice when there are fewer
    blocks than ranks.

    Args:
        num_points: N.
        block: shards start at multiples of this (a key block, :mod:`vi_vae.keys`).
        rank: default this process's rank.
        world_size: default the number of ranks.
    """
    check_positive_int("num_points", num_points, minimum=0)
    check_positive_int("block", block)
    rank = _current_rank() if rank is None else rank
    world_size = _current_world_size() if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise InputError(f"rank must be in [0, {world_size}); got {rank}")
    per_rank, extra = divmod(math.ceil(num_points / block), world_size)
    first = rank * per_rank + min(rank, extra)
    count = per_rank + (rank < extra)
    return slice(min(first * block, num_points), min((first + count) * block, num_points))


def data_fingerprint(x: Tensor) -> tuple:
    """Shape, dtype and the SHA-256 of the values of ``x``, in their order.

    Sharded evaluators pass it to :func:`map_shards`, which refuses ranks that were
    given different data. The order counts: ranks that shuffled the same points
    differently (a generator seeded by rank) would cut shards of other points, some
    evaluated twice and some never.
    """
    return tuple(x.shape), str(x.dtype), tensor_sha256(x)


def map_shards(
    evaluate: Callable[[slice], Any],
    num_points: int,
    *,
    combine: Callable[[list[Any]], Any],
    block: int = 1,
    fingerprint: Any = None,
) -> Any:
    """Evaluate this rank's shard of the points; every rank returns the combined results.

    In one process this is ``evaluate(slice(0, num_points))``. With several ranks,
    each calls ``evaluate`` on its :func:`shard` (not at all on an empty one), with
    no collective in between, and then all results are gathered once and passed,
    in point order, to ``combine`` (e.g. a concatenation of per-point tensors).

    A shard that raises does not leave the others waiting: the exception travels
    with the gather, the failing rank re-raises it and every other rank raises
    :class:`ShardFailed` (an :class:`~vi_vae.errors.InputError` on one rank is an
    ``InputError`` on all).

    Args:
        evaluate: maps the rows of a shard to its results (their first dimension
            is the shard's points).
        num_points: N; every rank must pass the same.
        combine: joins the results of the non-empty shards, in point order.
        block: shards start at multiples of this (see :func:`shard`).
        fingerprint: a small picklable value that must be equal on every rank
            (e.g. a checksum of the data), checked with the gather.

    Raises:
        InputError: when the ranks disagree on ``num_points`` or ``fingerprint``.
    """
    if not is_distributed():
        return evaluate(slice(0, num_points))
    rows = shard(num_points, block=block)
    result, failure = None, None
    if rows.stop > rows.start:
        try:
            result = evaluate(rows)
        except Exception as error:  # sent to the other ranks, re-raised below
            failure = error
    reason = None if failure is None else (isinstance(failure, InputError), str(failure))
    gathered = all_gather_objects((num_points, fingerprint, reason, None if failure else result))
    for other, (_, _, reason, _) in enumerate(gathered):
        if reason is not None:
            if failure is not None:
                raise failure
            is_input_error, message = reason
            kind = InputError if is_input_error else ShardFailed
            raise kind(f"rank {other} of {len(gathered)} failed: {message}")
    if any((n, f) != (num_points, fingerprint) for n, f, _, _ in gathered):
        raise different_data([n for n, _, _, _ in gathered], "x")
    return combine([part for _, _, _, part in gathered if part is not None])


def different_data(points: Sequence[int], what: str) -> InputError:
    """The error of ranks that passed different data; ``points``: each rank's count."""
    return InputError(
        "the ranks passed different data points (numbers of points, contents or order); "
        f"under torch.distributed every rank must pass the same {what}, which is then "
        "sharded by position: " + ", ".join(f"rank {r}: {n} points" for r, n in enumerate(points))
    )


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's picklable ``value``, in rank order (``[value]`` in one process)."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s picklable ``value`` on every rank."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def sum_tensors(tensors: Sequence[Tensor]) -> None:
    """Replace each tensor by its sum over ranks, in place, one collective per dtype and device.

    The tensors are flattened into one buffer per (dtype, device) for the all-reduce
    and copied back.
    """
    _flat_collective(tensors, lambda buffer: dist.all_reduce(buffer, op=dist.ReduceOp.SUM))


def broadcast_tensors(tensors: Sequence[Tensor], source: int = 0) -> None:
    """Copy rank ``source``'s values of ``tensors`` into every rank's, in place."""
    _flat_collective(tensors, lambda buffer: dist.broadcast(buffer, src=source))


def _flat_collective(tensors: Sequence[Tensor], collective: Callable[[Tensor], Any]) -> None:
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    with torch.no_grad():
        for group in groups.values():
            buffer = torch.cat([tensor.reshape(-1) for tensor in group])
            collective(buffer)
            start = 0
            for tensor in group:
                tensor.copy_(buffer[start : start + tensor.numel()].view_as(tensor))
                start += tensor.numel()
