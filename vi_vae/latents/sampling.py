"""Uniform, exponential and gamma noise for reparameterized samplers, finite by construction.

References:
    [1] Marsaglia & Tsang, A simple method for generating gamma variables,
        ACM TOMS 26(3), 2000 (the boost Gamma(α) = Gamma(α + 1)·U^{1/α}).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["log_standard_gamma", "standard_exponential", "standard_uniform"]


def standard_uniform(
    shape: torch.Size, like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """ε ~ U(0, 1) on the open interval, with the dtype and device of ``like``.

    ``torch.rand`` draws from a grid of step eps/2 that includes 0 and stops one
    step short of 1; 0 is replaced by half a step (eps/4), so ε ∈ (0, 1).
    """
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    return u.clamp_(min=torch.finfo(u.dtype).eps / 4)


def standard_exponential(
    shape: torch.Size, like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """E ~ Exponential(1) by the inverse CDF, E = −log ε: positive and finite (≤ 17.4, float32)."""
    return -standard_uniform(shape, like, generator).log()


def log_standard_gamma(concentration: Tensor) -> Tensor:
    r"""Draw log G for G ~ Gamma(α, 1), reparameterized and finite even when G underflows.

    .. math::
        \log G = \log G' + \frac{\log U}{α}, \qquad G' \sim \mathrm{Gamma}(α + 1, 1),\;
        U \sim U(0, 1)

    (Marsaglia & Tsang [1]). G' is drawn by torch with implicit reparameterization;
    the gradient through U^{1/α} is explicit.
    """
    boosted = torch._standard_gamma(concentration + 1)
    uniform = standard_uniform(concentration.shape, concentration)
    return boosted.log() + uniform.log() / concentration
