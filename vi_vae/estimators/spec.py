"""Estimators by command-line spelling: ``elbo``, ``elbo-analytic``, ``iwae:K``, ...

A spelling is a name followed by colon-separated numbers, e.g. ``iwae:5`` or
``piwae:8:8:64``. :data:`ESTIMATOR_SPECS` maps each name to the argument names it
takes and a constructor; adding an estimator is one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO

from vi_vae.errors import InputError
from vi_vae.estimators.ciwae import CIWAE
from vi_vae.estimators.dreg import DReG
from vi_vae.estimators.iwae import IWAE
from vi_vae.estimators.miwae import MIWAE
from vi_vae.estimators.piwae import PIWAE
from vi_vae.estimators.renyi import RenyiVR
from vi_vae.estimators.stl import STL

__all__ = ["ESTIMATOR_SPECS", "EstimatorSpec", "parse_estimator"]


@dataclass(frozen=True)
class EstimatorSpec:
    """How to build an estimator from its spelling.

    Attributes:
        arguments: names of the colon-separated arguments, in order, each with
            its type (``int`` or ``float``).
        build: constructor taking those arguments as keywords.
        summary: one line for ``--help``.
    """

    arguments: tuple[tuple[str, type], ...]
    build: Callable[..., ELBO]
    summary: str

    def usage(self, name: str) -> str:
        """E.g. ``iwae:NUM_PARTICLES``."""
        return ":".join([name] + [argument.upper() for argument, _ in self.arguments])


#: spelling name -> spec
ESTIMATOR_SPECS: dict[str, EstimatorSpec] = {
    "elbo": EstimatorSpec((), lambda: Trace_ELBO(), "ELBO with a sampled KL (Pyro's Trace_ELBO)"),
    "elbo-analytic": EstimatorSpec(
        (),
        lambda: TraceMeanField_ELBO(),
        "ELBO with the analytic KL where it exists (Pyro's TraceMeanField_ELBO)",
    ),
    "iwae": EstimatorSpec(
        (("num_particles", int),), IWAE, "importance-weighted bound IWAE-K (Burda et al. 2016)"
    ),
    "vr": EstimatorSpec(
        (("alpha", float), ("num_particles", int)),
        RenyiVR,
        "Renyi bound of order ALPHA with K draws; -inf is VR-max (Li & Turner 2016)",
    ),
    "vrmax": EstimatorSpec(
        (("num_particles", int),),
        lambda num_particles: RenyiVR(-math.inf, num_particles),
        "VR-max: the Renyi objective at alpha = -inf, max_k log w_k (Li & Turner 2016)",
    ),
    "stl": EstimatorSpec(
        (("num_particles", int),),
        STL,
        "ELBO with the sticking-the-landing path gradient (Roeder et al. 2017)",
    ),
    "dreg": EstimatorSpec(
        (("num_particles", int),),
        DReG,
        "IWAE-K with the doubly reparameterized guide gradient (Tucker et al. 2019)",
    ),
    "miwae": EstimatorSpec(
        (("num_outer", int), ("num_inner", int)),
        MIWAE,
        "mean of M IWAE-K estimates, M*K draws (Rainforth et al. 2018)",
    ),
    "ciwae": EstimatorSpec(
        (("beta", float), ("num_particles", int)),
        CIWAE,
        "BETA * ELBO + (1 - BETA) * IWAE-K on the same draws (Rainforth et al. 2018)",
    ),
    "piwae": EstimatorSpec(
        (("num_outer", int), ("num_inner", int), ("num_particles", int)),
        PIWAE,
        "guide on MIWAE(M, L), model on IWAE-K, M*L draws; reports IWAE-K (Rainforth et al. 2018)",
    ),
}


def parse_estimator(spelling: str) -> ELBO:
    """Build the estimator a spelling names, e.g. ``parse_estimator("iwae:5")``.

    Raises:
        InputError: naming the accepted spellings when ``spelling`` is not one.
    """
    accepted = ", ".join(spec.usage(name) for name, spec in ESTIMATOR_SPECS.items())
    name, *values = spelling.strip().split(":")
    if name not in ESTIMATOR_SPECS:
        raise InputError(f"unknown estimator {spelling!r}; accepted values: {accepted}")
    spec = ESTIMATOR_SPECS[name]
    if len(values) != len(spec.arguments):
        raise InputError(f"estimator {spelling!r} must be spelled {spec.usage(name)}")
    kwargs = {}
    for (argument, kind), text in zip(spec.arguments, values, strict=True):
        try:
            kwargs[argument] = kind(text)
        except ValueError:
            raise InputError(
                f"estimator {spelling!r}: {argument} must be {kind.__name__}; got {text!r}"
            ) from None
    try:
        return spec.build(**kwargs)
    except (ValueError, TypeError) as error:
        raise InputError(f"estimator {spelling!r}: {error}") from None
