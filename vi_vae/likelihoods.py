"""Observation models p_θ(x|z): heads that turn decoder outputs into distributions.

Each head knows how many decoder outputs it needs per input dimension, builds a
distribution with event shape ``[input_dim]``, and checks that data lie in its
support before training starts (a Bernoulli likelihood on grey pixels is a
silent modelling error, not a crash, so it is refused up front).
"""

from __future__ import annotations

import abc
import inspect
import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from vi_vae.errors import BINARIZE_HINT, InputError

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "ContinuousBernoulli",
    "Gaussian",
    "LearnedGaussian",
    "Likelihood",
    "get_likelihood",
]


class Likelihood(abc.ABC):
    """A decoder head: raw decoder outputs -> p_θ(x|z) with event shape ``[input_dim]``."""

    name: str
    #: decoder outputs per input dimension
    outputs_per_dimension: int = 1
    #: whether x is discrete (log p(x) is a log probability, ≤ 0) or continuous (a density)
    discrete: bool = False

    def num_outputs(self, input_dim: int) -> int:
        """Number of decoder outputs needed for data of dimension ``input_dim``."""
        return self.outputs_per_dimension * input_dim

    @abc.abstractmethod
    def distribution(self, raw: Tensor) -> dist.TorchDistribution:
        """p_θ(x|z) from ``raw: [..., num_outputs]``; event shape ``[input_dim]``."""

    @abc.abstractmethod
    def mean(self, raw: Tensor) -> Tensor:
        """E[x|z], the image shown for reconstructions and samples."""

    def validate(self, x: Tensor, name: str = "x") -> None:
        """Raise :class:`InputError` if ``x`` is not finite."""
        if not torch.isfinite(x).all():
            raise InputError(f"{name} contains NaN or infinite values; all values must be finite")

    def config(self) -> dict[str, object]:
        """Options that rebuild this head with :func:`get_likelihood`."""
        return {"name": self.name}


def _check_unit_interval(x: Tensor, name: str, likelihood: str) -> None:
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise InputError(
            f"{name} has values in [{x.min().item():g}, {x.max().item():g}] but the {likelihood} "
            "likelihood accepts values in [0, 1]; rescale the data (e.g. divide pixels by 255)"
        )


class Bernoulli(Likelihood):
    """Bernoulli pixels with logits from the decoder; −log p is binary cross-entropy."""

    name = "bernoulli"
    discrete = True

    def distribution(self, raw: Tensor) -> dist.TorchDistribution:
        """Independent Bernoulli(logits=raw)."""
        return dist.Bernoulli(logits=raw, validate_args=False).to_event(1)

    def mean(self, raw: Tensor) -> Tensor:
        """sigmoid(raw)."""
        return torch.sigmoid(raw)

    def validate(self, x: Tensor, name: str = "x") -> None:
        """Require finite values in {0, 1}."""
        super().validate(x, name)
        _check_unit_interval(x, name, self.name)
        if not ((x == 0) | (x == 1)).all():
            raise InputError(
                f"{name} is not binary but the bernoulli likelihood needs 0/1 data; "
                + BINARIZE_HINT
            )


class ContinuousBernoulli(Likelihood):
    """The normalized continuous Bernoulli of Loaiza-Ganem & Cunningham (2019) on [0, 1].

    References:
        [1] The continuous Bernoulli: fixing a pervasive error in variational
            autoencoders, Loaiza-Ganem & Cunningham, NeurIPS 2019.
    """

    name = "continuous-bernoulli"

    def distribution(self, raw: Tensor) -> dist.TorchDistribution:
        """Independent ContinuousBernoulli(logits=raw), normalizing constant included."""
        return dist.ContinuousBernoulli(logits=raw, validate_args=False).to_event(1)

    def mean(self, raw: Tensor) -> Tensor:
        """The continuous Bernoulli mean (not sigmoid(raw))."""
        return dist.ContinuousBernoulli(logits=raw, validate_args=False).mean

    def validate(self, x: Tensor, name: str = "x") -> None:
        """Require finite values in [0, 1]."""
        super().validate(x, name)
        _check_unit_interval(x, name, self.name)


class Gaussian(Likelihood):
    """N(x | x′, σ0² I) with fixed σ0: −log p = ‖x − x′‖² / (2σ0²) + D·log(σ0·√(2π)).

    Args:
        scale: the fixed standard deviation σ0.
    """

    name = "gaussian"

    def __init__(self, scale: float = 0.1) -> None:
        if not scale > 0 or math.isinf(scale):
            raise InputError(f"gaussian likelihood scale must be a positive number; got {scale!r}")
        self.scale = float(scale)

    def distribution(self, raw: Tensor) -> dist.TorchDistribution:
        """Independent Normal(raw, σ0)."""
        return dist.Normal(raw, self.scale, validate_args=False).to_event(1)

    def mean(self, raw: Tensor) -> Tensor:
        """The decoder output itself."""
        return raw

    def config(self) -> dict[str, object]:
        """Name and σ0."""
        return {"name": self.name, "scale": self.scale}


class LearnedGaussian(Likelihood):
    """N(x | μ(z), σ(z)²) with a per-dimension σ from the decoder, σ = σ_min + softplus(raw).

    Args:
        min_scale: the floor σ_min. Pixels that are 0 in every image (MNIST's
            border) would otherwise drive σ -> 0 and log p(x) -> +inf; σ_min = 0.01
            caps each dimension's log-density at -log(0.01·√(2π)) ≈ 3.7 nats.
    """

    name = "gaussian-learned"
    outputs_per_dimension = 2

    def __init__(self, min_scale: float = 0.01) -> None:
        if not min_scale > 0:
            raise InputError(f"min_scale must be a positive number; got {min_scale!r}")
        self.min_scale = float(min_scale)

    def distribution(self, raw: Tensor) -> dist.TorchDistribution:
        """Independent Normal(μ, σ) from ``raw = [μ, raw_σ]``."""
        loc, raw_scale = raw.chunk(2, dim=-1)
        scale = self.min_scale + F.softplus(raw_scale)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def mean(self, raw: Tensor) -> Tensor:
        """μ, the first half of the decoder output."""
        return raw.chunk(2, dim=-1)[0]

    def config(self) -> dict[str, object]:
        """Name and σ_min."""
        return {"name": self.name, "min_scale": self.min_scale}


#: name -> likelihood class
LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls for cls in (Bernoulli, ContinuousBernoulli, Gaussian, LearnedGaussian)
}


def get_likelihood(name: str | Likelihood, **options: object) -> Likelihood:
    """Build a likelihood head by name, e.g. ``get_likelihood("gaussian", scale=0.1)``."""
    if isinstance(name, Likelihood):
        return name
    if name not in LIKELIHOODS:
        raise InputError(f"unknown likelihood {name!r}; accepted values: {', '.join(LIKELIHOODS)}")
    try:
        return LIKELIHOODS[name](**options)
    except TypeError:
        accepted = ", ".join(inspect.signature(LIKELIHOODS[name]).parameters) or "none"
        raise InputError(
            f"likelihood {name!r} got options {sorted(options)}; accepted options: {accepted}"
        ) from None
