r"""Maps from raw encoder outputs to distribution parameters, each into a stated box.

An encoder outputs unconstrained numbers; a latent family needs locations, scales
and shapes. Every map here sends the whole real line into a closed box
``[lower, upper]`` chosen per family so that, anywhere in the box, samples,
log-densities, KL terms and their gradients stay finite in float32. A box edge
is reached smoothly by the floor (``floor + softplus``, or a sigmoid) and
abruptly by a clamp (zero gradient beyond it); an encoder that pushes a raw value
past a clamp gets no gradient from it there, which in practice only happens for
encoders that have already diverged.

.. math::
    \mathrm{Real}(r) = \mathrm{clamp}(r, -b, b), \quad
    \mathrm{Positive}(r) = \min(f + \mathrm{softplus}(r), c), \quad
    \mathrm{Interval}(r) = l + (u - l)\,\sigma(r)

Softplus rather than ``exp`` for positive parameters: it grows linearly, so a
large raw value cannot overflow, and its floor keeps scales away from 0, where
log-densities diverge.
"""

from __future__ import annotations

import abc

import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOCATION", "SCALE", "Interval", "ParameterMap", "Positive", "Real"]


class ParameterMap(abc.ABC):
    """A map from raw encoder outputs to one parameter, elementwise.

    Attributes:
        lower: smallest value the map returns.
        upper: largest value the map returns.
    """

    lower: float
    upper: float

    @abc.abstractmethod
    def __call__(self, raw: Tensor) -> Tensor:
        """The parameter for ``raw`` (any shape), in ``[lower, upper]``."""

    @abc.abstractmethod
    def describe(self, name: str) -> str:
        """A formula such as ``"scale = min(1e-04 + softplus(raw), 10)"``."""


class Real(ParameterMap):
    """A real parameter (a location): ``raw`` clamped to ``[-bound, bound]``.

    Args:
        bound: half-width of the box.

    Example:
        >>> import torch
        >>> Real(20.0)(torch.tensor([-50.0, 3.0]))
        tensor([-20.,   3.])
    """

    def __init__(self, bound: float) -> None:
        if not bound > 0:
            raise ValueError(f"bound must be > 0; got {bound}")
        self.lower, self.upper = -float(bound), float(bound)

    def __call__(self, raw: Tensor) -> Tensor:
        """``clamp(raw, -bound, bound)``."""
        return raw.clamp(self.lower, self.upper)

    def describe(self, name: str) -> str:
        """A one-line formula."""
        return f"{name} = clamp(raw, {self.lower:g}, {self.upper:g})"


class Positive(ParameterMap):
    """A positive parameter (a scale, rate or shape): ``min(floor + softplus(raw), ceiling)``.

    Args:
        floor: smallest value; also a lower bound that another distribution's
            support needs (e.g. a Pareto scale at least the prior's).
        ceiling: largest value.

    Example:
        >>> import torch
        >>> Positive(0.5, 10.0)(torch.tensor([-100.0, 0.0, 100.0]))
        tensor([ 0.5000,  1.1931, 10.0000])
    """

    def __init__(self, floor: float, ceiling: float) -> None:
        if not 0 <= floor < ceiling:
            raise ValueError(f"need 0 <= floor < ceiling; got {floor}, {ceiling}")
        self.lower, self.upper = float(floor), float(ceiling)

    def __call__(self, raw: Tensor) -> Tensor:
        """``min(floor + softplus(raw), ceiling)``."""
        return (self.lower + F.softplus(raw)).clamp(max=self.upper)

    def describe(self, name: str) -> str:
        """A one-line formula."""
        return f"{name} = min({self.lower:g} + softplus(raw), {self.upper:g})"


class Interval(ParameterMap):
    """A parameter in a bounded interval: ``lower + (upper - lower) * sigmoid(raw)``.

    Args:
        lower: value as ``raw -> -inf``.
        upper: value as ``raw -> +inf``.

    Example:
        >>> import torch
        >>> Interval(0.0, 2.0)(torch.tensor([0.0]))
        tensor([1.])
    """

    def __init__(self, lower: float, upper: float) -> None:
        if not lower < upper:
            raise ValueError(f"need lower < upper; got {lower}, {upper}")
        self.lower, self.upper = float(lower), float(upper)

    def __call__(self, raw: Tensor) -> Tensor:
        """``lower + (upper - lower) * sigmoid(raw)``."""
        return self.lower + (self.upper - self.lower) * raw.sigmoid()

    def describe(self, name: str) -> str:
        """A one-line formula."""
        return f"{name} = {self.lower:g} + {self.upper - self.lower:g} * sigmoid(raw)"


#: Locations within ±20: twenty prior standard deviations, beyond any trained encoder.
LOCATION = Real(20.0)
#: Scales in [1e-4, 10]. The floor keeps log q(z) ≤ −log 1e-4 ≈ 9 nats per dimension
#: above a unit scale; the ceiling keeps z = loc ± 10·4.5 (the extreme float32 draw
#: of a Gumbel) inside |z| < 88, where the Gumbel prior's e^{−z} is finite.
SCALE = Positive(1e-4, 10.0)
