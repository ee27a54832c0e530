r"""The bounds themselves, as functions of per-point log weights ``[num_particles, batch]``.

With log weights :math:`\log w_{k,n} = \log p(x_n, z_{k,n}) - \log q(z_{k,n} \mid x_n)`
for K independent draws :math:`z_{k,n} \sim q(z \mid x_n)`, each function returns
one Monte Carlo estimate per data point, ``[batch]``, whose expectation is the bound
it names. They are differentiable, so the autograd gradient of an estimate with
respect to the log weights gives each draw's coefficient in the reparameterized
gradient.

References:
    [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014.
    [2] Importance Weighted Autoencoders, Burda, Grosse & Salakhutdinov, ICLR 2016.
    [3] Rényi Divergence Variational Inference, Li & Turner, NeurIPS 2016.
    [4] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
        Le, Maddison, Igl, Wood & Teh, ICML 2018.
"""

from __future__ import annotations

import math

from torch import Tensor

from vi_vae.errors import InputError

__all__ = [
    "combination_bound",
    "elbo_bound",
    "grouped_iwae_bound",
    "iwae_bound",
    "iwae_groups",
    "log_mean_exp",
    "renyi_bound",
]


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    r""":math:`\log \frac{1}{K} \sum_k e^{v_k}` along ``dim``, computed stably."""
    return values.logsumexp(dim) - math.log(values.shape[dim])


def elbo_bound(log_weights: Tensor) -> Tensor:
    r"""ELBO [1]: :math:`\frac{1}{K} \sum_k \log w_k`, ``[batch]``."""
    return log_weights.mean(0)


def iwae_bound(log_weights: Tensor) -> Tensor:
    r"""IWAE-K bound [2]: :math:`\log \frac{1}{K} \sum_k w_k`, ``[batch]``."""
    return log_mean_exp(log_weights, 0)


def iwae_groups(log_weights: Tensor, group_size: int) -> Tensor:
    r"""IWAE-k estimates [2] of disjoint groups of consecutive particles, ``[M, batch]``.

    .. math::
        \log \frac{1}{k} \sum_{j=1}^k w_{m,j}, \qquad m = 1, \dots, M = \lfloor K / k \rfloor,

    ``group_size`` is k; the last K mod k particles, if any, are left out.

    Example:
        >>> import torch
        >>> iwae_groups(torch.zeros(7, 3), 3).shape
        torch.Size([2, 3])
    """
    num_groups = log_weights.shape[0] // group_size
    if num_groups * group_size < log_weights.shape[0]:
        log_weights = log_weights[: num_groups * group_size]
    grouped = log_weights.reshape(num_groups, group_size, *log_weights.shape[1:])
    return log_mean_exp(grouped, 1)


def grouped_iwae_bound(log_weights: Tensor, group_size: int) -> Tensor:
    r"""MIWAE(M, K) bound [4]: the mean of M IWAE-K estimates from consecutive groups.

    .. math::
        \frac{1}{M} \sum_{m=1}^M \log \frac{1}{K} \sum_{k=1}^K w_{m,k},
        \qquad M = \text{num\_particles} / K.

    ``group_size`` is K and must divide the number of particles.
    """
    num_particles = log_weights.shape[0]
    if num_particles % group_size:
        raise InputError(
            f"group_size must divide the number of particles ({num_particles}); got {group_size}"
        )
    return iwae_groups(log_weights, group_size).mean(0)


def combination_bound(log_weights: Tensor, elbo_weight: float) -> Tensor:
    r"""CIWAE bound [4]: :math:`\beta\,\text{ELBO} + (1 - \beta)\,\text{IWAE-K}`, same draws.

    β is ``elbo_weight``.
    """
    return elbo_weight * elbo_bound(log_weights) + (1 - elbo_weight) * iwae_bound(log_weights)


def renyi_bound(log_weights: Tensor, alpha: float) -> Tensor:
    r"""Rényi variational bound [3] of order α, ``[batch]``.

    .. math::
        \mathcal{L}_\alpha = \frac{1}{1 - \alpha} \log \frac{1}{K} \sum_k w_k^{1 - \alpha},

    with its limits: α = 1 is the ELBO (the mean of log w), α = −∞ is VR-max,
    :math:`\max_k \log w_k`. α = 0 is the IWAE bound.
    """
    if alpha == 1:
        return elbo_bound(log_weights)
    if alpha == -math.inf:
        return log_weights.max(0).values
    return log_mean_exp((1 - alpha) * log_weights, 0) / (1 - alpha)
