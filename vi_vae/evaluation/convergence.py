r"""Whether an estimate has converged: checks that can fail, one verdict, carried by the result.

AIS returns a number whatever its settings; too few annealing steps give a
number that is simply too low. The result therefore carries a
:class:`Convergence` verdict made of these checks (each one is skipped where it
does not apply):

- **acceptance**: the mean HMC acceptance over the run is more than
  :data:`ACCEPTANCE_TOLERANCE` from the target the step sizes adapt toward. The
  adaptation needs ~35–65 transitions to find its scale
  (:data:`~vi_vae.evaluation.hmc.STEP_SIZE_ADAPTATION_RATE`); a run too short for
  that moves its chains with step sizes far from useful ones.
- **equal weights**, in place of acceptance: every point's chains ended with equal log
  weights, to float precision (:func:`~vi_vae.evaluation.pareto.weights_all_equal`).
  Then the initial distribution is each point's posterior (an exact guide, or a prior
  the likelihood does not depend on), every increment of every chain is log p(x), and
  the estimate is exact whatever T and the step sizes: the acceptance, which only says
  whether the transitions were tuned, does not apply. It takes
  :data:`EQUAL_WEIGHTS_MIN_CHAINS` chains or more.
- **half schedule**: the estimate from the same chains along every other β
  (β_0, β_2, …, β_T: AIS with T/2 steps) differs from the estimate at T by more
  than :data:`HALF_SCHEDULE_TOLERANCE` + 2 standard errors, nats per point. AIS's
  bias shrinks roughly like 1/T, so the estimate at T/2 has about twice the bias of
  the one at T, and their difference estimates the bias left at T (a Richardson
  argument). It costs nothing: the increments are those of the run. Is the
  comparison fair? Not quite, and the unfairness makes the check lenient: between
  two β of the half schedule the chains make two transitions (at β_{2k−1} and
  β_{2k}) where an AIS run with T/2 steps would make one, so the half-schedule
  weights are those of a better-mixed run than a real T/2 one, and their
  difference to T understates the real one; the first of the two transitions
  leaves π_{β_{2k−1}}, not π_{β_{2k}}, invariant, a bias of the order of one
  step of the schedule. When the check fails, the estimate is still moving with T.
- **importance sampling** (:func:`importance_sampling_check`): AIS below
  importance sampling from the guide on the same points by more than 2 joint
  standard errors. Both are stochastic lower bounds, and AIS from the guide starts
  where importance sampling stays; converged AIS is not below it.
- **half particles** and **Pareto k̂**, importance sampling's own
  (:mod:`vi_vae.evaluation.importance_convergence`).
- **BDMC gap** (:func:`bdmc_gap_check`, on simulated data): the gap between the
  upper and lower bounds exceeds :data:`BDMC_GAP_TOLERANCE` by more than 2
  standard errors. The gap bounds the error of AIS with these settings on data
  like the model's own.

Two standard errors: a converged run fails a one-sided 2-SE check by chance in
about 2% of runs.

References:
    [1] Sandwiching the marginal likelihood using bidirectional Monte Carlo, Grosse,
        Ghahramani & Adams, 2015.
    [2] On the Quantitative Analysis of Decoder-Based Generative Models, Wu, Burda,
        Salakhutdinov & Grosse, ICLR 2017.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vi_vae.errors import AISConvergenceWarning, ConvergenceWarning
from vi_vae.evaluation.pareto import weights_all_equal

__all__ = [
    "ACCEPTANCE_TOLERANCE",
    "BDMC_GAP_TOLERANCE",
    "EQUAL_WEIGHTS_MIN_CHAINS",
    "HALF_SCHEDULE_TOLERANCE",
    "LOWERED_REMEDIES",
    "NUM_STANDARD_ERRORS",
    "Convergence",
    "ConvergenceCheck",
    "acceptance_check",
    "advice",
    "bdmc_gap_check",
    "equal_weights_check",
    "finite_points_check",
    "half_schedule_check",
    "importance_sampling_check",
    "warn_unless_converged",
]

#: how far (absolute) the mean acceptance may sit from its target: the adaptation
#: keeps a converged run within a few hundredths (0.63–0.67 on the docs' MNIST runs)
ACCEPTANCE_TOLERANCE = 0.2
#: nats per point the estimate at T may differ from the one at T/2: the precision to
#: which the docs quote log p(x) (one decimal)
HALF_SCHEDULE_TOLERANCE = 0.1
#: nats per point of BDMC gap above which AIS's settings are not trusted: the gap
#: bounds AIS's error, and beyond a nat it exceeds the differences between the
#: estimators vi_vae compares (docs/compare-mnist-5k)
BDMC_GAP_TOLERANCE = 1.0
#: the fewest chains whose equal log weights stand in for the acceptance check: weights
#: equal to float rounding (256 epsilons of their size: 0.016 nats at log w = -540 in
#: float32) can meet by chance on two chains; on eight, all within that band by chance
#: would take a spread near it, where the estimate is that close anyway
EQUAL_WEIGHTS_MIN_CHAINS = 8
#: standard errors a difference must exceed its tolerance by to fail a check
NUM_STANDARD_ERRORS = 2.0
#: remedies that are settings to lower, not to raise (a diverged local optimization)
LOWERED_REMEDIES = frozenset({"local_learning_rate"})


@dataclass(frozen=True)
class ConvergenceCheck:
    """One check of a run.

    Attributes:
        name: ``"acceptance"``, ``"equal-weights"``, ``"half-schedule"``,
            ``"importance-sampling"``, ``"bdmc-gap"``, ``"previous-round"`` (the
            automatic search of :mod:`vi_vae.evaluation.auto_ais`: T against the round
            before), or those of
            :func:`~vi_vae.evaluation.gaps.inference_gaps` (``"local-elbo"``,
            ``"local-optimization"``, ``"local-points"``, ``"amortized-elbo"``), or
            importance sampling's (``"pareto-k"``, ``"half-particles"``,
            ``"finite-points"``).
        passed: whether the run passed it.
        value: what was measured (acceptance; nats per point for the others).
        limit: the value beyond which it fails (for the differences, before the
            standard errors are added).
        message: what was found.
        remedy: the setting to change, e.g. ``"num_steps"`` (raised) or
            ``"local_learning_rate"`` (lowered, :data:`LOWERED_REMEDIES`).
    """

    name: str
    passed: bool
    value: float
    limit: float
    message: str
    remedy: str = "num_steps"


@dataclass(frozen=True)
class Convergence:
    """The verdict on an AIS, BDMC or importance-sampling estimate: converged if all checks pass."""

    checks: tuple[ConvergenceCheck, ...] = ()

    @property
    def converged(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> tuple[ConvergenceCheck, ...]:
        """The checks that failed."""
        return tuple(check for check in self.checks if not check.passed)

    @property
    def remedies(self) -> tuple[str, ...]:
        """The settings to raise, from the failed checks (sorted, each once)."""
        return tuple(sorted({check.remedy for check in self.failed}))

    @property
    def findings(self) -> str:
        """The failed checks' messages, ``"; "``-separated."""
        return "; ".join(check.message for check in self.failed)

    @property
    def summary(self) -> str:
        """One line: ``"converged"`` with the checks passed, or what failed and what to raise."""
        if self.converged:
            checks = "check" if len(self.checks) == 1 else "checks"
            return f"converged ({', '.join(c.name for c in self.checks)} {checks} passed)"
        return f"{self.findings}; {advice(self.remedies)}"

    def with_check(self, check: ConvergenceCheck | None) -> Convergence:
        """This verdict with one more check (``None``: a check that does not apply)."""
        if check is None:
            return self
        kept = tuple(c for c in self.checks if c.name != check.name)
        return Convergence((*kept, check))


