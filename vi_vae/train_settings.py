"""The settings of :func:`vi_vae.fit`: one frozen :class:`~vi_vae.TrainSettings`, checked once.

:func:`vi_vae.fit` takes one, or its fields as keyword shortcuts (the rule:
:mod:`vi_vae.settings`); the app's training section builds one, and the
:class:`~vi_vae.FitResult` carries the settings it ran with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro.infer import TraceTailAdaptive_ELBO
from pyro.infer.elbo import ELBO as PyroELBO

from vi_vae._validation import (
    check_bool,
    check_nonnegative_float,
    check_plate_name,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from vi_vae.errors import InputError
from vi_vae.estimators import as_loss, with_compile
from vi_vae.optim import Adam, SingleOptimizer
from vi_vae.settings import Settings

__all__ = ["TrainSettings"]


@dataclass(frozen=True, kw_only=True)
class TrainSettings(Settings):
    """How :func:`vi_vae.fit` trains, checked when built (:class:`~vi_vae.InputError` names it).

    Attributes:
        loss: any ``pyro.infer.ELBO``, or a spelling of :func:`vi_vae.parse_estimator`
            (``"iwae:5"``); default :class:`vi_vae.ELBO` with one particle. With
            ``compile``, one of vi_vae's estimators.
        epochs: total number of epochs (a resumed run counts those already done).
        batch_size: points per SVI step.
        learning_rate: Adam's step size when ``fit`` is given no optimizer
            (:meth:`~vi_vae.TrainSettings.optimizer`).
        seed: seeds Pyro's draws, the shuffling and the validation draws.
        kl_weight: β, the weight of the KL term (1 is the ELBO).
        kl_warmup_epochs: ramp the KL weight linearly from 0 to ``kl_weight`` over
            this many epochs.
        patience: stop when the validation ELBO has not improved for this many epochs.
        validation_num_particles: draws per validation point for the validation ELBO.
        data_plate: name of the data plate; the loss built from :attr:`loss` takes it,
            and one of vi_vae's estimators passed in must name the same.
        device: device of the batches (default: the training data's; move the
            networks there yourself).
        compile: run the loss's passes compiled by ``torch.compile``
            (:func:`vi_vae.estimators.with_compile`): same draws, same numbers to
            floating-point rounding; the first step of each batch shape compiles.
            With no optimizer given, ``fit`` then steps with torch's fused Adam
            kernel (:meth:`~vi_vae.TrainSettings.optimizer`), which also rounds differently.

    Example:
        >>> settings = TrainSettings(epochs=5, loss="iwae:5")
        >>> TrainSettings.build(settings, {"seed": 1}, owner="fit").make_loss().num_particles
        5
    """

    loss: str | PyroELBO | None = None
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    kl_weight: float = 1.0
    kl_warmup_epochs: int = 0
    patience: int | None = None
    validation_num_particles: int = 1
    data_plate: str = "data"
    device: str | torch.device | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        where = self._where  # the prefix of the names in errors (vi_vae.settings.Settings)
        for name in ("epochs", "batch_size", "validation_num_particles"):
            check_positive_int(where + name, getattr(self, name))
        check_positive_float(where + "learning_rate", self.learning_rate)
        check_seed(self.seed, where + "seed")
        check_nonnegative_float(where + "kl_weight", self.kl_weight)
        check_positive_int(where + "kl_warmup_epochs", self.kl_warmup_epochs, minimum=0)
        if self.patience is not None:
            check_positive_int(where + "patience", self.patience)
        check_plate_name(where + "data_plate", self.data_plate)
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise InputError(
                    f"{where}device must name a torch device, e.g. 'cpu' or 'cuda'; "
                    f"got {self.device!r}"
                ) from None
        check_bool(where + "compile", self.compile)
        self.make_loss()

    def make_loss(self) -> PyroELBO:
        """The loss to train with: :attr:`loss` built from its spelling, compiled if asked.

        A loss built here (from a spelling, or the default) takes :attr:`data_plate`; one
        of vi_vae's estimators passed in must already name the same plate.
        """
        if self.loss is None:
            built = with_compile(None, self.compile)
            built.data_plate = self.data_plate
            return built
        if isinstance(self.loss, str):
            return as_loss(self.loss, compile=self.compile, data_plate=self.data_plate)
        try:  # refuses what is not an ELBO, or one of vi_vae's over another plate
            as_loss(self.loss, data_plate=self.data_plate)
        except InputError as error:
            raise InputError(f"{self._where}{error}") from None
        if isinstance(self.loss, TraceTailAdaptive_ELBO):
            raise InputError(
                "loss: pyro.infer.TraceTailAdaptive_ELBO computes no loss value (Pyro returns "
                "inf by design: it gives gradients only), so fit could neither report the "
                "training loss nor tell a step that diverged; train it with pyro.infer.SVI, "
                "or use a loss with a value (vi_vae.RenyiVR, spelled 'vr:ALPHA:K')"
            )
        return with_compile(self.loss, self.compile) if self.compile else self.loss

    def optimizer(self) -> SingleOptimizer:
        """The optimizer ``fit`` steps with when it is given none: Adam at :attr:`learning_rate`.

        :func:`vi_vae.optim.Adam`, the same bits as ``pyro.optim.Adam``; with
        :attr:`compile` its fused kernel (``{"fused": True}``), as a compiled loss's
        numbers already differ from the eager ones by float rounding: 0.4x the
        loop's time in ``fit`` on CPU (``docs/benchmarks.md``), each update within
        the tolerance :func:`vi_vae.optim.Adam` states.

        Example:
            >>> TrainSettings(compile=True).optimizer().pt_optim_args["fused"]
            True
        """
        fused = {"fused": True} if self.compile else {}
        return Adam({"lr": self.learning_rate, **fused})

    def kl_weight_at(self, epoch: int) -> float:
        """β in ``epoch`` (1-based): ramped up over the warm-up epochs, then ``kl_weight``."""
        warmup = min(1.0, epoch / self.kl_warmup_epochs) if self.kl_warmup_epochs else 1
        return self.kl_weight * warmup
