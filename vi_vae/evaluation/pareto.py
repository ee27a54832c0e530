"""Pareto k̂ of each point's importance weights: the PSIS tail fit (ArviZ), on its tail alone.

k̂ (Vehtari et al. 2024) says how heavy the right tail of a point's weights is: above
0.7 its importance-sampling estimate of p(x_n) cannot be trusted. ArviZ's ``psislw``
fits a generalized Pareto distribution to the largest ⌈min(K/5, 3√K)⌉ weights, so a
point's row rebuilt from its M + 1 largest log weights (the rest set to the cutoff)
gives the same k̂: :class:`~vi_vae.evaluation.estimates.LogWeightSummary` keeps only
that tail per point and fits every point at once here, in blocks of bounded host
memory. Weights equal to float rounding (an exact posterior as the guide) have no
tail, and no k̂.

References:
    [1] Pareto Smoothed Importance Sampling, Vehtari, Simpson, Gelman, Yao & Gabry, 2024.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EQUAL_WEIGHTS_EPSILONS",
    "EQUAL_WEIGHTS_TOLERANCE",
    "MIN_PARTICLES_FOR_PARETO_K",
    "PARETO_K_BLOCK_BYTES",
    "pareto_k_from_tails",
    "pareto_tail_size",
    "too_few_particles",
    "weights_all_equal",
]

#: ArviZ fits the generalized Pareto distribution to the largest ⌈min(K/5, 3√K)⌉
#: weights and needs more than 4 of them, so K ≥ 21.
MIN_PARTICLES_FOR_PARETO_K = 21
#: a point's log weights are equal, and its estimate exact, when they differ by at most
#: this many machine epsilons of the dtype they were computed in, times their size (at
#: least 1), and never less than :data:`EQUAL_WEIGHTS_TOLERANCE`. An exact posterior's
#: weights in float32 differ by float rounding alone, a few epsilons (1e-6 nats at
#: log w = -5), where k̂ would fit that noise and call the estimate unreliable; weights
#: that close also make an estimate within that distance of each of them.
EQUAL_WEIGHTS_EPSILONS = 256
#: the least spread of log weights (nats) that counts as a spread: float64 rounding of an
#: exact posterior's weights is ~1e-12 nats
EQUAL_WEIGHTS_TOLERANCE = 1e-8
#: float64 bytes of the rebuilt rows handed to ArviZ per call (ArviZ copies them
#: twice more), bounding the k̂ fit's host memory
PARETO_K_BLOCK_BYTES = 64 * 2**20


def pareto_tail_size(num_particles: int) -> int:
    """M = ⌈min(K/5, 3√K)⌉, the number of largest weights PSIS fits (ArviZ, r_eff = 1)."""
    return math.ceil(min(num_particles / 5, 3 * math.sqrt(num_particles)))


def too_few_particles(num_particles: int) -> str:
    """Why k̂ is undefined below :data:`MIN_PARTICLES_FOR_PARETO_K` weights per point."""
    return (
        f"Pareto k̂ needs at least {MIN_PARTICLES_FOR_PARETO_K} weights per point "
        f"(the tail fit uses the largest ⌈min(K/5, 3√K)⌉ > 4); there are {num_particles}"
    )


def import_arviz():
    """``arviz``, imported at the first k̂ (it is slow to import), without its daily notice.

    That notice (a ``FutureWarning`` at import) says its API will change: vi_vae calls its
    k̂ fit alone, at a version the package pins.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\s*ArviZ is undergoing a major refactor", FutureWarning)
        import arviz
    return arviz


def weights_all_equal(largest: Tensor, smallest: Tensor, epsilon: float) -> Tensor:
    """Per point, whether its log weights are equal to float precision (an exact estimate).

    ``largest`` and ``smallest``: each point's largest and smallest log weight ``[N]``;
    ``epsilon``: the machine epsilon of the dtype they were computed in. Equal within
    :data:`EQUAL_WEIGHTS_EPSILONS` epsilons of their size, or
    :data:`EQUAL_WEIGHTS_TOLERANCE`: the guide (or AIS's initial distribution) is the
    point's exact posterior, and the estimate is exact whatever K, T or the transitions.
    """
    rounding = EQUAL_WEIGHTS_EPSILONS * epsilon * largest.abs().clamp(min=1)
    return (largest - smallest) <= rounding.clamp(min=EQUAL_WEIGHTS_TOLERANCE)


def pareto_k_from_tails(
    tail: Tensor, smallest: Tensor, num_particles: int, epsilon: float
) -> tuple[Tensor, str | None]:
    """k̂ from each point's M + 1 largest log weights ``[M + 1, N]`` (descending) and smallest.

    ``epsilon``: the machine epsilon of the dtype the log weights were computed in.
    """
    arviz = import_arviz()

    num_points = tail.shape[1]
    block = max(1, PARETO_K_BLOCK_BYTES // (8 * num_particles))
    k = torch.empty(num_points, dtype=torch.float64)
    for start in range(0, num_points, block):
        columns = slice(start, min(start + block, num_points))
        top = tail[:, columns].T.numpy()
        # the rest of each row at the cutoff (the (M+1)-th largest): outside the fitted tail
        rows = np.repeat(top[:, -1:], num_particles, axis=1)
        rows[:, : top.shape[1]] = top
        with np.errstate(all="ignore"):
            _, block_k = arviz.psislw(rows)
        k[columns] = torch.as_tensor(np.atleast_1d(block_k), dtype=torch.float64)
    constant = weights_all_equal(tail[0], smallest, epsilon)
    if constant.any():
        k[constant] = math.nan
        return k, "a point whose weights are all equal (an exact estimate) has no tail to fit"
    return k, None
