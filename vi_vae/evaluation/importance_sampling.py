r"""log p(x) by importance sampling from the guide, and bound tables, for any model/guide pair.

For a data point x and K draws z_k ~ q(z|x), with log weights
log w_k = log p(x, z_k) − log q(z_k|x),

.. math::
    \log \hat p(x) = \log \frac{1}{K} \sum_{k=1}^K w_k

is the IWAE-K bound, which tends to log p(x) as K grows (Burda et al. 2016).
Every estimate here is per data point, with its Monte Carlo standard error and
its reliability diagnostics (:mod:`vi_vae.evaluation.estimates`). When many
points have Pareto k̂ > 0.7 the guide is too poor a proposal, and the estimate is
a loose lower bound: :func:`vi_vae.annealed_importance_sampling` is the reference.

Memory: particles and data points are processed in passes of at most
``chunk_size`` (particle, point) pairs. For the 784-400-20 MLP VAE on CPU the peak
above baseline measured about 9 KB per pair eager and 4.6 KB compiled: 73 MB at
8,192 pairs (the CPU default of ``chunk_size="auto"``) and 290 MB at 32,768
(``docs/evaluation_memory.md``). Kept between passes: a few numbers per point and,
for Pareto k̂, each point's ⌈min(K/5, 3√K)⌉ + 1 largest log weights in float64.

Seeds and ranks: with ``seed`` the draws of each point are keyed by (seed, its
index in ``x``) (:mod:`vi_vae.keys`), so its numbers do not depend on
``chunk_size``; under ``torchrun`` (an initialized ``torch.distributed`` process
group) every rank passes the same ``x``, evaluates a contiguous shard of it and
returns all the points' results, the same numbers as one process
(:mod:`vi_vae.distributed`).

References:
    [1] Importance Weighted Autoencoders, Burda, Grosse & Salakhutdinov, ICLR 2016.
    [2] Pareto Smoothed Importance Sampling, Vehtari, Simpson, Gelman, Yao & Gabry, 2015.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from vi_vae.bounds import iwae_groups
from vi_vae.contract import rows_of
from vi_vae.distributed import data_fingerprint, is_distributed, map_shards
from vi_vae.errors import ConvergenceWarning, GuideSupportWarning, InputError
from vi_vae.evaluation.convergence import warn_unless_converged
from vi_vae.evaluation.estimates import (
    NARROWER_GUIDE_SUPPORT,
    Bound,
    LogLikelihoodEstimate,
    LogWeightSummary,
    concatenate_bounds,
    concatenate_estimates,
)
from vi_vae.evaluation.importance_settings import (
    DEFAULT_BOUND_PARTICLES,
    DEFAULT_NUM_PARTICLES,
    ImportanceSettings,
)
from vi_vae.evaluation.latent_sites import narrower_guide_sites
from vi_vae.evaluation.passes import (
    DEFAULT_CHUNK_SIZE,
    auto_chunk_size,
    log_weight_chunks,
)
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import key_block_size
from vi_vae.settings import passed
from vi_vae.support import check_points

__all__ = [
    "DEFAULT_BOUND_PARTICLES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_NUM_PARTICLES",
    "ImportanceSettings",
    "auto_chunk_size",
    "bounds",
    "importance_sampling",
    "log_marginal_likelihood",
    "log_weight_chunks",
]


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    x: Tensor,
    num_particles: int | None = None,
    *,
    settings: ImportanceSettings | None = None,
    data_plate: str = "data",
    compute_pareto_k: bool = True,
    seed: int | None = None,
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> LogLikelihoodEstimate:
    r"""Estimate log p(x_n) for every data point by importance sampling from the guide.

    .. math::
        \log \hat p(x_n) = \operatorname{logsumexp}_k \log w_{k,n} - \log K

    Works for any model/guide whose sample sites lie in ``pyro.plate(data_plate)``
    and that take the data as first argument. Site scales (e.g. a KL weight) are
    ignored: the estimate is of the unscaled model.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature.
        x: data, ``[N, ...]``, in the support of the model's observed sites.
        num_particles: shortcut for ``settings.num_particles``, K, importance samples per
            point (default 5000, as Burda et al.).
        settings: the :class:`ImportanceSettings` (default: the defaults); of them only K
            counts here, as no bound table is made.
        data_plate: name of the data plate.
        compute_pareto_k: fit the Pareto k̂ of each point's weights (ArviZ PSIS);
            k̂ needs K ≥ 21 and is NaN, with a reason, below.
        seed: seed of the draws, keyed by point (the global RNG is left untouched);
            ``None`` draws from the global stream.
        execution: device, compiled passes and pass size
            (:class:`~vi_vae.execution.ExecutionOptions`); they do not change the numbers.
            ``chunk_size="auto"`` is the CPU default, or what half a GPU's free memory
            holds (:func:`auto_chunk_size`).
        chunk_size: shortcut for ``execution.chunk_size``.
        compile: shortcut for ``execution.compile``.
        **kwargs: passed to model and guide; a tensor whose first dimension is
            ``x.shape[0]`` is per point and split by rows with ``x`` (e.g. the labels
            ``ys=`` of a semi-supervised model; ``docs/howto/custom-model.md``).

    Returns:
        :class:`LogLikelihoodEstimate` with per-point estimates, Monte Carlo
        standard errors, effective sample sizes and k̂.

    Example:
        >>> import torch
        >>> from vi_vae import VAE
        >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,))
        >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
        >>> estimate = log_marginal_likelihood(vae.model, vae.guide, x, 100, seed=0)
        >>> estimate.num_particles, estimate.log_likelihood.shape
        (100, torch.Size([1]))
    """
    settings = ImportanceSettings.build(
        settings, passed({"num_particles": num_particles}), owner="log_marginal_likelihood"
    )
    estimate, _ = importance_sampling(
        model,
        guide,
        x,
        settings=settings,
        bound_particles=(),
        data_plate=data_plate,
        compute_pareto_k=compute_pareto_k,
        seed=seed,
        execution=execution,
        chunk_size=chunk_size,
        compile=compile,
        **kwargs,
    )
    return estimate


def bounds(
    model: Callable,
    guide: Callable,
    x: Tensor,
    bound_particles: Sequence[int] | None = None,
    num_particles: int | None = None,
    *,
    settings: ImportanceSettings | None = None,
    data_plate: str = "data",
    seed: int | None = None,
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> list[Bound]:
    """The ELBO and IWAE-k bounds of every data point, for each k in ``bound_particles``.

    ``num_particles`` draws per point are split into ⌊num_particles / k⌋ independent
    groups of k; the IWAE-k value of a point is the mean over groups of
    log (1/k) Σ_{j in group} w_j, an unbiased estimate of its IWAE-k bound
    E[log (1/k) Σ w_j], which increases with k towards log p(x) (Burda et al. 2016,
    Theorem 1). The same draws serve every k.

    ``bound_particles`` and ``num_particles`` are shortcuts for the fields of ``settings``
    (an :class:`ImportanceSettings`, default: the defaults); the other arguments are as in
    :func:`log_marginal_likelihood`.

    Returns:
        One :class:`Bound` per k, in the order given.
    """
    execution = ExecutionOptions.build(execution, {"chunk_size": chunk_size, "compile": compile})
    settings = ImportanceSettings.build(
        settings,
        passed({"bound_particles": bound_particles, "num_particles": num_particles}),
        owner="bounds",
    )
    if not settings.bound_particles:
        raise InputError("bound_particles must list at least one k, e.g. [1, 5, 50]")
    # a bound is a lower bound whatever the guide's support or K: no verdict on the log
    # p(x) estimate of the same draws, which is not returned
    _, table = _sampled(
        model,
        guide,
        x,
        settings,
        data_plate,
        compute_pareto_k=False,
        seed=seed,
        on_points=None,
        execution=execution,
        kwargs=kwargs,
    )
    return table


def importance_sampling(
    model: Callable,
    guide: Callable,
    x: Tensor,
    *,
    settings: ImportanceSettings | None = None,
    num_particles: int | None = None,
    bound_particles: Sequence[int] | None = None,
    data_plate: str = "data",
    compute_pareto_k: bool = True,
    seed: int | None = None,
    on_points: Callable[[int, int], None] | None = None,
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> tuple[LogLikelihoodEstimate, list[Bound]]:
    """:func:`log_marginal_likelihood` and :func:`bounds` from one set of ``num_particles`` draws.

    Half the cost of calling both; the two results share their draws (and so
    are correlated, which matters only when comparing them with each other).
    ``on_points(done, total)`` from ``done = 0``, after each pass (in a sharded run, of
    this rank's points). ``num_particles``, ``bound_particles``: shortcuts for the fields
    of ``settings`` (an :class:`ImportanceSettings`, default: the defaults; ``()``: no
    table); ``execution``, ``chunk_size``, ``compile`` as in :func:`log_marginal_likelihood`.
    """
    execution = ExecutionOptions.build(execution, {"chunk_size": chunk_size, "compile": compile})
    settings = ImportanceSettings.build(
        settings,
        passed({"num_particles": num_particles, "bound_particles": bound_particles}),
        owner="importance_sampling",
    )
    estimate, table = _sampled(
        model,
        guide,
        x,
        settings,
        data_plate,
        compute_pareto_k=compute_pareto_k,
        seed=seed,
        on_points=on_points,
        execution=execution,
        kwargs=kwargs,
    )
    return _judged(estimate, model, guide, x, kwargs), table


def _sampled(
    model: Callable,
    guide: Callable,
    x: Tensor,
    settings: ImportanceSettings,
    data_plate: str,
    *,
    compute_pareto_k: bool,
    seed: int | None,
    on_points: Callable[[int, int], None] | None,
    execution: ExecutionOptions,
    kwargs: dict[str, Any],
) -> tuple[LogLikelihoodEstimate, list[Bound]]:
    """:func:`importance_sampling`'s estimate (not yet judged) and bound table."""
    num_particles, ks = settings.num_particles, settings.table_particles()
    x, kwargs = execution.place(check_points(x), kwargs)

    def evaluate(rows: slice) -> tuple[LogLikelihoodEstimate, list[Bound]]:
        # One shard; its results stay on the data's device until every pass is done, and
        # k̂ is fitted once, on the host, from each point's largest weights.
        rows_x, rows_kwargs = rows_of(x, kwargs, rows)
        summary = LogWeightSummary(num_particles, compute_pareto_k=compute_pareto_k)
        per_point: dict[int, list[Tensor]] = {k: [] for k in ks}
        per_point_errors: dict[int, list[Tensor]] = {k: [] for k in ks}
        if on_points is not None:
            on_points(0, rows_x.shape[0])
        for done, log_weights in log_weight_chunks(
            model,
            guide,
            rows_x,
            num_particles,
            data_plate=data_plate,
            chunk_size=execution.chunk_size,
            seed=seed,
            first_index=rows.start,
            compile=execution.compile,
            vectorize_particles=execution.vectorize_particles,
            **rows_kwargs,
        ):
            computed_in, log_weights = log_weights.dtype, log_weights.double()
            summary.add(log_weights, computed_in)  # k̂ tells the pair's rounding from a spread
            if on_points is not None:
                on_points(done.stop, rows_x.shape[0])
            for k in ks:
                values, errors = _grouped_bound(log_weights, k)
                per_point[k].append(values)
                per_point_errors[k].append(errors)
        table = [
            Bound(k, torch.cat(per_point[k]).cpu(), torch.cat(per_point_errors[k]).cpu())
            for k in ks
        ]
        return summary.estimate(), table

    # Under torch.distributed each rank evaluates a contiguous shard; with a seed the
    # shards start at key blocks, so every per-point number is that of one process.
    estimate, table = map_shards(
        evaluate,
        x.shape[0],
        combine=_combine,
        block=key_block_size(num_particles) if seed is not None else 1,
        fingerprint=data_fingerprint(x) if is_distributed() else None,
    )
    return estimate, table


def _judged(
    estimate: LogLikelihoodEstimate, model: Callable, guide: Callable, x: Tensor, kwargs: dict
) -> LogLikelihoodEstimate:
    """``estimate`` with its verdict and the sites where the guide misses part of the prior.

    Warns when it has not converged, and when there are such sites. Called after the
    passes, whose contract check gives a clearer error for a pair that breaks it.
    """
    estimate = estimate.judged()
    warn_unless_converged(estimate.convergence, "importance sampling", ConvergenceWarning)
    narrower = tuple(narrower_guide_sites(model, guide, x, kwargs))
    if narrower:
        warnings.warn(
            f"the guide's support at latent site(s) {list(narrower)} is narrower than the "
            f"prior's: importance sampling's log p(x) is {NARROWER_GUIDE_SUPPORT}",
            GuideSupportWarning,
            stacklevel=4,
        )
    return dataclasses.replace(estimate, narrower_guide_sites=narrower)


def _combine(
    shards: list[tuple[LogLikelihoodEstimate, list[Bound]]],
) -> tuple[LogLikelihoodEstimate, list[Bound]]:
    """One result from the results of consecutive shards of the points."""
    estimates, tables = zip(*shards, strict=True)
    return concatenate_estimates(estimates), concatenate_bounds(tables)


def _grouped_bound(log_weights: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """IWAE-k per point from ⌊K/k⌋ disjoint groups: the mean and its standard error."""
    values = iwae_groups(log_weights, k)
    groups = values.shape[0]
    error = values.std(0) / math.sqrt(groups) if groups > 1 else values[0] * math.nan
    return values.mean(0), error
