"""The collaborators of :func:`vi_vae.fit`, each small enough to read and test on its own.

The epoch record, validation, early stopping, checkpoints and the KL weight.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.poutine.messenger import Messenger
from torch import Tensor

from vi_vae._deprecation import warn_renamed
from vi_vae.checkpoint import (
    CHECKPOINT_FILE,
    HISTORY_FILE,
    atomic_write_text,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from vi_vae.errors import InputError
from vi_vae.evaluation.estimates import standard_error_over_points
from vi_vae.evaluation.passes import log_weight_chunks
from vi_vae.keys import get_rng_state, set_rng_state

__all__ = [
    "Checkpointer",
    "EarlyStopping",
    "EpochRecord",
    "KLWeight",
    "TrainingState",
    "validation_elbo",
]


@dataclass(frozen=True)
class EpochRecord:
    """One completed epoch: a row of ``history.csv``.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: the estimator's loss per training point, averaged over the epoch
            (nats; the negative of the bound it reports, under the epoch's KL weight).
        validation_elbo: ELBO per validation point (NaN without validation data).
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
        if "validation_elbo_se" in row:  # the history of vi_vae 0.1
            values["validation_elbo_standard_error"] = row["validation_elbo_se"]
        return cls(
            epoch=int(float(values.pop("epoch"))),
            **{name: float(value) for name, value in values.items()},
        )

    def __getitem__(self, name: str) -> float:
        """``record["train_loss"]``, the dict access of vi_vae 0.1 (deprecated)."""
        warn_renamed(f"history row[{name!r}]", f"the EpochRecord attribute .{name}")
        if name == "validation_elbo_se":
            name = "validation_elbo_standard_error"
        return getattr(self, name)


COLUMNS = tuple(f.name for f in fields(EpochRecord))


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
    model: Callable, guide: Callable, x: Tensor, num_particles: int, seed: int, data_plate: str
) -> tuple[float, float]:
    """Mean ELBO per point (each averaged over ``num_particles`` draws) and its SE over points.

    The draws come from a stream seeded by ``seed`` (the caller's stream is left
    alone), so validation does not change the training draws.
    """
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
            )
        ]
    )
    return per_point.mean().item(), standard_error_over_points(per_point)


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

    def update(self, record: EpochRecord, score: float, full_weight: bool) -> None:
        """Record ``score`` of ``record``'s epoch; keep the parameters if it is the best."""
        if full_weight and score > self.best_score:
            self.best_score, self.best_epoch = score, record.epoch
            self.best_params = params_state()

    def should_stop(self, last_epoch: int) -> bool:
        """Whether ``patience`` epochs have passed since the best one."""
        return self.patience is not None and last_epoch - self.best_epoch >= self.patience


@dataclass
class TrainingState:
    """Everything a resumed run needs to continue exactly."""

    history: list[EpochRecord] = field(default_factory=list)
    stopping: EarlyStopping = field(default_factory=lambda: EarlyStopping(None))
    #: every rank's random streams under torch.distributed (``None`` in one process)
    rank_rng_states: list[dict[str, Tensor]] | None = None

    @property
    def last_epoch(self) -> int:
        """The last completed epoch (0 before the first)."""
        return self.history[-1].epoch if self.history else 0


class Checkpointer:
    """Writes and restores ``checkpoint.pt`` and ``history.csv`` in a run directory.

    The checkpoint (parameters, optimizer state, random streams, history, the best
    epoch) is written first and ``history.csv`` second, both atomically, so the
    history never runs ahead of the checkpoint. A checkpointer that is not the
    ``writer`` (a rank other than 0 under torch.distributed) only reads.
    """

    def __init__(
        self, run_dir: str | Path, metadata: dict[str, Any] | None = None, writer: bool = True
    ) -> None:
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"run_dir {run_dir} is a file, not a directory")
        if writer:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(
                    f"cannot create run_dir {run_dir}: {error.strerror or error}"
                ) from None
            remove_stale_temporaries(run_dir)
        self.writer = writer
        self.run_dir = run_dir
        self.path = run_dir / CHECKPOINT_FILE
        self.metadata = metadata or {}

    def exists(self) -> bool:
        """Whether there is a checkpoint to resume from."""
        return self.path.is_file()

    def save(self, state: TrainingState, optimizer: Any, generator: torch.Generator) -> None:
        """Write the checkpoint of the last completed epoch, then the history."""
        if not self.writer:
            return
        stopping = state.stopping
        extra = {"rank_rng": state.rank_rng_states} if state.rank_rng_states else {}
        save_checkpoint(
            self.path,
            {
                **extra,
                "epoch": state.last_epoch,
                "params": params_state(),
                "optimizer": optimizer.get_state(),
                "rng": get_rng_state(generator),
                "history": [record.to_dict() for record in state.history],
                "best_epoch": stopping.best_epoch,
                "best_score": stopping.best_score,
                "best_params": stopping.best_params,
                "metadata": self.metadata,
            },
        )
        write_history(self.run_dir / HISTORY_FILE, state.history)

    def read(self) -> dict[str, Any] | None:
        """The stored checkpoint, or ``None`` when there is none yet."""
        return load_checkpoint(self.path) if self.exists() else None

    def restore(
        self,
        optimizer: Any,
        generator: torch.Generator,
        patience: int | None,
        stored: dict[str, Any] | None = None,
    ) -> TrainingState:
        """Load the checkpoint, or ``stored`` (a :meth:`read`), into the store, optimizer, RNG."""
        stored = load_checkpoint(self.path) if stored is None else stored
        load_params(stored["params"])
        optimizer.set_state(stored["optimizer"])
        set_rng_state(stored["rng"], generator)
        stopping = EarlyStopping(
            patience,
            best_score=float(stored["best_score"]),
            best_epoch=int(stored["best_epoch"]),
            best_params=stored["best_params"],
        )
        history = [EpochRecord.from_dict(row) for row in stored["history"]]
        return TrainingState(history, stopping, stored.get("rank_rng"))


def write_history(path: Path, history: list[EpochRecord]) -> None:
    """Write ``history.csv`` atomically: a header of :data:`COLUMNS`, one row per epoch."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in history:
        writer.writerow(record.to_dict())
    atomic_write_text(path, buffer.getvalue())


def read_history(path: Path) -> list[EpochRecord]:
    """Read ``history.csv`` back (the CSV of this version or of vi_vae 0.1)."""
    with open(path, newline="") as handle:
        return [EpochRecord.from_dict(row) for row in csv.DictReader(handle)]


def batches(train: Tensor, order: Tensor, batch_size: int) -> Iterator[tuple[int, Tensor]]:
    """``(step, batch)`` over ``train`` in the shuffled ``order``."""
    for step, start in enumerate(range(0, len(order), batch_size)):
        yield step, train[order[start : start + batch_size]]
