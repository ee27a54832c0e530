"""vi_vae: variational autoencoders as Pyro model/guide pairs, and honest log p(x)."""

from vi_vae.compare import compare
from vi_vae.data import Dataset, load_dataset
from vi_vae.diagnostics import active_units, gradient_snr, to_inference_data
from vi_vae.errors import InputError, TrainingError
from vi_vae.estimators import (
    CIWAE,
    ELBO,
    IWAE,
    MIWAE,
    PIWAE,
    STL,
    DReG,
    RenyiVR,
    parse_estimator,
)
from vi_vae.evaluation import (
    Bound,
    LogLikelihoodEstimate,
    bounds,
    importance_sampling,
    log_marginal_likelihood,
)
from vi_vae.latents import FAMILIES, LatentFamily, get_family, register_family
from vi_vae.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from vi_vae.model import VAE
from vi_vae.train import FitResult, fit

__version__ = "0.1.0"

__all__ = [
    "CIWAE",
    "ELBO",
    "FAMILIES",
    "IWAE",
    "LIKELIHOODS",
    "MIWAE",
    "PIWAE",
    "STL",
    "VAE",
    "Bound",
    "DReG",
    "Dataset",
    "FitResult",
    "InputError",
    "LatentFamily",
    "Likelihood",
    "LogLikelihoodEstimate",
    "RenyiVR",
    "TrainingError",
    "active_units",
    "bounds",
    "compare",
    "fit",
    "get_family",
    "get_likelihood",
    "gradient_snr",
    "importance_sampling",
    "load_dataset",
    "log_marginal_likelihood",
    "parse_estimator",
    "register_family",
    "to_inference_data",
]
