r"""``CIWAE``: a convex combination of the ELBO and the IWAE bound (Rainforth et al. 2018)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vi_vae.bounds import combination_bound
from vi_vae.estimators.particle_estimator import ParticleEstimator

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
        elbo_weight: β in [0, 1], the ELBO's weight (called ``beta`` before vi_vae 0.2;
            not the KL weight of :func:`vi_vae.fit`).
        num_particles: K.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    References:
        [1] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
            Le, Maddison, Igl, Wood & Teh, ICML 2018.
    """

    def __init__(self, elbo_weight: float, num_particles: int, **options: Any) -> None:
        elbo_weight = float(elbo_weight)
        if not 0 <= elbo_weight <= 1:
            raise ValueError(f"elbo_weight must lie in [0, 1]; got {elbo_weight}")
        super().__init__(num_particles, **options)
        self.elbo_weight = elbo_weight

    def _bound(self, log_weights: Tensor) -> Tensor:
        return combination_bound(log_weights, self.elbo_weight)
