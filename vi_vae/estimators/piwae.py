r"""``PIWAE``: IWAE for the model, MIWAE for the guide, same draws (Rainforth et al. 2018)."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.bounds import grouped_iwae_bound
from vi_vae.estimators.particle_estimator import GradientTerm, ParticleEstimator, bound_coefficients

__all__ = ["PIWAE"]


class PIWAE(ParticleEstimator):
    r"""The partially importance-weighted estimator [1].

    Tighter bounds help the model but starve the guide's gradient of signal (its
    signal-to-noise ratio falls as :math:`1/\sqrt{K}` for IWAE-K). PIWAE draws
    M·L particles per point and trains

    - the guide's parameters φ on the MIWAE(M, L) objective
      :math:`\frac{1}{M}\sum_{m=1}^M \log \frac{1}{L}\sum_{l=1}^L w_{m,l}`, and
    - the model's parameters θ on the IWAE-K objective, averaged over the
      M·L / K groups of K draws,
      :math:`\frac{K}{ML}\sum_{g} \log \frac{1}{K}\sum_{k \in g} w_k`,

    each with its reparameterized gradient. The default K = M·L (one group, all
    draws) is the PIWAE of [1]; K must divide M·L.

    ``loss`` reports the model's objective: minus the IWAE-K estimate (averaged
    over the groups) summed over the batch, so ``PIWAE(8, 8)`` reports IWAE-64.
    Guide parameters are those the guide's distributions depend on, wherever they are
    registered (:mod:`vi_vae.contract`, clause 7); the two
    gradients need two backward passes, so ``differentiable_loss`` is not
    available.

    Args:
        num_outer: M, the IWAE estimates averaged in the guide's objective.
        num_inner: L, the draws inside each of them.
        num_particles: K, the draws per IWAE estimate in the model's objective
            (default M·L).
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    Attributes:
        num_particles: M·L, the draws per data point.
        model_particles: K.

    References:
        [1] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
            Le, Maddison, Igl, Wood & Teh, ICML 2018, §4.
    """

    follows_bound_gradient = False

    def __init__(
        self, num_outer: int, num_inner: int, num_particles: int | None = None, **options: Any
    ) -> None:
        check_positive_int("num_outer", num_outer)
        check_positive_int("num_inner", num_inner)
        total = num_outer * num_inner
        model_particles = total if num_particles is None else num_particles
        check_positive_int("num_particles", model_particles)
        if total % model_particles:
            raise ValueError(
                f"num_particles ({model_particles}) must divide num_outer × num_inner ({total})"
            )
        super().__init__(total, **options)
        self.num_outer = num_outer
        self.num_inner = num_inner
        self.model_particles = model_particles

    def _bound(self, log_weights: Tensor) -> Tensor:
        return grouped_iwae_bound(log_weights, self.model_particles)

    def _gradient_terms(self, log_weights: Tensor) -> list[GradientTerm]:
        guide_objective = partial(grouped_iwae_bound, group_size=self.num_inner)
        return [
            GradientTerm(bound_coefficients(guide_objective, log_weights), "guide"),
            GradientTerm(bound_coefficients(self._bound, log_weights), "model"),
        ]
