r"""log p(x) by annealed importance sampling (AIS) with HMC transitions, for any model/guide pair.

For each data point, C independent chains start from f_0 (the guide q(z|x), or
the prior p(z)) and move through the distributions π_{β_t} ∝ f_0^{1−β_t} p(x, z)^{β_t},
0 = β_0 < … < β_T = 1, by one HMC transition per intermediate β, accumulating

.. math::
    \log w = \sum_{t=1}^{T} (β_t - β_{t-1}) \left[\log p(x, z_{t-1}) - \log f_0(z_{t-1})\right],

z_{t−1} being the state after the transition at β_{t−1}. Each w is an unbiased
estimate of p(x) (Neal 2001), so

.. math::
    \log \hat p(x) = \log \frac{1}{C} \sum_{c=1}^{C} w_c

is a stochastic lower bound whose gap shrinks as T grows; with T = 1 it is
importance sampling with C draws from f_0. As the estimate type of
:mod:`vi_vae.evaluation.estimates` it carries a Monte Carlo standard error and
an ESS over chains; it is the reference number to quote for a trained model
(Wu et al. 2017), checked on simulated data by :func:`vi_vae.bdmc`.

The annealing itself (HMC transitions, step-size adaptation, keyed random
numbers) is :mod:`vi_vae.evaluation.annealing`.

Example:
    >>> import torch
    >>> from vi_vae import VAE
    >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    >>> estimate = annealed_importance_sampling(
    ...     vae.model, vae.guide, x, num_steps=20, num_chains=4, seed=0
    ... )
    >>> estimate.method, estimate.log_likelihood.shape, estimate.log_weights.shape
    ('ais', torch.Size([1]), torch.Size([4, 1]))

References:
    [1] Annealed Importance Sampling, R. M. Neal, Statistics and Computing, 2001.
    [2] On the Quantitative Analysis of Decoder-Based Generative Models, Wu, Burda,
        Salakhutdinov & Grosse, ICLR 2017.
    [3] Sandwiching the marginal likelihood using bidirectional Monte Carlo, Grosse,
        Ghahramani & Adams, 2015.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vi_vae.bounds import log_mean_exp
from vi_vae.contract import rows_of
from vi_vae.distributed import data_fingerprint, is_distributed, map_shards
from vi_vae.errors import AISConvergenceWarning, InputError
from vi_vae.evaluated_pair import check_evaluated_pair
from vi_vae.evaluation.annealed_density import no_guide
from vi_vae.evaluation.annealing import (
    AISSettings,
    Annealing,
    Progress,
    annealed_density,
    forward_annealing,
)
from vi_vae.evaluation.convergence import (
    Convergence,
    acceptance_check,
    equal_weights_check,
    finite_points_check,
    half_schedule_check,
    importance_sampling_check,
    unchecked,
    warn_unless_converged,
)
from vi_vae.evaluation.estimates import LogLikelihoodEstimate, summarize_log_weights
from vi_vae.evaluation.latent_sites import narrower_guide_sites
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import resolve_seed, seeded
from vi_vae.support import check_points
from vi_vae.weights import guess_plates

__all__ = [
    "AISEstimate",
    "annealed_importance_sampling",
    "annealed_standard_error",
    "checked_start",
    "reachable_start",
    "run_options",
    "summarize_annealing",
]


@dataclass(kw_only=True)
class AISEstimate(LogLikelihoodEstimate):
    """log p(x) per data point by AIS, with the settings it ran with, its diagnostics and verdict.

    ``num_particles`` is the number of chains, whose weights the estimate averages.
    ``monte_carlo_standard_error`` is :func:`annealed_standard_error` (it matches
    the scatter of repeated runs, where the delta method alone fell short).

    Attributes:
        log_weights: log w per chain and point, ``[num_chains, N]`` (float64).
        acceptance_rate: HMC acceptance probability per point, averaged over chains
            and transitions, ``[N]`` (NaN when ``num_steps`` is 1: no transitions).
        step_size: the final (adapted) HMC step size per point, ``[N]``.
        settings: the :class:`AISSettings` of the run.
        half_schedule_log_likelihood: the same chains' estimate along every other β,
            AIS with T/2 steps, ``[N]`` (:mod:`vi_vae.evaluation.convergence`).
        convergence: the :class:`~vi_vae.evaluation.convergence.Convergence` verdict.
    """

    log_weights: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    settings: AISSettings
    half_schedule_log_likelihood: Tensor
    convergence: Convergence

    @property
    def num_chains(self) -> int:
        """C, chains per point (the weights per point)."""
        return self.num_particles

    @property
    def mean_acceptance_rate(self) -> float:
        """Acceptance rate averaged over points."""
        return self.acceptance_rate.mean().item()

    def checked_against(self, importance: LogLikelihoodEstimate) -> AISEstimate:
        """This estimate with the importance-sampling check added to its verdict.

        ``importance`` estimates the same points (e.g. by
        :func:`~vi_vae.evaluation.importance_sampling.importance_sampling`); AIS
        below it by more than 2 joint standard errors has not converged (warns).
        """
        if importance.num_points != self.num_points:
            raise InputError(
                f"importance must estimate the same {self.num_points} points; "
                f"got {importance.num_points}"
            )
        check = importance_sampling_check(
            self.log_likelihood,
            self.monte_carlo_standard_error,
            importance.log_likelihood,
            importance.monte_carlo_standard_error,
        )
        checked = dataclasses.replace(self, convergence=self.convergence.with_check(check))
        if not check.passed:
            warn_unless_converged(Convergence((check,)))
        return checked


def annealed_standard_error(log_weights: Tensor) -> Tensor:
    r"""Monte Carlo standard error of log mean w per point, ``[C, N]`` -> ``[N]``.

    The larger of two estimates from the C chains' log weights:

    .. math::
        \mathrm{se}_\delta = \sqrt{\frac{s^2(w / \bar w)}{C}}, \qquad
        \mathrm{se}_{LN} = \sqrt{\log\left(1 + \frac{e^{v} - 1}{C}\right)},

    s² a sample variance (divisor C − 1). The first is the delta method for the log
    of a mean; with a few chains and skewed weights the sample variance of w misses
    the large weights it has not drawn, and it falls short (repeated runs of
    ``tests/evaluation/test_ais_standard_error.py``'s model scatter 1.5× beyond it:
    ``python benchmarks/ais_standard_error.py``). The
    second treats log w as normal (a sum of T small increments) with variance v and
    gives the log of a mean of C log-normal weights the variance of the log-normal
    matched to its first two moments (Fenton–Wilkinson); v is read from the spread
    of log w, which the few chains do measure. v is the smaller of s²(log w) and
    twice its upper semi-variance about the median (2 Σ_c max(log w_c − m, 0)² /
    (C − 1)); both estimate the variance of normal log w, and the second ignores a
    long left tail (chains stuck at tiny weights, which do not move the mean, e.g.
    prior draws far in a heavy tail). The repeated runs scatter 1.1× this standard
    error (the same script; the test requires 0.7–1.4×). The step sizes, adapted
    by pilot chains and shared by a point's chains, vary between runs too; with a
    fixed step size the scatter relative to the chains' spread was the same, so
    they add nothing measurable. NaN for one chain.
    """
    log_weights = log_weights.double()
    num_chains = log_weights.shape[0]
    if num_chains < 2:
        return torch.full(log_weights.shape[1:], math.nan, dtype=torch.float64)
    normalized = (log_weights - log_weights.logsumexp(0) + math.log(num_chains)).exp()
    delta = (normalized.var(0) / num_chains).sqrt()
    ordered = log_weights.sort(0).values
    median = (ordered[(num_chains - 1) // 2] + ordered[num_chains // 2]) / 2
    above = (log_weights - median).clamp(min=0)
    spread = torch.minimum(log_weights.var(0), 2 * above.pow(2).sum(0) / (num_chains - 1))
    log_normal = (
        torch.logaddexp(spread, torch.tensor(math.log(num_chains - 1), dtype=torch.float64))
        - math.log(num_chains)
    ).sqrt()
    return torch.maximum(delta, log_normal)


def annealed_importance_sampling(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings | None = None,
    *,
    seed: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
    data_plate: str = "data",
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> AISEstimate:
    r"""Estimate log p(x_n) for every data point by AIS with HMC transitions.

    Any model/guide whose latent sites are continuous and lie in ``pyro.plate(data_plate)``
    (several sites, any supports), called as ``model(x[rows], **kwargs)``; site scales
    (e.g. a KL weight) are ignored.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature; unused (may be ``None``) when
            ``initial="prior"``.
        x: data, ``[N, ...]``, in the support of the model's observed sites.
        settings: the :class:`AISSettings` (default ``AISSettings()``).
        seed: seed of every draw (the global RNG is untouched); ``None``: from torch's.
        on_step: ``on_step(done, total)`` from ``done = 0``, after each step of each chunk.
        data_plate: name of the data plate.
        execution: device, compiled passes and pass size
            (:class:`~vi_vae.execution.ExecutionOptions`). ``chunk_size`` counts (chain,
            point) pairs: ⌊chunk_size / C⌋ points are annealed together (``"auto"``:
            :data:`~vi_vae.weights.DEFAULT_CHUNK_SIZE`). ``compile`` evaluates log p(x, z),
            log f_0 and their gradients compiled, once per chunk shape (a pair that
            cannot be traced runs eagerly after one warning).
        chunk_size: shortcut for ``execution.chunk_size``.
        compile: shortcut for ``execution.compile``.
        **kwargs: shortcuts for the fields of :class:`AISSettings` (``num_steps=``,
            ``num_chains=``, ...: they replace those of ``settings``); every other
            keyword is passed to model and guide.

    Returns:
        :class:`AISEstimate` (``method="ais"``), carrying ``settings`` and a verdict;
        warns (:class:`~vi_vae.errors.AISConvergenceWarning`) when a check failed.

    Raises:
        InputError: a bad argument, NaN data, or a discrete latent site.
    """
    settings, execution, kwargs = run_options(
        guide, settings, execution, {"chunk_size": chunk_size, "compile": compile}, kwargs
    )
    x, kwargs = execution.place(check_points(x), kwargs)
    settings = checked_start(model, guide, x, settings, kwargs, data_plate)
    seed = resolve_seed(seed)
    with seeded(seed, x.device):
        plate_nesting, _ = guess_plates(model, guide or no_guide, (x,), kwargs, data_plate)
    options = dict(plate_nesting=plate_nesting, data_plate=data_plate, compile=execution.compile)

    def anneal_rows(rows: slice, progress: Progress) -> Annealing:
        rows_x, rows_kwargs = rows_of(x, kwargs, rows)  # per-point kwargs travel with x
        density = annealed_density(model, guide, rows_x, settings, kwargs=rows_kwargs, **options)
        return _on_host(forward_annealing(density, rows, settings, seed=seed, on_step=progress))

    def anneal_shard(shard: slice) -> list[Annealing]:
        # randomness is keyed by the point's index in x, so a shard's numbers are the
        # ones it would get in one process
        chunks = settings.chunks(shard.stop - shard.start, execution.pairs_per_pass(), shard.start)
        progress = Progress(on_step, settings.num_steps * len(chunks)).start()
        return [anneal_rows(rows, progress) for rows in chunks]

    parts = map_shards(
        anneal_shard,
        x.shape[0],
        combine=lambda shards: [part for shard in shards for part in shard],
        fingerprint=data_fingerprint(x) if is_distributed() else None,
    )
    estimate = summarize_annealing(parts, settings)
    warn_unless_converged(estimate.convergence)
    return estimate


def run_options(
    guide: Callable | None,
    settings: AISSettings | None,
    execution: ExecutionOptions | None,
    execution_shortcuts: dict[str, Any],
    kwargs: dict[str, Any],
) -> tuple[AISSettings, ExecutionOptions, dict[str, Any]]:
    """``(settings, execution, model keywords)`` of an AIS run, the shortcuts applied and checked.

    The settings' shortcuts are taken from ``kwargs`` (:meth:`AISSettings.split
    <vi_vae.settings.Settings.split>`); a run from the guide needs one.
    """
    settings, kwargs = AISSettings.split(settings, kwargs)
    execution = ExecutionOptions.build(execution, execution_shortcuts)
    execution.require_vectorized("AIS")
    if settings.initial == "guide" and guide is None:
        raise InputError("guide is None; initial='guide' needs a guide (or use initial='prior')")
    return settings, execution, kwargs


def checked_start(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings,
    kwargs: dict,
    data_plate: str,
) -> AISSettings:
    """The pair checked for AIS (the contract, clause 8), and :func:`reachable_start`'s settings.

    Started from the guide, its log density is part of the annealed target, so it must
    be a fixed function of (x, z) too.
    """
    from_guide = guide is not None and settings.initial == "guide"
    check_evaluated_pair(
        model, guide or no_guide, x, kwargs, data_plate, guide is not None, from_guide
    )
    return reachable_start(model, guide, x, settings, kwargs)


def reachable_start(
    model: Callable, guide: Callable | None, x: Tensor, settings: AISSettings, kwargs: dict
) -> AISSettings:
    """``settings``, or the same from the prior where the guide's support is narrower.

    From a guide whose support is narrower than the prior's at some latent site
    (:func:`~vi_vae.evaluation.latent_sites.narrower_guide_sites`: pareto,
    reciprocal, uniform, triangular), the path never reaches the rest of the
    prior's support and AIS lands too low; from the prior it is exact to its
    Monte Carlo error. So the run starts from the prior, says so in a warning, and
    its result carries ``initial="prior"``.
    """
    if settings.initial != "guide" or guide is None:
        return settings
    narrower = narrower_guide_sites(model, guide, x, kwargs)
    if not narrower:
        return settings
    warnings.warn(
        f"the guide's support at latent site(s) {narrower} is narrower than the prior's: AIS "
        "from the guide would estimate only the part of p(x) on it (a lower bound, nats "
        "low), so it starts from the prior (initial='prior')",
        AISConvergenceWarning,
        stacklevel=3,
    )
    return dataclasses.replace(settings, initial="prior")


def _on_host(part: Annealing) -> Annealing:
    """The per-point results of a chunk, on the host (gathered across ranks as they are)."""
    return Annealing(*(value.cpu() for value in dataclasses.astuple(part)))


def summarize_annealing(
    parts: list[Annealing], settings: AISSettings, *, reverse: bool = False
) -> AISEstimate:
    """One :class:`AISEstimate` from the annealing runs of consecutive chunks of points.

    With ``reverse``, the runs went from β = 1 to 0: their weights estimate
    1/p(x), and the estimate is −log mean w (``method="ais-reverse"``).
    """
    log_weights = torch.cat([part.log_weights for part in parts], dim=1).cpu()
    half_log_weights = torch.cat([part.half_log_weights for part in parts], dim=1).cpu()
    estimate = summarize_log_weights(
        log_weights,
        method="ais-reverse" if reverse else "ais",
        computed_in=parts[0].position.dtype,  # the density's: its increments' rounding
    )
    sign = -1.0 if reverse else 1.0
    log_likelihood = sign * estimate.log_likelihood
    half = sign * log_mean_exp(half_log_weights, 0)
    error = annealed_standard_error(log_weights)
    acceptance = torch.cat([part.acceptance_rate.mean(0) for part in parts]).cpu()
    exact = equal_weights_check(log_weights, torch.finfo(parts[0].position.dtype).eps)
    settled = half_schedule_check(log_weights, half_log_weights)
    convergence = (
        Convergence()
        .with_check(exact or acceptance_check(acceptance, settings.target_acceptance))
        .with_check(settled)
        .with_check(finite_points_check(log_likelihood, "num_chains"))
    )
    if settled is None and exact is None:  # nothing says whether T steps were enough
        convergence = convergence.with_check(unchecked(log_weights.shape[0], settings.num_steps))
    return AISEstimate(
        log_likelihood=log_likelihood,
        monte_carlo_standard_error=error,
        effective_sample_size=estimate.effective_sample_size,
        pareto_k=estimate.pareto_k,
        num_particles=estimate.num_particles,
        method=estimate.method,
        pareto_k_reason=estimate.pareto_k_reason,
        log_weights=log_weights,
        acceptance_rate=acceptance,
        step_size=torch.cat([part.step_size for part in parts]).cpu(),
        settings=settings,
        half_schedule_log_likelihood=half,
        convergence=convergence,
    )
