"""``fit``: Pyro SVI over mini-batches, with validation, early stopping and checkpoints.

``fit`` takes any model/guide pair and any ``pyro.infer.ELBO``. With a
``run_dir`` it writes ``checkpoint.pt`` and ``history.csv`` atomically after
every completed epoch, so a killed run resumes (``resume=True``) from its last
completed epoch with the same parameters, optimizer state and random streams,
and continues exactly as if it had not been interrupted.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI
from pyro.infer.elbo import ELBO
from pyro.poutine.messenger import Messenger
from torch import Tensor

from vi_vae._validation import check_bool, check_positive_int
from vi_vae.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from vi_vae.errors import InputError, TrainingError
from vi_vae.estimators import with_compile
from vi_vae.evaluation import bounds

__all__ = ["CHECKPOINT_FILE", "HISTORY_FILE", "FitResult", "KLWeight", "fit"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "validation_elbo",
    "validation_elbo_se",
    "kl_weight",
    "seconds",
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
        self._weight = torch.tensor(float(weight), device=device)

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


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        history: one dict per completed epoch (columns of ``history.csv``).
        best_epoch: epoch with the best validation ELBO (its parameters are
            loaded at the end), or the last epoch without validation data.
        stopped_early: whether early stopping ended training.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def fit(
    model: Callable,
    guide: Callable,
    train: Tensor,
    *,
    validation: Tensor | None = None,
    loss: ELBO | None = None,
    optimizer: pyro.optim.PyroOptim | None = None,
    learning_rate: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    kl_weight: float = 1.0,
    kl_warmup_epochs: int = 0,
    patience: int | None = None,
    validation_particles: int = 1,
    data_plate: str = "data",
    run_dir: str | Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    compile: bool = False,
) -> FitResult:
    """Train ``model``/``guide`` with ``pyro.infer.SVI`` on mini-batches of ``train``.

    The Pyro param store is cleared first, so parameters of an earlier model
    cannot shadow this one's (a PyroModule re-registers its own parameters).

    Args:
        model: Pyro model called as ``model(batch)``; ``batch: [batch_size, ...]``.
        guide: Pyro guide with the same signature.
        train: training data ``[N, ...]`` (moved batch by batch to ``device``).
        validation: optional data for the per-epoch validation ELBO and early stopping.
        loss: any ``pyro.infer.ELBO``; default ``Trace_ELBO()`` (use
            ``TraceMeanField_ELBO()`` for the analytic KL). With ``compile``, one of
            vi_vae's estimators (default ``vi_vae.estimators.ELBO()``: Trace_ELBO's
            values and gradients).
        optimizer: a Pyro optimizer; default ``pyro.optim.Adam({"lr": learning_rate})``.
        learning_rate: Adam's step size when ``optimizer`` is not given.
        epochs: total number of epochs (a resumed run counts those already done).
        batch_size: points per SVI step.
        seed: seeds Pyro's draws and the shuffling; same seed, same numbers on CPU.
        device: device of the batches (move the networks there yourself).
        batch_transform: applied to each training batch with the shuffling
            generator, e.g. dynamic binarization.
        kl_weight: β, the weight of the KL term (1 is the ELBO).
        kl_warmup_epochs: ramp the KL weight linearly from 0 to ``kl_weight`` over
            this many epochs.
        patience: stop when the validation ELBO has not improved for this many epochs.
        validation_particles: draws per validation point for the validation ELBO.
        data_plate: name of the data plate.
        run_dir: where ``checkpoint.pt`` and ``history.csv`` go after each epoch.
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        on_step: called as ``on_step(epoch, step, steps_per_epoch, loss_per_point)``.
        on_epoch: called with each epoch's history row.
        compile: run the loss's passes compiled by ``torch.compile``
            (:func:`vi_vae.estimators.with_compile`): same draws, same numbers to
            floating-point rounding; the first step of each batch shape compiles.

    Returns:
        :class:`FitResult`. The parameters of the best validation epoch are
        loaded into the param store (and so into any PyroModule) at the end.

    Raises:
        TrainingError: on a NaN or infinite loss, naming the epoch and step; the
            checkpoint of the last completed epoch stays in ``run_dir``.
    """
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_int("validation_particles", validation_particles)
    check_bool("compile", compile)
    if patience is not None:
        check_positive_int("patience", patience)
    if kl_warmup_epochs < 0:
        raise InputError(f"kl_warmup_epochs must be >= 0; got {kl_warmup_epochs}")
    if not kl_weight >= 0:
        raise InputError(f"kl_weight must be >= 0; got {kl_weight}")
    if not isinstance(train, Tensor) or train.dim() < 1 or len(train) == 0:
        raise InputError("train must be a non-empty tensor with data points along dimension 0")
    if resume and run_dir is None:
        raise InputError("resume=True needs run_dir")
    device = torch.device(device) if device is not None else train.device
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint_path = run_dir / CHECKPOINT_FILE if run_dir is not None else None

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loss = with_compile(loss, compile) if compile or loss is None else loss
    optimizer = optimizer if optimizer is not None else pyro.optim.Adam({"lr": learning_rate})
    weight = KLWeight(1.0, device)
    weighted_model, weighted_guide = weight(model), weight(guide)
    if kl_weight == 1 and not kl_warmup_epochs:  # β stays 1: no handler on every site
        weighted_model, weighted_guide = model, guide
    svi = SVI(weighted_model, weighted_guide, optimizer, loss=loss)

    result = FitResult()
    best_score, best_params, start_epoch = -math.inf, None, 1
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        # Create every parameter (with its constraint) before loading values into it.
        with torch.no_grad(), poutine.block():
            with_compile(loss, False).loss(model, guide, train[:2].to(device))
        _load_params(state["params"])
        optimizer.set_state(state["optimizer"])
        _set_rng_state(state["rng"], generator)
        result.history = [dict(row) for row in state["history"]]
        result.best_epoch = int(state["best_epoch"])
        best_score = float(state["best_score"])
        best_params = state["best_params"]
        start_epoch = int(state["epoch"]) + 1
        logger.info("resuming from %s after epoch %d", checkpoint_path, start_epoch - 1)

    num_points = len(train)
    steps_per_epoch = math.ceil(num_points / batch_size)
    epochs_without_improvement = _epochs_since_best(result)
    for epoch in range(start_epoch, epochs + 1):
        if patience is not None and epochs_without_improvement >= patience:
            result.stopped_early = True
            break
        weight.weight = kl_weight * (min(1.0, epoch / kl_warmup_epochs) if kl_warmup_epochs else 1)
        started = time.perf_counter()
        order = torch.randperm(num_points, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = train[order[step * batch_size : (step + 1) * batch_size]]
            if batch_transform is not None:
                batch = batch_transform(batch, generator)
            try:
                value = svi.step(batch.to(device))
            except ValueError as error:
                # Pyro's validation refuses NaN distribution parameters before the loss is NaN.
                if "found invalid values" not in str(error):
                    raise
                raise TrainingError(
                    _diverged(
                        f"invalid values ({str(error).splitlines()[0][:120]})",
                        epoch,
                        step,
                        steps_per_epoch,
                        run_dir,
                    )
                ) from error
            if not math.isfinite(value):
                raise TrainingError(
                    _diverged(f"non-finite loss ({value})", epoch, step, steps_per_epoch, run_dir)
                )
            total += value
            if on_step is not None:
                on_step(epoch, step + 1, steps_per_epoch, value / len(batch))
        row = {
            "epoch": epoch,
            "train_loss": total / num_points,
            "validation_elbo": math.nan,
            "validation_elbo_se": math.nan,
            "kl_weight": weight.weight,
            "seconds": time.perf_counter() - started,
        }
        if validation is not None:
            mean, se = _validation_elbo(
                model, guide, validation.to(device), validation_particles, seed + epoch, data_plate
            )
            row["validation_elbo"], row["validation_elbo_se"] = mean, se
            score = mean
        else:
            score = -row["train_loss"]
        # Early stopping compares like with like: only epochs at the full KL weight.
        if weight.weight == kl_weight and score > best_score:
            best_score, result.best_epoch = score, epoch
            best_params = _params_state()
        result.history.append(row)
        epochs_without_improvement = _epochs_since_best(result)
        if run_dir is not None:
            _write_history(run_dir / HISTORY_FILE, result.history)
            save_checkpoint(
                checkpoint_path,
                {
                    "epoch": epoch,
                    "params": _params_state(),
                    "optimizer": optimizer.get_state(),
                    "rng": _get_rng_state(generator),
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_score": best_score,
                    "best_params": best_params,
                },
            )
        if on_epoch is not None:
            on_epoch(row)
    if best_params is not None and validation is not None:
        _load_params(best_params)
    return result


def _diverged(what: str, epoch: int, step: int, steps: int, run_dir: Path | None) -> str:
    kept = (
        f"; the checkpoint of epoch {epoch - 1} is kept in {run_dir}"
        if run_dir is not None and epoch > 1
        else ""
    )
    return f"{what} at epoch {epoch}, step {step + 1} of {steps}{kept}; try a smaller learning rate"


def _epochs_since_best(result: FitResult) -> int:
    if not result.history:
        return 0
    return int(result.history[-1]["epoch"]) - result.best_epoch


def _validation_elbo(
    model: Callable, guide: Callable, x: Tensor, particles: int, seed: int, data_plate: str
) -> tuple[float, float]:
    """Mean ELBO per point (averaged over ``particles`` draws) and its SE over points."""
    elbo = bounds(model, guide, x, [1], particles, data_plate=data_plate, seed=seed)[0]
    return elbo.mean, elbo.standard_error


def _params_state() -> dict[str, Tensor]:
    return {
        name: value.detach().cpu().clone()
        for name, value in pyro.get_param_store().named_parameters()
    }


def _load_params(params: dict[str, Tensor]) -> None:
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


def _get_rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row[key] for key in HISTORY_COLUMNS})
    atomic_write_text(path, buffer.getvalue())