def advice(remedies: tuple[str, ...], spell: Callable[[str], str] = str) -> str:
    """``"raise num_steps"``, ``"lower local_learning_rate"``, or both, ``"; "``-separated.

    ``spell`` writes a setting's name (e.g. as a command-line flag).
    """
    raised = [spell(name) for name in remedies if name not in LOWERED_REMEDIES]
    lowered = [spell(name) for name in remedies if name in LOWERED_REMEDIES]
    parts = [f"raise {' and '.join(raised)}"] if raised else []
    return "; ".join(parts + ([f"lower {' and '.join(lowered)}"] if lowered else []))


def acceptance_check(acceptance_rate: Tensor, target: float | None) -> ConvergenceCheck | None:
    """Mean acceptance within :data:`ACCEPTANCE_TOLERANCE` of ``target`` (``None``: no check)."""
    mean = acceptance_rate.double().mean().item()
    if target is None or math.isnan(mean):
        return None
    passed = abs(mean - target) <= ACCEPTANCE_TOLERANCE
    return ConvergenceCheck(
        "acceptance",
        passed,
        mean,
        ACCEPTANCE_TOLERANCE,
        f"mean HMC acceptance {mean:.2f} is within {ACCEPTANCE_TOLERANCE} of its target {target}"
        if passed
        else f"mean HMC acceptance {mean:.2f} is more than {ACCEPTANCE_TOLERANCE} from its "
        f"target {target}: the step sizes had too few transitions to adapt",
    )


