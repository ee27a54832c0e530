"""Clause 6 of :mod:`vi_vae.contract`: which estimators a data plate that subsamples would bias.

A plate that subsamples B of N points scales every site's log density, and so each log
weight, by N/B. An estimator whose bound is linear in the log weights (the ELBO, STL)
stays unbiased; a log-mean-exp over K > 1 particles does not, and such an estimator
refuses the plate (:func:`subsampling_refusal`). Re-exported by :mod:`vi_vae.contract`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["biased_under_subsampling", "subsampling_refusal"]


def biased_under_subsampling(
    bound: Callable[[Tensor], Tensor],
    gradient_coefficients: Callable[[Tensor], list[Tensor]],
    num_particles: int,
) -> bool:
    r"""Whether an estimator is biased when the data plate subsamples (clause 6).

    A plate that subsamples B of N points scales every site's log density, and so each
    log weight, by s = N/B. The estimate Σ_{n in batch} bound(s log w_n) is unbiased for
    Σ_n bound(log w_n) only if the bound is linear in the scale,
    bound(s log w) = s bound(log w), and the gradient's coefficients do not change with it:
    true of the ELBO and STL, false of a log-mean-exp over K > 1 particles (IWAE, DReG,
    VR, MIWAE, CIWAE, PIWAE). Checked on fixed log weights with s = 2.
    """
    values = torch.linspace(-4.0, 0.0, 2 * num_particles, dtype=torch.float64)
    log_weights = values.reshape(num_particles, 2)
    if not torch.allclose(bound(2 * log_weights), 2 * bound(log_weights)):
        return True
    pairs = zip(
        gradient_coefficients(2 * log_weights), gradient_coefficients(log_weights), strict=True
    )
    return not all(torch.allclose(scaled, plain) for scaled, plain in pairs)


def subsampling_refusal(
    label: str,
    num_particles: int,
    bound: Callable[[Tensor], Tensor],
    gradient_coefficients: Callable[[Tensor], list[Tensor]],
) -> str | None:
    """Why estimator ``label`` refuses a data plate that subsamples; ``None`` if it need not.

    It must when it is :func:`biased_under_subsampling`.
    """
    if not biased_under_subsampling(bound, gradient_coefficients, num_particles):
        return None
    return (
        f"{label} with num_particles={num_particles} would be biased: the plate scales each "
        "log weight by (plate size / subsample size) inside the bound's log-mean-exp, which "
        "is not that multiple of the bound. Pick the mini-batch outside the model, with the "
        "data plate over all rows of x (pyro.plate(data_plate, x.shape[0]), as vi_vae.fit "
        "does), or use ELBO or STL, which are unbiased under subsampling"
    )
