r"""Diagnostics of estimators and fitted models: gradient SNR and active units.

- :func:`gradient_snr`: the signal-to-noise ratio of an estimator's gradient,
  :math:`|\mathbb{E}[g]| / \mathrm{std}(g)` per parameter element, summarized
  separately for the guide's (encoder's) and the model's (decoder's) parameters
  (Rainforth et al. 2018), and :func:`snr_noise_floor`, what an element whose
  gradient has mean 0 reads at R draws.
- :func:`active_units`: latent dimensions whose posterior mean varies across data
  points, :math:`\mathrm{Cov}_x(\mathbb{E}_{q(z|x)}[z_i]) > 0.01` (Burda et al. 2016),
  defined in ``vi_vae.evaluation._active_units``.

Per-point importance-weight reliability (effective sample size and Pareto k̂) lives
with log p(x) in :func:`vi_vae.evaluation.log_marginal_likelihood`.

References:
    [1] Importance Weighted Autoencoders, Burda, Grosse & Salakhutdinov, ICLR 2016.
    [2] Tighter Variational Bounds are Not Necessarily Better, Rainforth, Kosiorek,
        Le, Maddison, Igl, Wood & Teh, ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.elbo import ELBO as PyroELBO
from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.contract import check_pair
from vi_vae.errors import InputError
from vi_vae.estimators import as_loss
from vi_vae.estimators.gradient_terms import trace_parameters
from vi_vae.evaluation._active_units import ACTIVE_UNIT_THRESHOLD, ActiveUnits, active_units
from vi_vae.keys import seeded

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "ActiveUnits",
    "GradientSNR",
    "active_units",
    "gradient_snr",
    "snr_noise_floor",
]


@dataclass
class GradientSNR:
    """Signal-to-noise ratio of a gradient estimator, by parameter group.

    For each parameter element, SNR = ``|mean| / std`` of its gradient over repeated
    draws on a fixed batch (std with Bessel's correction). Elements whose gradient
    is exactly zero in every draw (parameters the loss does not touch) have no SNR
    (NaN), and elements whose gradient is the same nonzero value in every draw (no
    noise: an auxiliary network trained on observed values alone, as CEVAE's guide
    has) an infinite one: both are left out of the summaries, which describe the
    elements the estimator's draws make noisy (``guide_noise_free`` and
    ``model_noise_free`` count the infinite ones).

    Attributes:
        guide: mean SNR over the guide's parameter elements (the encoder's, for a VAE),
            NaN where none is noisy.
        model: mean SNR over the model's parameter elements (the decoder's).
        guide_elements: per-element SNR of the guide's parameters, flattened in
            the order of ``guide_names``.
        model_elements: the same for the model's parameters.
        guide_names: names of the guide's parameters (Pyro param-store names).
        model_names: names of the model's parameters.
        num_draws: the number of gradient draws.
    """

    guide: float
    model: float
    guide_elements: Tensor
    model_elements: Tensor
    guide_names: list[str]
    model_names: list[str]
    num_draws: int

    @property
    def guide_noise_free(self) -> int:
        """The guide's elements whose gradient had no noise (SNR infinite)."""
        return int(self.guide_elements.isinf().sum())

    @property
    def model_noise_free(self) -> int:
        """The model's elements whose gradient had no noise (SNR infinite)."""
        return int(self.model_elements.isinf().sum())

    @property
    def noise_floor(self) -> float:
        """:func:`snr_noise_floor` of ``num_draws``: SNRs near it do not differ from 0."""
        return snr_noise_floor(self.num_draws)

    def summary(self) -> dict[str, float]:
        """Mean and median SNR of each group, as plain floats."""
        return {
            "snr_guide_mean": self.guide,
            "snr_guide_median": _noisy(self.guide_elements).nanmedian().item(),
            "snr_model_mean": self.model,
            "snr_model_median": _noisy(self.model_elements).nanmedian().item(),
        }


def snr_noise_floor(num_draws: int) -> float:
    r"""The SNR a gradient element with mean 0 reads on average at R draws.

    For Gaussian draws with mean 0, :math:`\sqrt{R}\,\bar g / s` follows Student's t
    with ν = R − 1 degrees of freedom, so the measured SNR :math:`|\bar g| / s` has mean

    .. math::
        \frac{\mathbb{E}|t_ν|}{\sqrt{R}}
        = \frac{2\sqrt{ν}\,Γ(\tfrac{ν + 1}{2})}{\sqrt{π R}\,(ν - 1)\,Γ(\tfrac{ν}{2})}
        \approx \sqrt{\frac{2}{π R}},

    0.080 at R = 100: an SNR this small is noise, not a measured signal (infinite at
    R = 2, where t has one degree of freedom and no mean).
    """
    check_positive_int("num_draws", num_draws, minimum=2)
    nu = num_draws - 1
    if nu == 1:
        return math.inf
    log_mean = (
        math.log(2 * math.sqrt(nu) / (math.sqrt(math.pi) * (nu - 1)))
        + math.lgamma((nu + 1) / 2)
        - math.lgamma(nu / 2)
    )
    return math.exp(log_mean) / math.sqrt(num_draws)


