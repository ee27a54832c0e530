"""Estimators by spelling: ``elbo``, ``elbo-analytic``, ``iwae:K``, ... — the one registry.

A spelling is a name followed by colon-separated numbers, e.g. ``iwae:5`` or
``piwae:8:8:64``. :data:`ESTIMATOR_SPECS` maps each name to the arguments it
takes, a constructor and a one-line summary; adding an estimator is one entry
here (and one file), and the test battery in ``tests/estimators/`` covers it the
moment it is registered.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO as PyroELBO

from vi_vae._validation import check_bool
from vi_vae.errors import InputError
from vi_vae.estimators.ciwae import CIWAE
from vi_vae.estimators.dreg import DReG
from vi_vae.estimators.elbo import ELBO
from vi_vae.estimators.iwae import IWAE
from vi_vae.estimators.miwae import MIWAE
from vi_vae.estimators.particle_estimator import ParticleEstimator
from vi_vae.estimators.piwae import PIWAE
from vi_vae.estimators.renyi import RenyiVR
from vi_vae.estimators.stl import STL

__all__ = [
    "ESTIMATOR_SPECS",
    "EstimatorSpec",
    "as_loss",
    "canonical_spelling",
    "parse_estimator",
    "with_compile",
    "with_num_particles",
]


@dataclass(frozen=True)
class EstimatorSpec:
    """How to build an estimator from its spelling.

    Attributes:
        arguments: names of the colon-separated arguments, in order, each with
            its type (``int`` or ``float``).
        build: constructor taking those arguments as keywords.
        summary: one line for ``vi-vae estimators`` and ``--help``.
        example: a spelling with small numbers, for examples and tests.
        particles_argument: the argument that is K, the draws inside one
            importance-weighted estimate (``None``: the estimator averages K
            particles of the ELBO, and ``with_num_particles`` builds :class:`ELBO`).
    """

    arguments: tuple[tuple[str, type], ...]
    build: Callable[..., PyroELBO]
    summary: str
    example: str
    particles_argument: str | None = "num_particles"

    def usage(self, name: str) -> str:
        """E.g. ``iwae:NUM_PARTICLES``."""
        return ":".join([name] + [argument.upper() for argument, _ in self.arguments])


#: the arguments of a spelling whose one number is K
_K = (("num_particles", int),)
#: spelling name -> spec
ESTIMATOR_SPECS: dict[str, EstimatorSpec] = {
    "elbo": EstimatorSpec(
        (), lambda: ELBO(1), "ELBO with a sampled KL, one draw per point", "elbo", None
    ),
    "elbo-analytic": EstimatorSpec(
        (),
        lambda: ELBO(1, analytic_kl=True),
        "ELBO with the analytic KL where one is registered, one draw per point",
        "elbo-analytic",
        None,
    ),
    "pyro-trace-elbo": EstimatorSpec(
        (),
        lambda: Trace_ELBO(),
        "Pyro's own Trace_ELBO (the same values and gradients as elbo)",
        "pyro-trace-elbo",
        None,
    ),
    "pyro-meanfield-elbo": EstimatorSpec(
        (),
        lambda: TraceMeanField_ELBO(),
        "Pyro's own TraceMeanField_ELBO (as elbo-analytic, mean-field guides only)",
        "pyro-meanfield-elbo",
        None,
    ),
    "iwae": EstimatorSpec(
        _K, IWAE, "importance-weighted bound IWAE-K (Burda et al. 2016)", "iwae:5"
    ),
    "vr": EstimatorSpec(
        (("alpha", float), ("num_particles", int)),
        RenyiVR,
        "Renyi bound of order ALPHA with K draws; -inf is VR-max (Li & Turner 2016)",
        "vr:0.5:5",
    ),
    "vrmax": EstimatorSpec(
        _K,
        lambda num_particles: RenyiVR(-math.inf, num_particles),
        "VR-max: the Renyi objective at alpha = -inf, max_k log w_k (Li & Turner 2016)",
        "vrmax:5",
    ),
    "stl": EstimatorSpec(
        _K, STL, "ELBO with the sticking-the-landing path gradient (Roeder et al. 2017)", "stl:2"
    ),
    "dreg": EstimatorSpec(
        _K,
        DReG,
        "IWAE-K with the doubly reparameterized guide gradient (Tucker et al. 2019)",
        "dreg:5",
    ),
    "miwae": EstimatorSpec(
        (("num_outer", int), ("num_inner", int)),
        MIWAE,
        "mean of M IWAE-K estimates, M*K draws (Rainforth et al. 2018)",
        "miwae:3:4",
        "num_inner",
    ),
    "ciwae": EstimatorSpec(
        (("elbo_weight", float), ("num_particles", int)),
        CIWAE,
        "ELBO_WEIGHT * ELBO + (1 - ELBO_WEIGHT) * IWAE-K on the same draws (Rainforth et al. 2018)",
        "ciwae:0.3:5",
    ),
    "piwae": EstimatorSpec(
        (("num_outer", int), ("num_inner", int), ("num_particles", int)),
        PIWAE,
        "guide on MIWAE(M, L), model on IWAE-K, M*L draws; reports IWAE-K (Rainforth et al. 2018)",
        "piwae:2:3:3",
        "num_inner",
    ),
}


def _split(spelling: str) -> tuple[str, EstimatorSpec, dict[str, int | float]]:
    accepted = ", ".join(spec.usage(name) for name, spec in ESTIMATOR_SPECS.items())
    if not isinstance(spelling, str):
        raise InputError(f"estimator must be a spelling such as iwae:5; got {spelling!r}")
    name, *values = spelling.strip().split(":")
    if name not in ESTIMATOR_SPECS:
        raise InputError(f"unknown estimator {spelling!r}; accepted values: {accepted}")
    spec = ESTIMATOR_SPECS[name]
    if len(values) != len(spec.arguments):
        raise InputError(f"estimator {spelling!r} must be spelled {spec.usage(name)}")
    kwargs: dict[str, int | float] = {}
    for (argument, kind), text in zip(spec.arguments, values, strict=True):
        try:
            kwargs[argument] = kind(text)
        except ValueError:
            raise InputError(
                f"estimator {spelling!r}: {argument} must be {kind.__name__}; got {text!r}"
            ) from None
    return name, spec, kwargs


def _build(spelling: str, spec: EstimatorSpec, kwargs: dict) -> PyroELBO:
    try:
        return spec.build(**kwargs)
    except (ValueError, TypeError) as error:
        raise InputError(f"estimator {spelling!r}: {error}") from None


def parse_estimator(spelling: str, *, compile: bool = False) -> PyroELBO:
    """Build the estimator a spelling names, e.g. ``parse_estimator("iwae:5")``.

    With ``compile=True`` its passes run compiled (:func:`with_compile`).

    Raises:
        InputError: naming the accepted spellings when ``spelling`` is not one, or
            when ``compile=True`` names one of Pyro's own ELBOs.

    Example:
        >>> parse_estimator("iwae:5", compile=True).compile
        True
    """
    check_bool("compile", compile)
    _, spec, kwargs = _split(spelling)
    estimator = _build(spelling, spec, kwargs)
    return with_compile(estimator) if compile else estimator


def as_loss(loss: PyroELBO | str, *, compile: bool = False, data_plate: str = "data") -> PyroELBO:
    """``loss`` as an ELBO over ``data_plate``: a spelling is built (:func:`parse_estimator`).

    An ELBO is kept; one of vi_vae's estimators must already take ``data_plate`` (Pyro's
    own ELBOs name no plate).

    Raises:
        InputError: for anything else, a spelling that names no estimator (naming
            the argument ``loss``), or an estimator over another data plate.

    Example:
        >>> as_loss("iwae:5", data_plate="batch").data_plate
        'batch'
    """
    if isinstance(loss, str):
        try:
            built = parse_estimator(loss, compile=compile)
        except InputError as error:
            raise InputError(f"loss: {error}") from None
        if isinstance(built, ParticleEstimator):
            built.data_plate = data_plate
        return built
    if not isinstance(loss, PyroELBO):
        raise InputError(
            "loss must be a pyro.infer.ELBO or an estimator spelling such as 'iwae:5' "
            f"(see vi_vae.parse_estimator); got {loss!r}"
        )
    if isinstance(loss, ParticleEstimator) and loss.data_plate != data_plate:
        raise InputError(
            f"loss takes the data plate {loss.data_plate!r} but data_plate is {data_plate!r}: "
            f"name the same plate in both (data_plate={loss.data_plate!r}, or build the loss "
            f"with data_plate={data_plate!r})"
        )
    return loss


def canonical_spelling(spelling: str) -> str:
    """The one spelling of the estimator ``spelling`` names, its numbers written plainly.

    VR at α = −∞ is spelled ``vrmax``, the name it has of its own.

    Example:
        >>> canonical_spelling(" iwae:05"), canonical_spelling("vr:0.50:5")
        ('iwae:5', 'vr:0.5:5')
        >>> canonical_spelling("vr:-inf:5")
        'vrmax:5'
    """
    name, _, kwargs = _split(spelling)
    if name == "vr" and kwargs["alpha"] == -math.inf:
        name, kwargs = "vrmax", {"num_particles": kwargs["num_particles"]}
    return ":".join([name, *(str(value) for value in kwargs.values())])


def with_compile(loss: PyroELBO | None = None, compile: bool = True) -> PyroELBO:
    """``loss`` with ``compile`` set: itself if it already is, else a copy.

    ``None`` is the ELBO with one draw, vi_vae's :class:`ELBO` (what :func:`vi_vae.fit`
    trains with by default; its values and gradients are those of Pyro's
    ``Trace_ELBO``).

    Raises:
        InputError: ``compile=True`` for a loss that is not one of vi_vae's
            estimators (Pyro's own ELBOs have no compiled path).

    Example:
        >>> with_compile(IWAE(5)).compile, with_compile(None).num_particles
        (True, 1)
    """
    check_bool("compile", compile)
    if loss is None:
        return ELBO(1, compile=compile)
    if not isinstance(loss, ParticleEstimator):
        if compile:
            raise InputError(
                f"compile=True needs one of vi_vae's estimators (vi_vae.estimators, e.g. "
                f"ELBO() for Trace_ELBO); {type(loss).__name__} has no compiled path"
            )
        return loss
    if loss.compile == compile:
        return loss
    changed = copy.copy(loss)
    changed.compile = compile
    changed.clear_compiled()
    return changed


def with_num_particles(spelling: str, num_particles: int) -> PyroELBO:
    """The estimator ``spelling`` names with its K set to ``num_particles``.

    K is the number of draws inside one importance-weighted estimate: the
    spelling's ``num_inner`` where it has one (MIWAE, PIWAE — whose model-side
    IWAE then spans all M·K draws), else its ``num_particles``; the ELBO
    spellings become :class:`~vi_vae.estimators.ELBO` averaging K particles.

    Example:
        >>> with_num_particles("miwae:3:4", 10).num_particles
        30
    """
    name, spec, kwargs = _split(spelling)
    if spec.particles_argument is None:
        return ELBO(num_particles=num_particles, analytic_kl=name.endswith("analytic"))
    kwargs[spec.particles_argument] = num_particles
    if name == "piwae":
        kwargs["num_particles"] = kwargs["num_outer"] * num_particles
    return _build(spelling, spec, kwargs)