def equal_weights_check(log_weights: Tensor, epsilon: float) -> ConvergenceCheck | None:
    """A passed check when every point's chains ended with equal log weights (module docstring).

    ``log_weights``: ``[C, N]``; ``epsilon``: the machine epsilon of the dtype the
    density was computed in. ``None`` (the check does not apply) with fewer than
    :data:`EQUAL_WEIGHTS_MIN_CHAINS` chains, or where some point's weights differ.
    """
    if log_weights.shape[0] < EQUAL_WEIGHTS_MIN_CHAINS:
        return None
    largest, smallest = log_weights.amax(0), log_weights.amin(0)
    if not weights_all_equal(largest, smallest, epsilon).all():
        return None
    spread = (largest - smallest).max().item()
    return ConvergenceCheck(
        "equal-weights",
        True,
        spread,
        0.0,
        f"every point's {log_weights.shape[0]} chains ended with the same log weight (spread "
        f"{spread:.1e} nats, float rounding): the initial distribution is each point's "
        "posterior, so the estimate is exact whatever T and the step sizes",
    )


def unchecked(num_chains: int, num_steps: int) -> ConvergenceCheck:
    """The failed check of a run that nothing checks for having settled in T.

    One chain or T = 1 leaves no half schedule to compare (and one chain no Monte Carlo
    standard error): such a run is not known to have converged, so it is not called
    converged, whatever its acceptance (which says the step sizes were tuned, not that
    T steps were enough). A run whose chains end with equal weights needs no such check.
    """
    remedy = "num_chains" if num_chains < 2 else "num_steps"
    return ConvergenceCheck(
        "checkable",
        False,
        float(num_chains),
        2.0,
        f"no check of whether the estimate has settled in T applies to T = {num_steps} "
        f"with {num_chains} chain(s) (the half-schedule check needs T ≥ 2 and two chains)",
        remedy,
    )


def _joint(first: Tensor, second: Tensor) -> float:
    """Standard error of a mean over N points of differences, √(Σ se₁² + Σ se₂²)/N.

    Per-point standard errors ``[N]`` each (NaN, e.g. one chain, read as 0).
    """
    errors = torch.stack([first, second]).double().nan_to_num(0.0)
    return errors.pow(2).sum().sqrt().item() / first.numel()


def finite_points_check(
    log_likelihood: Tensor, remedy: str = "num_particles"
) -> ConvergenceCheck | None:
    """A failed check naming the points whose estimate is not finite (``None``: all are).

    ``remedy``: the setting whose raise may find draws of positive density there
    (importance sampling's ``num_particles``, AIS's ``num_chains``).
    """
    missing = (~torch.isfinite(log_likelihood)).nonzero().flatten()
    if not missing.numel():
        return None
    first = int(missing[0])
    return ConvergenceCheck(
        "finite-points",
        False,
        missing.numel() / log_likelihood.numel(),
        0.0,
        f"{missing.numel()} point(s) have no finite estimate, the first at point {first} "
        f"({log_likelihood[first].item()}): every log weight there is -inf, no draw "
        "reaching where the model gives that x a positive density (or the model's density "
        "overflows at that x), so the mean over the points is not finite; more draws or a "
        "guide that reaches further may find such draws",
        remedy,
    )