def gradient_snr(
    model: Callable,
    guide: Callable,
    loss: PyroELBO | str,
    x: Tensor,
    *,
    num_draws: int = 100,
    seed: int | None = None,
    on_draw: Callable[[int, int], None] | None = None,
    data_plate: str = "data",
    **kwargs: Any,
) -> GradientSNR:
    r"""Signal-to-noise ratio of ``loss``'s gradient on the fixed batch ``x`` [2].

    .. math::
        \mathrm{SNR}_j = \frac{|\bar g_j|}{s_j}, \qquad
        \bar g_j = \frac{1}{R}\sum_{r=1}^R g_j^{(r)}, \quad
        s_j^2 = \frac{1}{R-1}\sum_{r=1}^R (g_j^{(r)} - \bar g_j)^2,

    over R = ``num_draws`` calls of ``loss.loss_and_grads(model, guide, x)``, each
    with fresh draws of the particles. Guide parameters are the ``param`` sites the
    guide touches or its distributions depend on (:func:`vi_vae.contract.check_pair`:
    an encoder registered in the model only is the guide's); model parameters are the
    other ones the loss touches. Nothing is
    updated, and each parameter's ``.grad`` is restored afterwards.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature.
        loss: any ``pyro.infer.ELBO`` (vi_vae's estimators or Pyro's), or an estimator
            spelling such as ``"iwae:5"`` (:func:`vi_vae.parse_estimator`).
        x: the fixed batch.
        num_draws: R, gradient draws (at least 2).
        seed: seed for reproducible draws (the global RNG is left untouched).
        on_draw: called as ``on_draw(done, num_draws)`` after every draw (progress).
        data_plate: name of the data plate (a spelled ``loss`` takes it; one of
            vi_vae's estimators must name the same).
        **kwargs: passed to model and guide.

    Returns:
        :class:`GradientSNR`; for a VAE, ``.guide`` is the encoder's mean SNR and
        ``.model`` the decoder's.
    """
    check_positive_int("num_draws", num_draws, minimum=2)
    loss = as_loss(loss, data_plate=data_plate)
    with seeded(seed, x.device):
        parameters, guide_names, model_names = _split_parameters(
            model, guide, loss, (x, kwargs), data_plate
        )
        names = guide_names + model_names
        saved = {name: leaf.grad for name, leaf in parameters.items()}
        try:
            snr = _signal_to_noise(
                lambda: _gradient_draw(loss, (model, guide, x, kwargs), parameters, names),
                num_draws,
                on_draw,
            )
        finally:
            for name, leaf in parameters.items():
                leaf.grad = saved[name]
    split = sum(parameters[name].numel() for name in guide_names)
    guide_elements, model_elements = snr[:split].cpu(), snr[split:].cpu()
    return GradientSNR(
        guide=_noisy(guide_elements).nanmean().item(),
        model=_noisy(model_elements).nanmean().item(),
        guide_elements=guide_elements,
        model_elements=model_elements,
        guide_names=guide_names,
        model_names=model_names,
        num_draws=num_draws,
    )


def _noisy(snr: Tensor) -> Tensor:
    """The elements' SNRs, an infinite one (a gradient without noise) as NaN: left out."""
    return snr.masked_fill(snr.isinf(), math.nan)


def _signal_to_noise(
    draw: Callable[[], Tensor], num_draws: int, on_draw: Callable[[int, int], None] | None
) -> Tensor:
    """|mean| / sd of each element over ``num_draws`` calls of ``draw``.

    NaN where both are 0, infinite where only the sd is (the same draw every time).

    Welford's running mean and sum of squared deviations, in the draws' dtype (float64).
    """
    report = on_draw or (lambda done, total: None)
    mean = draw().clone()
    m2 = torch.zeros_like(mean)
    report(1, num_draws)
    for count in range(2, num_draws + 1):
        value = draw()
        delta = value - mean
        mean += delta / count
        m2 += delta * (value - mean)
        report(count, num_draws)
    std = (m2 / (num_draws - 1)).sqrt()
    snr = mean.abs() / std
    snr[(mean == 0) & (std == 0)] = math.nan
    return snr


def _split_parameters(
    model: Callable, guide: Callable, loss: PyroELBO, data: tuple, data_plate: str
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """``(parameters, guide_names, model_names)``: what ``loss`` touches, the guide's first."""
    x, kwargs = data
    with poutine.trace(param_only=True) as capture, torch.no_grad():
        loss.loss(model, guide, x, **kwargs)
    parameters = trace_parameters(capture.trace)
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide, param_only=True).get_trace(x, **kwargs)
    # the guide's parameters are those its distributions depend on (the contract's
    # rule, as DReG's): an encoder registered in the model only (Pyro's SS-VAE) is
    # the guide's too
    layout = check_pair(model, guide, (x,), kwargs, data_plate=data_plate, parameters=True)
    owned = layout.guide_parameters
    guide_names = [name for name in trace_parameters(guide_trace) if name in parameters]
    guide_names += [name for name in parameters if name in owned and name not in guide_names]
    model_names = [name for name in parameters if name not in guide_names]
    return parameters, guide_names, model_names


def _gradient_draw(
    loss: PyroELBO, call: tuple, parameters: dict[str, Tensor], names: list[str]
) -> Tensor:
    """One draw of ``loss``'s gradient, the parameters ``names`` flattened in that order.

    Raises:
        InputError: when the gradient reaches none of the parameters the pair's
            ``param`` sites hold: their SNRs would all be NaN.
    """
    model, guide, x, kwargs = call
    for leaf in parameters.values():
        leaf.grad = None
    loss.loss_and_grads(model, guide, x, **kwargs)
    if parameters and all(leaf.grad is None for leaf in parameters.values()):
        raise InputError(
            "gradient_snr: the loss's gradient reaches none of the tensors at the pair's param "
            f"sites ({', '.join(list(parameters)[:3])}, ...): Pyro's param store holds other "
            "tensors under those names than the ones the model and guide compute with (another "
            "module registered the same names first); call pyro.clear_param_store() and build "
            "the model again, or give its modules other names"
        )
    return torch.cat([_flat_gradient(parameters[name]) for name in names])


def _flat_gradient(leaf: Tensor) -> Tensor:
    if leaf.grad is None:
        return torch.zeros(leaf.numel(), dtype=torch.float64, device=leaf.device)
    return leaf.grad.detach().reshape(-1).double()
