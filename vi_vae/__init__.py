"""vi_vae: variational autoencoders as Pyro model/guide pairs, and honest log p(x).

This is the library's public API. The run directories, reports and figures
(:mod:`vi_vae.app`) and the ``vi-vae`` command (:mod:`vi_vae.cli`) are layers
above it, and importing ``vi_vae`` loads neither.
"""

from vi_vae.data import Dataset, load_dataset
from vi_vae.errors import (
    AISConvergenceWarning,
    CompileWarning,
    ConvergenceWarning,
    GuideSupportWarning,
    InputError,
    LocalOptimizationWarning,
    LowPrecisionWarning,
    RandomDensityWarning,
    TF32Warning,
    TrainingError,
    UnobservedPointsWarning,
)
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
    AISEstimate,
    AISSettings,
    AutoAISResult,
    AutoAISSettings,
    BDMCResult,
    Bound,
    GapSettings,
    ImportanceSettings,
    InferenceGaps,
    LogLikelihoodEstimate,
    PairedDifference,
    active_units,
    annealed_importance_sampling,
    auto_annealed_importance_sampling,
    bdmc,
    bounds,
    gradient_snr,
    importance_sampling,
    inference_gaps,
    log_marginal_likelihood,
    snr_noise_floor,
    to_inference_data,
)
from vi_vae.execution import ExecutionOptions
from vi_vae.flows import parse_flow
from vi_vae.keys import seed_everything
from vi_vae.latents import FAMILIES, LatentFamily, get_family, register_family
from vi_vae.likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from vi_vae.model import VAE
from vi_vae.priors import parse_prior
from vi_vae.templates import parse_latent_dims
from vi_vae.train import FitResult, TrainSettings, fit

__version__ = "0.3.0"

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
    "AISConvergenceWarning",
    "ConvergenceWarning",
    "GuideSupportWarning",
    "AISEstimate",
    "AISSettings",
    "AutoAISResult",
    "AutoAISSettings",
    "BDMCResult",
    "Bound",
    "CompileWarning",
    "DReG",
    "Dataset",
    "ExecutionOptions",
    "FitResult",
    "GapSettings",
    "ImportanceSettings",
    "InferenceGaps",
    "InputError",
    "LatentFamily",
    "LocalOptimizationWarning",
    "Likelihood",
    "LogLikelihoodEstimate",
    "LowPrecisionWarning",
    "PairedDifference",
    "RandomDensityWarning",
    "RenyiVR",
    "TF32Warning",
    "TrainSettings",
    "TrainingError",
    "UnobservedPointsWarning",
    "active_units",
    "annealed_importance_sampling",
    "auto_annealed_importance_sampling",
    "bdmc",
    "bounds",
    "fit",
    "get_family",
    "get_likelihood",
    "gradient_snr",
    "importance_sampling",
    "inference_gaps",
    "load_dataset",
    "log_marginal_likelihood",
    "parse_estimator",
    "parse_flow",
    "parse_latent_dims",
    "parse_prior",
    "register_family",
    "seed_everything",
    "snr_noise_floor",
    "to_inference_data",
]
