r"""The annealing engine shared by AIS and BDMC: schedules, HMC transitions, adapted step sizes.

Transitions are HMC (:mod:`vi_vae.evaluation.hmc`) on unconstrained coordinates
(:mod:`vi_vae.evaluation.annealed_density`), with L leapfrog steps: one
annealing step costs L gradient evaluations of log p(x, z) and log f_0 over all
(chain, point) pairs of a chunk at once.

Step sizes are adapted per data point toward ``target_acceptance`` during the
run, from **pilot chains**: each point runs :data:`NUM_PILOT_CHAINS` extra
chains along the same path whose only job is to set the point's step size, and
whose weights are dropped. A step size adapted from a chain's own acceptances
depends on that chain's state, so its transitions are no longer π_β-invariant:
on a linear Gaussian model with a poor guide (1,600–4,000 chains per point,
100 steps), per-chain adaptation made the mean of log-mean-exps over groups of
8 chains come out above the exact log p(x), which unbiased weights cannot do
(Jensen). The pilots' randomness
is independent of the weighted chains', so given the step sizes every
transition of a weighted chain is exactly invariant and E[w] = p(x) holds
exactly (``tests/evaluation/test_ais.py`` checks it on that model).
``target_acceptance=None`` keeps ``step_size`` fixed (no pilots).

Randomness is keyed by (seed, point index, chain, step) (:mod:`vi_vae.keys`),
so a point's estimate does not depend on the chunk it was processed in.

References:
    [1] Annealed Importance Sampling, R. M. Neal, Statistics and Computing, 2001.
    [2] Sandwiching the marginal likelihood using bidirectional Monte Carlo, Grosse,
        Ghahramani & Adams, 2015.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vi_vae import keys
from vi_vae._validation import (
    check_choice,
    check_positive_float,
    check_positive_int,
)
from vi_vae.errors import InputError
from vi_vae.evaluation.annealed_density import INITIAL_DISTRIBUTIONS, AnnealedDensity
from vi_vae.evaluation.hmc import DEFAULT_TARGET_ACCEPTANCE, adapt_step_size, hmc_transition
from vi_vae.execution import release_freed_memory
from vi_vae.settings import Settings

__all__ = [
    "DEFAULT_LEAPFROG_STEPS",
    "DEFAULT_NUM_CHAINS",
    "DEFAULT_NUM_STEPS",
    "DEFAULT_STEP_SIZE",
    "MAX_SIZES",
    "NUM_PILOT_CHAINS",
    "RANDOM_STREAMS",
    "SCHEDULES",
    "SIGMOID_SCHEDULE_RADIUS",
    "AISSettings",
    "Annealing",
    "Progress",
    "anneal",
    "annealed_density",
    "annealing_schedule",
    "forward_annealing",
    "phase_callback",
]

#: annealing steps T: a first budget; how the estimate moves with T is in docs/log-likelihood.md
DEFAULT_NUM_STEPS = 1000
#: chains per data point (Wu et al. 2017 ran 16)
DEFAULT_NUM_CHAINS = 16
#: leapfrog steps per HMC transition (Wu et al. 2017 used 10)
DEFAULT_LEAPFROG_STEPS = 10
#: the initial HMC step size on unconstrained coordinates; adaptation takes it from there
DEFAULT_STEP_SIZE = 0.05
#: the largest T, C and L accepted. T: 100× the largest T of the docs' experiments
#: (10⁴), already days of HMC; the schedule, the step-size record ([T, points]) and the
#: loop grow with it, so a larger T fails late, in an allocation. C: every pass holds
#: the C chains of at least one point ([C, D] states, their gradients and the
#: networks' activations). L: runtime only, 10⁴ gradient evaluations per transition.
MAX_SIZES = {"num_steps": 10**6, "num_chains": 10**6, "leapfrog_steps": 10**4}
#: the schedules of β: ``"sigmoid"`` (Grosse et al.) or ``"linear"``
SCHEDULES = ("sigmoid", "linear")
#: the sigmoid schedule's β_t ∝ σ(δ (2t/T − 1)) with δ = 4, as in Grosse et al.'s BDMC code
SIGMOID_SCHEDULE_RADIUS = 4.0
#: extra chains per point that adapt its step size and are not weighted (module docstring);
#: one is enough: the Robbins–Monro step averages its acceptances over ~1/rate = 10 transitions
NUM_PILOT_CHAINS = 1

#: streams of the keyed random numbers (:mod:`vi_vae.keys`), one per use;
#: a run's transitions use two: (momenta, accept tests)
RANDOM_STREAMS = {"initial": 1, "forward": (2, 3), "reverse": (4, 5), "simulate": 6}


@dataclass
class Annealing:
    """One annealing run over a chunk of n points.

    Attributes:
        log_weights: Σ_t (β_t − β_{t−1}) (b − a) per chain and point, ``[C, n]``, float64.
        acceptance_rate: mean HMC acceptance probability over transitions, ``[C, n]``.
        step_size: the final step size per point, ``[n]``.
        step_sizes: the step size of every transition, ``[T − 1, n]``.
        position: the final unconstrained states, ``[C, n, D]``.
        half_log_weights: the same chains' log weights along every other β of the
            schedule (β_0, β_2, β_4, …, β_T), ``[C, n]``: AIS with T/2 steps, each
            followed by two transitions (:mod:`vi_vae.evaluation.convergence`).
    """

    log_weights: Tensor
    acceptance_rate: Tensor
    step_size: Tensor
    step_sizes: Tensor
    position: Tensor
    half_log_weights: Tensor


def annealing_schedule(num_steps: int, schedule: str = "sigmoid") -> Tensor:
    r"""β_0 = 0 < β_1 < … < β_T = 1, ``[num_steps + 1]`` float64.

    ``"linear"``: β_t = t/T. ``"sigmoid"`` (Grosse et al. 2015): with
    :math:`s_t = σ(δ (2t/T - 1))`, δ = :data:`SIGMOID_SCHEDULE_RADIUS`,
    :math:`β_t = (s_t - s_0) / (s_T - s_0)`: small steps near both ends.

    Example:
        >>> annealing_schedule(4, "linear").tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    check_positive_int("num_steps", num_steps)
    check_choice("schedule", schedule, SCHEDULES)
    steps = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    if schedule == "linear":
        return steps
    s = torch.sigmoid(SIGMOID_SCHEDULE_RADIUS * (2.0 * steps - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def anneal(
    density: AnnealedDensity,
    position: Tensor,
    betas: Tensor,
    settings: AISSettings,
    *,
    seed: int,
    streams: tuple[int, int],
    point_index: Tensor,
    num_pilot_chains: int = 0,
    step_sizes: Tensor | None = None,
    on_step: Callable[[], None] | None = None,
) -> Annealing:
    """Run the chains of ``position: [C + P, n, D]`` along ``betas`` (increasing or decreasing).

    The transitions take ``settings``' leapfrog steps, initial step size and target
    acceptance. The last P = ``num_pilot_chains`` chains of each point are pilots: they
    only adapt the point's step size (module docstring), and their weights are dropped.
    With ``step_sizes: [len(betas) − 2, n]`` the transitions use those instead.
    The weight increments are taken before each transition, and the last β has
    no transition (it would not change the weights). Momenta and accept tests
    are keyed by (``seed``, stream, ``point_index``, chain, step).
    """
    leapfrog_steps, target_acceptance = settings.leapfrog_steps, settings.target_acceptance
    num_chains = position.shape[0] - num_pilot_chains
    momentum_keys = keys.RandomKey(seed).grid(
        streams[0], point_index, position.shape[0], density.dim
    )
    accept_keys = keys.RandomKey(seed).grid(streams[1], point_index, position.shape[0])
    state = density.evaluate(position)
    log_weights = torch.zeros(state.log_density.shape, dtype=torch.float64, device=position.device)
    half_log_weights = torch.zeros_like(log_weights)
    acceptance = torch.zeros_like(log_weights)
    step = torch.full_like(log_weights[0], float(settings.step_size))
    used = []
    last = len(betas) - 1
    for t in range(1, len(betas)):
        a, b = state.aux[:2]
        increment = b.double() - a.double()
        log_weights += (betas[t] - betas[t - 1]).item() * increment
        if t % 2 == 1:  # every other β: the same chains' weight along half the schedule
            half_log_weights += (betas[min(t + 1, last)] - betas[t - 1]).item() * increment
        if t < len(betas) - 1:
            if step_sizes is not None:
                step = step_sizes[t - 1]
            beta = betas[t].item()
            state, info = hmc_transition(
                density.target(beta),
                density.at(state, beta),
                step.expand_as(log_weights),
                leapfrog_steps,
                momentum=keys.normal(momentum_keys, t, dtype=position.dtype),
                uniform=keys.uniform(accept_keys, t),
            )
            used.append(step)
            acceptance += info.acceptance_probability
            release_freed_memory()  # the step's transients are freed by now
            if step_sizes is None and target_acceptance is not None and num_pilot_chains > 0:
                pilots = info.acceptance_probability[num_chains:].mean(0)
                step = adapt_step_size(step, pilots, target_acceptance)
        if on_step is not None:
            on_step()
    num_transitions = len(betas) - 2
    rate = acceptance / num_transitions if num_transitions > 0 else acceptance * math.nan
    return Annealing(
        log_weights[:num_chains],
        rate[:num_chains],
        step,
        torch.stack(used) if used else log_weights.new_zeros(0, log_weights.shape[1]),
        state.position[:num_chains],
        half_log_weights[:num_chains],
    )


@dataclass(frozen=True)
class AISSettings(Settings):
    """What an AIS run does: the schedule and the HMC integrator, as data, checked once here.

    The one declaration of AIS's settings:
    :func:`~vi_vae.evaluation.ais.annealed_importance_sampling` and
    :func:`~vi_vae.evaluation.bdmc.bdmc` take one (or build one from keyword shortcuts,
    :func:`vi_vae.settings.merge`),
    their results carry it, and the application's config embeds it.
    How the work is split (``chunk_size``) and whether it is compiled are execution
    options of those functions, not settings: they do not change the numbers.

    Attributes:
        num_steps: T, annealing steps (T = 1 is importance sampling with C draws).
        num_chains: C, independent weighted chains per point.
        schedule: the schedule of β, ``"sigmoid"`` or ``"linear"`` (:func:`annealing_schedule`).
        leapfrog_steps: L, leapfrog steps per HMC transition.
        step_size: the initial HMC step size on unconstrained coordinates.
        target_acceptance: the acceptance probability the step sizes adapt toward, in
            (0, 1); ``None`` keeps ``step_size`` fixed.
        initial: where the path starts, the ``"guide"`` q(z|x) or the ``"prior"`` p(z).

    Raises:
        InputError: naming the first bad setting and its accepted values.
    """

    num_steps: int = DEFAULT_NUM_STEPS
    num_chains: int = DEFAULT_NUM_CHAINS
    schedule: str = SCHEDULES[0]
    leapfrog_steps: int = DEFAULT_LEAPFROG_STEPS
    step_size: float = DEFAULT_STEP_SIZE
    target_acceptance: float | None = DEFAULT_TARGET_ACCEPTANCE
    initial: str = INITIAL_DISTRIBUTIONS[0]

    def __post_init__(self) -> None:
        where = self._where  # the prefix of the names in errors (vi_vae.settings.Settings)
        for name, largest in MAX_SIZES.items():
            value = check_positive_int(where + name, getattr(self, name))
            if value > largest:
                raise InputError(f"{where}{name} must be at most {largest:,}; got {value:,}")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_positive_float(where + "step_size", self.step_size)
        target = self.target_acceptance
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1
        ):
            raise InputError(
                f"{where}target_acceptance must be a number in (0, 1) or None; got {target!r}"
            )
        check_choice("initial", self.initial, INITIAL_DISTRIBUTIONS)

    @property
    def num_pilot_chains(self) -> int:
        """Pilot chains per point: :data:`NUM_PILOT_CHAINS`, or 0 without adaptation."""
        return 0 if self.target_acceptance is None else NUM_PILOT_CHAINS

    def betas(self) -> Tensor:
        """The schedule, ``[num_steps + 1]``."""
        return annealing_schedule(self.num_steps, self.schedule)

    def chunks(self, num_points: int, chunk_size: int, start: int = 0) -> list[slice]:
        """Consecutive slices of at most max(1, ⌊chunk_size / (chains + pilots)⌋) points.

        They cover ``start`` … ``start + num_points`` (a shard of the points).
        """
        per_pass = max(1, chunk_size // (self.num_chains + self.num_pilot_chains))
        stop = start + num_points
        return [slice(first, min(first + per_pass, stop)) for first in range(start, stop, per_pass)]


def annealed_density(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings,
    num_chains: int | None = None,
    **options: Any,
) -> AnnealedDensity:
    """The :class:`AnnealedDensity` of the points ``x`` along ``settings``' path.

    It runs ``num_chains`` chains per point (default: the settings' chains and
    pilots); ``options`` are its other keywords (``plate_nesting``, ``kwargs``, …).
    """
    chains = settings.num_chains + settings.num_pilot_chains if num_chains is None else num_chains
    return AnnealedDensity(model, guide, x, chains, initial=settings.initial, **options)


def forward_annealing(
    density: AnnealedDensity,
    rows: slice,
    settings: AISSettings,
    *,
    seed: int,
    on_step: Callable[[], None] | None = None,
) -> Annealing:
    """Forward AIS of ``density``'s points, ``rows`` of x, from exact draws of f_0, keyed."""
    point_index = torch.arange(rows.start, rows.stop, device=density.x.device)
    position = density.draw_initial(
        keys.RandomKey(seed).point_seeds(RANDOM_STREAMS["initial"], point_index)
    )
    return anneal(
        density,
        position,
        settings.betas(),
        settings,
        seed=seed,
        streams=RANDOM_STREAMS["forward"],
        point_index=point_index,
        num_pilot_chains=settings.num_pilot_chains,
        on_step=on_step,
    )


class Progress:
    """Counts steps across chunks of points and reports ``(done, total)``."""

    def __init__(self, on_step: Callable[[int, int], None] | None, total: int) -> None:
        self.on_step, self.total, self.done = on_step, total, 0

    def start(self) -> Progress:
        """The phase starts: ``(0, total)``, so that a display's clock starts with the work."""
        if self.on_step is not None:
            self.on_step(0, self.total)
        return self

    def __call__(self) -> None:
        """One more step done."""
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total)


def phase_callback(
    on_progress: Callable[[str, int, int], None] | None, phase: str
) -> Callable[[int, int], None] | None:
    """``on_progress(phase, done, total)`` as one phase's ``(done, total)`` callback."""
    return None if on_progress is None else functools.partial(on_progress, phase)