def half_schedule_check(log_weights: Tensor, half_log_weights: Tensor) -> ConvergenceCheck | None:
    """The estimate at T against the same chains' estimate along half the schedule.

    ``log_weights`` and ``half_log_weights``: ``[C, N]``, of the same chains, at T and
    along every other β. The difference of the two log-mean-exps is paired chain by
    chain: its standard error per point is the delta method's,
    √(s²(w/w̄ − w'/w̄')/C), and that of its mean over points √Σse²/N. ``None`` when
    there is no half schedule (T = 1) or one chain. Points with no finite estimate are
    left out (:func:`finite_points_check` names them).
    """
    num_chains = log_weights.shape[0]
    if num_chains < 2 or torch.equal(log_weights, half_log_weights):
        return None
    log_weights, half_log_weights = log_weights.double(), half_log_weights.double()
    total, half_total = log_weights.logsumexp(0), half_log_weights.logsumexp(0)
    finite = (total + half_total).isfinite()
    if not finite.all():  # points with no estimate: finite_points_check's to report
        if not finite.any():
            return None
        log_weights, half_log_weights = log_weights[:, finite], half_log_weights[:, finite]
        total, half_total = total[finite], half_total[finite]
    difference = (total - half_total).mean().item()
    paired = (log_weights - total).exp() - (half_log_weights - half_total).exp()
    errors = (paired * num_chains).var(0) / num_chains
    error = errors.sum().sqrt().item() / log_weights.shape[1]
    passed = abs(difference) <= HALF_SCHEDULE_TOLERANCE + NUM_STANDARD_ERRORS * error
    return ConvergenceCheck(
        "half-schedule",
        passed,
        difference,
        HALF_SCHEDULE_TOLERANCE,
        f"the estimate moved by {difference:+.2f} ± {error:.2f} nats per point between half "
        "the annealing steps and all of them "
        + (
            f"(within {HALF_SCHEDULE_TOLERANCE} + 2 SE): it has settled"
            if passed
            else f"(more than {HALF_SCHEDULE_TOLERANCE}): it has not settled"
        ),
    )


def importance_sampling_check(
    annealed: Tensor,
    annealed_error: Tensor,
    importance: Tensor,
    importance_error: Tensor,
) -> ConvergenceCheck:
    """AIS not below importance sampling on the same points by more than 2 joint SEs (per point)."""
    difference = (annealed - importance).double().mean().item()
    error = _joint(annealed_error, importance_error)
    passed = difference >= -NUM_STANDARD_ERRORS * error
    return ConvergenceCheck(
        "importance-sampling",
        passed,
        difference,
        0.0,
        f"AIS is {difference:+.2f} ± {error:.2f} nats per point from importance sampling on "
        "the same points (not below it beyond 2 SE)"
        if passed
        else f"AIS is {-difference:.2f} ± {error:.2f} nats per point below importance sampling "
        "on the same points, which converged AIS is not",
    )


def bdmc_gap_check(mean_gap: float, standard_error: float) -> ConvergenceCheck:
    """BDMC's mean gap within :data:`BDMC_GAP_TOLERANCE` (+ 2 standard errors), nats per point."""
    error = 0.0 if math.isnan(standard_error) else standard_error
    passed = mean_gap <= BDMC_GAP_TOLERANCE + NUM_STANDARD_ERRORS * error
    return ConvergenceCheck(
        "bdmc-gap",
        passed,
        mean_gap,
        BDMC_GAP_TOLERANCE,
        f"the BDMC gap {mean_gap:.2f} ± {error:.2f} nats per point is within "
        f"{BDMC_GAP_TOLERANCE} (+ 2 SE)"
        if passed
        else f"the BDMC gap {mean_gap:.2f} ± {error:.2f} nats per point is above "
        f"{BDMC_GAP_TOLERANCE}: AIS with these settings is not accurate on data simulated "
        "from the model",
    )


def warn_unless_converged(
    convergence: Convergence,
    what: str = "AIS",
    category: type[ConvergenceWarning] = AISConvergenceWarning,
) -> None:
    """Warn (``category``) when a check failed, naming the settings to change."""
    if not convergence.converged:
        warnings.warn(f"{what} has not converged: {convergence.summary}", category, stacklevel=3)
