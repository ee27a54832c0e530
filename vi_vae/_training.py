"""The collaborators of :func:`vi_vae.fit`, each small enough to read and test on its own.

The epoch record, the KL weight, validation, early stopping, and the state
between epochs with the checkpoint it becomes. Nothing here writes a file: a
checkpoint goes to the sink passed to ``fit`` (:mod:`vi_vae.callbacks`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pyro
import torch
from pyro.poutine.messenger import Messenger
from torch import Tensor

from vi_vae._modules import modules_called
from vi_vae.errors import InputError
from vi_vae.evaluation.estimates import standard_error_over_points
from vi_vae.evaluation.passes import log_weight_chunks
from vi_vae.keys import get_rng_state, set_rng_state

__all__ = [
    "EarlyStopping",
    "EpochRecord",
    "KLWeight",
    "TrainingCheckpoint",
    "TrainingState",
    "buffers_state",
    "load_buffers",
    "networks_in_eval_mode",
    "validation_elbo",
]


@dataclass(frozen=True)
class EpochRecord:
    """One completed epoch: a row of ``history.csv``.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: the estimator's loss per training point, averaged over the epoch
            (nats; the negative of the bound it reports, under the epoch's KL weight).
            Where the data plate scales each batch to the N points
            (``pyro.plate(name, N, subsample=rows)``), each step's loss stands for
            all N, and is divided by N. A scale of the pair's own (``poutine.scale``
            over the model, as a "mean loss") stays in it.
        validation_elbo: ELBO per validation point (NaN without validation data), of
            the unscaled model, as the evaluators score it. Under a pair's own
            ``poutine.scale(scale=s)``, ``train_loss`` is s times the unscaled loss and
            so not on this number's scale.
        validation_elbo_standard_error: its standard error over validation points.
        kl_weight: the KL weight β used in this epoch.
        seconds: wall-clock seconds of the epoch's training steps (validation excluded).
    """

    epoch: int
    train_loss: float
    validation_elbo: float = math.nan
    validation_elbo_standard_error: float = math.nan
    kl_weight: float = 1.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Plain numbers by field name (the CSV row and the checkpoint entry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> EpochRecord:
        """Rebuild from :meth:`to_dict` (or a ``history.csv`` row of strings)."""
        names = {f.name: f.type for f in fields(cls)}
        values = {name: row[name] for name in names if name in row}
        return cls(
            epoch=int(float(values.pop("epoch"))),
            **{name: float(value) for name, value in values.items()},
        )


class KLWeight(Messenger):
    """Scale every latent (unobserved) sample site by ``weight``.

    Applied to model and guide, log p(z) and log q(z|x) are both scaled, so the
    ELBO's KL term is multiplied by ``weight`` (β-VAE, Higgins et al. 2017; KL
    warm-up, Sønderby et al. 2016) and the reconstruction term is left alone.
    The weight is held in a 0-dim tensor that setting :attr:`weight` updates in
    place, so a compiled step (traced once, reading tensors by reference) follows
    a warm-up without compiling again.
    """

    def __init__(self, weight: float, device: torch.device | str | None = None) -> None:
        super().__init__()
        # float64: any finite weight fits (a float32 one overflows above 3.4e38); a 0-dim
        # tensor does not change the dtype of the log densities it scales
        self._weight = torch.tensor(float(weight), dtype=torch.float64, device=device)

    @property
    def weight(self) -> float:
        """β, the factor on every latent site's log density."""
        return float(self._weight)

    @weight.setter
    def weight(self, value: float) -> None:
        self._weight.fill_(value)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self._weight


def validation_elbo(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int,
    seed: int,
    data_plate: str,
    kwargs: dict[str, Any] | None = None,
    vectorize_particles: bool = True,
) -> tuple[float, float]:
    """Mean ELBO per point (each averaged over ``num_particles`` draws) and its SE over points.

    The draws come from a stream seeded by ``seed`` (the caller's stream is left
    alone), so validation does not change the training draws. ``kwargs`` go to
    model and guide. The networks are scored in eval mode (:func:`networks_in_eval_mode`).
    ``vectorize_particles`` false draws the particles one after another, as a loss that
    does (Pyro's own ELBOs) trains (``ExecutionOptions.vectorize_particles``).
    """
    with networks_in_eval_mode():
        per_point = torch.cat(
            [
                log_weights.double().mean(0).cpu()
                for _, log_weights in log_weight_chunks(
                    model,
                    guide,
                    x,
                    num_particles,
                    data_plate=data_plate,
                    seed=seed,
                    fixed_density=False,
                    vectorize_particles=vectorize_particles,
                    **(kwargs or {}),
                )
            ]
        )
    return per_point.mean().item(), standard_error_over_points(per_point)


