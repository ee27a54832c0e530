r"""AIS whose number of annealing steps T is chosen by doubling until its verdict holds.

:func:`auto_annealed_importance_sampling` runs AIS
(:func:`~vi_vae.evaluation.ais.annealed_importance_sampling`) with T = T_0, 2 T_0,
4 T_0, … (capped at a maximum) and stops at the first **round** whose verdict
(:mod:`vi_vae.evaluation.convergence`) holds:

- the checks every AIS result carries: the HMC acceptance near its target, and the
  **half schedule**, the same chains' estimate along every other β (T/2) within
  :data:`~vi_vae.evaluation.convergence.HALF_SCHEDULE_TOLERANCE` + 2 standard errors
  of the estimate at T. This is already the "stopped moving" test, and it is free.
  It is lenient, though (its T/2 chains mix twice per β), so
- the **previous round**: the estimate of the round before (an honest run with about
  T/2 steps) within the same tolerance + 2 standard errors. Every round uses the
  same seed, so chain c of both rounds starts from the same draw of f_0: the
  difference is paired chain by chain, and its standard error is the half-schedule
  check's;
- with an importance-sampling estimate of the same points, AIS not below it;
- then, and only then, **BDMC** (:func:`~vi_vae.evaluation.bdmc.bdmc`) on a few
  points simulated from the model at this T: its gap within
  :data:`~vi_vae.evaluation.convergence.BDMC_GAP_TOLERANCE` (+ 2 SE). A failed
  check doubles T again.

The final estimate is the last round's, exactly what
``annealed_importance_sampling(..., num_steps=T, seed=seed)`` returns (the same
numbers), with the previous-round, importance-sampling and BDMC-gap checks added to
its ``convergence``. A run that reaches the maximum T without a verdict stops there,
says so in its result and warns (:class:`~vi_vae.errors.AISConvergenceWarning`).

**Cost.** AIS's bias falls roughly like 1/T, and the rounds' costs form a geometric
series: the search costs about twice its final round, and the BDMC check
2 × (its points / the points) of a round more. The rounds keep the number of chains,
so that the previous-round check is paired and a compiled run compiles the test
points' shape once (BDMC's two directions add one each). Each round records its CPU
seconds (process time, all threads) and its gradient evaluations, points × chains
(weighted and pilot) × T × L, the leapfrog steps' evaluations of
∇ log p(x, z) and ∇ log f_0; the totals are their sums.

Example:
    >>> import torch
    >>> from vi_vae import VAE
    >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    >>> import warnings
    >>> with warnings.catch_warnings():  # 16 steps are too few to converge: it warns
    ...     warnings.simplefilter("ignore")
    ...     result = auto_annealed_importance_sampling(
    ...         vae.model, vae.guide, x, AISSettings(num_chains=4, leapfrog_steps=2),
    ...         AutoAISSettings(start_num_steps=8, max_num_steps=16, bdmc_num_points=1),
    ...         seed=0,
    ...     )
    >>> [r.num_steps for r in result.rounds], result.converged
    ([8, 16], False)

References:
    those of :mod:`vi_vae.evaluation.ais` (Neal 2001; Wu et al. 2017; Grosse et al. 2015).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vi_vae.contract import rows_of
from vi_vae.errors import AISConvergenceWarning, InputError
from vi_vae.evaluation.ais import AISEstimate, annealed_importance_sampling
from vi_vae.evaluation.annealing import AISSettings, phase_callback
from vi_vae.evaluation.auto_ais_settings import AISRound, AutoAISResult, AutoAISSettings
from vi_vae.evaluation.bdmc import BDMCResult, bdmc
from vi_vae.evaluation.convergence import (
    advice,
    bdmc_gap_check,
    half_schedule_check,
)
from vi_vae.evaluation.estimates import LogLikelihoodEstimate
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import resolve_seed
from vi_vae.settings import merge
from vi_vae.support import check_points

__all__ = [
    "auto_annealed_importance_sampling",
    "gradient_evaluations",
]

#: the verdict warnings of one AIS or BDMC run (convergence.warn_unless_converged)
_NOT_CONVERGED = r"AIS.* has not converged"
#: how the half-schedule check names what it compares; the previous-round check names T
_HALF_SCHEDULE_WORDS = "between half the annealing steps and all of them"


def gradient_evaluations(num_points: int, settings: AISSettings, *, reverse: bool = False) -> int:
    """Gradient evaluations of one AIS run: points × chains × T × L.

    Chains count the pilot chains (:data:`~vi_vae.evaluation.annealing.NUM_PILOT_CHAINS`)
    of a forward run; a reverse run (BDMC's) has none. Each evaluation is of
    ∇ log p(x, z) and ∇ log f_0 at one (chain, point).
    """
    chains = settings.num_chains + (0 if reverse else settings.num_pilot_chains)
    return num_points * chains * settings.num_steps * settings.leapfrog_steps


def auto_annealed_importance_sampling(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings | None = None,
    auto: AutoAISSettings | None = None,
    *,
    importance: LogLikelihoodEstimate | None = None,
    seed: int | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
    data_plate: str = "data",
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> AutoAISResult:
    """Estimate log p(x_n) by AIS, doubling T until the verdict holds (module docstring).

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide (``None`` with ``initial="prior"``).
        x: data, ``[N, ...]``.
        settings: the :class:`AISSettings` of every round but T (its ``num_steps`` is
            not used: the rounds set it).
        auto: the :class:`~vi_vae.AutoAISSettings` (default ``AutoAISSettings()``).
        importance: an importance-sampling estimate of the same points; with it, a round
            below it (beyond 2 SE) has not converged.
        seed: seed of every round (the same for all); ``None``: one from torch's.
        on_step: ``on_step(phase, done, total)`` after every annealing step, ``phase``
            naming the round (``"AIS, T = 128"``, ``"BDMC, T = 128"``).
        data_plate: name of the data plate.
        execution: every round's :class:`~vi_vae.execution.ExecutionOptions`.
        chunk_size: shortcut for ``execution.chunk_size``.
        compile: shortcut for ``execution.compile``.
        **kwargs: shortcuts for the fields of :class:`AISSettings`, and the model's
            keywords, as in :func:`~vi_vae.evaluation.ais.annealed_importance_sampling`.

    Returns:
        :class:`~vi_vae.AutoAISResult`; warns (:class:`~vi_vae.errors.AISConvergenceWarning`)
        when the maximum T was reached without a verdict.

    Raises:
        InputError: a bad argument (as :func:`annealed_importance_sampling`), bad
            ``auto`` settings, or ``importance`` of other points.
    """
    settings, kwargs = AISSettings.split(settings, kwargs)
    x = check_points(x)
    auto = merge(AutoAISSettings, auto, {}, argument="auto")
    if importance is not None and importance.num_points != x.shape[0]:
        raise InputError(
            f"importance must estimate the same {x.shape[0]} points; got {importance.num_points}"
        )
    execution = ExecutionOptions.build(execution, {"chunk_size": chunk_size, "compile": compile})
    execution.require_vectorized("AIS")
    options = {"seed": resolve_seed(seed), "data_plate": data_plate, "execution": execution}
    rounds = _Rounds(model, guide, x, kwargs, options, on_step)
    result = rounds.run(settings, auto, importance)
    last = result.rounds[-1].num_steps
    if not result.converged and last < auto.max_num_steps:  # a failure T cannot mend
        remedies = tuple(set(result.estimate.convergence.remedies) - {"num_steps"})
        warnings.warn(
            f"AIS has not converged, and stopped at T = {last:,}: "
            f"{result.estimate.convergence.findings}; more steps cannot change that, "
            f"{advice(remedies)}",
            AISConvergenceWarning,
            stacklevel=2,
        )
    elif not result.converged:
        warnings.warn(
            f"AIS has not converged by the largest T = {auto.max_num_steps:,} "
            f"(max_num_steps): {result.estimate.convergence.findings}; raise max_num_steps",
            AISConvergenceWarning,
            stacklevel=2,
        )
    return result


@dataclass(frozen=True)
class _Rounds:
    """What every round shares: the pair, the data, the execution options, the progress."""

    model: Callable
    guide: Callable | None
    x: Tensor
    kwargs: dict[str, Any]
    options: dict[str, Any]
    on_step: Callable[[str, int, int], None] | None

    def run(
        self,
        settings: AISSettings,
        auto: AutoAISSettings,
        importance: LogLikelihoodEstimate | None,
    ) -> AutoAISResult:
        """Double T until a round's verdict holds or the largest T has run.

        A round that fails a check more steps cannot mend (its remedy is not
        ``num_steps``: a point with no finite estimate, whose chains all sit where the
        model gives that x no density) ends it too.
        """
        trail: list[AISRound] = []
        estimate, checked = None, None
        for num_steps in auto.num_steps():
            started = time.process_time()
            estimate = _with_previous_round(
                self.annealed(dataclasses.replace(settings, num_steps=num_steps), importance),
                estimate,
            )
            round_ = AISRound(
                num_steps,
                estimate.mean,
                estimate.mean_monte_carlo_standard_error,
                estimate.convergence,
                time.process_time() - started,
                gradient_evaluations(self.x.shape[0], estimate.settings),
            )
            # a first round has no previous one to have settled against, unless it is the last
            ready = estimate.convergence.converged and (
                bool(trail) or num_steps == auto.max_num_steps
            )
            checked = None
            if ready and auto.bdmc_num_points > 0:
                estimate, round_, checked = self.bdmc_check(estimate, round_, auto.bdmc_num_points)
            trail.append(round_)
            if ready and estimate.convergence.converged:
                break
            if set(estimate.convergence.remedies) - {"num_steps"}:
                break  # a failure more steps cannot mend (a point with no finite estimate)
        return AutoAISResult(estimate, tuple(trail), checked, auto)

    def annealed(
        self, settings: AISSettings, importance: LogLikelihoodEstimate | None
    ) -> AISEstimate:
        """One round's AIS, its verdict with the importance-sampling check; no verdict warning."""
        with warnings.catch_warnings():
            # a round's verdict decides the next round; the result warns once, at the end
            warnings.filterwarnings("ignore", _NOT_CONVERGED, AISConvergenceWarning)
            annealed = annealed_importance_sampling(
                self.model,
                self.guide,
                self.x,
                settings,
                on_step=phase_callback(self.on_step, f"AIS, T = {settings.num_steps:,}"),
                **self.options,
                **self.kwargs,
            )
            return annealed if importance is None else annealed.checked_against(importance)

    def bdmc_check(
        self, annealed: AISEstimate, round_: AISRound, num_points: int
    ) -> tuple[AISEstimate, AISRound, BDMCResult]:
        """BDMC at the round's T on the first points' shapes: its gap's check added to both."""
        started = time.process_time()
        settings = annealed.settings
        num_points = min(num_points, self.x.shape[0])
        shape_x, shape_kwargs = rows_of(self.x, self.kwargs, slice(0, num_points))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _NOT_CONVERGED, AISConvergenceWarning)
            result = bdmc(
                self.model,
                self.guide,
                shape_x,
                settings,
                on_step=phase_callback(self.on_step, f"BDMC, T = {settings.num_steps:,}"),
                **self.options,
                **shape_kwargs,
            )
        check = bdmc_gap_check(result.mean_gap, result.mean_gap_standard_error)
        convergence = annealed.convergence.with_check(check)
        cost = gradient_evaluations(num_points, settings) + gradient_evaluations(
            num_points, settings, reverse=True
        )
        round_ = dataclasses.replace(
            round_,
            convergence=convergence,
            cpu_seconds=round_.cpu_seconds + time.process_time() - started,
            gradient_evaluations=round_.gradient_evaluations + cost,
            bdmc_mean_gap=result.mean_gap,
            bdmc_gap_standard_error=result.mean_gap_standard_error,
        )
        return dataclasses.replace(annealed, convergence=convergence), round_, result


def _with_previous_round(annealed: AISEstimate, previous: AISEstimate | None) -> AISEstimate:
    """``annealed`` with the previous-round check (the module docstring) in its verdict."""
    if previous is None:
        return annealed
    check = half_schedule_check(annealed.log_weights, previous.log_weights)
    if check is None:
        return annealed
    # the paired comparison of two weights per chain is the half-schedule check's
    moved = f"from T = {previous.settings.num_steps:,} to T = {annealed.settings.num_steps:,}"
    check = dataclasses.replace(
        check,
        name="previous-round",
        message=check.message.replace(_HALF_SCHEDULE_WORDS, moved),
    )
    return dataclasses.replace(annealed, convergence=annealed.convergence.with_check(check))
