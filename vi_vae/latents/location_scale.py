r"""Kingma & Welling category 2, location-scale families: z = loc + scale·ε.

ε is drawn from a fixed standard member (N(0, 1), Laplace(0, 1), t₅, U(0, 1), the
symmetric triangle, a spherical Gaussian or t), so gradients reach loc and scale
through an affine map. The logistic family is in this category too; it is
registered once, in :mod:`vi_vae.latents.inverse_cdf`, with both categories.

Bounded families (uniform, triangular) keep each posterior's support inside the
prior's [−1, 1]: the encoder chooses the posterior's width as a fraction of the
prior's and where the interval sits in the remaining slack, so KL(q ‖ p) is
always finite.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

from vi_vae.errors import InputError
from vi_vae.latents.distributions import Triangular
from vi_vae.latents.parameters import LOCATION, SCALE, Real
from vi_vae.latents.registry import (
    LatentFamily,
    interval_family,
    location_scale_family,
    register_family,
)

__all__ = [
    "ELLIPTICAL",
    "ELLIPTICAL_STUDENT_T",
    "LAPLACE",
    "NORMAL",
    "STUDENT_T",
    "STUDENT_T_DF",
    "TRIANGULAR",
    "UNIFORM",
    "EllipticalFamily",
    "triangular_inside_prior",
    "uniform_inside_prior",
]

#: Degrees of freedom of the Student-t families: the smallest integer with a finite
#: variance and kurtosis, so the tails are heavy but the moments exist.
STUDENT_T_DF = 5.0
#: Support of the uniform and triangular priors.
BOUNDED_PRIOR_LOW, BOUNDED_PRIOR_HIGH = -1.0, 1.0


def _interval_inside_prior(position: Tensor, width: Tensor) -> tuple[Tensor, Tensor]:
    """[low, high] ⊆ [−1, 1] of width ``width``·2, at ``position`` ∈ [0, 1] of the slack."""
    span = BOUNDED_PRIOR_HIGH - BOUNDED_PRIOR_LOW
    width = width * span
    low = BOUNDED_PRIOR_LOW + (span - width) * position
    high = (low + width).clamp(max=BOUNDED_PRIOR_HIGH)
    return low, high


def uniform_inside_prior(position: Tensor, width: Tensor) -> dist.Uniform:
    """U(low, high) with [low, high] ⊆ [−1, 1]; the prior is position = 1/2, width = 1.

    Args:
        position: where the interval sits in the slack, ∈ [0, 1].
        width: (high − low)/2, ∈ (0, 1].
    """
    return dist.Uniform(*_interval_inside_prior(position, width))


def triangular_inside_prior(position: Tensor, width: Tensor) -> Triangular:
    """The symmetric Triangular(low, high) with [low, high] ⊆ [−1, 1] (as the uniform's)."""
    low, high = _interval_inside_prior(position, width)
    return Triangular(low, high, torch.full_like(low, 0.5))


NORMAL = register_family(
    location_scale_family(
        "normal",
        ("location_scale",),
        dist.Normal,
        "diagonal Gaussian, z = μ + σ·ε with ε ~ N(0, 1); the default",
    )
)

LAPLACE = register_family(
    location_scale_family(
        "laplace",
        ("location_scale",),
        dist.Laplace,
        "z = μ + b·ε, ε ~ Laplace(0, 1) by its inverse CDF",
    )
)

STUDENT_T = register_family(
    location_scale_family(
        "studentt",
        ("location_scale",),
        dist.StudentT,
        "z = μ + σ·ε, ε ~ t₅ = N(0, 1)/√(χ²₅/5); heavy tails, so a t₅ prior",
        fixed_parameters={"df": STUDENT_T_DF},
    )
)

#: The uniform's width is at least 1e-3 of the prior's, so log q ≤ log 1000 ≈ 6.9 nats.
UNIFORM = register_family(
    interval_family(
        "uniform",
        ("location_scale",),
        uniform_inside_prior,
        1e-3,
        constraints.interval(BOUNDED_PRIOR_LOW, BOUNDED_PRIOR_HIGH),
        "z = low + (high − low)·ε, ε ~ U(0, 1), [low, high] inside the prior's [−1, 1]",
    )
)

#: The triangle's width is at least 1e-2 of the prior's: its draws then sit at least
#: width·√(eps/8) ≈ 2.4e-6 from its ends, tens of float32 steps, so the density at a
#: draw (which vanishes at the ends) is never rounded to 0.
TRIANGULAR = register_family(
    interval_family(
        "triangular",
        ("location_scale",),
        triangular_inside_prior,
        1e-2,
        constraints.interval(BOUNDED_PRIOR_LOW, BOUNDED_PRIOR_HIGH),
        "symmetric triangle, z = low + (high − low)·ε, inside the prior's [−1, 1]",
    )
)


class EllipticalFamily(LatentFamily):
    r"""Elliptical q(z|x) with a full scale matrix: z = μ + L ε over a spherical base.

    .. math::
        z = μ + L ε, \qquad ε \sim N(0, I) \;\text{ or }\; ε \sim t_ν(0, I)
        = N(0, I) / \sqrt{χ^2_ν / ν}

    L is lower triangular with a positive diagonal (a Cholesky factor), so the
    covariance L Lᵀ is any positive definite matrix. The encoder outputs, per data
    point, the d locations, the d diagonal entries of L and its d(d − 1)/2 entries
    below the diagonal (row by row): d(d + 3)/2 numbers. The prior is the same base
    at μ = 0, L = I; for the Gaussian base the KL is closed form, for the t base
    (whose tails need a t prior of the same ν) it is sampled. The centre is μ, the
    mean of both bases (ν > 1).

    Args:
        name: registry name.
        base: ``"normal"`` or ``"studentt"``.
        df: ν of the Student-t base.
    """

    categories = ("location_scale",)
    support = constraints.real_vector

    def __init__(self, name: str = "elliptical", base: str = "normal", df: float = 5.0) -> None:
        if base not in ("normal", "studentt"):
            raise InputError(f"elliptical base must be 'normal' or 'studentt'; got {base!r}")
        self.name = name
        self.base = base
        self.df = float(df)
        if base == "normal":
            self.description = "full-covariance Gaussian, z = μ + Lε with ε ~ N(0, I)"
        else:
            self.description = f"multivariate t, z = μ + Lε with spherical ε ~ t_{self.df:g}(0, I)"
        self.locations, self.diagonal, self.off_diagonal = LOCATION, SCALE, Real(SCALE.upper)

    def num_raw_parameters(self, latent_dim: int) -> int:
        """d(d + 3)/2: locations, the diagonal of L, and L below the diagonal."""
        return latent_dim * (latent_dim + 3) // 2

    def latent_dim_of(self, num_raw: int) -> int:
        """The d with d(d + 3)/2 = ``num_raw`` (raises if there is none)."""
        latent_dim = int(round((math.sqrt(9 + 8 * num_raw) - 3) / 2))
        if latent_dim < 1 or self.num_raw_parameters(latent_dim) != num_raw:
            raise InputError(
                f"latent family {self.name!r} needs d(d + 3)/2 raw values per data point "
                f"(5 for d = 2, 27 for d = 6); got {num_raw}"
            )
        return latent_dim

    def posterior(self, raw: Tensor) -> dist.TorchDistribution:
        """The base at (μ, L), batch shape ``raw.shape[:-1]``, event shape ``[d]``."""
        d = self.latent_dim_of(raw.shape[-1])
        loc = self.locations(raw[..., :d])
        scale_tril = torch.diag_embed(self.diagonal(raw[..., d : 2 * d]))
        if d > 1:
            rows, columns = torch.tril_indices(d, d, offset=-1, device=raw.device)
            below = torch.zeros_like(scale_tril)
            below[..., rows, columns] = self.off_diagonal(raw[..., 2 * d :])
            scale_tril = scale_tril + below
        return self._distribution(loc, scale_tril)

    def prior_like(self, zeros: Tensor) -> dist.TorchDistribution:
        """The base at μ = 0 and L = I."""
        return self._distribution(zeros, torch.diag_embed(zeros + 1))

    def describe_parameters(self) -> str:
        """The raw layout and its maps."""
        return (
            f"{self.locations.describe('loc')} (d values); "
            f"{self.diagonal.describe('diag(L)')} (d values); "
            f"{self.off_diagonal.describe('L below diagonal')} (d(d-1)/2 values)"
        )

    def describe_prior(self) -> str:
        """The base at μ = 0, L = I."""
        if self.base == "normal":
            return "MultivariateNormal(loc=0, scale_tril=I)"
        return f"MultivariateStudentT(df={self.df:g}, loc=0, scale_tril=I)"

    def _distribution(self, loc: Tensor, scale_tril: Tensor) -> dist.TorchDistribution:
        if self.base == "normal":
            return dist.MultivariateNormal(loc, scale_tril=scale_tril)
        return dist.MultivariateStudentT(loc.new_tensor(self.df), loc, scale_tril)


ELLIPTICAL = register_family(EllipticalFamily())

#: The elliptical family over a spherical t₅ base. Not registered (the issue's names
#: are fixed); pass it as ``VAE(latent_family=ELLIPTICAL_STUDENT_T)``.
ELLIPTICAL_STUDENT_T = EllipticalFamily(
    name="elliptical-studentt", base="studentt", df=STUDENT_T_DF
)