def networks_in_eval_mode() -> contextlib.AbstractContextManager[dict[torch.nn.Module, bool]]:
    """Run every torch module called inside in eval mode, and leave each as it was found.

    ``fit``'s validation measures the model as the evaluators score it (they refuse
    dropout and BatchNorm in training mode): in training mode dropout would make the
    validation ELBO random, and BatchNorm would normalize by the batch (failing on one
    row) and fold the validation data into the running statistics that the evaluators
    then normalize with. The modules are whichever the pair calls, wherever they are
    held (:func:`vi_vae._modules.modules_called`); it yields them, in the order of their
    first call.
    """
    return modules_called(eval_mode=True)


def params_state() -> dict[str, Tensor]:
    """A copy of every parameter in Pyro's param store (unconstrained), on the host."""
    return {
        name: value.detach().cpu().clone()
        for name, value in pyro.get_param_store().named_parameters()
    }


def load_params(params: dict[str, Tensor]) -> None:
    """Copy ``params`` (from :func:`params_state`) into the param store's parameters."""
    store = dict(pyro.get_param_store().named_parameters())
    missing = sorted(set(params) - set(store))
    if missing:
        raise InputError(
            f"the checkpoint has parameters {missing[:5]} that this model does not; "
            "it was written by a different model"
        )
    with torch.no_grad():
        for name, value in params.items():
            if store[name].shape != value.shape:
                raise InputError(
                    f"parameter {name!r} has shape {list(value.shape)} in the checkpoint and "
                    f"{list(store[name].shape)} in this model; it was written by a different model"
                )
            store[name].copy_(value)


def buffers_state(modules: Sequence[torch.nn.Module]) -> dict[str, Tensor]:
    """A copy of the buffers of ``modules`` (BatchNorm's running statistics), on the host.

    Pyro's param store holds parameters only. A buffer is named by its module's place
    among ``modules``, the modules the pair calls in the order of their first call
    (``"2:BatchNorm1d.running_mean"``), which the same code gives again in another
    process.
    """
    return {name: value.detach().cpu().clone() for name, value in _buffers(modules).items()}


def load_buffers(modules: Sequence[torch.nn.Module], buffers: dict[str, Tensor]) -> None:
    """Copy ``buffers`` (from :func:`buffers_state`) into the buffers of ``modules``."""
    current = _buffers(modules)
    if set(buffers) != set(current) or any(
        current[name].shape != value.shape for name, value in buffers.items()
    ):
        raise InputError(
            f"the checkpoint has module buffers {sorted(buffers)[:5]} and this model "
            f"{sorted(current)[:5]}; it was written by a different model"
        )
    with torch.no_grad():
        for name, value in buffers.items():
            current[name].copy_(value)


def _buffers(modules: Sequence[torch.nn.Module]) -> dict[str, Tensor]:
    return {
        f"{index}:{type(module).__name__}.{name}": buffer
        for index, module in enumerate(modules)
        for name, buffer in module.named_buffers(recurse=False)
    }


def parameters_finite() -> bool:
    """Whether every parameter in Pyro's param store is finite."""
    return all(torch.isfinite(value).all() for _, value in pyro.get_param_store().items())


@dataclass
class EarlyStopping:
    """Keep the best epoch's parameters; stop after ``patience`` epochs without improvement.

    Only epochs at the full KL weight compete (a warm-up epoch's ELBO is not
    comparable), and a score must be strictly better to count.
    """

    patience: int | None
    best_score: float = -math.inf
    best_epoch: int = 0
    best_params: dict[str, Tensor] | None = None
    best_buffers: dict[str, Tensor] | None = None

    def update(
        self,
        record: EpochRecord,
        score: float,
        full_weight: bool,
        modules: Sequence[torch.nn.Module] = (),
    ) -> None:
        """Record ``score`` of ``record``'s epoch; keep its parameters (and buffers) if the best."""
        if full_weight and score > self.best_score:
            self.best_score, self.best_epoch = score, record.epoch
            self.best_params = params_state()
            self.best_buffers = buffers_state(modules)

    def should_stop(self, last_epoch: int) -> bool:
        """Whether ``patience`` epochs have passed since the best one."""
        return self.patience is not None and last_epoch - self.best_epoch >= self.patience


