"""``fit``: Pyro SVI over mini-batches, with validation, early stopping and checkpoints.

``fit`` takes any model/guide pair and any ``pyro.infer.ELBO``. With a
``run_dir`` it writes ``checkpoint.pt`` and then ``history.csv`` atomically
after every completed epoch, so a killed run resumes (``resume=True``) from its
last completed epoch with the same parameters, optimizer state and random
streams, and continues exactly as if it had not been interrupted. The pieces
(epoch records, validation, early stopping, checkpoints, the KL weight) live in
``vi_vae._training``; training on several ranks under ``torchrun`` in
``vi_vae._data_parallel``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI
from pyro.infer.elbo import ELBO as PyroELBO
from torch import Tensor

from vi_vae._data_parallel import data_parallel
from vi_vae._deprecation import renamed_keywords
from vi_vae._training import (
    Checkpointer,
    EarlyStopping,
    EpochRecord,
    KLWeight,
    TrainingState,
    batches,
    load_params,
    parameters_finite,
    validation_elbo,
)
from vi_vae._validation import (
    check_bool,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from vi_vae.distributed import is_main_process
from vi_vae.errors import InputError, TrainingError
from vi_vae.estimators import with_compile
from vi_vae.keys import seed_everything
from vi_vae.optim import Adam
from vi_vae.support import check_data_support

__all__ = ["EpochRecord", "FitResult", "KLWeight", "fit"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        history: one :class:`EpochRecord` per completed epoch (the rows of ``history.csv``).
        best_epoch: epoch with the best validation ELBO (its parameters are
            loaded at the end), or the best training loss without validation data.
        stopped_early: whether early stopping ended training.
        resumed_from_epoch: the epoch a ``resume=True`` run continued after (0 when
            it started from scratch, e.g. because ``run_dir`` had no checkpoint yet).
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0


@renamed_keywords(validation_particles="validation_num_particles")
def fit(
    model: Callable,
    guide: Callable,
    train: Tensor,
    *,
    validation: Tensor | None = None,
    loss: PyroELBO | None = None,
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
    validation_num_particles: int = 1,
    data_plate: str = "data",
    run_dir: str | Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint_metadata: dict[str, Any] | None = None,
    compile: bool = False,
) -> FitResult:
    """Train ``model``/``guide`` with ``pyro.infer.SVI`` on mini-batches of ``train``.

    The Pyro param store is cleared first, so parameters of an earlier model
    cannot shadow this one's (a PyroModule re-registers its own parameters), and
    ``seed`` seeds every stream (:func:`vi_vae.seed_everything`). Build the model
    with a seed too (``VAE(..., seed=0)``): its initial weights are drawn when it
    is built, before ``fit`` runs.

    Under ``torchrun`` (an initialized ``torch.distributed`` process group of R
    ranks) every rank calls ``fit`` with the same arguments and they train one
    model: each step's global batch of ``batch_size`` points is split into R
    contiguous shares, the gradients are summed over the ranks before the
    optimizer steps, and every rank holds rank 0's initial parameters and the same
    parameters after every step. Rank 0 alone reads and writes ``run_dir`` (it sends
    the checkpoint to resume from) and computes the validation ELBO, which it sends
    to the others. Pyro's draws use a different stream on each rank
    (``vi_vae._data_parallel``).

    Args:
        model: Pyro model called as ``model(batch)``; ``batch: [batch_size, ...]``.
        guide: Pyro guide with the same signature.
        train: training data ``[N, ...]`` (moved batch by batch to ``device``).
        validation: optional data for the per-epoch validation ELBO and early stopping.
        loss: any ``pyro.infer.ELBO``; default :class:`vi_vae.ELBO` with one particle
            (``ELBO(1, analytic_kl=True)`` for the analytic KL). With ``compile``, one
            of vi_vae's estimators.
        optimizer: a Pyro optimizer; default :func:`vi_vae.optim.Adam` with
            ``{"lr": learning_rate}``: the parameters of ``pyro.optim.Adam`` bit for bit,
            in one optimizer step per SVI step instead of one per parameter.
        learning_rate: Adam's step size when ``optimizer`` is not given.
        epochs: total number of epochs (a resumed run counts those already done).
        batch_size: points per SVI step.
        seed: seeds Pyro's draws, the shuffling and the validation draws.
        device: device of the batches (move the networks there yourself).
        batch_transform: applied to each training batch with the shuffling
            generator, e.g. dynamic binarization.
        kl_weight: β, the weight of the KL term (1 is the ELBO).
        kl_warmup_epochs: ramp the KL weight linearly from 0 to ``kl_weight`` over
            this many epochs.
        patience: stop when the validation ELBO has not improved for this many epochs.
        validation_num_particles: draws per validation point for the validation ELBO.
        data_plate: name of the data plate.
        run_dir: where ``checkpoint.pt`` and ``history.csv`` go after each epoch.
        resume: continue from ``run_dir``'s checkpoint if it has one (else start
            from scratch; :attr:`FitResult.resumed_from_epoch` says which).
        on_step: called as ``on_step(epoch, step, steps_per_epoch, loss_per_point)``.
        on_epoch: called with each epoch's :class:`EpochRecord`.
        checkpoint_metadata: plain values (strings, numbers, lists, dicts) stored in
            every checkpoint under ``"metadata"``, e.g. the settings that define the
            model, so that a loader can refuse weights of another model.
        compile: run the loss's passes compiled by ``torch.compile``
            (:func:`vi_vae.estimators.with_compile`): same draws, same numbers to
            floating-point rounding; the first step of each batch shape compiles.

    Returns:
        :class:`FitResult`. The parameters of the best validation epoch are
        loaded into the param store (and so into any PyroModule) at the end.

    Raises:
        InputError: for bad arguments or data (NaN values, values outside the
            likelihood's support), naming the argument.
        TrainingError: on a NaN or infinite loss, naming the epoch and step; the
            checkpoint of the last completed epoch stays in ``run_dir``.
    """
    check_bool("compile", compile)
    _check_arguments(
        train,
        validation,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        kl_weight=kl_weight,
        kl_warmup_epochs=kl_warmup_epochs,
        patience=patience,
        validation_num_particles=validation_num_particles,
        resume=resume,
        run_dir=run_dir,
    )
    device = torch.device(device) if device is not None else train.device
    parallel = data_parallel()  # a no-op in one process
    checkpointer = (
        Checkpointer(run_dir, checkpoint_metadata, writer=is_main_process())
        if run_dir is not None
        else None
    )

    pyro.clear_param_store()
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    loss = with_compile(loss, compile) if compile or loss is None else loss
    optimizer = optimizer if optimizer is not None else Adam({"lr": learning_rate})
    weight = KLWeight(1.0, device)
    weighted_model, weighted_guide = weight(model), weight(guide)
    if kl_weight == 1 and not kl_warmup_epochs:  # β stays 1: no handler on every site
        weighted_model, weighted_guide = model, guide
    svi = parallel.svi(weighted_model, weighted_guide, optimizer, loss)
    first = train[: min(batch_size, len(train))]
    first = (
        batch_transform(first, torch.Generator().manual_seed(seed)) if batch_transform else first
    )
    _check_data(model, guide, first.to(device), "train")
    if validation is not None:
        _check_data(model, guide, validation.to(device), "validation")
    parallel.start(svi, seed)

    state = TrainingState(stopping=EarlyStopping(patience))
    result = FitResult()
    # rank 0 reads the checkpoint and sends it, so that every rank resumes from the same one
    stored = parallel.main_value(checkpointer.read) if resume and checkpointer is not None else None
    if stored is not None:
        # Create every parameter (with its constraint) before loading values into it.
        with torch.no_grad(), poutine.block():
            with_compile(loss, False).loss(model, guide, train[:2].to(device))
        state = checkpointer.restore(optimizer, generator, patience, stored)
        parallel.restore_rng(state.rank_rng_states, seed, state.last_epoch)
        result.resumed_from_epoch = state.last_epoch
        logger.info("resuming from %s after epoch %d", checkpointer.path, state.last_epoch)

    steps_per_epoch = math.ceil(len(train) / batch_size)
    for epoch in range(state.last_epoch + 1, epochs + 1):
        if state.stopping.should_stop(state.last_epoch):
            result.stopped_early = True
            break
        weight.weight = kl_weight * (min(1.0, epoch / kl_warmup_epochs) if kl_warmup_epochs else 1)
        started = time.perf_counter()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for step, batch in batches(train, order, batch_size):
            if batch_transform is not None:
                batch = batch_transform(batch, generator)
            value = _step(svi, batch.to(device), epoch, step, steps_per_epoch, run_dir, state)
            total += value
            if on_step is not None:
                on_step(epoch, step + 1, steps_per_epoch, value / len(batch))
        seconds = time.perf_counter() - started
        mean = standard_error = math.nan
        if validation is not None:
            mean, standard_error = parallel.main_value(
                partial(
                    validation_elbo,
                    model,
                    guide,
                    validation.to(device),
                    validation_num_particles,
                    seed + epoch,
                    data_plate,
                )
            )
        record = EpochRecord(
            epoch, total / len(train), mean, standard_error, weight.weight, seconds
        )
        score = record.validation_elbo if validation is not None else -record.train_loss
        state.stopping.update(record, score, full_weight=weight.weight == kl_weight)
        state.history.append(record)
        if checkpointer is not None:
            state.rank_rng_states = parallel.rng_states()
            checkpointer.save(state, optimizer, generator)
        if on_epoch is not None:
            on_epoch(record)
    if state.stopping.best_params is not None and validation is not None:
        load_params(state.stopping.best_params)
    result.history = state.history
    result.best_epoch = state.stopping.best_epoch
    return result


def _check_arguments(
    train: Any,
    validation: Any,
    *,
    epochs: Any,
    batch_size: Any,
    learning_rate: Any,
    kl_weight: Any,
    kl_warmup_epochs: Any,
    patience: Any,
    validation_num_particles: Any,
    resume: bool,
    run_dir: Any,
) -> None:
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_int("validation_num_particles", validation_num_particles)
    check_positive_float("learning_rate", learning_rate)
    check_nonnegative_float("kl_weight", kl_weight)
    check_positive_int("kl_warmup_epochs", kl_warmup_epochs, minimum=0)
    if patience is not None:
        check_positive_int("patience", patience)
    for name, data in (("train", train), ("validation", validation)):
        if data is None and name == "validation":
            continue
        if not isinstance(data, Tensor) or data.dim() < 1 or len(data) == 0:
            raise InputError(
                f"{name} must be a non-empty tensor with data points along dimension 0"
            )
        if data.is_floating_point() and not torch.isfinite(data).all():
            raise InputError(f"{name} data contain NaN or infinite values; all must be finite")
    if resume and run_dir is None:
        raise InputError("resume=True needs run_dir")


def _check_data(model: Callable, guide: Callable, x: Tensor, name: str) -> None:
    try:
        check_data_support(model, guide, (x,))
    except InputError as error:
        raise InputError(f"{name} data: {error}") from None


def _step(
    svi: SVI,
    batch: Tensor,
    epoch: int,
    step: int,
    steps_per_epoch: int,
    run_dir: str | Path | None,
    state: TrainingState,
) -> float:
    """One SVI step; a non-finite loss or parameters become a :class:`TrainingError`."""
    try:
        with warnings.catch_warnings():
            # a non-finite loss becomes a TrainingError below, not a warning as well
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            value = svi.step(batch)
    except ValueError as error:
        # Argument validation refuses NaN distribution parameters before the loss is
        # NaN: a divergence too, when the parameters are NaN or a distribution refused them.
        if parameters_finite() and not _raised_by_argument_validation(error):
            raise
        what = f"non-finite values ({str(error).splitlines()[0][:120]})"
        raise TrainingError(
            _diverged(what, epoch, step, steps_per_epoch, run_dir, state)
        ) from error
    if not math.isfinite(value):
        what = f"non-finite loss ({value})"
        raise TrainingError(_diverged(what, epoch, step, steps_per_epoch, run_dir, state))
    return value


def _raised_by_argument_validation(error: BaseException) -> bool:
    """Whether ``error`` or an error it wraps came from a distribution's argument check.

    Pyro re-raises an error of a site with the trace's shapes, so the chain of
    causes is followed to the frame of ``torch.distributions.Distribution.__init__``.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback = error.__traceback__
        while traceback is not None:
            code = traceback.tb_frame.f_code
            if code.co_name == "__init__" and code.co_filename == _DISTRIBUTION_FILE:
                return True
            traceback = traceback.tb_next
        error = error.__cause__ or error.__context__
    return False


#: the module whose ``Distribution.__init__`` validates distribution arguments
_DISTRIBUTION_FILE = torch.distributions.distribution.__file__


def _diverged(
    what: str, epoch: int, step: int, steps: int, run_dir: Any, state: TrainingState
) -> str:
    where = f"{what} at epoch {epoch}, step {step + 1} of {steps}"
    if state.history and run_dir is not None:
        where += f"; the checkpoint of epoch {state.last_epoch} is kept in {run_dir}"
    if not state.history and step == 0:
        return (
            f"{where}: the loss is not finite for the initial parameters, before any update; "
            "check the data and the settings (e.g. a kl_weight so large that the KL term "
            "overflows)"
        )
    return f"{where}; try a smaller learning_rate"
