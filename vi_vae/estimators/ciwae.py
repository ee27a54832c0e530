r"""``CIWAE``: a convex combination of the ELBO and the IWAE bound (Rainforth et al. 2018)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vi_vae.estimators._base import ParticleEstimator
from vi_vae.estimators._bounds import combination_bound

__all__ = ["CIWAE"]


class CIWAE(ParticleEstimator):
    r"""The combination bound :math:`\beta\,\text{ELBO} + (1-\beta)\,\text{IWAE-K}` [1].

    .. math::
        \mathcal{L}_\beta(x) = \beta\, \frac{1}{K} \sum_{k=1}^K \log w_k
        + (1 - \beta) \log \frac{1}{K} \sum_{k=1}^K w_k,

    both terms from the same K draws, 0 ≤ β ≤ 1. β = 1 is the ELBO with K draws,
    β = 0 the IWAE-K bound; in between it lies between the two bounds, a lower bound
    on log p(x).

    ``loss`` is minus the estimate summed over the batch; the gradient is its
    reparameterized gradient, :math:`\sum_k (\beta/K + (1-\beta)\tilde w_k)\nabla \log w_k`.

    Args:
        beta: β in [0, 1].
        num_particles: K.
        **options: ``data_plate``, ``max_plate_nesting``, ``max_pairs_per_pass`` of
            :class:`~vi_vae.estimators._base.ParticleEstimator`.

    References:
        [1] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
            Le, Maddison, Igl, Wood & Teh, ICML 2018.
    """

    def __init__(self, beta: float, num_particles: int, **options: Any) -> None:
        beta = float(beta)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must lie in [0, 1]; got {beta}")
        super().__init__(num_particles, **options)
        self.beta = beta

    def _bound(self, log_weights: Tensor) -> Tensor:
        return combination_bound(log_weights, self.beta)
