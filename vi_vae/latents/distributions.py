r"""Reparameterized distributions that torch and Pyro lack, sampled by Kingma's constructions.

Every class subclasses :class:`pyro.distributions.TorchDistribution` (directly or
through a Pyro distribution), so ``.to_event``, ``.expand`` and ``pyro.plate``
broadcasting work, and draws by ``rsample`` as ``z = g(ε, θ)`` so that gradients
reach the parameters θ [1]:

- inverse CDF, ε ~ U(0, 1), z = F⁻¹(ε): :class:`Rayleigh`, :class:`Gompertz`,
  :class:`Reciprocal`, :class:`Logistic`; :class:`Erlang` sums k such draws;
- location-scale: :class:`Triangular`, z = low + (high − low)·ε with ε drawn by
  the standard triangle's inverse CDF;
- composition: :class:`NormalizedGammaDirichlet` and :class:`NormalizedGammaBeta`,
  z = G / Σ G for independent gamma variates G.

The three gamma-based ones live in :mod:`vi_vae.latents.gamma_compositions` and
are re-exported here. Uniform noise comes from
:func:`~vi_vae.latents.sampling.standard_uniform`, which never returns 0 or 1,
so F⁻¹(ε) is always finite (Pyro's own ``Logistic`` returns −inf about once in
2²⁴ float32 draws; :class:`Logistic` here fixes that).

References:
    [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014, §2.4.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from vi_vae.latents.gamma_compositions import (
    Erlang,
    NormalizedGammaBeta,
    NormalizedGammaDirichlet,
)
from vi_vae.latents.sampling import standard_exponential, standard_uniform

__all__ = [
    "Erlang",
    "Gompertz",
    "Logistic",
    "NormalizedGammaBeta",
    "NormalizedGammaDirichlet",
    "Rayleigh",
    "Reciprocal",
    "Triangular",
]

_LOG_2 = math.log(2.0)
_EULER_GAMMA = 0.5772156649015329
_NO_SAMPLE_SHAPE = torch.Size()


class _ExpandMixin:
    """``expand`` for distributions whose parameters are all batch-shaped tensors."""

    _parameter_names: tuple[str, ...] = ()

    def _set_parameters(self, *values: Tensor | float, validate_args: bool | None) -> None:
        """Broadcast ``values`` together and store them under ``_parameter_names``."""
        values = broadcast_all(*values)
        for name, value in zip(self._parameter_names, values, strict=True):
            setattr(self, name, value)
        TorchDistribution.__init__(self, values[0].shape, validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: TorchDistribution | None = None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        for name in self._parameter_names:
            setattr(new, name, getattr(self, name).expand(batch_shape))
        TorchDistribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class Rayleigh(_ExpandMixin, TorchDistribution):
    r"""Rayleigh(σ), by its inverse CDF.

    .. math::
        p(z) = \frac{z}{σ^2} e^{-z^2 / 2σ^2}, \quad F^{-1}(ε) = σ\sqrt{-2\log(1 - ε)}

    Args:
        scale: σ > 0.

    Example:
        >>> Rayleigh(torch.tensor(2.0)).mean
        tensor(2.5066)
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True
    _parameter_names = ("scale",)

    def __init__(self, scale: Tensor | float, *, validate_args: bool | None = None) -> None:
        self._set_parameters(scale, validate_args=validate_args)

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """σ·√(2E) with E = −log ε ~ Exponential(1) (ε and 1 − ε are both uniform)."""
        shape = self._extended_shape(sample_shape)
        return self.scale * (2 * standard_exponential(shape, self.scale)).sqrt()

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density, log z − 2 log σ − z²/2σ²."""
        if self._validate_args:
            self._validate_sample(value)
        return value.log() - 2 * self.scale.log() - value.pow(2) / (2 * self.scale.pow(2))

    def cdf(self, value: Tensor) -> Tensor:
        """1 − exp(−z²/2σ²)."""
        return -torch.expm1(-value.pow(2) / (2 * self.scale.pow(2)))

    def icdf(self, value: Tensor) -> Tensor:
        """σ √(−2 log(1 − ε))."""
        return self.scale * (-2 * torch.log1p(-value)).sqrt()

    @property
    def mean(self) -> Tensor:
        """σ √(π/2)."""
        return self.scale * math.sqrt(math.pi / 2)

    @property
    def mode(self) -> Tensor:
        """σ."""
        return self.scale

    @property
    def variance(self) -> Tensor:
        """(4 − π)/2 · σ²."""
        return self.scale.pow(2) * (4 - math.pi) / 2

    def entropy(self) -> Tensor:
        """1 + log(σ/√2) + γ/2."""
        return 1 + torch.log(self.scale / math.sqrt(2)) + _EULER_GAMMA / 2


class Gompertz(_ExpandMixin, TorchDistribution):
    r"""Gompertz(η, s) on z ≥ 0, by its inverse CDF (scipy's ``gompertz(c=η, scale=s)``).

    .. math::
        p(z) = \frac{η}{s} \exp\big(x - η(e^{x} - 1)\big),\; x = z/s, \qquad
        F^{-1}(ε) = s \log\Big(1 - \frac{\log(1 - ε)}{η}\Big)

    Its mean and variance involve the exponential integral E₁, which torch lacks,
    so they are not implemented; :attr:`median` and :attr:`mode` are.

    Args:
        concentration: η > 0.
        scale: s > 0 (1/b in Wikipedia's notation).
    """

    arg_constraints = {"concentration": constraints.positive, "scale": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    _parameter_names = ("concentration", "scale")

    def __init__(
        self,
        concentration: Tensor | float,
        scale: Tensor | float,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self._set_parameters(concentration, scale, validate_args=validate_args)

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """s·log(1 + E/η) with E = −log ε ~ Exponential(1)."""
        shape = self._extended_shape(sample_shape)
        exponential = standard_exponential(shape, self.scale)
        return self.scale * torch.log1p(exponential / self.concentration)

    def log_prob(self, value: Tensor) -> Tensor:
        """log(η/s) + x − η·expm1(x), x = z/s."""
        if self._validate_args:
            self._validate_sample(value)
        x = value / self.scale
        return (self.concentration / self.scale).log() + x - self.concentration * torch.expm1(x)

    def cdf(self, value: Tensor) -> Tensor:
        """1 − exp(−η (e^{z/s} − 1))."""
        return -torch.expm1(-self.concentration * torch.expm1(value / self.scale))

    def icdf(self, value: Tensor) -> Tensor:
        """The quantile function, s log(1 − log(1 − ε)/η)."""
        return self.scale * torch.log1p(-torch.log1p(-value) / self.concentration)

    @property
    def median(self) -> Tensor:
        """The median, s log(1 + log 2/η)."""
        return self.scale * torch.log1p(_LOG_2 / self.concentration)

    @property
    def mode(self) -> Tensor:
        """s·max(0, −log η)."""
        return self.scale * (-self.concentration.log()).clamp(min=0)


class _OnInterval(_ExpandMixin, TorchDistribution):
    """A distribution on [low, high], its first two parameters, low < high, drawn by its icdf."""

    def _set_interval(self, *values: Tensor | float, validate_args: bool | None) -> None:
        self._set_parameters(*values, validate_args=validate_args)
        if self._validate_args and not torch.lt(self.low, self.high).all():
            raise ValueError(f"{type(self).__name__} needs low < high")

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        """[low, high]."""
        return constraints.interval(self.low, self.high)

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """Draw F⁻¹(u), u ~ U(0, 1), by the subclass's ``icdf``."""
        shape = self._extended_shape(sample_shape)
        return self.icdf(standard_uniform(shape, self.low))


class Reciprocal(_OnInterval):
    r"""The reciprocal (log-uniform) distribution on [low, high], by its inverse CDF.

    .. math::
        p(z) = \frac{1}{z \log(b/a)}, \quad F^{-1}(ε) = a (b/a)^{ε}

    scipy's ``loguniform(a, b)``.

    Args:
        low: a > 0.
        high: b > a.

    Example:
        >>> Reciprocal(1.0, math.e).log_prob(torch.tensor(2.0))
        tensor(-0.6931)
    """

    arg_constraints = {
        "low": constraints.positive,
        "high": constraints.dependent(is_discrete=False, event_dim=0),
    }
    has_rsample = True
    _parameter_names = ("low", "high")

    def __init__(
        self, low: Tensor | float, high: Tensor | float, *, validate_args: bool | None = None
    ) -> None:
        self._set_interval(low, high, validate_args=validate_args)

    @property
    def _log_ratio(self) -> Tensor:
        return self.high.log() - self.low.log()

    def log_prob(self, value: Tensor) -> Tensor:
        """−log z − log log(b/a) on [a, b], −inf outside."""
        if self._validate_args:
            self._validate_sample(value)
        inside = (value >= self.low) & (value <= self.high)
        log_density = -value.clamp(min=torch.finfo(value.dtype).tiny).log() - self._log_ratio.log()
        return torch.where(inside, log_density, -math.inf)

    def cdf(self, value: Tensor) -> Tensor:
        """log(z/a)/log(b/a), clamped to [0, 1]."""
        ratio = value.clamp(min=torch.finfo(value.dtype).tiny).log() - self.low.log()
        return (ratio / self._log_ratio).clamp(0, 1)

    def icdf(self, value: Tensor) -> Tensor:
        """The quantile function, a (b/a)^ε."""
        return torch.exp(self.low.log() + value * self._log_ratio)

    @property
    def mean(self) -> Tensor:
        """(b − a)/log(b/a)."""
        return (self.high - self.low) / self._log_ratio

    @property
    def variance(self) -> Tensor:
        """(b² − a²)/(2 log(b/a)) − mean²."""
        return (self.high.pow(2) - self.low.pow(2)) / (2 * self._log_ratio) - self.mean.pow(2)

    def entropy(self) -> Tensor:
        """(log a + log b)/2 + log log(b/a)."""
        return (self.low.log() + self.high.log()) / 2 + self._log_ratio.log()


class Triangular(_OnInterval):
    r"""The triangular distribution on [low, high] with its mode at low + peak·(high − low).

    A location-scale family z = low + (high − low)·ε for each ``peak`` (scipy's
    ``triang(c=peak, loc=low, scale=high − low)``), with ε drawn by the standard
    triangle's inverse CDF

    .. math::
        F^{-1}(u) = \sqrt{u c} \;\text{ if } u < c, \quad 1 - \sqrt{(1 - u)(1 - c)}
        \;\text{ otherwise.}

    Args:
        low: left end.
        high: right end, > low.
        peak: c ∈ [0, 1], the relative position of the mode.
    """

    arg_constraints = {
        "low": constraints.real,
        "high": constraints.dependent(is_discrete=False, event_dim=0),
        "peak": constraints.unit_interval,
    }
    has_rsample = True
    _parameter_names = ("low", "high", "peak")

    def __init__(
        self,
        low: Tensor | float,
        high: Tensor | float,
        peak: Tensor | float = 0.5,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self._set_interval(low, high, peak, validate_args=validate_args)

    @property
    def _width(self) -> Tensor:
        return self.high - self.low

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-density, log 2 − log(high − low) + log(ε/c) or + log((1 − ε)/(1 − c))."""
        if self._validate_args:
            self._validate_sample(value)
        tiny = torch.finfo(value.dtype).tiny
        x = (value - self.low) / self._width
        left = (x.clamp(min=0) / self.peak.clamp(min=tiny)).log()
        right = ((1 - x).clamp(min=0) / (1 - self.peak).clamp(min=tiny)).log()
        shape = torch.where(x < self.peak, left, torch.where(x > self.peak, right, 0.0))
        log_density = _LOG_2 - self._width.log() + shape
        return torch.where((x >= 0) & (x <= 1), log_density, -math.inf)

    def cdf(self, value: Tensor) -> Tensor:
        """ε²/c left of the mode, 1 − (1 − ε)²/(1 − c) right of it."""
        tiny = torch.finfo(value.dtype).tiny
        x = ((value - self.low) / self._width).clamp(0, 1)
        left = x.pow(2) / self.peak.clamp(min=tiny)
        right = 1 - (1 - x).pow(2) / (1 - self.peak).clamp(min=tiny)
        return torch.where(x <= self.peak, left, right).clamp(0, 1)

    def icdf(self, value: Tensor) -> Tensor:
        """The quantile function (square roots floored at tiny so gradients stay finite)."""
        tiny = torch.finfo(value.dtype).tiny
        left = (value * self.peak).clamp(min=tiny).sqrt()
        right = 1 - ((1 - value) * (1 - self.peak)).clamp(min=tiny).sqrt()
        return self.low + self._width * torch.where(value < self.peak, left, right)

    @property
    def mode(self) -> Tensor:
        """The mode, low + c (high − low)."""
        return self.low + self.peak * self._width

    @property
    def mean(self) -> Tensor:
        """(low + high + mode)/3."""
        return (self.low + self.high + self.mode) / 3

    @property
    def variance(self) -> Tensor:
        """(high − low)² (1 − c + c²)/18."""
        return self._width.pow(2) * (1 - self.peak + self.peak.pow(2)) / 18

    def entropy(self) -> Tensor:
        """1/2 + log((high − low)/2)."""
        return 0.5 + (self._width / 2).log()


class Logistic(dist.Logistic):
    """Pyro's ``Logistic`` with open-interval noise: F⁻¹(ε) = loc + scale·logit(ε), ε ∈ (0, 1).

    Pyro draws ε with ``uniform_()``, which returns exactly 0 about once in 2²⁴
    float32 draws, and logit(0) = −inf; here ε never reaches 0 or 1.
    """

    def rsample(self, sample_shape: torch.Size = _NO_SAMPLE_SHAPE) -> Tensor:
        """Draw loc + scale·logit(ε)."""
        shape = self._extended_shape(sample_shape)
        return self.icdf(standard_uniform(shape, self.loc))
