"""ELBO estimators as ``pyro.infer.ELBO`` subclasses, one per file, and their registry."""

from vi_vae.estimators.ciwae import CIWAE
from vi_vae.estimators.dreg import DReG
from vi_vae.estimators.elbo import ELBO
from vi_vae.estimators.iwae import IWAE
from vi_vae.estimators.miwae import MIWAE
from vi_vae.estimators.particle_estimator import GradientTerm, ParticleEstimator
from vi_vae.estimators.piwae import PIWAE
from vi_vae.estimators.registry import (
    ESTIMATOR_SPECS,
    EstimatorSpec,
    as_loss,
    canonical_spelling,
    parse_estimator,
    with_compile,
    with_num_particles,
)
from vi_vae.estimators.renyi import RenyiVR
from vi_vae.estimators.stl import STL

__all__ = [
    "CIWAE",
    "ELBO",
    "ESTIMATOR_SPECS",
    "IWAE",
    "MIWAE",
    "PIWAE",
    "STL",
    "DReG",
    "EstimatorSpec",
    "GradientTerm",
    "ParticleEstimator",
    "RenyiVR",
    "as_loss",
    "canonical_spelling",
    "parse_estimator",
    "with_compile",
    "with_num_particles",
]
