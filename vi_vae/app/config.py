"""The run configuration: everything needed to reproduce a training run, in four sections.

The command line builds a :class:`RunConfig`; a run directory stores it in
``config.json`` (with the versions that produced it and where the data came
from). The ``model``, ``training``, ``evaluation`` and ``ais`` sections *are* the
library's settings objects (:class:`~vi_vae.templates.Template`,
:class:`~vi_vae.TrainSettings`, :class:`~vi_vae.ImportanceSettings`,
:class:`~vi_vae.evaluation.AISSettings`), checked by the library when built, with
errors naming ``section.field``; :meth:`RunConfig.validated` checks the rest. A config
read back from disk goes through the same checks as one built from flags.

Each field is named as the library argument it feeds (``kl_weight`` is
:func:`vi_vae.fit`'s ``kl_weight``), and each default is the library's.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.app.schema import SchemaError, from_json, to_json
from vi_vae.data import BINARIZATIONS, DATASETS
from vi_vae.errors import InputError
from vi_vae.estimators import canonical_spelling, parse_estimator
from vi_vae.evaluation import AISSettings, ImportanceSettings
from vi_vae.execution import ExecutionOptions
from vi_vae.latents import get_family
from vi_vae.likelihoods import get_likelihood
from vi_vae.priors import PRIORS
from vi_vae.settings import Settings
from vi_vae.templates import DEFAULT_LATENT_DIM, Template
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
class ModelConfig(Template):
    """The model: the library's :class:`~vi_vae.templates.Template`, and the VAE's other choices.

    The template's fields are inherited (declared and checked there, once; errors name
    ``model.<field>``); this section adds the :class:`vi_vae.VAE` arguments the
    template does not hold: the latent family, ``latent_dim``, the likelihood and the
    prior. ``latent_dims`` (two or more stochastic layers, from the data up) sets
    ``latent_dim`` to its last entry. ``image_shape`` is the data's
    (:class:`~vi_vae.Dataset`), not stored.
    """

    latent_family: str = "normal"
    latent_dim: int = DEFAULT_LATENT_DIM
    likelihood: str = "bernoulli"
    prior: str = "standard"

    _where: ClassVar[str] = "model."
    #: not in config.json: the data decide it (vi_vae.app.schema)
    _unstored: ClassVar[tuple[str, ...]] = ("image_shape",)

    def __post_init__(self) -> None:
        _library_checks(self, super().__post_init__)
        _check("model.latent_family", get_family, self.latent_family)
        _check("model.likelihood", get_likelihood, self.likelihood)
        if self.likelihood_options:  # a bad option is the option's error, not the name's
            _check(
                "model.likelihood_options",
                get_likelihood,
                self.likelihood,
                **self.likelihood_options,
            )
        _number("model.latent_dim", self.latent_dim)
        if not self.hidden_sizes:
            raise SchemaError(
                "model.hidden_sizes",
                "model.hidden_sizes must list at least one width (a linear VAE is "
                "VAE(hidden_sizes=()) in the Python API)",
            )
        _check("model.prior", check_choice, "prior", self.prior, PRIORS)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(TrainSettings):
    """How the model is trained: the library's :class:`~vi_vae.TrainSettings`, as stored.

    The settings are inherited (declared and checked there, once; errors name
    ``training.<field>``), so the section is :func:`vi_vae.fit`'s ``settings``. The
    loss is spelled by ``estimator`` (:func:`vi_vae.parse_estimator`), and the device
    is a string, ``"cpu"`` or ``"cuda[:n]"``. ``compile`` runs the estimator's passes
    compiled (same numbers to float rounding). ``data_plate`` (the VAE's) and
    ``validation_num_particles`` keep the library's defaults and are not stored.
    """

    estimator: str = "elbo"
    device: str = "cpu"
    #: built from ``estimator``, not stored (so it cannot disagree with it)
    loss: str | None = field(default=None, init=False, repr=False, compare=False)

    _where: ClassVar[str] = "training."
    _unstored: ClassVar[tuple[str, ...]] = ("data_plate", "validation_num_particles")

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", self.estimator)
        # the spelling is the section's own field: its errors name it, not the loss
        _check("training.estimator", parse_estimator, self.estimator)
        # one spelling per estimator ("iwae:05" is "iwae:5") in config.json, the report
        # and a comparison's rows
        object.__setattr__(self, "estimator", canonical_spelling(self.estimator))
        _library_checks(self, super().__post_init__, {"loss": "estimator"})
        _check("training.device", check_choice, "device", str(self.device).split(":")[0], DEVICES)


@dataclass(frozen=True)
class EvaluationConfig(ImportanceSettings):
    """The test-set evaluation: the library's :class:`~vi_vae.ImportanceSettings`, and where.

    The settings (K and the bound table's k) are inherited (declared and checked there,
    once; errors name ``evaluation.<field>``), so the section is
    :func:`vi_vae.importance_sampling`'s ``settings``. ``num_points=None`` evaluates every
    test point; N takes the first N of the shuffled test split, a uniformly random
    subset. ``compile`` runs the passes of importance sampling and of AIS compiled (same
    numbers to float rounding).
    """

    num_points: int | None = None
    compile: bool = False

    _where: ClassVar[str] = "evaluation."

    def __post_init__(self) -> None:
        _library_checks(self, super().__post_init__)
        _optional_positive("evaluation.num_points", self.num_points)

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
        _library_checks(self, super().__post_init__)
        _optional_positive("ais.num_points", self.num_points)

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
        """Check the data section and the binarization, resolve defaults.

        The other sections checked themselves when built; a :class:`SchemaError` names
        the field.
        """
        _check_data(self.data)
        model = self.model  # the other sections checked themselves when built
        if model.latent_dims is not None:
            model = dataclasses.replace(model, latent_dim=model.latent_dims[-1])
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


def _library_checks(
    section: Settings, checks: Callable[[], None], aliases: Mapping[str, str] | None = None
) -> None:
    """Run a library settings object's checks on a section that is one, naming the field.

    The library's messages name the setting (prefixed by the section's ``_where``); the
    :class:`SchemaError` names the section's field: the first word of the message that
    is a field's name (``aliases`` maps a library field to the section's field that sets it).
    """
    try:
        checks()
    except SchemaError:
        raise
    except InputError as error:
        names = {item.name for item in dataclasses.fields(section)}
        words = [(aliases or {}).get(w, w) for w in re.findall(r"\w+", str(error))]
        name = next((word for word in words if word in names), None)
        where = section._where.removesuffix(".")
        raise SchemaError(f"{where}.{name}" if name else where, str(error)) from None


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
