r"""``RenyiVR``: the Rényi variational bound of order α, VR-max included (Li & Turner 2016)."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from vi_vae.bounds import renyi_bound
from vi_vae.estimators.particle_estimator import ParticleEstimator

__all__ = ["RenyiVR"]


class RenyiVR(ParticleEstimator):
    r"""The Rényi variational bound of order α of each data point [1].

    .. math::
        \mathcal{L}_{\alpha,K}(x) = \mathbb{E}\Big[\frac{1}{1-\alpha}
        \log \frac{1}{K} \sum_{k=1}^K w_k^{1-\alpha}\Big].

    α = 0 is the IWAE bound; α → 1 tends to the ELBO, and α = 1 is taken to be the
    ELBO (Pyro's ``RenyiELBO`` rejects it); α = −∞ is VR-max,
    :math:`\mathbb{E}[\max_k \log w_k]`, whose gradient follows the best draw alone.
    The estimate decreases in α. For α ≥ 0 it is a lower bound on log p(x); for
    α < 0 it need not be (VR-max can exceed log p(x)), so report it as an
    objective, not as a bound on the likelihood.

    ``loss`` is minus the estimate summed over the batch; the gradient is its
    reparameterized gradient, :math:`\sum_k \tilde w_{\alpha,k} \nabla \log w_k`
    with :math:`\tilde w_{\alpha,k} \propto w_k^{1-\alpha}`.

    Args:
        alpha: the order α, a real number or ``-math.inf``.
        num_particles: K.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    References:
        [1] Rényi Divergence Variational Inference, Li & Turner, NeurIPS 2016.
    """

    def __init__(self, alpha: float, num_particles: int, **options: Any) -> None:
        alpha = float(alpha)
        if math.isnan(alpha) or alpha == math.inf:
            raise ValueError(f"alpha must be a real number or -inf (VR-max); got {alpha}")
        super().__init__(num_particles, **options)
        self.alpha = alpha

    def _bound(self, log_weights: Tensor) -> Tensor:
        return renyi_bound(log_weights, self.alpha)
