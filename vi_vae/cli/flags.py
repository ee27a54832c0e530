"""Every run-config flag of ``vi-vae``: its config field, its type and its help, in one table.

A flag is the config field's name in kebab case (``training.kl_weight`` is
``--kl-weight``); the evaluation section's flags carry the prefix ``--eval-`` in
``train`` and ``compare`` (``evaluation.num_particles`` is ``--eval-num-particles``),
because the estimator's own K is part of its spelling (``iwae:5``). Defaults are
the config's (and so the library's); the table also maps a config error back to
the flag that caused it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vi_vae.app.config import RunConfig
from vi_vae.errors import InputError
from vi_vae.estimators import ESTIMATOR_SPECS
from vi_vae.evaluation import INITIAL_DISTRIBUTIONS, SCHEDULES
from vi_vae.flows import DEFAULT_FLOW_LAYERS, parse_flow
from vi_vae.priors import DEFAULT_NUM_PSEUDO_INPUTS, parse_prior
from vi_vae.templates import ARCHITECTURES, parse_latent_dims

__all__ = [
    "FLAGS",
    "Flag",
    "add_config_flags",
    "config_from_arguments",
    "flag_of_field",
    "given_flags",
    "int_list",
    "positive_int",
]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def seed(text: str) -> int:
    """An argparse type: a seed, an integer in [0, 2**32 - 1]."""
    from vi_vae._validation import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, {MAX_SEED}], got {value}")
    return value


def _library_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a library parser, keeping its message (argparse drops it)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated integers >= 1, at least one."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, e.g. 400,200; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer, e.g. 400")
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"every value must be >= 1; got {text!r}")
    return values


@dataclass(frozen=True)
class Flag:
    """One command-line flag of a run-config field.

    Attributes:
        field: ``section.name`` in :class:`~vi_vae.app.config.RunConfig`.
        help: the help text (the default is appended).
        type: argparse type.
        metavar: argparse metavar.
        to_config: turns the parsed value into the values of ``field`` and of the
            section's ``also_sets`` fields, by name (default: ``field`` gets the value;
            with ``also_sets``, the parsed tuple's entries go to the fields in order).
        also_sets: other fields of the section the flag sets (``--flow iaf:2`` sets
            ``flow`` and ``flow_layers``).
        name: the flag's name when it is not the field's (``--likelihood-scale``).
        switch: a flag without a value that sets the field to true.
    """

    field: str
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    to_config: Callable[[Any], dict[str, Any]] | None = None
    also_sets: tuple[str, ...] = ()
    name: str | None = None
    switch: bool = False

    def flag(self, command: str) -> str:
        """The flag's spelling in ``command`` (``train``, ``compare``, ``evaluate``, ``bdmc``)."""
        section, name = self.field.split(".")
        prefix = "--"
        if section == "evaluation" and command not in ("evaluate", "bdmc"):
            prefix = "--eval-"
        elif section == "ais":
            prefix = "--ais-"
        return prefix + (self.name or name).replace("_", "-")

    def config_values(self, value: Any) -> dict[str, Any]:
        """The section's fields the parsed ``value`` sets, by name."""
        if self.to_config is not None:
            return self.to_config(value)
        names = [field.split(".")[1] for field in self.fields]
        return dict(zip(names, value, strict=True)) if self.also_sets else {names[0]: value}

    @property
    def fields(self) -> tuple[str, ...]:
        """Every config field the flag sets, ``section.name``."""
        section = self.field.split(".")[0]
        return (self.field, *(f"{section}.{name}" for name in self.also_sets))

    @property
    def dest(self) -> str:
        """The argparse destination: the field with ``__`` for the dot."""
        return self.field.replace(".", "__")


_ESTIMATORS = ", ".join(spec.usage(name) for name, spec in ESTIMATOR_SPECS.items())

