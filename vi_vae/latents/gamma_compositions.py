r"""Distributions built from gamma variates: Erlang (a sum of exponentials), Dirichlet and Beta.

Kingma & Welling's composition constructions [1]: Erlang(k, λ) as the sum of k
exponential inverse-CDF draws, and Dirichlet(α) and Beta(α, β) as normalized
gammas, z = G / Σ G. Each subclasses the Pyro distribution of the same law, so
``log_prob``, the moments and the closed-form KLs are inherited; only ``rsample``
changes. Re-exported by :mod:`vi_vae.latents.distributions`.

References:
    [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014, §2.4.
    [2] Marsaglia & Tsang, A simple method for generating gamma variables,
        ACM TOMS 26(3), 2000.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from vi_vae.latents.sampling import log_standard_gamma, standard_exponential

__all__ = ["Erlang", "NormalizedGammaBeta", "NormalizedGammaDirichlet"]

_NO_SAMPLE_SHAPE = torch.Size()


class Erlang(dist.Gamma):
    r"""Erlang(k, λ): the sum of k independent Exponential(λ) variates, each by its inverse CDF.

    .. math::
        z = \frac{1}{λ} \sum_{i=1}^{k} -\log ε_i, \qquad ε_i \sim U(0, 1)

    It is Gamma(k, λ) with an integer shape, so it inherits ``log_prob``, ``cdf``,
    ``mean``, ``variance`` and the closed-form Gamma–Gamma KL; only the sampler
    differs from torch's implicit reparameterization of the gamma.

    Args:
        shape: k, a positive integer (fixed: it cannot be learned by gradients).
        rate: λ > 0.

    Example:
        >>> Erlang(3, torch.tensor(2.0)).mean
        tensor(1.5000)
    """

    # k is a fixed Python integer, not a tensor parameter to validate or learn.
    arg_constraints = {"rate": constraints.positive}

    def __init__(
        self, shape: int, rate: Tensor | float, *, validate_args: bool | None = None
    ) -> None:
        if isinstance(shape, bool) or not isinstance(shape, int) or shape < 1:
            raise ValueError(f"Erlang shape must be a positive integer; got {shape!r}")
        self.shape = shape
        (rate,) = broadcast_all(rate)
        super().__init__(rate.new_full(rate.shape, float(shape)), rate, validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: Erlang | None = None) -> Erlang:
        """Expand the batch shape, keeping k."""
        new = self._get_checked_instance(Erlang, _instance)
        new.shape = self.shape
        return super().expand(batch_shape, _instance=new)

    def rsample(
        self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE, generator: torch.Generator | None = None
    ) -> Tensor:
        """Σᵢ −log εᵢ / λ."""
        shape = self._extended_shape(sample_shape)
        exponentials = standard_exponential((self.shape, *shape), self.rate, generator)
        return exponentials.sum(0) / self.rate.expand(shape)


class NormalizedGammaDirichlet(dist.Dirichlet):
    r"""Dirichlet(α) sampled as normalized gammas, z = G / Σⱼ Gⱼ with Gⱼ ~ Gamma(αⱼ, 1).

    The normalization is a softmax of log Gⱼ (:func:`log_standard_gamma`), so it is
    exact even when every Gⱼ underflows; coordinates below the smallest normal
    float are raised to it so that ``log_prob`` stays finite. torch's own
    ``Dirichlet.rsample`` differentiates the Dirichlet implicitly instead; both
    are unbiased, but this is Kingma & Welling's composition. ``log_prob``, the
    moments and the Dirichlet–Dirichlet KL are inherited.
    """

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """Draw softmax(log G), G ~ Gamma(α, 1)."""
        shape = self._extended_shape(sample_shape)
        z = log_standard_gamma(self.concentration.expand(shape)).softmax(-1)
        return z.clamp(min=torch.finfo(z.dtype).tiny)


class NormalizedGammaBeta(dist.Beta):
    r"""Beta(α, β) sampled as z = G₁ / (G₁ + G₀) with G₁ ~ Gamma(α, 1), G₀ ~ Gamma(β, 1).

    Computed as sigmoid(log G₁ − log G₀) and kept inside [tiny, 1 − eps/2] (the
    smallest normal float and the largest float below 1) so that ``log_prob`` of a
    draw is finite. ``log_prob``, the moments and the Beta–Beta KL are inherited.
    """

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """Draw sigmoid(log G₁ − log G₀)."""
        shape = self._extended_shape(sample_shape)
        log_g1 = log_standard_gamma(self.concentration1.expand(shape))
        log_g0 = log_standard_gamma(self.concentration0.expand(shape))
        z = (log_g1 - log_g0).sigmoid()
        finfo = torch.finfo(z.dtype)
        return z.clamp(finfo.tiny, 1 - finfo.eps / 2)
