r"""Hamiltonian Monte Carlo on a batch of independent targets, each with its own step size.

A position ``q: [*batch, D]`` holds one chain per batch element, and
``log π(q): [*batch]`` is evaluated for all of them at once. One transition
draws a momentum :math:`p \sim \mathcal N(0, I)`, runs ``leapfrog_steps`` steps
of size ε (one per batch element)

.. math::
    p \leftarrow p + \tfrac{ε}{2} \nabla \log π(q), \quad
    q \leftarrow q + ε p, \quad
    p \leftarrow p + \tfrac{ε}{2} \nabla \log π(q),

(consecutive half steps merged, so L steps cost L gradient evaluations), and
accepts the end point with probability :math:`\min(1, e^{H(q, p) - H(q', p')})`,
:math:`H(q, p) = -\log π(q) + \lVert p \rVert^2 / 2`. The leapfrog map is
volume-preserving and reversible, so each transition leaves π invariant [1, 2].
A non-finite energy at the end point (a divergent trajectory) is a rejection.

Step sizes can be adapted toward a target acceptance probability (0.65 is
optimal for HMC in high dimensions, Beskos et al. [3]) by
:func:`adapt_step_size`, a Robbins–Monro step on log ε.

The kernel is usable on its own: :func:`log_density_with_gradient` turns any
batched ``q -> log π(q)`` into the :data:`LogDensity` it needs.

Example:
    >>> import torch
    >>> target = log_density_with_gradient(lambda q: -0.5 * q.pow(2).sum(-1))
    >>> state = target(torch.zeros(4, 2))
    >>> state, info = hmc_transition(target, state, torch.full((4,), 0.5), leapfrog_steps=5)
    >>> state.position.shape, info.acceptance_probability.shape
    (torch.Size([4, 2]), torch.Size([4]))

References:
    [1] Hybrid Monte Carlo, Duane, Kennedy, Pendleton & Roweth, Physics Letters B, 1987.
    [2] MCMC using Hamiltonian dynamics, R. M. Neal, Handbook of MCMC, 2011.
    [3] Optimal tuning of the hybrid Monte Carlo algorithm, Beskos, Pillai, Roberts,
        Sanz-Serna & Stuart, Bernoulli, 2013.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_TARGET_ACCEPTANCE",
    "MAX_STEP_SIZE",
    "MIN_STEP_SIZE",
    "STEP_SIZE_ADAPTATION_RATE",
    "HMCInfo",
    "HMCState",
    "LogDensity",
    "adapt_step_size",
    "hmc_transition",
    "log_density_with_gradient",
]

#: Beskos et al. (2013): the acceptance probability that maximizes HMC's efficiency
#: as the dimension grows is 0.651.
DEFAULT_TARGET_ACCEPTANCE = 0.65
#: gain of the Robbins–Monro step on log ε: from 10× too large (α ≈ 0) ε reaches its
#: scale in ln 10 / (0.1 · 0.65) ≈ 35 transitions, from 10× too small (α ≈ 1) in ≈ 65;
#: short next to the 10³–10⁴ transitions of an AIS run.
STEP_SIZE_ADAPTATION_RATE = 0.1
#: bounds on an adapted step size: they bind only for a chain stuck where its density is
#: not finite (acceptance 0 forever), whose ε would otherwise shrink without end.
MIN_STEP_SIZE = 1e-5
MAX_STEP_SIZE = 10.0


@dataclass
class HMCState:
    """A batch of chain positions with their log densities and gradients.

    Attributes:
        position: q, ``[*batch, D]``.
        log_density: log π(q), ``[*batch]``.
        gradient: ∇_q log π(q), ``[*batch, D]``.
        aux: tensors ``[*batch, ...]`` computed with the position and kept with it
            (e.g. the two log densities an annealed target is a mixture of).
    """

    position: Tensor
    log_density: Tensor
    gradient: Tensor
    aux: tuple[Tensor, ...] = ()

    def where(self, mask: Tensor, other: HMCState) -> HMCState:
        """This state where ``mask: [*batch]`` is true, ``other`` elsewhere."""

        def pick(mine: Tensor, theirs: Tensor) -> Tensor:
            shape = tuple(mask.shape) + (1,) * (mine.dim() - mask.dim())
            return torch.where(mask.reshape(shape), mine, theirs)

        return HMCState(
            pick(self.position, other.position),
            pick(self.log_density, other.log_density),
            pick(self.gradient, other.gradient),
            tuple(pick(a, b) for a, b in zip(self.aux, other.aux, strict=True)),
        )


#: ``position [*batch, D] -> HMCState`` at that position
LogDensity = Callable[[Tensor], HMCState]


@dataclass
class HMCInfo:
    """What one transition did, per batch element.

    Attributes:
        acceptance_probability: min(1, exp(−ΔH)), ``[*batch]``, 0 for a divergence.
        accepted: whether the proposal was accepted, ``[*batch]``.
    """

    acceptance_probability: Tensor
    accepted: Tensor


def log_density_with_gradient(log_density: Callable[[Tensor], Tensor]) -> LogDensity:
    """Wrap ``q: [*batch, D] -> log π(q): [*batch]`` to also return ∇ log π by autograd."""

    def evaluate(position: Tensor) -> HMCState:
        with torch.enable_grad():
            position = position.detach().requires_grad_(True)
            value = log_density(position)
            (gradient,) = torch.autograd.grad(value.sum(), position)
        return HMCState(position.detach(), value.detach(), gradient)

    return evaluate


def hmc_transition(
    log_density: LogDensity,
    state: HMCState,
    step_size: Tensor,
    leapfrog_steps: int,
    *,
    momentum: Tensor | None = None,
    uniform: Tensor | None = None,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition of every chain in the batch.

    Args:
        log_density: the target, position -> :class:`HMCState`.
        state: the current states, evaluated by ``log_density``.
        step_size: ε per chain, ``[*batch]``.
        leapfrog_steps: L, leapfrog steps per transition (L gradient evaluations).
        momentum: the initial momenta, ``[*batch, D]`` standard normal (drawn from
            torch's stream when omitted).
        uniform: U(0, 1) variates for the accept tests, ``[*batch]`` (drawn when omitted).

    Returns:
        ``(state, info)``: the new states (the proposal where accepted, the old
        state elsewhere) and :class:`HMCInfo`.
    """
    position = state.position
    if momentum is None:
        momentum = torch.randn_like(position)
    if uniform is None:
        uniform = torch.rand(state.log_density.shape, dtype=torch.float64, device=position.device)
    epsilon = step_size.to(position.dtype).unsqueeze(-1)
    velocity = momentum + 0.5 * epsilon * state.gradient
    proposal = state
    for step in range(leapfrog_steps):
        proposal = log_density(proposal.position + epsilon * velocity)
        last = step == leapfrog_steps - 1
        velocity = velocity + (0.5 * epsilon if last else epsilon) * proposal.gradient
    initial_energy = _kinetic_energy(momentum) - state.log_density.double()
    final_energy = _kinetic_energy(velocity) - proposal.log_density.double()
    log_acceptance = (initial_energy - final_energy).clamp(max=0.0)
    divergent = ~torch.isfinite(final_energy) | torch.isnan(log_acceptance)
    log_acceptance = log_acceptance.masked_fill(divergent, -math.inf)
    accepted = uniform.double().log() < log_acceptance
    return proposal.where(accepted, state), HMCInfo(log_acceptance.exp(), accepted)


def _kinetic_energy(momentum: Tensor) -> Tensor:
    return 0.5 * momentum.double().pow(2).sum(-1)


def adapt_step_size(
    step_size: Tensor,
    acceptance_probability: Tensor,
    target_acceptance: float = DEFAULT_TARGET_ACCEPTANCE,
    rate: float = STEP_SIZE_ADAPTATION_RATE,
) -> Tensor:
    r"""One Robbins–Monro step toward the target acceptance, per chain.

    .. math::
        \log ε \leftarrow \log ε + r\,(α - α^\star),

    clamped to [:data:`MIN_STEP_SIZE`, :data:`MAX_STEP_SIZE`]. Chains that accept
    more often than α* get longer steps, and the others shorter ones.
    """
    log_step = step_size.log() + rate * (
        acceptance_probability.to(step_size.dtype) - target_acceptance
    )
    return log_step.exp().clamp(MIN_STEP_SIZE, MAX_STEP_SIZE)