#: every run-config flag, by section
FLAGS: tuple[Flag, ...] = (
    Flag("data.dataset", "dataset name (vi-vae datasets lists them) or a .npy/.npz/.csv file"),
    Flag("data.data_dir", "directory holding the dataset's IDX files"),
    Flag(
        "data.binarization",
        "none, dynamic, static or threshold (default: dynamic for the bernoulli likelihood, "
        "none otherwise)",
    ),
    Flag(
        "data.max_train",
        "use only the first N training points of the shuffled split (a random subset)",
        positive_int,
    ),
    Flag("model.latent_family", "latent family (vi-vae families lists them)"),
    Flag("model.latent_dim", "dimension of z", positive_int),
    Flag(
        "model.likelihood",
        "bernoulli, continuous-bernoulli, gaussian (fixed σ0) or gaussian-learned",
    ),
    Flag(
        "model.likelihood_options",
        "σ0 of the gaussian likelihood (default 0.1)",
        float,
        metavar="SCALE",
        to_config=lambda scale: {"likelihood_options": {"scale": scale}},
        name="likelihood_scale",
    ),
    Flag(
        "model.hidden_sizes",
        "hidden widths of the encoder MLP, comma-separated; the decoder mirrors them",
        int_list,
        metavar="W1,W2,...",
    ),
    Flag("model.activation", "relu, tanh, softplus, elu, gelu or silu"),
    Flag(
        "model.architecture",
        f"networks between x and z: {', '.join(ARCHITECTURES)} (conv needs image data)",
    ),
    Flag(
        "model.latent_dims",
        "sizes of two or more stochastic layers from the data up, e.g. 100,50 (sets the "
        "latent dimension to the last)",
        _library_type(parse_latent_dims),
        metavar="D1,D2,...",
    ),
    Flag(
        "model.flow",
        f"q(z|x) through K conditional inverse autoregressive flows: none, iaf, iaf:K "
        f"(default K {DEFAULT_FLOW_LAYERS})",
        _library_type(parse_flow),
        metavar="FLOW[:K]",
        also_sets=("flow_layers",),
    ),
    Flag(
        "model.prior",
        f"p(z): standard, or the VampPrior with K pseudo-inputs vamp, vamp:K (default K "
        f"{DEFAULT_NUM_PSEUDO_INPUTS})",
        _library_type(parse_prior),
        metavar="PRIOR[:K]",
        also_sets=("num_pseudo_inputs",),
    ),
    Flag("training.estimator", f"training objective: {_ESTIMATORS}"),
    Flag("training.epochs", "number of epochs (with --resume: raises the stored total)", int),
    Flag("training.batch_size", "data points per step", positive_int),
    Flag("training.learning_rate", "Adam step size", float),
    Flag("training.kl_weight", "weight β of the KL term; 1 is the ELBO", float),
    Flag("training.kl_warmup_epochs", "epochs over which the KL weight ramps up from 0", int),
    Flag("training.patience", "stop after N epochs without a better validation ELBO", int),
    Flag("training.seed", "random seed of the weights, draws and shuffling", seed),
    Flag("training.device", "cpu or cuda"),
    Flag(
        "training.compile",
        "run the estimator's passes compiled by torch.compile (vi_vae's estimators; the "
        "same numbers to float rounding, faster after a compile of seconds per batch shape)",
        switch=True,
    ),
    Flag(
        "evaluation.num_particles",
        "importance samples K per test point for log p(x)",
        int,
        metavar="K",
    ),
    Flag(
        "evaluation.bound_particles",
        "k of the IWAE-k bounds in the table, comma-separated",
        int_list,
        metavar="K1,K2,...",
    ),
    Flag(
        "evaluation.num_points",
        "evaluate the first N test points of the shuffled split (a random subset)",
        int,
        metavar="N",
    ),
    Flag(
        "evaluation.compile",
        "run the evaluation's passes (importance sampling, AIS, BDMC) compiled by "
        "torch.compile (the same numbers to float rounding)",
        switch=True,
    ),
    Flag(
        "ais.num_points",
        "also estimate log p(x) by AIS on the first N test points (a random subset), beside "
        "importance sampling on the same points",
        int,
        metavar="N",
    ),
    Flag("ais.num_steps", "AIS: annealing steps T", int, metavar="T"),
    Flag("ais.num_chains", "AIS: chains C per point", int, metavar="C"),
    Flag("ais.leapfrog_steps", "AIS: leapfrog steps L per HMC transition", int, metavar="L"),
    Flag("ais.step_size", "AIS: the initial HMC step size (adapted from there)", float),
    Flag(
        "ais.target_acceptance",
        "AIS: the HMC acceptance probability the step sizes adapt toward, in (0, 1)",
        float,
    ),
    Flag("ais.schedule", f"AIS: the schedule of the temperatures, {', '.join(SCHEDULES)}"),
    Flag(
        "ais.initial",
        f"AIS: where the path starts, {', '.join(INITIAL_DISTRIBUTIONS)} (q(z|x) or p(z))",
    ),
)

