"""The latent-family interface and the registry that maps names to families."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from functools import cached_property

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints, transform_to
from torch.distributions.constraints import Constraint

from vi_vae.errors import InputError

__all__ = [
    "CATEGORIES",
    "FAMILIES",
    "ElementwiseFamily",
    "LatentFamily",
    "get_family",
    "register_family",
]

#: Kingma & Welling (2014, §2.4): the three ways to write z = g_φ(ε, x).
CATEGORIES = ("inverse_cdf", "location_scale", "composition")


class LatentFamily(abc.ABC):
    """A reparameterizable family for q_φ(z|x), with a default prior p(z).

    The encoder outputs ``num_raw_parameters(latent_dim)`` unconstrained numbers per
    data point; :meth:`posterior` maps them to a distribution whose batch shape is
    the leading shape of ``raw`` and whose event shape is ``[latent_dim]``.

    Attributes:
        name: registry name, e.g. ``"normal"``.
        categories: Kingma & Welling categories the family belongs to.
        support: the support of z under every posterior and the prior.
        description: one line for ``vi-vae families``.
    """

    name: str
    categories: tuple[str, ...]
    support: Constraint
    description: str = ""

    @abc.abstractmethod
    def num_raw_parameters(self, latent_dim: int) -> int:
        """Number of unconstrained encoder outputs per data point."""

    @abc.abstractmethod
    def posterior(self, raw: Tensor) -> dist.TorchDistribution:
        """q(z|x) from raw encoder outputs ``raw: [..., num_raw_parameters]``."""

    @abc.abstractmethod
    def prior(
        self,
        latent_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dist.TorchDistribution:
        """The default p(z): batch shape ``[]``, event shape ``[latent_dim]``."""

    def center(self, posterior: dist.TorchDistribution) -> Tensor:
        """A point summary of q(z|x) for reconstructions and latent plots (the mean)."""
        return posterior.mean

    @cached_property
    def has_analytic_kl(self) -> bool:
        """Whether KL(q ‖ p) between posterior and default prior is closed form."""
        latent_dim = 2
        raw = torch.zeros(1, self.num_raw_parameters(latent_dim))
        try:
            torch.distributions.kl_divergence(self.posterior(raw), self.prior(latent_dim))
        except NotImplementedError:
            return False
        return True

    def summary(self) -> dict[str, str]:
        """The row that ``vi-vae families`` prints for this family."""
        prior = self.prior(2)
        base = getattr(prior, "base_dist", prior)
        return {
            "name": self.name,
            "category": ", ".join(self.categories),
            "support": _describe_constraint(self.support),
            "prior": type(base).__name__,
            "kl": "analytic" if self.has_analytic_kl else "sampled",
            "description": self.description,
        }


class ElementwiseFamily(LatentFamily):
    """A family whose latent dimensions are independent copies of one distribution.

    Each named parameter takes ``latent_dim`` raw encoder outputs mapped into its
    constraint by ``torch.distributions.transform_to``; the prior is the same
    distribution with fixed parameters; the posterior is wrapped in
    ``to_event(1)`` so that z has event shape ``[latent_dim]``.

    Args:
        name: registry name.
        categories: Kingma & Welling categories.
        distribution: constructor taking the named parameters as keywords.
        parameters: parameter name -> constraint, in the order of the raw outputs.
        prior_parameters: parameter name -> value of the default prior.
        support: support of z.
        description: one line for ``vi-vae families``.
        center: optional point summary of q (default: its mean).
    """

    def __init__(
        self,
        name: str,
        categories: tuple[str, ...],
        distribution: Callable[..., dist.TorchDistribution],
        parameters: Mapping[str, Constraint],
        prior_parameters: Mapping[str, float],
        support: Constraint,
        description: str = "",
        center: Callable[[dist.TorchDistribution], Tensor] | None = None,
    ) -> None:
        self.name = name
        self.categories = tuple(categories)
        self.distribution = distribution
        self.parameters = dict(parameters)
        self.prior_parameters = dict(prior_parameters)
        self.support = support
        self.description = description
        self._center = center

    def num_raw_parameters(self, latent_dim: int) -> int:
        """``len(parameters) * latent_dim``."""
        return len(self.parameters) * latent_dim

    def posterior(self, raw: Tensor) -> dist.TorchDistribution:
        """Split ``raw`` into one chunk per parameter, constrain each, build q."""
        num_parameters = len(self.parameters)
        if raw.shape[-1] % num_parameters:
            raise InputError(
                f"the encoder for latent family {self.name!r} must output a multiple of "
                f"{num_parameters} values per data point; got {raw.shape[-1]}"
            )
        chunks = raw.split(raw.shape[-1] // num_parameters, dim=-1)
        kwargs = {
            name: transform_to(constraint)(chunk)
            for (name, constraint), chunk in zip(self.parameters.items(), chunks, strict=True)
        }
        return self.distribution(**kwargs).to_event(1)

    def prior(
        self,
        latent_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dist.TorchDistribution:
        """The distribution at ``prior_parameters``, ``latent_dim`` independent copies."""
        dtype = dtype or torch.get_default_dtype()
        kwargs = {
            name: torch.full((latent_dim,), float(value), device=device, dtype=dtype)
            for name, value in self.prior_parameters.items()
        }
        return self.distribution(**kwargs).to_event(1)

    def center(self, posterior: dist.TorchDistribution) -> Tensor:
        """The mean of q, or the family's own point summary where it has one."""
        if self._center is not None:
            return self._center(posterior)
        return posterior.mean


#: name -> family. Filled by explicit ``register_family`` calls in the category modules.
FAMILIES: dict[str, LatentFamily] = {}


def register_family(family: LatentFamily) -> LatentFamily:
    """Add ``family`` to :data:`FAMILIES` under ``family.name`` and return it."""
    if family.name in FAMILIES:
        raise ValueError(f"latent family {family.name!r} is already registered")
    unknown = set(family.categories) - set(CATEGORIES)
    if unknown or not family.categories:
        raise ValueError(f"family {family.name!r}: categories must be among {CATEGORIES}")
    FAMILIES[family.name] = family
    return family


def get_family(name: str | LatentFamily) -> LatentFamily:
    """Look up a family by name (a :class:`LatentFamily` is returned unchanged)."""
    if isinstance(name, LatentFamily):
        return name
    if name not in FAMILIES:
        raise InputError(
            f"unknown latent family {name!r}; accepted values: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[name]


def _describe_constraint(constraint: Constraint) -> str:
    if constraint is constraints.real or constraint is constraints.real_vector:
        return "real"
    if constraint is constraints.positive:
        return "(0, inf)"
    if constraint is constraints.simplex:
        return "simplex"
    if constraint is constraints.unit_interval:
        return "(0, 1)"
    lower = getattr(constraint, "lower_bound", None)
    upper = getattr(constraint, "upper_bound", None)
    if lower is not None and upper is not None:
        return f"[{lower:g}, {upper:g}]"
    if lower is not None:
        return f"[{lower:g}, inf)"
    return type(constraint).__name__.lstrip("_")
