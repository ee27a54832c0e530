"""vi_vae: variational autoencoders as Pyro model/guide pairs, and honest log p(x)."""

from vi_vae.data import Dataset, load_dataset
from vi_vae.errors import InputError, TrainingError
from vi_vae.evaluation import Bound, LogLikelihoodEstimate, bounds, log_marginal_likelihood
from vi_vae.latents import FAMILIES, LatentFamily, get_family, register_family
from vi_vae.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from vi_vae.model import VAE
from vi_vae.train import FitResult, fit

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "LIKELIHOODS",
    "VAE",
    "Bound",
    "Dataset",
    "FitResult",
    "InputError",
    "LatentFamily",
    "Likelihood",
    "LogLikelihoodEstimate",
    "TrainingError",
    "bounds",
    "fit",
    "get_family",
    "get_likelihood",
    "load_dataset",
    "log_marginal_likelihood",
    "register_family",
]
