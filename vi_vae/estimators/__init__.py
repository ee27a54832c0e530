"""ELBO estimators as ``pyro.infer.ELBO`` subclasses, one per file."""

from vi_vae.estimators.spec import ESTIMATOR_SPECS, EstimatorSpec, parse_estimator

__all__ = ["ESTIMATOR_SPECS", "EstimatorSpec", "parse_estimator"]
