"""Whether a local optimization of q* has converged: its verdict's checks.

:func:`~vi_vae.evaluation.local_guide.optimize_locally` records each step's ELBO
estimate per point; these checks read that trajectory, the point-averaged one and
each point's, as :func:`~vi_vae.evaluation.gaps.inference_gaps` reports them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vi_vae.evaluation.convergence import NUM_STANDARD_ERRORS, ConvergenceCheck

__all__ = ["MIN_LOCAL_WINDOW", "local_optimization_check", "local_points_check"]

#: steps in each window of :func:`local_optimization_check` below which it fails:
#: each window's standard error then rests on 9 or more degrees of freedom
MIN_LOCAL_WINDOW = 10


def local_optimization_check(trajectory: Tensor, tolerance: float) -> ConvergenceCheck:
    r"""Whether a local optimization's ELBO has stopped rising.

    With W a tenth of the steps, the mean ELBO over the last W steps minus that over
    the W before it (the rise) must not exceed ``tolerance`` by more than
    :data:`~vi_vae.evaluation.convergence.NUM_STANDARD_ERRORS` standard errors of
    the difference (from the scatter of the steps' estimates in each window). A
    window of fewer than :data:`MIN_LOCAL_WINDOW` steps fails: its scatter, on so few
    degrees of freedom, cannot tell a rise from noise (40 steps on the demo's model
    passed and left the amortization gap 0.4 nats short).

    Args:
        trajectory: the mean ELBO estimate of each step, ``[steps]`` (at least 2).
        tolerance: nats per point.
    """
    window, rises, errors = _rise(trajectory)
    rise, error = rises.item(), errors.item()
    limit = tolerance + NUM_STANDARD_ERRORS * error
    passed = rise <= limit and window >= MIN_LOCAL_WINDOW
    message = (
        f"the local ELBO rose {rise:.3f} nats per point over its last {window} steps "
        f"(limit {tolerance:g} + {NUM_STANDARD_ERRORS:g} standard errors = {limit:.3f})"
    )
    if window < MIN_LOCAL_WINDOW:
        message += (
            f", too few steps to tell a rise from noise (the last tenth of the steps must "
            f"hold at least {MIN_LOCAL_WINDOW}: {10 * MIN_LOCAL_WINDOW} steps or more)"
        )
    if passed:
        message = f"the local optimization converged: {message}"
    return ConvergenceCheck(
        "local-optimization", passed, rise, tolerance, message, remedy="local_steps"
    )


def local_points_check(point_trajectory: Tensor, tolerance: float) -> ConvergenceCheck:
    r"""Whether few enough single points' ELBOs are still rising.

    :func:`local_optimization_check` reads the ELBO averaged over points, in which a
    few points still climbing hardly show. Here each point's rise over the last tenth
    of the steps is held against ``tolerance`` plus
    :data:`~vi_vae.evaluation.convergence.NUM_STANDARD_ERRORS` standard errors of its
    own (from its steps' scatter, as there). A converged point exceeds that with
    probability p = 1 − Φ(NUM_STANDARD_ERRORS) at most (each step draws afresh, so its
    estimates are nearly independent), so the count of such points is at most
    Binomial(n, p); more than its mean plus 3.1 of its standard deviations (a 0.1 %
    tail) fails.

    Args:
        point_trajectory: each point's ELBO estimate of each step, ``[steps, points]``.
        tolerance: nats per point.
    """
    num_points = point_trajectory.shape[1]
    window, rise, error = _rise(point_trajectory)
    rising = int((rise > tolerance + NUM_STANDARD_ERRORS * error).sum())
    p = 0.5 * math.erfc(NUM_STANDARD_ERRORS / math.sqrt(2))
    limit = num_points * p + 3.1 * math.sqrt(num_points * p * (1 - p))
    passed = rising <= limit
    message = (
        f"{rising} of {num_points} points' local ELBOs still rose over the last {window} "
        f"steps by more than {tolerance:g} + {NUM_STANDARD_ERRORS:g} of their standard "
        f"errors (at most {limit:.1f} expected of converged points)"
    )
    if passed:
        message = f"the points' local optimizations converged: {message}"
    share, limit_share = rising / num_points, limit / num_points
    return ConvergenceCheck(
        "local-points", passed, share, limit_share, message, remedy="local_steps"
    )


def _rise(trajectory: Tensor) -> tuple[int, Tensor, Tensor]:
    """``(W, rise, SE)`` along the steps (dim 0).

    W is a tenth of the steps, the rise the mean over the last W steps minus that over
    the W before it, and SE its standard error from the scatter of the steps in each
    window (0 for W = 1).
    """
    window = max(1, trajectory.shape[0] // 10)
    last = trajectory[-window:].double()
    before = trajectory[-2 * window : -window].double()
    rise = last.mean(0) - before.mean(0)
    if window == 1:
        return window, rise, torch.zeros_like(rise)
    return window, rise, (last.var(0) / window + before.var(0) / window).sqrt()
