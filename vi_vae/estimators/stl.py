r"""``STL``: the ELBO with the "sticking the landing" gradient (Roeder et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vi_vae.bounds import elbo_bound
from vi_vae.estimators.particle_estimator import GradientTerm, ParticleEstimator

__all__ = ["STL"]


class STL(ParticleEstimator):
    r"""The ELBO, with the score term of the guide's gradient dropped [1].

    The reparameterized ELBO gradient with respect to the guide's parameters φ,
    for :math:`z = g_\phi(\epsilon)`, is

    .. math::
        \nabla_\phi \log w = \underbrace{\Big(\nabla_z \log p(x, z)
        - \nabla_z \log q_\phi(z \mid x)\Big) \nabla_\phi z}_{\text{path derivative}}
        \;-\; \underbrace{\nabla_\phi \log q_\phi(z \mid x)\big|_{z\ \text{fixed}}}_{\text{score}} .

    The score term has expectation zero, so dropping it leaves the gradient unbiased;
    STL follows the path derivative alone, computed as the gradient of
    :math:`\log p(x, z) - \log q_{\mathrm{sg}(\phi)}(z \mid x)`. When q is the
    exact posterior, log w = log p(x) for every z, so each draw's path derivative
    is zero: the estimator has zero variance at the optimum. The model's
    parameters get the usual ELBO gradient.

    ``loss`` is minus the ELBO estimate :math:`\frac{1}{K}\sum_k \log w_k` summed
    over the batch.

    Args:
        num_particles: K, draws averaged per data point.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    References:
        [1] Sticking the Landing: Simple, Lower-Variance Gradient Estimators for
            Variational Inference, Roeder, Wu & Duvenaud, NeurIPS 2017.
    """

    follows_bound_gradient = False

    def __init__(self, num_particles: int = 1, **options: Any) -> None:
        super().__init__(num_particles, **options)

    def _bound(self, log_weights: Tensor) -> Tensor:
        return elbo_bound(log_weights)

    def _gradient_terms(self, log_weights: Tensor) -> list[GradientTerm]:
        coefficients = torch.full_like(log_weights, 1 / log_weights.shape[0])
        return [GradientTerm(coefficients, "all", path_derivative=True)]
