"""Honest numbers for a trained model: log p(x) estimates, bound tables and diagnostics.

- :mod:`~vi_vae.evaluation.estimates`: the estimate types and their reductions
  (log-mean-exp, Monte Carlo standard error, ESS, Pareto k̂);
- :mod:`~vi_vae.evaluation.importance_sampling`: log p(x) by importance sampling
  from the guide, and bound tables, with their settings (:class:`ImportanceSettings`);
- :mod:`~vi_vae.evaluation.ais`: log p(x) by annealed importance sampling with HMC,
  the reference number; :mod:`~vi_vae.evaluation.bdmc`: its check on simulated
  data (bidirectional Monte Carlo); beneath them :mod:`~vi_vae.evaluation.annealing`
  (the annealing loop), :mod:`~vi_vae.evaluation.annealed_density` (the annealed
  log density of a model/guide pair on unconstrained coordinates, its latent sites
  in :mod:`~vi_vae.evaluation.latent_sites`) and
  :mod:`~vi_vae.evaluation.hmc` (an HMC kernel for any batched log density), and
  :mod:`~vi_vae.evaluation.convergence` (the verdict AIS and BDMC results carry);
- :mod:`~vi_vae.evaluation.auto_ais`: AIS with T doubled until its verdict holds;
- :mod:`~vi_vae.evaluation.gaps`: where the bound is lost, the approximation and
  amortization gaps, with q* from :mod:`~vi_vae.evaluation.local_guide`;
- :mod:`~vi_vae.evaluation.one_pass`: one pass (vectorized, eager or compiled, or
  one particle after another) and its size (``chunk_size="auto"``), and
  :mod:`~vi_vae.evaluation.passes`: the passes over many points, importance
  sampling's keyed by point;
- :mod:`~vi_vae.evaluation.diagnostics`: gradient signal-to-noise ratio and
  active units;
- :mod:`~vi_vae.evaluation.inference_data`: the guide's draws with their weights
  for ArviZ.
"""

from vi_vae.evaluation.ais import AISEstimate, annealed_importance_sampling
from vi_vae.evaluation.annealed_density import INITIAL_DISTRIBUTIONS
from vi_vae.evaluation.annealing import (
    DEFAULT_LEAPFROG_STEPS,
    DEFAULT_NUM_CHAINS,
    DEFAULT_NUM_STEPS,
    DEFAULT_STEP_SIZE,
    SCHEDULES,
    AISSettings,
    annealing_schedule,
)
from vi_vae.evaluation.auto_ais import auto_annealed_importance_sampling
from vi_vae.evaluation.auto_ais_settings import AISRound, AutoAISResult, AutoAISSettings
from vi_vae.evaluation.bdmc import BDMCResult, bdmc
from vi_vae.evaluation.convergence import Convergence, ConvergenceCheck
from vi_vae.evaluation.diagnostics import (
    ACTIVE_UNIT_THRESHOLD,
    ActiveUnits,
    GradientSNR,
    active_units,
    gradient_snr,
    snr_noise_floor,
)
from vi_vae.evaluation.estimates import (
    ABOVE_PARETO_K_THRESHOLD,
    NARROWER_GUIDE_SUPPORT,
    PARETO_K_THRESHOLD,
    Bound,
    LogLikelihoodEstimate,
    LogWeightSummary,
    pareto_k,
    summarize_log_weights,
)
from vi_vae.evaluation.gap_settings import GapSettings, GapTerm
from vi_vae.evaluation.gaps import InferenceGaps, inference_gaps
from vi_vae.evaluation.hmc import DEFAULT_TARGET_ACCEPTANCE, hmc_transition
from vi_vae.evaluation.importance_sampling import (
    DEFAULT_BOUND_PARTICLES,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_NUM_PARTICLES,
    ImportanceSettings,
    auto_chunk_size,
    bounds,
    importance_sampling,
    log_marginal_likelihood,
    log_weight_chunks,
)
from vi_vae.evaluation.inference_data import to_inference_data
from vi_vae.evaluation.paired import PairedDifference
from vi_vae.evaluation.pareto import MIN_PARTICLES_FOR_PARETO_K

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "DEFAULT_BOUND_PARTICLES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_LEAPFROG_STEPS",
    "DEFAULT_NUM_CHAINS",
    "DEFAULT_NUM_PARTICLES",
    "DEFAULT_NUM_STEPS",
    "DEFAULT_STEP_SIZE",
    "DEFAULT_TARGET_ACCEPTANCE",
    "INITIAL_DISTRIBUTIONS",
    "ABOVE_PARETO_K_THRESHOLD",
    "NARROWER_GUIDE_SUPPORT",
    "MIN_PARTICLES_FOR_PARETO_K",
    "PARETO_K_THRESHOLD",
    "SCHEDULES",
    "AISEstimate",
    "AISRound",
    "AISSettings",
    "ActiveUnits",
    "AutoAISResult",
    "AutoAISSettings",
    "BDMCResult",
    "Bound",
    "Convergence",
    "ConvergenceCheck",
    "GapSettings",
    "GapTerm",
    "GradientSNR",
    "ImportanceSettings",
    "InferenceGaps",
    "LogLikelihoodEstimate",
    "PairedDifference",
    "LogWeightSummary",
    "active_units",
    "annealed_importance_sampling",
    "annealing_schedule",
    "auto_annealed_importance_sampling",
    "bdmc",
    "auto_chunk_size",
    "bounds",
    "gradient_snr",
    "snr_noise_floor",
    "hmc_transition",
    "importance_sampling",
    "inference_gaps",
    "log_marginal_likelihood",
    "log_weight_chunks",
    "pareto_k",
    "summarize_log_weights",
    "to_inference_data",
]
