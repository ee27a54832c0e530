"""The run configuration: everything needed to reproduce a training run, in four sections.

The command line builds a :class:`RunConfig`; a run directory stores it in
``config.json`` (with the versions that produced it and where the data came
from). A config read back from disk goes through the same checks as one built
from flags: :meth:`RunConfig.validated` names the offending field.

Each field is named as the library argument it feeds (``kl_weight`` is
:func:`vi_vae.fit`'s ``kl_weight``), and each default is the library's.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vi_vae._validation import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from vi_vae.app.schema import SchemaError, from_json, to_json
from vi_vae.data import BINARIZATIONS, DATASETS
from vi_vae.errors import InputError
from vi_vae.estimators import parse_estimator
from vi_vae.evaluation import DEFAULT_BOUND_PARTICLES, DEFAULT_NUM_PARTICLES, AISSettings
from vi_vae.execution import ExecutionOptions
from vi_vae.flows import DEFAULT_FLOW_LAYERS, FLOWS
from vi_vae.latents import get_family
from vi_vae.likelihoods import get_likelihood
from vi_vae.nets import ACTIVATIONS
from vi_vae.priors import DEFAULT_NUM_PSEUDO_INPUTS, PRIORS
from vi_vae.templates import ARCHITECTURES, DEFAULT_LATENT_DIM
from vi_vae.train import TrainSettings

__all__ = [
    "DEVICES",
    "AISConfig",
    "DataConfig",
    "EvaluationConfig",
    "ModelConfig",
    "RunConfig",
    "TrainingConfig",
    "environment",
]

DEVICES = ("cpu", "cuda")
#: data-file suffixes a dataset name may end in
DATA_FILE_SUFFIXES = (".npy", ".npz", ".csv")


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how they are binarized (see :func:`vi_vae.load_dataset`).

    ``binarization=None`` means ``dynamic`` for the Bernoulli likelihood and ``none``
    otherwise; :meth:`RunConfig.validated` resolves it, so a stored config states it.
    """

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    binarization: str | None = None
    max_train: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The VAE template's settings (see :class:`vi_vae.VAE`): they define the model.

    ``latent_dims`` (two or more stochastic layers, from the data up) sets
    ``latent_dim`` to its last entry.
    """

    latent_family: str = "normal"
    latent_dim: int = DEFAULT_LATENT_DIM
    likelihood: str = "bernoulli"
    likelihood_options: dict[str, float] = field(default_factory=dict)
    hidden_sizes: tuple[int, ...] = (400,)
    activation: str = "relu"
    architecture: str = "mlp"
    latent_dims: tuple[int, ...] | None = None
    flow: str | None = None
    flow_layers: int = DEFAULT_FLOW_LAYERS
    prior: str = "standard"
    num_pseudo_inputs: int = DEFAULT_NUM_PSEUDO_INPUTS


#: fit's settings with their defaults: the training section's defaults are these
_FIT = TrainSettings()


@dataclass(frozen=True)
class TrainingConfig:
    """How the model is trained (see :func:`vi_vae.fit`); ``estimator`` is a spelling.

    The fields are :class:`vi_vae.TrainSettings`'s, with its defaults, plus the device
    as a string; :meth:`settings` builds the library's settings object from them.
    ``compile`` runs the estimator's passes compiled (same numbers to float rounding).
    """

    estimator: str = "elbo"
    epochs: int = _FIT.epochs
    batch_size: int = _FIT.batch_size
    learning_rate: float = _FIT.learning_rate
    kl_weight: float = _FIT.kl_weight
    kl_warmup_epochs: int = _FIT.kl_warmup_epochs
    patience: int | None = _FIT.patience
    seed: int = _FIT.seed
    device: str = "cpu"
    compile: bool = _FIT.compile

    def settings(self, loss: Any, device: Any) -> TrainSettings:
        """:func:`vi_vae.fit`'s settings for this section; ``loss`` is built from ``estimator``."""
        shared = {f.name for f in dataclasses.fields(TrainSettings)} - {"loss", "device"}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return TrainSettings(
            loss=loss, device=device, **{name: values[name] for name in shared & values.keys()}
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """The test-set evaluation (see :func:`vi_vae.importance_sampling`).

    ``num_points=None`` evaluates every test point; N takes the first N of the
    shuffled test split, a uniformly random subset. ``compile`` runs the passes of
    importance sampling and of AIS compiled (same numbers to float rounding).
    """

    num_particles: int = DEFAULT_NUM_PARTICLES
    bound_particles: tuple[int, ...] = DEFAULT_BOUND_PARTICLES
    num_points: int | None = None
    compile: bool = False

    @property
    def execution(self) -> ExecutionOptions:
        """The evaluators' :class:`~vi_vae.ExecutionOptions` for this section."""
        return ExecutionOptions(compile=self.compile)


@dataclass(frozen=True)
class AISConfig(AISSettings):
    """Annealed importance sampling after training: the library's :class:`AISSettings`, and where.

    The AIS settings are inherited from :class:`~vi_vae.evaluation.AISSettings`
    (declared and checked there, once); this section adds one field of its own:
    ``num_points=None`` runs no AIS after training; N runs it on the first N points of
    the shuffled test split (a random subset), beside importance sampling on the same
    points. ``vi-vae bdmc`` uses the same settings.
    """

    num_points: int | None = None

    _where: ClassVar[str] = "ais."

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_points is not None:
            check_positive_int("ais.num_points", self.num_points)

    @property
    def settings(self) -> AISSettings:
        """The library's settings object (this section without ``num_points``)."""
        return AISSettings.build(None, {name: getattr(self, name) for name in AISSettings.names()})


@dataclass(frozen=True)
class RunConfig:
    """Settings of one training run, by section."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    ais: AISConfig = field(default_factory=AISConfig)

    def validated(self) -> RunConfig:
        """Check every field (raising :class:`InputError` naming it) and resolve defaults."""
        _check_data(self.data)
        model = _validated_model(self.model)
        _check_training(self.training)
        _check_evaluation(self.evaluation)
        binarization = _binarization(self.data, model)
        return dataclasses.replace(
            self, data=dataclasses.replace(self.data, binarization=binarization), model=model
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values by section."""
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "config") -> RunConfig:
        """Rebuild from :meth:`to_json` output, checking each field's type."""
        return from_json(cls, data, where)

    def replace(self, section: str, **changes: Any) -> RunConfig:
        """A copy with fields of one section changed: ``config.replace("training", epochs=5)``."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )

    def model_fingerprint(self, input_dim: int) -> dict[str, Any]:
        """The settings that define the trained model and its numbers: stored in checkpoints."""
        return {
            "model": to_json(self.model),
            "data": {
                "dataset": self.data.dataset,
                "binarization": self.data.binarization,
                "input_dim": input_dim,
            },
        }


def _check_data(data: DataConfig) -> None:
    """Check the data section (:meth:`RunConfig.validated`)."""
    if data.dataset not in DATASETS and Path(data.dataset).suffix.lower() not in (
        DATA_FILE_SUFFIXES
    ):
        accepted = ", ".join([*DATASETS, "a .npy/.npz/.csv file"])
        raise SchemaError(
            "data.dataset", f"unknown dataset {data.dataset!r}; accepted values: {accepted}"
        )
    _optional_positive("data.max_train", data.max_train)


def _validated_model(model: ModelConfig) -> ModelConfig:
    """Check the model section; ``latent_dim`` follows ``latent_dims`` where given."""
    _check("model.latent_family", get_family, model.latent_family)
    _check("model.likelihood", get_likelihood, model.likelihood, **model.likelihood_options)
    _check("model.activation", check_choice, "activation", model.activation, ACTIVATIONS)
    _number("model.latent_dim", model.latent_dim)
    if not model.hidden_sizes:
        raise SchemaError(
            "model.hidden_sizes",
            "model.hidden_sizes must list at least one width (a linear VAE is "
            "VAE(hidden_sizes=()) in the Python API)",
        )
    for width in model.hidden_sizes:
        _number("model.hidden_sizes", width)
    _check("model.architecture", check_choice, "architecture", model.architecture, ARCHITECTURES)
    if model.latent_dims is not None:
        for width in model.latent_dims:
            _number("model.latent_dims", width)
        model = dataclasses.replace(model, latent_dim=model.latent_dims[-1])
    if model.flow is not None:
        _check("model.flow", check_choice, "flow", model.flow, FLOWS)
    _number("model.flow_layers", model.flow_layers)
    _check("model.prior", check_choice, "prior", model.prior, PRIORS)
    _number("model.num_pseudo_inputs", model.num_pseudo_inputs)
    return model


def _check_training(training: TrainingConfig) -> None:
    """Check the training section (:meth:`RunConfig.validated`)."""
    _check("training.estimator", parse_estimator, training.estimator)
    _number("training.epochs", training.epochs)
    _number("training.batch_size", training.batch_size)
    _number("training.kl_warmup_epochs", training.kl_warmup_epochs, check_positive_int, 0)
    _optional_positive("training.patience", training.patience)
    _number("training.learning_rate", training.learning_rate, check_positive_float)
    _number("training.kl_weight", training.kl_weight, check_nonnegative_float)
    _check("training.seed", check_seed, training.seed, "training.seed")
    _check("training.device", check_choice, "device", training.device.split(":")[0], DEVICES)


def _check_evaluation(evaluation: EvaluationConfig) -> None:
    """Check the evaluation section (:meth:`RunConfig.validated`)."""
    _number("evaluation.num_particles", evaluation.num_particles)
    for k in evaluation.bound_particles:
        _number("evaluation.bound_particles", k)
    _optional_positive("evaluation.num_points", evaluation.num_points)


def _binarization(data: DataConfig, model: ModelConfig) -> str:
    """The binarization: the given one, or the likelihood's default; checked against it."""
    binarization = data.binarization
    if binarization is None:
        binarization = "dynamic" if model.likelihood == "bernoulli" else "none"
    _check("data.binarization", check_choice, "binarization", binarization, BINARIZATIONS)
    if model.likelihood == "bernoulli" and binarization == "none":
        raise SchemaError(
            "data.binarization",
            "the bernoulli likelihood needs binary data; accepted binarization values: "
            "dynamic, static, threshold (or the continuous-bernoulli likelihood)",
        )
    return binarization


def _check(field: str, check: Any, *arguments: Any, **options: Any) -> None:
    """Run a library check; re-raise its error as a :class:`SchemaError` naming ``field``."""
    try:
        check(*arguments, **options)
    except SchemaError:
        raise
    except InputError as error:
        raise SchemaError(field, str(error)) from None


def _number(field: str, value: Any, check: Any = check_positive_int, *limits: Any) -> None:
    """``check(field, value, *limits)``, a library check of a number named by its field."""
    _check(field, check, field, value, *limits)


def _optional_positive(field: str, value: Any) -> None:
    if value is not None:
        _number(field, value)


def environment() -> dict[str, str]:
    """Versions a run records next to its config."""
    import numpy
    import pyro
    import torch

    from vi_vae import __version__

    return {
        "vi_vae": __version__,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
