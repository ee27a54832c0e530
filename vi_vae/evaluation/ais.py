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

References:
    [1] Annealed Importance Sampling, R. M. Neal, Statistics and Computing, 2001.
    [2] On the Quantitative Analysis of Decoder-Based Generative Models, Wu, Burda,
        Salakhutdinov & Grosse, ICLR 2017.
    [3] Sandwiching the marginal likelihood using bidirectional Monte Carlo, Grosse,
        Ghahramani & Adams, 2015.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vi_vae._random import seeded
from vi_vae._validation import check_bool, check_positive_int
from vi_vae.distributed import data_fingerprint, is_distributed, map_shards
from vi_vae.errors import InputError
from vi_vae.evaluation.annealing import (
    AISSettings,
    Annealing,
    Progress,
    forward_annealing,
    resolve_seed,
)
from vi_vae.evaluation.estimates import LogLikelihoodEstimate, summarize_log_weights
from vi_vae.evaluation.importance_sampling import DEFAULT_CHUNK_SIZE
from vi_vae.support import check_data_support, check_points
from vi_vae.weights import guess_plates

__all__ = [
    "AISEstimate",
    "annealed_importance_sampling",
    "check_execution",
    "split_settings",
    "summarize_annealing",
]


@dataclass(kw_only=True)
class AISEstimate(LogLikelihoodEstimate):
    """log p(x) per data point by AIS, with the settings it ran with and its HMC diagnostics.

    ``num_particles`` is the number of chains, whose weights the estimate averages.

    Attributes:
        log_weights: log w per chain and point, ``[num_chains, N]`` (float64).
        acceptance_rate: HMC acceptance probability per point, averaged over chains
            and transitions, ``[N]`` (NaN when ``num_steps`` is 1: no transitions).
        step_size: the final (adapted) HMC step size per point, ``[N]``.
        settings: the :class:`AISSettings` of the run.
    """

    log_weights: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    settings: AISSettings

    @property
    def num_chains(self) -> int:
        """C, chains per point (the weights per point)."""
        return self.num_particles

    @property
    def mean_acceptance_rate(self) -> float:
        """Acceptance rate averaged over points."""
        return self.acceptance_rate.mean().item()


def annealed_importance_sampling(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings | None = None,
    *,
    seed: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
    data_plate: str = "data",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    compile: bool = False,
    **kwargs: Any,
) -> AISEstimate:
    r"""Estimate log p(x_n) for every data point by AIS with HMC transitions.

    Works for any model/guide whose latent sites are continuous and lie in
    ``pyro.plate(data_plate)`` (several sites, e.g. z1 → z2, and sites with
    positive, bounded, simplex or correlated supports included), called as
    ``model(x[rows], **kwargs)``. Site scales (e.g. a KL weight) are ignored.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature; unused (may be ``None``) when
            ``initial="prior"``.
        x: data, ``[N, ...]``, in the support of the model's observed sites.
        settings: the :class:`AISSettings` (T, C, schedule, integrator, start);
            default ``AISSettings()``.
        seed: seed of every draw (the global RNG is left untouched); ``None``
            takes one from torch's global stream.
        on_step: called as ``on_step(done, total)`` after every annealing step of
            every chunk, ``total = num_steps × number of chunks`` (for a progress bar).
        data_plate: name of the data plate.
        chunk_size: (chain, point) pairs per vectorized pass; ⌊chunk_size / C⌋
            points are annealed together. Bounds memory; does not change the numbers.
        compile: evaluate log p(x, z), log f_0 and their gradients compiled by
            ``torch.compile``, traced once per chunk shape (the full chunks and a
            last, shorter one); the same numbers as eager to floating-point rounding.
            A pair that cannot be traced runs eagerly after one warning.
        **kwargs: keyword shortcuts for the settings (``num_steps=``, ``num_chains=``,
            ``schedule=``, ``leapfrog_steps=``, ``step_size=``, ``target_acceptance=``,
            ``initial=``; they replace those of ``settings``); every other keyword is
            passed to model and guide.

    Returns:
        :class:`AISEstimate` (``method="ais"``), carrying ``settings``.

    Raises:
        InputError: a bad argument, NaN data, or a discrete latent site.

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
    """
    settings, kwargs = split_settings(settings, kwargs)
    check_execution(chunk_size, compile)
    if settings.initial == "guide" and guide is None:
        raise InputError("guide is None; initial='guide' needs a guide (or use initial='prior')")
    x = check_points(x)
    check_data_support(model, guide or _no_guide, (x,), kwargs)
    seed = resolve_seed(seed)
    with seeded(seed, x.device):
        plate_nesting, _ = guess_plates(model, guide or _no_guide, (x,), kwargs, data_plate)

    def anneal_shard(shard: slice) -> list[Annealing]:
        # randomness is keyed by the point's index in x, so a shard's numbers are the
        # ones it would get in one process
        chunks = settings.chunks(shard.stop - shard.start, chunk_size, shard.start)
        progress = Progress(on_step, settings.num_steps * len(chunks))
        return [
            _on_host(
                forward_annealing(
                    model,
                    guide,
                    x,
                    rows,
                    settings,
                    seed=seed,
                    plate_nesting=plate_nesting,
                    data_plate=data_plate,
                    on_step=progress,
                    kwargs=kwargs,
                    compile=compile,
                )
            )
            for rows in chunks
        ]

    parts = map_shards(
        anneal_shard,
        x.shape[0],
        combine=lambda shards: [part for shard in shards for part in shard],
        fingerprint=data_fingerprint(x) if is_distributed() else None,
    )
    return summarize_annealing(parts, settings)


