r"""``MIWAE``: the average of M independent IWAE-K estimates (Rainforth et al. 2018)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.bounds import grouped_iwae_bound
from vi_vae.estimators.particle_estimator import ParticleEstimator

__all__ = ["MIWAE"]


class MIWAE(ParticleEstimator):
    r"""The multiply importance-weighted bound: M IWAE-K estimates, averaged [1].

    .. math::
        \mathcal{L}_{M,K}(x) = \frac{1}{M} \sum_{m=1}^M
        \log \frac{1}{K} \sum_{k=1}^K w_{m,k},

    from M·K independent draws per point. Its expectation is the IWAE-K bound
    :math:`\mathcal{L}_K` (so MIWAE(1, K) is IWAE(K) and MIWAE(M, 1) the ELBO with
    M draws); M trades the bound's tightness (set by K) against the gradient's
    signal-to-noise ratio for the guide (which grows as √M).

    ``loss`` is minus the estimate summed over the batch: an estimate of the
    IWAE-K bound, not of IWAE-(M·K). The gradient is its reparameterized gradient.

    Args:
        num_outer: M, the number of IWAE estimates averaged.
        num_inner: K, the draws inside each.
        **options: ``data_plate``, ``max_plate_nesting``, ``chunk_size`` of
            :class:`~vi_vae.estimators.particle_estimator.ParticleEstimator`.

    Attributes:
        num_particles: M·K, the draws per data point.

    References:
        [1] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
            Le, Maddison, Igl, Wood & Teh, ICML 2018.
    """

    def __init__(self, num_outer: int, num_inner: int, **options: Any) -> None:
        check_positive_int("num_outer", num_outer)
        check_positive_int("num_inner", num_inner)
        super().__init__(num_outer * num_inner, **options)
        self.num_outer = num_outer
        self.num_inner = num_inner

    def _bound(self, log_weights: Tensor) -> Tensor:
        return grouped_iwae_bound(log_weights, self.num_inner)
