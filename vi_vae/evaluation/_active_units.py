r"""Active units (Burda et al. 2016), re-exported by :mod:`vi_vae.evaluation.diagnostics`.

A latent dimension is active when its posterior mean varies across data points,
:math:`\mathrm{Cov}_x(\mathbb{E}_{q(z|x)}[z_i])` above :data:`ACTIVE_UNIT_THRESHOLD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vi_vae._modules import RANDOM_OR_BATCHWISE, modules_called
from vi_vae._validation import check_nonnegative_float, check_positive_int
from vi_vae.errors import InputError

__all__ = ["ACTIVE_UNIT_THRESHOLD", "ActiveUnits", "active_units"]

#: Burda et al. (2016, §5.2): a unit is active when Cov_x(E_q[z_i]) exceeds 10⁻².
ACTIVE_UNIT_THRESHOLD = 0.01


@dataclass
class ActiveUnits:
    """Active latent units (Burda et al. 2016).

    Attributes:
        num_active: number of units with variance above ``threshold`` (all layers).
        variances: Cov_x(E_q[z_i]) of each latent unit, ``[latent_dim]``; for a VAE
            with several stochastic layers, the layers' units one after the other
            from the data up, ``[sum(latent_dims)]``.
        threshold: the activity threshold.
        layer_sizes: units per stochastic layer, from the data up (one entry for
            a single layer).
    """

    num_active: int
    variances: Tensor
    threshold: float
    layer_sizes: tuple[int, ...] = ()

    @property
    def num_active_per_layer(self) -> tuple[int, ...]:
        """Active units of each stochastic layer, from the data up."""
        sizes = self.layer_sizes or (len(self.variances),)
        return tuple(int(part.sum()) for part in self.active.split(list(sizes)))

    @property
    def active(self) -> Tensor:
        """Boolean mask of the active units, ``[latent_dim]``."""
        return self.variances > self.threshold


def active_units(
    encoder: Any,
    x: Tensor,
    threshold: float = ACTIVE_UNIT_THRESHOLD,
    *,
    batch_size: int = 1024,
    num_mean_draws: int = 100,
) -> ActiveUnits:
    r"""Count the latent units the model uses [1].

    .. math::
        A_i = \mathrm{Cov}_x\big(\mathbb{E}_{q(z \mid x)}[z_i]\big) > \text{threshold}.

    For a :class:`~vi_vae.VAE` with several stochastic layers every layer is
    counted (Burda et al. report them per layer): E_q[z_1|x] is q(z_1|x)'s mean, and
    E_q[z_l|x] for l > 1 is the mean over ``num_mean_draws`` ancestral draws of the
    layers below of E_q[z_l | z_{l-1}] (the law of total expectation; one draw of z_l
    each where q's mean is not implemented, their median where it is not finite).
    :attr:`ActiveUnits.num_active_per_layer` splits the count.

    Args:
        encoder: a :class:`~vi_vae.VAE` (its ``encode`` is used, or every layer as
            above) or a function ``x -> q(z|x)`` returning a torch ``Distribution``
            or a tensor of posterior means, ``[batch, latent_dim]``.
        x: data points, ``[N, ...]``, N ≥ 2.
        threshold: 0.01 as Burda et al.
        batch_size: points per encoder call (memory).
        num_mean_draws: draws for the Monte Carlo mean of a q whose mean is not
            implemented (only then; they are not importance samples); where q has no
            finite mean (e.g. Cauchy) the median of the draws stands in for it.

    Returns:
        :class:`ActiveUnits` with the per-unit variances across data points
        (Bessel-corrected).

    Raises:
        InputError: for an encoder that runs dropout or batch normalization in
            training mode (random means, or means that depend on the batch): call
            ``.eval()`` first.
    """
    encode = encoder.encode if hasattr(encoder, "encode") else encoder
    if not callable(encode):
        raise InputError("encoder must be a VAE or a function x -> q(z|x)")
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 2:
        raise InputError("x must be a tensor with at least 2 data points along dimension 0")
    check_positive_int("batch_size", batch_size)
    check_positive_int("num_mean_draws", num_mean_draws)
    check_nonnegative_float("threshold", threshold)
    layered = getattr(encoder, "num_layers", 1) > 1
    means = []
    with torch.no_grad(), modules_called() as modes:
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            if layered:
                means.append(_layer_means(encoder, batch, num_mean_draws))
            else:
                q = encode(batch)
                means.append(_posterior_mean(q, num_mean_draws).reshape(len(batch), -1))
    _refuse_training_mode(modes)
    variances = torch.cat(means).double().var(0).cpu()
    sizes = tuple(encoder.latent_dims) if layered else (len(variances),)
    return ActiveUnits(int((variances > threshold).sum()), variances, float(threshold), sizes)


def _refuse_training_mode(modes: dict[torch.nn.Module, bool]) -> None:
    """Refuse an encoder that ran dropout or batch normalization in training mode."""
    layers = sorted(
        {
            type(module).__name__
            for module, training in modes.items()
            if training and isinstance(module, RANDOM_OR_BATCHWISE)
        }
    )
    if layers:
        raise InputError(
            f"active_units: the encoder calls {' and '.join(layers)} in training mode, so "
            "its posterior means are random or depend on the other rows of their batch, and "
            "their variance across points would count units as active that are not; call "
            ".eval() on the networks first"
        )


def _layer_means(vae: Any, x: Tensor, num_mean_draws: int) -> Tensor:
    """E_q[z_l | x] of every layer of a layered VAE, concatenated: ``[batch, sum(latent_dims)]``."""
    q = vae.layer_posterior(0, x)
    means = [_posterior_mean(q, num_mean_draws)]
    below = q.sample((num_mean_draws,))
    for layer in range(1, vae.num_layers):
        q = vae.layer_posterior(layer, below)
        below = q.sample()
        try:
            conditional = q.mean
        except NotImplementedError:
            conditional = below
        if torch.isfinite(conditional).all():
            means.append(conditional.mean(0))
        else:
            means.append(below.median(0).values)
    return torch.cat(means, dim=-1)


def _posterior_mean(q: Distribution | Tensor, num_mean_draws: int) -> Tensor:
    """E_q[z], ``[batch, ...]``: the mean where finite, else from draws (median if heavy-tailed)."""
    if isinstance(q, Tensor):
        return q
    if not isinstance(q, Distribution):
        raise InputError(
            f"the encoder returned {type(q).__name__}, not q(z|x): it must return a torch "
            "Distribution or a tensor of posterior means (a Pyro guide returns nothing: pass "
            "the VAE, or a function x -> q(z|x))"
        )
    try:
        mean = q.mean
    except NotImplementedError:
        return q.sample((num_mean_draws,)).mean(0)
    if torch.isfinite(mean).all():
        return mean
    return q.sample((num_mean_draws,)).median(0).values
