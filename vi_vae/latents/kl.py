r"""Closed-form KL divergences that torch lacks, registered with ``torch.distributions.kl``.

Each function computes KL(p ‖ q) = E_p[log p(z) − log q(z)] elementwise over the
batch. ``kl_divergence`` finds them for subclasses too, and torch's
Independent–Independent rule lifts them to ``.to_event(1)`` posteriors.

References:
    [1] C. Bauckhage, Computing the Kullback-Leibler divergence between two
        Weibull distributions, arXiv:1310.3713, 2013.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Weibull
from torch.distributions.kl import register_kl

from vi_vae.latents.distributions import Rayleigh, Reciprocal

__all__ = ["kl_rayleigh_rayleigh", "kl_reciprocal_reciprocal", "kl_weibull_weibull"]

_EULER_GAMMA = 0.5772156649015329


@register_kl(Rayleigh, Rayleigh)
def kl_rayleigh_rayleigh(p: Rayleigh, q: Rayleigh) -> Tensor:
    r"""KL between Rayleighs, from E_p[z²] = 2σ_p².

    .. math::
        \mathrm{KL} = 2 \log\frac{σ_q}{σ_p} + \frac{σ_p^2}{σ_q^2} - 1
    """
    ratio = p.scale / q.scale
    return ratio.pow(2) - 2 * ratio.log() - 1


@register_kl(Reciprocal, Reciprocal)
def kl_reciprocal_reciprocal(p: Reciprocal, q: Reciprocal) -> Tensor:
    r"""KL between log-uniforms: finite only when [a_p, b_p] ⊆ [a_q, b_q].

    .. math::
        \mathrm{KL} = \log \frac{\log(b_q / a_q)}{\log(b_p / a_p)}
    """
    result = (q.high.log() - q.low.log()).log() - (p.high.log() - p.low.log()).log()
    inside = (q.low <= p.low) & (p.high <= q.high)
    return torch.where(inside, result, math.inf)


@register_kl(Weibull, Weibull)
def kl_weibull_weibull(p: Weibull, q: Weibull) -> Tensor:
    r"""KL between Weibulls (scale λ, concentration k), Bauckhage [1].

    .. math::
        \mathrm{KL} = \log\frac{k_p}{λ_p^{k_p}} - \log\frac{k_q}{λ_q^{k_q}}
        + (k_p - k_q)\Big(\log λ_p - \frac{γ}{k_p}\Big)
        + \Big(\frac{λ_p}{λ_q}\Big)^{k_q} Γ\Big(\frac{k_q}{k_p} + 1\Big) - 1

    The power and the Γ are combined in log space so that they overflow only when
    the KL itself exceeds the float range.
    """
    kp, kq = p.concentration, q.concentration
    log_lp, log_lq = p.scale.log(), q.scale.log()
    t1 = kp.log() - kp * log_lp - kq.log() + kq * log_lq
    t2 = (kp - kq) * (log_lp - _EULER_GAMMA / kp)
    t3 = torch.exp(kq * (log_lp - log_lq) + torch.lgamma(kq / kp + 1))
    return t1 + t2 + t3 - 1
