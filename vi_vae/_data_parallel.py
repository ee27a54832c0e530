r"""How :func:`vi_vae.fit` trains one model on several ranks: data parallel, gradients summed.

Each rank takes a contiguous share of every step's global batch
(:func:`vi_vae.distributed.shard`), runs the estimator's ``loss_and_grads`` on it,
and the ``.grad`` of every parameter in Pyro's param store is summed over the
ranks before the optimizer steps, so that

.. math::
    g = \sum_{r} \nabla \Big(-\sum_{n \in S_r} \mathcal{L}_n\Big)
      = \nabla \Big(-\sum_{n \in B} \mathcal{L}_n\Big),

the gradient of the global batch B (a Pyro loss is a sum over points, so the
gradients are summed, not averaged). Every rank then applies the same update to
the same parameters and holds identical parameters after every step.

Why an all-reduce of ``.grad`` after ``loss_and_grads`` and not
``torch.nn.parallel.DistributedDataParallel``: DDP reduces gradients from hooks on
the backward pass of a module's ``forward``, but a vi_vae estimator writes
``.grad`` itself — DReG and PIWAE route gradients with ``torch.autograd.grad`` and
add them in, the chunked fallback calls ``backward`` once per chunk — and
parameters may live in Pyro's param store outside any module. Summing ``.grad``
once per step is exact for any ``pyro.infer.ELBO``, any parameter and any number
of backward passes, and lets a rank with an empty share (a last batch smaller than
the world) contribute zeros. The price is that communication does not overlap the
backward pass.

Random streams: the shuffling generator (and so the batches and their dynamic
binarization, applied to the global batch) is the same on every rank; Pyro's draws
come from torch's global stream, seeded differently on each rank, so a run on R
ranks is reproducible for that R and agrees with a one-process run in
distribution, not draw by draw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pyro
import torch
from pyro.infer import SVI
from pyro.infer.util import torch_item, zero_grads
from torch import Tensor

from vi_vae import distributed
from vi_vae.errors import InputError, TrainingError
from vi_vae.keys import RandomKey, seed_everything

if TYPE_CHECKING:
    from vi_vae._train_step import Points

__all__ = ["DataParallel", "DataParallelSVI", "Local"]

T = TypeVar("T")


class DataParallelSVI(SVI):
    """``pyro.infer.SVI`` whose step trains on this rank's share of the global batch.

    :meth:`synchronize` must run once, after the parameters exist and before the
    first step.
    """

    names: list[str] | None = None
    #: the keyword arguments with one row per point, sharded with the batch
    point_kwargs: frozenset[str] = frozenset()

    def synchronize(self, data: Points) -> None:
        """Copy rank 0's parameters to every rank; refuse ranks whose parameters or data differ.

        Each global batch is sharded by position, so ranks must pass the same points, and
        per-point keyword arguments, in the same order: a rank that shuffled its own
        would train on shares of other batches, some points twice and some never.
        """
        names = sorted(name for name, _ in pyro.get_param_store().named_parameters())
        fingerprint = [distributed.data_fingerprint(data.x)] + [
            (name, distributed.data_fingerprint(data.kwargs[name]))
            for name in sorted(data.per_point)
        ]
        everyone = distributed.all_gather_objects((names, len(data.x), fingerprint))
        if any(other != names for other, _, _ in everyone):
            raise InputError(
                "the ranks' models have different parameters; every rank must build the "
                "same model, with every parameter created by one call of model and guide"
            )
        if any(other != fingerprint for _, _, other in everyone):
            raise distributed.different_data([n for _, n, _ in everyone], "data to fit")
        self.names = names
        distributed.broadcast_tensors(self._parameters())

    def _parameters(self) -> list[Tensor]:
        store = dict(pyro.get_param_store().named_parameters())
        if self.names is None or sorted(store) != self.names:
            raise TrainingError(
                "the param store changed after training started (a parameter created "
                "after the first call of model and guide cannot be kept equal across ranks)"
            )
        return [store[name] for name in self.names]

    def step(self, batch: Tensor, *args: Any, **kwargs: Any) -> float:
        """Train on this rank's rows of the global ``batch``; returns the global batch's loss."""
        rows = distributed.shard(len(batch))
        local = batch[rows]
        kwargs = {
            name: value[rows] if name in self.point_kwargs else value
            for name, value in kwargs.items()
        }
        failure: Exception | None = None
        loss = 0.0
        if len(local):
            try:
                value = self.loss_and_grads(self.model, self.guide, local, *args, **kwargs)
                loss = torch_item(value)
            except Exception as error:  # the other ranks learn of it from the all-reduce
                failure = error
        parameters = self._parameters()
        gradients = [
            p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in parameters
        ]
        device = parameters[0].device if parameters else torch.device("cpu")
        flags = [0.0 if p.grad is None or failure else 1.0 for p in parameters]
        totals = torch.tensor(
            [*flags, loss, float(failure is not None)], dtype=torch.float64, device=device
        )
        distributed.sum_tensors([*gradients, totals])
        if totals[-1] > 0:
            _raise_failure(failure)
        stepped = []
        for parameter, gradient, used in zip(
            parameters, gradients, totals[:-2].tolist(), strict=True
        ):
            # a parameter no rank's trace used keeps no gradient, as in one process
            parameter.grad = gradient if used > 0 else None
            if used > 0:
                stepped.append(parameter)
        self.optim(stepped)
        zero_grads(stepped)
        return totals[-2].item()


def _raise_failure(failure: Exception | None) -> None:
    """Raise on every rank: the failing rank its own error, the others a TrainingError."""
    messages = distributed.all_gather_objects(None if failure is None else str(failure))
    if failure is not None:
        raise failure
    rank, message = next((r, m) for r, m in enumerate(messages) if m is not None)
    raise TrainingError(f"rank {rank} of {len(messages)} failed in this step: {message}")


class Local:
    """:func:`vi_vae.fit` in one process: every hook is a no-op."""

    #: the SVI of a step: Pyro's own in one process
    svi_type: type[SVI] = SVI

    def svi(
        self,
        model: Callable,
        guide: Callable,
        optimizer: Any,
        loss: Any,
        point_kwargs: frozenset[str] = frozenset(),
    ) -> SVI:
        """An :attr:`svi_type` whose steps get the batch's rows of ``point_kwargs``.

        A :class:`DataParallelSVI` shards them with the batch.
        """
        svi = self.svi_type(model, guide, optimizer, loss=loss)
        if isinstance(svi, DataParallelSVI):
            svi.point_kwargs = point_kwargs
        return svi

    def start(self, svi: SVI, seed: int, data: Points) -> None:
        """Nothing to synchronize."""

    def main_value(self, compute: Callable[[], T]) -> T:
        """``compute()``."""
        return compute()

    def rng_states(self) -> list[dict[str, Tensor]] | None:
        """No other ranks' streams to keep."""
        return None

    def restore_rng(self, states: list[dict[str, Tensor]] | None, seed: int, epoch: int) -> None:
        """The checkpoint's stream is already restored."""