@dataclass
class TrainingCheckpoint:
    """The state after a completed epoch: everything a resumed run needs to continue exactly.

    A snapshot: nothing in it changes as training goes on.

    Attributes:
        epoch: the last completed epoch.
        params: every parameter of Pyro's param store (unconstrained), on the host.
        optimizer: the optimizer's state (``optimizer.get_state()``).
        rng: torch's, the shuffling generator's, Python's (and CUDA's) random state.
        history: one :class:`EpochRecord` per completed epoch.
        best_epoch: the best epoch so far (0 before one at the full KL weight).
        best_score: its score (validation ELBO, or minus the training loss).
        best_params: its parameters (``None`` before it).
        rank_rng: every rank's random streams under torch.distributed (``None`` in
            one process).
        buffers: the buffers of the modules the pair calls (:func:`buffers_state`;
            empty where they have none).
        best_buffers: those of the best epoch (``None`` before it).
    """

    epoch: int
    params: dict[str, Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    history: list[EpochRecord]
    best_epoch: int
    best_score: float
    best_params: dict[str, Tensor] | None
    rank_rng: list[dict[str, Tensor]] | None = None
    buffers: dict[str, Tensor] = field(default_factory=dict)
    best_buffers: dict[str, Tensor] | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain containers of tensors, numbers and strings (what ``checkpoint.pt`` holds)."""
        extra = {"rank_rng": self.rank_rng} if self.rank_rng else {}
        if self.buffers:  # a model without buffers writes the checkpoint it always did
            extra.update(buffers=self.buffers, best_buffers=self.best_buffers)
        return {
            **extra,
            "epoch": self.epoch,
            "params": self.params,
            "optimizer": self.optimizer,
            "rng": self.rng,
            "history": [record.to_dict() for record in self.history],
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "best_params": self.best_params,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingCheckpoint:
        """Rebuild from :meth:`to_state` (other keys, e.g. ``"metadata"``, are ignored)."""
        return cls(
            epoch=int(state["epoch"]),
            params=state["params"],
            optimizer=state["optimizer"],
            rng=state["rng"],
            history=[EpochRecord.from_dict(row) for row in state["history"]],
            best_epoch=int(state["best_epoch"]),
            best_score=float(state["best_score"]),
            best_params=state["best_params"],
            rank_rng=state.get("rank_rng"),
            buffers=state.get("buffers", {}),
            best_buffers=state.get("best_buffers"),
        )


@dataclass
class TrainingState:
    """The loop's state between epochs: the history and the early stopping."""

    history: list[EpochRecord] = field(default_factory=list)
    stopping: EarlyStopping = field(default_factory=lambda: EarlyStopping(None))

    @property
    def last_epoch(self) -> int:
        """The last completed epoch (0 before the first)."""
        return self.history[-1].epoch if self.history else 0

    def checkpoint(
        self,
        optimizer: Any,
        generator: torch.Generator,
        rank_rng: list | None,
        modules: Sequence[torch.nn.Module] = (),
    ) -> TrainingCheckpoint:
        """A snapshot of the parameters, buffers, optimizer, random streams and this state."""
        return TrainingCheckpoint(
            epoch=self.last_epoch,
            params=params_state(),
            # the optimizer's state tensors are its own, updated in place: copy them
            optimizer=copy.deepcopy(optimizer.get_state()),
            rng=get_rng_state(generator),
            history=list(self.history),
            best_epoch=self.stopping.best_epoch,
            best_score=self.stopping.best_score,
            best_params=self.stopping.best_params,
            rank_rng=rank_rng,
            buffers=buffers_state(modules),
            best_buffers=self.stopping.best_buffers,
        )

    @classmethod
    def restore(
        cls,
        checkpoint: TrainingCheckpoint,
        optimizer: Any,
        generator: torch.Generator,
        patience: int | None,
        modules: Sequence[torch.nn.Module] = (),
    ) -> TrainingState:
        """Load ``checkpoint`` into the param store, buffers, optimizer and random streams."""
        load_params(checkpoint.params)
        if checkpoint.buffers:  # a checkpoint of an older vi_vae has none
            load_buffers(modules, checkpoint.buffers)
        optimizer.set_state(checkpoint.optimizer)
        set_rng_state(checkpoint.rng, generator)
        stopping = EarlyStopping(
            patience,
            best_score=checkpoint.best_score,
            best_epoch=checkpoint.best_epoch,
            best_params=checkpoint.best_params,
            best_buffers=checkpoint.best_buffers,
        )
        return cls(list(checkpoint.history), stopping)
