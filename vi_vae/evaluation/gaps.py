r"""Where the bound is lost: log p(x) − ELBO split into an approximation and an amortization gap.

For a data point x and any q(z|x),

.. math::
    \log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x)),

so the ELBO of the amortized guide q_φ falls short of log p(x) by a KL divergence.
Let q* be the member of the guide's family that is best for this one point (its
distribution parameters optimized for x alone, no encoder). Cremer, Li & Duvenaud
(2018) split the shortfall at q*:

.. math::
    \log p(x) - \mathrm{ELBO}(q_φ) =
    \underbrace{\log p(x) - \mathrm{ELBO}(q^*)}_{\text{approximation gap}} +
    \underbrace{\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q_φ)}_{\text{amortization gap}}.

The approximation gap is what the family cannot do; the amortization gap is the
price of one encoder for all points. :func:`inference_gaps` estimates every term per
point: log p(x) by AIS (:func:`~vi_vae.evaluation.ais.annealed_importance_sampling`,
with its convergence verdict), each ELBO as a mean of ``num_particles`` log weights,
q* by a per-point optimization (:mod:`vi_vae.evaluation.local_guide`, which says
what is optimized for flow guides and guides of several latent sites), and
optionally a full-covariance Gaussian q per point, to show how much of the
approximation gap the diagonal family itself accounts for.

Example:
    >>> import torch
    >>> from vi_vae import VAE
    >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    >>> gaps = inference_gaps(
    ...     vae.model, vae.guide, x, local_steps=100, local_learning_rate=0.05,
    ...     num_particles=100, num_steps=20, num_chains=4, leapfrog_steps=2, seed=0,
    ... )
    >>> gaps.approximation_gap.per_point.shape, gaps.local_trajectory.shape
    (torch.Size([1]), torch.Size([100]))
    >>> gaps.local_convergence.converged
    True

References:
    [1] Inference Suboptimality in Variational Autoencoders, Cremer, Li & Duvenaud,
        ICML 2018.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from vi_vae.contract import rows_of
from vi_vae.errors import LocalOptimizationWarning
from vi_vae.evaluated_pair import check_evaluated_pair
from vi_vae.evaluation.ais import annealed_importance_sampling
from vi_vae.evaluation.annealing import AISSettings, Progress, phase_callback
from vi_vae.evaluation.convergence import (
    NUM_STANDARD_ERRORS,
    Convergence,
    ConvergenceCheck,
    warn_unless_converged,
)
from vi_vae.evaluation.gap_settings import GapSettings, GapTerm, InferenceGaps
from vi_vae.evaluation.local_convergence import local_optimization_check, local_points_check
from vi_vae.evaluation.local_guide import (
    LocalGuide,
    full_covariance_guide,
    optimize_locally,
)
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import resolve_seed, seeded
from vi_vae.settings import split_keywords
from vi_vae.support import check_points
from vi_vae.weights import guess_plates, trace_log_weights

__all__ = [
    "GapSettings",
    "GapTerm",
    "InferenceGaps",
    "inference_gaps",
]


def inference_gaps(
    model: Callable,
    guide: Callable,
    x: Tensor,
    settings: GapSettings | None = None,
    *,
    seed: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    data_plate: str = "data",
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> InferenceGaps:
    r"""Split log p(x) − ELBO(q_φ) into the approximation and amortization gaps, per point.

    Any model/guide pair under the data-plate contract (:mod:`vi_vae.contract`) whose
    guide is reparameterized. Site scales (e.g. a KL weight) are ignored.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature.
        x: data, ``[N, ...]``.
        settings: the :class:`GapSettings` (default ``GapSettings()``).
        seed: seed of every draw (the global RNG is untouched); ``None``: from torch's.
        on_progress: ``on_progress(phase, done, total)`` as work is done; the phases are
            ``"local optimization"``, ``"full-covariance optimization"``, ``"ELBO"`` and
            ``"AIS"``.
        data_plate: name of the data plate.
        execution: device, compile and chunk size
            (:class:`~vi_vae.execution.ExecutionOptions`); ``compile`` applies to AIS, the
            local optimization runs eager, ⌊chunk_size / local_particles⌋ points at a time.
        chunk_size: shortcut for ``execution.chunk_size``.
        compile: shortcut for ``execution.compile``.
        **kwargs: shortcuts for the fields of :class:`GapSettings` and of its
            :class:`~vi_vae.evaluation.annealing.AISSettings` (``local_steps=``,
            ``num_steps=``, ...); every other keyword is passed to model and guide.

    Returns:
        :class:`InferenceGaps`; warns (:class:`~vi_vae.errors.LocalOptimizationWarning`)
        when the local optimization has not converged, and
        (:class:`~vi_vae.errors.AISConvergenceWarning`) when AIS has not.

    Raises:
        InputError: a bad argument or setting, or a pair that breaks the contract.
    """
    shortcuts, kwargs = split_keywords(kwargs, [*GapSettings.names(), *AISSettings.names()])
    settings = GapSettings.build(settings, shortcuts)
    execution = ExecutionOptions.build(execution, {"chunk_size": chunk_size, "compile": compile})
    execution.require_vectorized("inference_gaps")
    x, kwargs = execution.place(check_points(x), kwargs)
    pairs = execution.pairs_per_pass()
    check_evaluated_pair(model, guide, x, kwargs, data_plate)
    seed = resolve_seed(seed)
    with seeded(seed, x.device):
        plate_nesting, _ = guess_plates(model, guide, (x,), kwargs, data_plate)
        local = _local_terms(
            model, guide, x, kwargs, settings, plate_nesting, data_plate, pairs, on_progress
        )
    annealed = annealed_importance_sampling(
        model,
        guide,
        x,
        settings.ais,
        seed=seed,
        on_step=phase_callback(on_progress, "AIS"),
        data_plate=data_plate,
        execution=execution,
        **kwargs,
    )
    gaps = InferenceGaps(settings=settings, log_likelihood=annealed, **local)
    gaps = _checked_against_local_elbo(gaps)
    _warn_unless_converged(gaps.local_convergence)
    return gaps


def _checked_against_local_elbo(gaps: InferenceGaps) -> InferenceGaps:
    """AIS not below ELBO(q*) beyond 2 joint SEs: ELBO(q*) is a lower bound on log p(x).

    An AIS estimate below it has not converged and makes the approximation gap negative;
    the check joins AIS's verdict (and warns, :class:`~vi_vae.errors.AISConvergenceWarning`).
    """
    gap = gaps.approximation_gap
    error = gap.monte_carlo_standard_error.double().nan_to_num(0.0)
    error = error.pow(2).sum().sqrt().item() / error.numel()
    passed = gap.mean >= -NUM_STANDARD_ERRORS * error
    message = (
        f"AIS is {gap.mean:+.2f} ± {error:.2f} nats per point from the ELBO of q* on the same "
        "points (not below it beyond 2 SE)"
        if passed
        else f"AIS is {-gap.mean:.2f} ± {error:.2f} nats per point below the ELBO of q* on the "
        "same points, a lower bound on log p(x): AIS has not converged"
    )
    check = ConvergenceCheck("local-elbo", passed, gap.mean, 0.0, message)
    annealed = gaps.log_likelihood
    annealed = dataclasses.replace(annealed, convergence=annealed.convergence.with_check(check))
    if not passed:
        warn_unless_converged(Convergence((check,)))
    return dataclasses.replace(gaps, log_likelihood=annealed)


def _warn_unless_converged(convergence: Convergence) -> None:
    if not convergence.converged:
        warnings.warn(
            f"the per-point optimization of q* has not converged: {convergence.summary}; the "
            "approximation gap is overstated and the amortization gap understated",
            LocalOptimizationWarning,
            stacklevel=3,
        )


def _local_terms(
    model: Callable,
    guide: Callable,
    x: Tensor,
    kwargs: dict[str, Any],
    settings: GapSettings,
    plate_nesting: int,
    data_plate: str,
    chunk_size: int,
    on_progress: Callable | None,
) -> dict[str, Any]:
    """The ELBOs of q_φ, q* (and the full-covariance q) per point, in groups of points."""
    num_points = x.shape[0]
    per_group = max(1, chunk_size // settings.local_particles)
    groups = [slice(i, min(i + per_group, num_points)) for i in range(0, num_points, per_group)]
    options = {"plate_nesting": plate_nesting, "data_plate": data_plate}
    steps = settings.local_steps * len(groups)
    counters = {  # each counts the steps of its phase across the groups of points
        "local": Progress(phase_callback(on_progress, "local optimization"), steps),
        "full": Progress(phase_callback(on_progress, "full-covariance optimization"), steps),
        "elbo": Progress(phase_callback(on_progress, "ELBO"), len(groups)),
    }
    parts: dict[str, list] = {name: [] for name in ("amortized", "local", "full")}
    trajectories: dict[str, list[Tensor]] = {"local": [], "full": [], "points": []}
    substitutes: tuple[str, ...] = ()
    for rows in groups:
        rows_x, rows_kwargs = rows_of(x, kwargs, rows)
        weight = (rows.stop - rows.start) / num_points
        local = LocalGuide.from_guide(guide, rows_x, rows_kwargs)
        substitutes = local.substitutes
        evaluated = {"amortized": guide, "local": local}
        # local first: the full-covariance q starts where the optimized local one ends
        for name in ("local", "full") if settings.full_covariance else ("local",):
            if name == "full":
                evaluated["full"] = full_covariance_guide(local)
            optimization = optimize_locally(
                model,
                evaluated[name],
                rows_x,
                rows_kwargs,
                num_steps=settings.local_steps,
                learning_rate=settings.local_learning_rate,
                num_particles=settings.local_particles,
                on_step=counters[name],
                **options,
            )
            trajectories[name].append(weight * optimization.trajectory)
            if name == "local":
                trajectories["points"].append(optimization.point_trajectory)
        for name, q in evaluated.items():
            parts[name].append(_elbo(model, q, rows_x, rows_kwargs, settings, chunk_size, options))
        counters["elbo"]()
    # q*'s family holds q_φ (it starts there) unless it factorizes several sites
    return _assemble(parts, trajectories, substitutes, settings, len(local.sites) == 1)


def _assemble(
    parts: dict[str, list[GapTerm]],
    trajectories: dict[str, list[Tensor]],
    substitutes: tuple[str, ...],
    settings: GapSettings,
    holds_guide: bool,
) -> dict[str, Any]:
    """The local fields of :class:`InferenceGaps` from the groups' parts.

    ``holds_guide``: q*'s family holds q_φ, so ELBO(q*) below ELBO(q_φ) is a failure.
    """

    def joined(name: str) -> GapTerm | None:
        if not parts[name]:
            return None
        return GapTerm(
            torch.cat([part.per_point for part in parts[name]]),
            torch.cat([part.monte_carlo_standard_error for part in parts[name]]),
        )

    local_trajectory = torch.stack(trajectories["local"]).sum(0)
    checks = [
        local_optimization_check(local_trajectory, settings.local_tolerance),
        local_points_check(torch.cat(trajectories["points"], 1), settings.local_tolerance),
    ]
    if holds_guide:
        tolerance = settings.local_tolerance
        checks.append(_amortized_elbo_check(joined("local"), joined("amortized"), tolerance))
    full_trajectory = None
    if trajectories["full"]:
        full_trajectory = torch.stack(trajectories["full"]).sum(0)
        check = local_optimization_check(full_trajectory, settings.local_tolerance)
        checks.append(dataclasses.replace(check, name="full-covariance-optimization"))
    return {
        "amortized_elbo": joined("amortized"),
        "local_elbo": joined("local"),
        "local_trajectory": local_trajectory,
        "local_convergence": Convergence(tuple(checks)),
        "substitutes": substitutes,
        "full_covariance_elbo": joined("full"),
        "full_covariance_trajectory": full_trajectory,
    }


def _amortized_elbo_check(local: GapTerm, amortized: GapTerm, tolerance: float) -> ConvergenceCheck:
    """ELBO(q*) not below ELBO(q_φ), where its optimization started, beyond tolerance + 2 SEs.

    Below it, the optimization diverged (a rise check alone passes once a diverged
    ELBO stops moving), and the amortization gap would be negative.
    """
    gap = local.minus(amortized)
    error = gap.mean_monte_carlo_standard_error
    passed = gap.mean >= -(tolerance + NUM_STANDARD_ERRORS * error)
    message = (
        f"the ELBO of q* is {gap.mean:+.3f} ± {error:.3f} nats per point from that of the "
        "amortized guide it started at"
    )
    if not passed:
        message += ": the local optimization diverged; lower local_learning_rate"
    return ConvergenceCheck(
        "amortized-elbo", passed, gap.mean, tolerance, message, remedy="local_learning_rate"
    )


def _elbo(
    model: Callable,
    guide: Callable,
    x: Tensor,
    kwargs: dict[str, Any],
    settings: GapSettings,
    chunk_size: int,
    options: dict[str, Any],
) -> GapTerm:
    """ELBO per point: the mean of K log weights, its error their standard deviation / √K."""
    per_pass = max(1, chunk_size // x.shape[0])
    log_weights = []
    remaining = settings.num_particles
    with torch.no_grad():
        while remaining > 0:
            count = min(per_pass, remaining)
            traces = trace_log_weights(
                model, guide, (x,), kwargs, num_particles=count, scaled=False, **options
            )
            log_weights.append(traces.log_weights.double())
            remaining -= count
    weights = torch.cat(log_weights).cpu()
    error = weights.std(0) / math.sqrt(weights.shape[0])
    return GapTerm(weights.mean(0), error)
