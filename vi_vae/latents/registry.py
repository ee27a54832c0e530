"""The latent-family interface and the registry that maps names to families."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints, transform_to
from torch.distributions.constraints import Constraint

from vi_vae.errors import InputError
from vi_vae.latents.parameters import LOCATION, SCALE, Interval, ParameterMap
from vi_vae.latents.pushforward import PushforwardPosterior

__all__ = [
    "CATEGORIES",
    "FAMILIES",
    "ElementwiseFamily",
    "LatentFamily",
    "describe_constraint",
    "describe_distribution",
    "get_family",
    "interval_family",
    "location_scale_family",
    "register_family",
]

#: Kingma & Welling (2014, §2.4): the three ways to write z = g_φ(ε, x).
CATEGORIES = ("inverse_cdf", "location_scale", "composition")


class LatentFamily(abc.ABC):
    """A reparameterizable family for q_φ(z|x), with a default prior p(z).

    The encoder outputs ``num_raw_parameters(latent_dim)`` unconstrained numbers per
    data point; :meth:`posterior` maps them to a distribution whose batch shape is
    the leading shape of ``raw`` and whose event shape is ``[latent_dim]``. The
    support of every posterior lies inside the support of :meth:`prior`, so that
    KL(q ‖ p) is finite.

    Attributes:
        name: registry name, e.g. ``"normal"``.
        categories: Kingma & Welling categories the family belongs to.
        support: the support of z under the prior (and so of every posterior).
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

    def prior(
        self,
        latent_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> dist.TorchDistribution:
        """The default p(z): batch shape ``[]``, event shape ``[latent_dim]`` (default dtype)."""
        dtype = dtype or torch.get_default_dtype()
        return self.prior_like(torch.zeros(latent_dim, device=device, dtype=dtype))

    @abc.abstractmethod
    def prior_like(self, zeros: Tensor) -> dist.TorchDistribution:
        """The default p(z) of ``zeros.shape`` = ``[latent_dim]``, on its device, in its dtype."""

    def center(self, posterior: dist.TorchDistribution) -> Tensor:
        """A point summary of q(z|x) for reconstructions and latent plots (the mean).

        For a flow guide (a :class:`~vi_vae.latents.pushforward.PushforwardPosterior`)
        it is the centre of the family's base distribution pushed through the flow.
        """
        if isinstance(posterior, PushforwardPosterior):
            return posterior.push(self.center(posterior.base_dist))
        return posterior.mean

    def describe_parameters(self) -> str:
        """How raw encoder outputs become the parameters of q, for ``vi-vae families``."""
        return ""

    def describe_prior(self) -> str:
        """The default prior with its parameters, e.g. ``"Normal(loc=0, scale=1)"``."""
        return describe_distribution(self.prior(2))

    def kl_divergence(
        self,
        posterior: dist.TorchDistribution,
        prior: dist.TorchDistribution,
        num_particles: int = 1,
    ) -> Tensor:
        r"""KL(q ‖ p) per batch element: closed form where registered, else sampled.

        .. math::
            \widehat{\mathrm{KL}} = \frac{1}{S} \sum_{s=1}^{S}
            \log q(z_s) - \log p(z_s), \qquad z_s \sim q \text{ (by rsample)}

        The sampled estimate is unbiased and differentiable through ``rsample``.

        Args:
            posterior: q, e.g. ``self.posterior(raw)``.
            prior: p, e.g. ``self.prior(latent_dim)``.
            num_particles: S, draws for the sampled estimate.

        Returns:
            ``[*posterior.batch_shape]``.
        """
        try:
            return torch.distributions.kl_divergence(posterior, prior)
        except NotImplementedError:
            z = posterior.rsample((num_particles,))
            return (posterior.log_prob(z) - prior.log_prob(z)).mean(0)

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
        """The row that ``vi-vae families`` prints for this family.

        Keys: ``name``, ``category`` (comma-separated), ``support`` (of z per
        coordinate, e.g. ``"[0.1, 10]"``), ``prior`` (with its parameters), ``kl``
        (``"analytic"`` or ``"sampled"``), ``parameters`` (raw outputs and their
        maps) and ``description``.
        """
        return {
            "name": self.name,
            "category": ", ".join(self.categories),
            "support": describe_constraint(self.support),
            "prior": self.describe_prior(),
            "kl": "analytic" if self.has_analytic_kl else "sampled",
            "parameters": self.describe_parameters(),
            "description": self.description,
        }


class ElementwiseFamily(LatentFamily):
    """A family whose latent dimensions are independent copies of one distribution.

    Each named parameter takes ``latent_dim`` raw encoder outputs, mapped by a
    :class:`~vi_vae.latents.parameters.ParameterMap` (or, for a bare constraint,
    by ``torch.distributions.transform_to``); the prior is the same constructor at
    fixed values; the posterior is wrapped in ``to_event(1)`` so that z has event
    shape ``[latent_dim]``. The constructor need not be a distribution class: a
    function of the named parameters can place the posterior's support inside the
    prior's (see the uniform family).

    Args:
        name: registry name.
        categories: Kingma & Welling categories.
        distribution: constructor taking the named parameters as keywords.
        parameters: parameter name -> map (or constraint), in the order of the raw outputs.
        prior_parameters: parameter name -> value of the default prior.
        support: support of z.
        description: one line for ``vi-vae families``.
        center: optional point summary of q (default: its mean).
        fixed_parameters: keywords passed unchanged to every posterior and to the
            prior (e.g. a Student-t's degrees of freedom).
    """

    def __init__(
        self,
        name: str,
        categories: tuple[str, ...],
        distribution: Callable[..., dist.TorchDistribution],
        parameters: Mapping[str, Constraint | ParameterMap],
        prior_parameters: Mapping[str, float],
        support: Constraint,
        description: str = "",
        center: Callable[[dist.TorchDistribution], Tensor] | None = None,
        *,
        fixed_parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.categories = tuple(categories)
        self.distribution = distribution
        self.parameters = dict(parameters)
        self.prior_parameters = dict(prior_parameters)
        self.fixed_parameters = dict(fixed_parameters or {})
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
            name: _parameter_map(mapping)(chunk)
            for (name, mapping), chunk in zip(self.parameters.items(), chunks, strict=True)
        }
        return self.distribution(**kwargs, **self.fixed_parameters).to_event(1)

    def prior_like(self, zeros: Tensor) -> dist.TorchDistribution:
        """The distribution at ``prior_parameters``, ``latent_dim`` independent copies."""
        kwargs = {name: zeros + float(value) for name, value in self.prior_parameters.items()}
        return self.distribution(**kwargs, **self.fixed_parameters).to_event(1)

    def center(self, posterior: dist.TorchDistribution) -> Tensor:
        """The mean of q, or the family's own point summary where it has one.

        For a flow guide, that summary of the base pushed through the flow.
        """
        if self._center is None or isinstance(posterior, PushforwardPosterior):
            return super().center(posterior)
        return self._center(posterior)

    def describe_prior(self) -> str:
        """The prior with its parameters, fixed ones (e.g. an Erlang's integer shape) included."""
        text = describe_distribution(self.prior(2))
        prior = self.prior(1)
        while isinstance(prior, torch.distributions.Independent):
            prior = prior.base_dist
        fixed = [
            f"{name}={value:g}"
            for name, value in self.fixed_parameters.items()
            if name not in prior.arg_constraints
        ]
        if not fixed:
            return text
        head, _, rest = text.partition("(")
        return f"{head}({', '.join(fixed)}{', ' if rest != ')' else ''}{rest}"

    def describe_parameters(self) -> str:
        """One formula per parameter, each applied to its own ``latent_dim`` raw outputs."""
        parts = []
        for name, mapping in self.parameters.items():
            if isinstance(mapping, ParameterMap):
                parts.append(mapping.describe(name))
            else:
                parts.append(f"{name} = transform_to({describe_constraint(mapping)})(raw)")
        fixed = [f"{name} = {value:g}" for name, value in self.fixed_parameters.items()]
        return "; ".join(parts + [f"fixed {text}" for text in fixed])


def location_scale_family(
    name: str,
    categories: tuple[str, ...],
    distribution: Callable[..., dist.TorchDistribution],
    description: str,
    **options: Any,
) -> ElementwiseFamily:
    """An :class:`ElementwiseFamily` on the real line: raw ``loc``, ``scale``; prior at (0, 1)."""
    return ElementwiseFamily(
        name,
        categories,
        distribution,
        parameters={"loc": LOCATION, "scale": SCALE},
        prior_parameters={"loc": 0.0, "scale": 1.0},
        support=constraints.real,
        description=description,
        **options,
    )


def interval_family(
    name: str,
    categories: tuple[str, ...],
    distribution: Callable[..., dist.TorchDistribution],
    min_width: float,
    support: Constraint,
    description: str,
) -> ElementwiseFamily:
    """An :class:`ElementwiseFamily` of intervals inside the prior's ``support``.

    ``distribution(position, width)`` places a ``width`` ∈ [``min_width``, 1] (of the
    support) at ``position`` ∈ [0, 1] of the slack; the prior is position 1/2, width 1.
    """
    return ElementwiseFamily(
        name,
        categories,
        distribution,
        parameters={"position": Interval(0.0, 1.0), "width": Interval(min_width, 1.0)},
        prior_parameters={"position": 0.5, "width": 1.0},
        support=support,
        description=description,
    )


#: name -> family. Filled by explicit ``register_family`` calls in the category modules.
FAMILIES: dict[str, LatentFamily] = {}


def register_family(family: LatentFamily) -> LatentFamily:
    """Add ``family`` to :data:`FAMILIES` under ``family.name`` and return it.

    Raises:
        InputError: for what is not a :class:`LatentFamily`, a name already taken, or
            categories outside :data:`CATEGORIES`.
    """
    if not isinstance(family, LatentFamily):
        raise InputError(f"family must be a vi_vae.LatentFamily; got {family!r}")
    if family.name in FAMILIES:
        raise InputError(f"latent family {family.name!r} is already registered")
    unknown = set(family.categories) - set(CATEGORIES)
    if unknown or not family.categories:
        raise InputError(f"family {family.name!r}: categories must be among {CATEGORIES}")
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


def describe_distribution(distribution: dist.TorchDistribution) -> str:
    """``"Name(parameter=value, ...)"`` for a distribution with constant parameters.

    ``Independent`` wrappers are looked through; parameters whose entries differ
    are left out.

    Example:
        >>> describe_distribution(dist.Normal(torch.zeros(3), 1.0).to_event(1))
        'Normal(loc=0, scale=1)'
    """
    while isinstance(distribution, torch.distributions.Independent):
        distribution = distribution.base_dist
    parts = []
    for name in distribution.arg_constraints:
        value = getattr(distribution, name, None)
        if isinstance(value, Tensor) and value.numel() and (value == value.flatten()[0]).all():
            parts.append(f"{name}={value.flatten()[0].item():g}")
    return f"{type(distribution).__name__}({', '.join(parts)})"


def describe_constraint(constraint: Constraint) -> str:
    """A support in interval notation: ``"real"``, ``"(0, inf)"``, ``"[1, inf)"``, ``"[a, b]"``.

    Example:
        >>> describe_constraint(constraints.interval(-1.0, 1.0))
        '[-1, 1]'
    """
    if constraint is constraints.real_vector:
        return "real vector"
    while isinstance(constraint, constraints.independent):
        constraint = constraint.base_constraint
    if constraint is constraints.real:
        return "real"
    if constraint is constraints.simplex:
        return "simplex"
    if constraint is constraints.unit_interval:
        return "(0, 1)"
    lower = getattr(constraint, "lower_bound", None)
    upper = getattr(constraint, "upper_bound", None)
    if isinstance(constraint, constraints.greater_than):
        return f"({lower:g}, inf)"
    if isinstance(constraint, constraints.greater_than_eq):
        return f"[{lower:g}, inf)"
    if isinstance(constraint, constraints.less_than):
        return f"(-inf, {upper:g})"
    if isinstance(constraint, constraints.half_open_interval):
        return f"[{lower:g}, {upper:g})"
    if isinstance(constraint, constraints.interval):
        return f"[{lower:g}, {upper:g}]"
    return type(constraint).__name__.lstrip("_")


def _parameter_map(mapping: Constraint | ParameterMap) -> Callable[[Tensor], Tensor]:
    return mapping if isinstance(mapping, ParameterMap) else transform_to(mapping)
