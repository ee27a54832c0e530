"""``fit``: Pyro SVI over mini-batches, as a step function and a short loop with callbacks.

:func:`fit` takes any model/guide pair and any ``pyro.infer.ELBO``, with its
settings in one frozen, validated :class:`TrainSettings` (or its fields as
keywords: ``fit(model, guide, x, epochs=5, loss="iwae:5")``).

- **Seeds.** Pyro's param store is cleared first, so that parameters of an earlier
  model cannot shadow this one's (a PyroModule re-registers its own), and
  ``settings.seed`` seeds every stream (:func:`vi_vae.seed_everything`). Build the
  model with a seed too (``VAE(..., seed=0)``): its initial weights are drawn when
  it is built, before ``fit`` runs.
- **Checkpoints.** ``fit`` writes no files. After every completed epoch it hands a
  :class:`~vi_vae.callbacks.TrainingCheckpoint` (parameters, optimizer state,
  random streams, history, best epoch) to the ``sink`` it was given, and a sink
  that holds a checkpoint hands it back at the start: a killed run resumes from its
  last completed epoch and continues exactly as if it had not been interrupted.
- **Per-point keyword arguments.** ``model_kwargs`` are passed to model and guide;
  a tensor with one row per training point (``ys``, the labels of a semi-supervised
  model) is sliced with every batch, so row n travels with row n of the data.
- **torchrun.** Under an initialized ``torch.distributed`` process group of R
  ranks every rank calls ``fit`` with the same arguments and they train one model:
  each step's global batch of ``batch_size`` points is split into R contiguous
  shares, the gradients are summed over the ranks before the optimizer steps, and
  every rank holds the same parameters after every step. Rank 0 alone reads the
  sink's checkpoint (and sends it to the others) and computes the validation ELBO;
  Pyro's draws use a different stream on each rank (``vi_vae._data_parallel``).

- **Replayed steps.** In one process, an eager step of a :class:`~vi_vae.VAE`'s
  own model and guide is traced once it has run a few hundred times and replayed
  without Pyro's per-step bookkeeping: the same numbers to the last bit, about a
  millisecond less a step (``vi_vae._replay``).

The collaborators (epoch records, validation, early stopping, the KL weight, the
state between epochs) live in ``vi_vae._training``, the step in
``vi_vae._train_step``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer.elbo import ELBO as PyroELBO
from torch import Tensor

from vi_vae._data_parallel import Local, data_parallel
from vi_vae._pair_shapes import check_batch_scaling, check_shard_scaling, scaled_plate_size
from vi_vae._replay import replaying
from vi_vae._train_step import BatchTransform, Diverged, Points, diverged_message, train_step
from vi_vae._training import (
    EarlyStopping,
    EpochRecord,
    KLWeight,
    TrainingCheckpoint,
    TrainingState,
    load_buffers,
    load_params,
    networks_in_eval_mode,
    validation_elbo,
)
from vi_vae._validation import check_callables
from vi_vae.callbacks import Callback, CheckpointSink
from vi_vae.distributed import shard, world_size
from vi_vae.errors import InputError, TrainingError
from vi_vae.estimators import with_compile
from vi_vae.estimators.particle_estimator import ParticleEstimator
from vi_vae.keys import seed_everything
from vi_vae.precision import warn_of_low_precision_validation
from vi_vae.train_settings import TrainSettings

__all__ = ["EpochRecord", "FitResult", "KLWeight", "TrainSettings", "fit"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        history: one :class:`EpochRecord` per completed epoch (the rows of ``history.csv``).
        best_epoch: epoch with the best validation ELBO (its parameters are
            loaded at the end), or the best training loss without validation data.
        stopped_early: whether early stopping ended training.
        resumed_from_epoch: the epoch of the sink's checkpoint the run continued after
            (0 when it started from scratch).
        settings: the settings it trained with.
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    settings: TrainSettings = field(default_factory=TrainSettings)


def fit(
    model: Callable,
    guide: Callable,
    train: Tensor,
    settings: TrainSettings | None = None,
    *,
    validation: Tensor | tuple[Tensor, Mapping[str, Any]] | None = None,
    optimizer: pyro.optim.PyroOptim | None = None,
    batch_transform: BatchTransform | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    sink: CheckpointSink | None = None,
    **shortcuts: Any,
) -> FitResult:
    """Train ``model``/``guide`` with ``pyro.infer.SVI`` on mini-batches of ``train`` (see above).

    Args:
        model: Pyro model, called as ``model(batch, **model_kwargs)``.
        guide: Pyro guide with the same signature.
        train: training data ``[N, ...]``.
        settings: :class:`TrainSettings` (default: its defaults).
        validation: data for the validation ELBO and early stopping, or ``(data, model_kwargs)``;
            scored with every module the pair calls in eval mode (no dropout, BatchNorm by
            its running statistics, which the validation data leave alone).
        optimizer: a Pyro optimizer; default :meth:`~vi_vae.TrainSettings.optimizer`, Adam at the
            learning rate.
        batch_transform: applied to each training batch with the shuffling generator.
        model_kwargs: keyword arguments of model and guide; a tensor with one row per
            training point (``ys=`` labels) is sliced with every batch.
        callbacks: :class:`~vi_vae.callbacks.Callback` s, called after every step and epoch.
        sink: a :class:`~vi_vae.callbacks.CheckpointSink`, given a checkpoint after every
            epoch; one that holds a checkpoint resumes from it.
        **shortcuts: fields of :class:`TrainSettings` that replace those of ``settings``.

    Returns:
        :class:`FitResult`; the best validation epoch's parameters are loaded at the end.

    Raises:
        InputError: for bad settings or data, naming the argument: data that are not
            finite, or outside the support of the site that observes them, in any row of
            ``train`` or ``validation`` (the rows of ``train`` that ``batch_transform``
            changes: the first batch, as transformed). ``train`` is checked once per
            tensor and pair until it is written to, at the cost of one batch when the
            model observes the data as given and of one pass over them otherwise. Also
            a site outside the data plate (which Pyro's own ELBOs take) that each batch
            would weigh as if it were all the data (the plate the batch's size, the
            site unscaled).
        TrainingError: on a non-finite loss, naming the epoch and step.
    """
    check_callables(model, guide)
    settings = TrainSettings.build(settings, shortcuts, owner="fit")
    callbacks = _checked_hooks(callbacks, sink)
    data = Points.checked("train", train, model_kwargs, settings.device, batch_transform)
    run = _Run.start(model, guide, data, validation, settings, optimizer)
    state = run.resume(sink)
    result = FitResult(resumed_from_epoch=state.last_epoch, settings=settings)
    for epoch in range(state.last_epoch + 1, settings.epochs + 1):
        if state.stopping.should_stop(state.last_epoch):
            result.stopped_early = True
            break
        record = run.epoch(epoch, state, callbacks, sink)
        score = record.validation_elbo if run.held_out is not None else -record.train_loss
        full_weight = record.kl_weight == settings.kl_weight
        state.stopping.update(record, score, full_weight, run.modules)
        state.history.append(record)
        if sink is not None:
            sink.write_checkpoint(run.checkpoint(state))
        for callback in callbacks:
            callback.on_epoch(record)
    if state.stopping.best_params is not None and run.held_out is not None:
        load_params(state.stopping.best_params)
        if state.stopping.best_buffers:  # none from a checkpoint of an older vi_vae
            load_buffers(run.modules, state.stopping.best_buffers)
    return dataclasses.replace(result, history=state.history, best_epoch=state.stopping.best_epoch)


def _checked_hooks(callbacks: Any, sink: Any) -> tuple[Callback, ...]:
    """``callbacks`` as a tuple; refuse callbacks or a sink without the hooks ``fit`` calls."""
    if not isinstance(callbacks, Sequence) or not all(
        callable(getattr(c, "on_step", None)) and callable(getattr(c, "on_epoch", None))
        for c in callbacks
    ):
        raise InputError(
            "callbacks must be a list of vi_vae.callbacks.Callback (objects with on_step and "
            f"on_epoch methods); got {callbacks!r}"
        )
    if sink is not None and not isinstance(sink, CheckpointSink):
        raise InputError(
            "sink must have write_checkpoint and read_checkpoint methods "
            f"(vi_vae.callbacks.CheckpointSink); got {sink!r}"
        )
    return tuple(callbacks)


@dataclass
class _Run:
    """What the loop steps with: the SVI, the KL weight, the optimizer and the streams.

    ``modules`` are the torch modules the pair calls, in the order of their first call:
    their buffers (BatchNorm's running statistics) are kept with the parameters.
    ``points_per_loss``: N where the data plate scales each batch up to N points
    (``pyro.plate(name, N, subsample=rows)``: a step's loss stands for all of them),
    else ``None`` (a step's loss is its batch's).
    """

    model: Callable
    guide: Callable
    data: Points
    held_out: Points | None
    settings: TrainSettings
    parallel: Local
    svi: Any
    weight: KLWeight
    optimizer: Any
    generator: torch.Generator
    loss: PyroELBO
    modules: tuple[torch.nn.Module, ...]
    points_per_loss: int | None

    @classmethod
    def start(
        cls,
        model: Callable,
        guide: Callable,
        data: Points,
        validation: Any,
        settings: TrainSettings,
        optimizer: Any,
    ) -> _Run:
        """Check the validation data, clear the param store, seed every stream, build the SVI."""
        held_out = Points.validation(validation, data, (model, guide))
        parallel = data_parallel()  # a no-op in one process
        pyro.clear_param_store()
        seed_everything(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        loss = settings.make_loss()
        if type(parallel) is Local:  # one process: the step may be replayed (vi_vae._replay)
            loss = replaying(loss, model, guide)
        optimizer = optimizer if optimizer is not None else settings.optimizer()
        weight = KLWeight(1.0, data.device)
        weighted = (weight(model), weight(guide))
        if settings.kl_weight == 1 and not settings.kl_warmup_epochs:
            weighted = (model, guide)  # β stays 1: no handler on every site
        svi = parallel.svi(*weighted, optimizer, loss, point_kwargs=data.per_point)
        first = slice(0, min(settings.batch_size, len(data)))
        first_batch = data.rows(first, torch.Generator().manual_seed(settings.seed))
        # The checks run on a forked random stream, with the networks in eval mode, as
        # the validation ELBO scores them: neither the draws nor BatchNorm's running
        # statistics of training see them.
        with networks_in_eval_mode() as modules:
            trace, _ = first_batch.check_support(model, guide, "train", whole=data)
            if held_out is not None:
                scored = held_out.rows(slice(None)).check_support(model, guide, "validation")
                warn_of_low_precision_validation(*scored)
            # each rank steps on its share: a plate that scales the share (and not a
            # batch of all the points) shows only there
            share, share_trace = first_batch.rows(shard(len(first_batch))), trace
            if world_size() > 1 and len(share):
                share_trace = share.check_support(model, guide, "train")[0]
        global_sites = not isinstance(loss, ParticleEstimator)  # Pyro's own ELBOs take them
        if global_sites:
            check_batch_scaling(trace, settings.data_plate, len(first_batch), len(data))
        check_shard_scaling(share_trace, settings.data_plate, world_size(), global_sites)
        parallel.start(svi, settings.seed, data)
        return cls(
            model,
            guide,
            data,
            held_out,
            settings,
            parallel,
            svi,
            weight,
            optimizer,
            generator,
            loss,
            tuple(modules),
            scaled_plate_size(trace, settings.data_plate),
        )

    def resume(self, sink: CheckpointSink | None) -> TrainingState:
        """The sink's checkpoint loaded into the store, optimizer and streams, or a fresh state."""
        patience = self.settings.patience
        # rank 0 reads the checkpoint and sends it, so that every rank resumes from the same one
        stored = self.parallel.main_value(sink.read_checkpoint) if sink is not None else None
        if stored is None:
            return TrainingState(stopping=EarlyStopping(patience))
        # Create every parameter (with its constraint) before loading values into it.
        probe = self.data.rows(slice(0, 2))
        with torch.no_grad(), poutine.block():
            with_compile(self.loss, False).loss(self.model, self.guide, probe.x, **probe.kwargs)
        state = TrainingState.restore(
            stored, self.optimizer, self.generator, patience, self.modules
        )
        self.parallel.restore_rng(stored.rank_rng, self.settings.seed, state.last_epoch)
        logger.info("resuming from %s after epoch %d", sink, state.last_epoch)
        return state

    def epoch(
        self,
        epoch: int,
        state: TrainingState,
        callbacks: Sequence[Callback],
        sink: CheckpointSink | None,
    ) -> EpochRecord:
        """Train one epoch over the shuffled data, then validate: the epoch's record."""
        self.weight.weight = self.settings.kl_weight_at(epoch)
        started = time.perf_counter()
        order = torch.randperm(len(self.data), generator=self.generator)
        steps = math.ceil(len(self.data) / self.settings.batch_size)
        for callback in callbacks:
            if (start := getattr(callback, "on_epoch_start", None)) is not None:
                start(epoch, steps)
        total, points = 0.0, 0
        for step, batch in self.data.batches(order, self.settings.batch_size, self.generator):
            try:
                value = train_step(self.svi, batch, validate=step == 0)
            except Diverged as error:
                message = diverged_message(str(error), epoch, step, steps, state, sink)
                raise TrainingError(message) from error.__cause__
            stands_for = self.points_per_loss or len(batch)  # the points the loss is of
            total, points = total + value, points + stands_for
            for callback in callbacks:
                callback.on_step(epoch, step + 1, steps, value / stands_for)
        seconds = time.perf_counter() - started
        mean, standard_error = self._validate(epoch)
        return EpochRecord(epoch, total / points, mean, standard_error, self.weight.weight, seconds)

    def _validate(self, epoch: int) -> tuple[float, float]:
        if self.held_out is None:
            return math.nan, math.nan
        held_out, settings = self.held_out, self.settings
        return self.parallel.main_value(
            partial(
                validation_elbo,
                self.model,
                self.guide,
                held_out.x.to(held_out.device),
                settings.validation_num_particles,
                settings.seed + epoch,
                settings.data_plate,
                held_out.kwargs,
                # as the loss draws its particles: Pyro's own ELBOs one after another
                vectorize_particles=getattr(self.loss, "vectorize_particles", True),
            )
        )

    def checkpoint(self, state: TrainingState) -> TrainingCheckpoint:
        """The state after the last completed epoch, for the sink."""
        return state.checkpoint(
            self.optimizer, self.generator, self.parallel.rng_states(), self.modules
        )