_BY_FIELD = {field: flag for flag in FLAGS for field in flag.fields}


def _default(field: str) -> Any:
    section, name = field.split(".")
    return getattr(getattr(RunConfig(), section), name)


def add_config_flags(
    parser: argparse.ArgumentParser,
    command: str,
    sections: tuple[str, ...],
    exclude: tuple[str, ...] = (),
) -> None:
    """Add the flags of ``sections`` to ``parser``, one argument group per section.

    Absent flags are absent from the parsed namespace (``argparse.SUPPRESS``), so
    :func:`given_flags` can tell what the user typed.
    """
    for section in sections:
        group = parser.add_argument_group(section)
        for flag in FLAGS:
            if (
                not flag.field.startswith(section + ".")
                or flag.field in exclude
                or (command == "compare" and flag.field == "training.estimator")
            ):
                continue
            default = _default(flag.field)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            derived = flag.to_config or flag.also_sets  # the default is the help's to state
            suffix = f" (default: {shown})" if shown not in (None, {}) and not derived else ""
            options: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS}
            if flag.switch:
                options["action"] = "store_true"
                suffix = ""
            else:
                options["type"] = flag.type
                options["metavar"] = flag.metavar or (flag.name or flag.field.split(".")[1]).upper()
            group.add_argument(flag.flag(command), help=flag.help + suffix, **options)


def given_flags(arguments: argparse.Namespace, command: str) -> list[str]:
    """The config flags the user typed, in table order."""
    return [flag.flag(command) for flag in FLAGS if hasattr(arguments, flag.dest)]


def config_from_arguments(
    arguments: argparse.Namespace, command: str, base: RunConfig | None = None
) -> RunConfig:
    """``base`` (default: the defaults) with every typed flag applied; not yet validated."""
    config = base or RunConfig()
    for flag in FLAGS:
        if hasattr(arguments, flag.dest):
            value = getattr(arguments, flag.dest)
            section, name = flag.field.split(".")
            values = flag.config_values(value)
            config = dataclasses.replace(
                config, **{section: dataclasses.replace(getattr(config, section), **values)}
            )
    dims = getattr(arguments, "model__latent_dims", None)
    if dims and hasattr(arguments, "model__latent_dim") and arguments.model__latent_dim != dims[-1]:
        raise InputError(
            f"--latent-dim {arguments.model__latent_dim} contradicts --latent-dims "
            f"{','.join(map(str, dims))}, whose last entry is the latent dimension; give one"
        )
    _check_bound_particles(arguments, command, config)
    return config


def _check_bound_particles(arguments: argparse.Namespace, command: str, config: RunConfig) -> None:
    """Refuse typed bounds IWAE-k with k above the evaluation's K (they cannot be computed).

    Default k above K are left out of the table by the evaluation; typed ones are an error,
    as in :func:`vi_vae.bounds`.
    """
    if not hasattr(arguments, "evaluation__bound_particles"):
        return
    num_particles = config.evaluation.num_particles
    too_large = [k for k in config.evaluation.bound_particles if k > num_particles]
    if too_large:
        bound_flag, particles_flag = (
            _BY_FIELD[f"evaluation.{name}"].flag(command)
            for name in ("bound_particles", "num_particles")
        )
        raise InputError(
            f"{bound_flag}: k = {', '.join(map(str, too_large))} above {particles_flag} "
            f"{num_particles}; an IWAE-k bound needs k <= K, so raise {particles_flag} or "
            "leave these k out"
        )


def flag_of_field(field: str, command: str) -> str | None:
    """The flag of a config field (``training.learning_rate`` -> ``--learning-rate``)."""
    flag = _BY_FIELD.get(field.split("[")[0].removeprefix("config."))
    return flag.flag(command) if flag is not None else None