class DataParallel(Local):
    """:func:`vi_vae.fit` on several ranks (module docstring)."""

    svi_type = DataParallelSVI

    def start(self, svi: SVI, seed: int, data: Points) -> None:
        """Rank 0's initial parameters everywhere; a stream of its own for each rank's draws."""
        assert isinstance(svi, DataParallelSVI)
        svi.synchronize(data)
        _seed_rank(seed, 0)

    def main_value(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, sent to every rank (so that all take the same decisions)."""
        return distributed.broadcast_object(compute() if distributed.is_main_process() else None)

    def rng_states(self) -> list[dict[str, Tensor]] | None:
        """Every rank's torch streams (CPU and its GPU's), for rank 0's checkpoint."""
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return distributed.all_gather_objects(state)

    def restore_rng(self, states: list[dict[str, Tensor]] | None, seed: int, epoch: int) -> None:
        """This rank's streams from the checkpoint (fresh ones when the world size changed)."""
        if states is not None and len(states) == distributed.world_size():
            state = states[distributed.rank()]
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["cuda"])
        elif not distributed.is_main_process():
            _seed_rank(seed, epoch)


def _seed_rank(seed: int, epoch: int) -> None:
    """Give rank r > 0 a stream of its own (rank 0 keeps the one ``seed`` gave it)."""
    rank = distributed.rank()
    if rank > 0:
        seed_everything(RandomKey(seed).seed_for(rank, epoch))


def data_parallel() -> Local:
    """The training strategy for the current process group."""
    return DataParallel() if distributed.is_distributed() else Local()
