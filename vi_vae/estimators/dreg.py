r"""``DReG``: the IWAE bound with the doubly reparameterized guide gradient (Tucker et al. 2019)."""

from __future__ import annotations

from torch import Tensor

from vi_vae.bounds import iwae_bound
from vi_vae.estimators.particle_estimator import GradientTerm, ParticleEstimator

__all__ = ["DReG"]


class DReG(ParticleEstimator):
    r"""The IWAE-K bound, with the doubly reparameterized gradient for the guide [1].

    With normalized weights :math:`\tilde w_k = w_k / \sum_j w_j`, the IWAE gradient
    for the guide's parameters φ is :math:`\sum_k \tilde w_k \nabla_\phi \log w_k`,
    whose score part :math:`-\sum_k \tilde w_k \nabla_\phi \log q_\phi(z_k)|_{z_k}`
    is noisy. Reparameterizing it a second time gives the same expectation as

    .. math::
        \nabla_\phi^{\mathrm{DReG}} = \sum_{k=1}^K \tilde w_k^2\,
        \frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi},

    with the path derivative only (Tucker et al. 2019, eq. 7). The model's
    parameters θ get the IWAE gradient :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`.
    Both expectations equal the gradients of the IWAE-K bound; the guide's has lower
    variance, and its signal-to-noise ratio does not vanish as K grows, unlike IWAE's
    (Rainforth et al. 2018). With K = 1 the guide gradient is STL's.

    ``loss`` is minus the IWAE-K estimate :math:`\log \frac{1}{K}\sum_k w_k` summed
    over the batch. Guide parameters are those the guide's distributions depend on,
    wherever they are registered (:mod:`vi_vae.contract`, clause 7); the
    two gradients need two backward passes, so ``differentiable_loss`` is not
    available.

    Args:
        num_particles: K.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    Example:
        >>> import pyro, torch
        >>> from pyro.infer import SVI
        >>> from vi_vae import VAE
        >>> pyro.clear_param_store()
        >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,))
        >>> optimizer = pyro.optim.Adam({"lr": 0.01})
        >>> svi = SVI(vae.model, vae.guide, optimizer, loss=DReG(num_particles=5))
        >>> loss = svi.step(torch.bernoulli(torch.full((16, 4), 0.5)))

    References:
        [1] Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives,
            Tucker, Lawson, Gu & Maddison, ICLR 2019.
        [2] Tighter Variational Bounds are Not Necessarily Better, Rainforth et al., ICML 2018.
    """

    follows_bound_gradient = False

    def _bound(self, log_weights: Tensor) -> Tensor:
        return iwae_bound(log_weights)

    def _gradient_terms(self, log_weights: Tensor) -> list[GradientTerm]:
        normalized = log_weights.softmax(0)
        return [
            GradientTerm(normalized.square(), "guide", path_derivative=True),
            GradientTerm(normalized, "model"),
        ]
