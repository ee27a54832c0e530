r"""``IWAE``: the importance-weighted bound of Burda et al. (2016)."""

from __future__ import annotations

from torch import Tensor

from vi_vae.bounds import iwae_bound
from vi_vae.estimators.particle_estimator import ParticleEstimator

__all__ = ["IWAE"]


class IWAE(ParticleEstimator):
    r"""The IWAE-K bound of each data point [1].

    .. math::
        \mathcal{L}_K(x) = \mathbb{E}\Big[\log \frac{1}{K} \sum_{k=1}^K w_k\Big],
        \qquad w_k = \frac{p(x, z_k)}{q(z_k \mid x)},\; z_k \sim q(z \mid x),

    with :math:`\mathcal{L}_1 = \text{ELBO} \le \mathcal{L}_K \le \mathcal{L}_{K+1}
    \le \log p(x)`. ``loss`` is minus the estimate :math:`\log \frac{1}{K}\sum_k w_k`
    summed over the batch (the bound itself, not a surrogate). The gradient is the
    reparameterized one, :math:`\sum_k \tilde w_k \nabla \log w_k` with normalized
    weights :math:`\tilde w_k = w_k / \sum_j w_j`.

    Args:
        num_particles: K.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    References:
        [1] Importance Weighted Autoencoders, Burda, Grosse & Salakhutdinov, ICLR 2016.
    """

    def _bound(self, log_weights: Tensor) -> Tensor:
        return iwae_bound(log_weights)