def split_settings(
    settings: AISSettings | None, kwargs: dict[str, Any]
) -> tuple[AISSettings, dict[str, Any]]:
    """``(settings with the shortcuts in kwargs applied, the other kwargs)``."""
    names = AISSettings.names()
    shortcuts = {name: value for name, value in kwargs.items() if name in names}
    rest = {name: value for name, value in kwargs.items() if name not in names}
    return AISSettings.build(settings, shortcuts), rest


def check_execution(chunk_size: int, compile: bool) -> None:
    """Check the execution options of an AIS or BDMC run."""
    check_positive_int("chunk_size", chunk_size)
    check_bool("compile", compile)


def _on_host(part: Annealing) -> Annealing:
    """The per-point results of a chunk, on the host (gathered across ranks as they are)."""
    return Annealing(
        log_weights=part.log_weights.cpu(),
        acceptance_rate=part.acceptance_rate.cpu(),
        step_size=part.step_size.cpu(),
        step_sizes=part.step_sizes.cpu(),
        position=part.position.cpu(),
    )


def summarize_annealing(
    parts: list[Annealing], settings: AISSettings, *, reverse: bool = False
) -> AISEstimate:
    """One :class:`AISEstimate` from the annealing runs of consecutive chunks of points.

    With ``reverse``, the runs went from β = 1 to 0: their weights estimate
    1/p(x), and the estimate is −log mean w (``method="ais-reverse"``).
    """
    log_weights = torch.cat([part.log_weights for part in parts], dim=1).cpu()
    estimate = summarize_log_weights(log_weights, method="ais-reverse" if reverse else "ais")
    if reverse:
        estimate.log_likelihood = -estimate.log_likelihood
    return AISEstimate(
        log_likelihood=estimate.log_likelihood,
        monte_carlo_standard_error=estimate.monte_carlo_standard_error,
        effective_sample_size=estimate.effective_sample_size,
        pareto_k=estimate.pareto_k,
        num_particles=estimate.num_particles,
        method=estimate.method,
        pareto_k_reason=estimate.pareto_k_reason,
        log_weights=log_weights,
        acceptance_rate=torch.cat([part.acceptance_rate.mean(0) for part in parts]).cpu(),
        step_size=torch.cat([part.step_size for part in parts]).cpu(),
        settings=settings,
    )


def _no_guide(*args: Any, **kwargs: Any) -> None:
    """The guide of ``initial="prior"``: no sample sites."""
