r"""Kingma & Welling category 3, composition: z = g(several simpler variates).

- lognormal: z = exp(μ + σε), ε ~ N(0, 1);
- gamma: torch's implicit reparameterization of Gamma(α, β) [2] (for integer
  shape, the sum of exponentials is the Erlang family in
  :mod:`vi_vae.latents.inverse_cdf`);
- dirichlet and beta: normalized gammas, z = G / Σ G (:mod:`vi_vae.latents.distributions`);
- chi2: Gamma(ν/2, 1/2), the law of a sum of ν squared normals, for real ν;
- f: torch's ratio of scaled chi-squares, (χ²_{ν₁}/ν₁) / (χ²_{ν₂}/ν₂).

Shape parameters (gamma concentrations, degrees of freedom) are at least 0.2 (ν at
least 0.4): below that, gamma draws fall under the smallest float32 with
noticeable probability (P(G < 1e-38) ≈ 2e-4 at shape 0.1, 3e-8 at 0.2), and the
density would be evaluated at the clamped value instead.

References:
    [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014, §2.4.
    [2] Implicit Reparameterization Gradients, Figurnov, Mohamed & Mnih, NeurIPS 2018.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import constraints

from vi_vae.errors import InputError
from vi_vae.latents.distributions import NormalizedGammaBeta, NormalizedGammaDirichlet
from vi_vae.latents.parameters import SCALE, Positive, Real
from vi_vae.latents.registry import ElementwiseFamily, LatentFamily, register_family

__all__ = [
    "BETA",
    "CHI2",
    "DIRICHLET",
    "FISHER_SNEDECOR",
    "GAMMA",
    "LOGNORMAL",
    "DirichletFamily",
]

#: Gamma, beta and Dirichlet concentrations: see the module docstring for the floor.
CONCENTRATION = Positive(0.2, 1000.0)
#: Degrees of freedom of χ² and F: ν/2 is a gamma concentration, so twice its floor.
DEGREES_OF_FREEDOM = Positive(0.4, 100.0)

#: |μ| ≤ 10 and σ ≤ 2 keep z = exp(μ + σε) within exp(±21) for float32 draws (|ε| < 5.5).
LOGNORMAL = register_family(
    ElementwiseFamily(
        name="lognormal",
        categories=("composition",),
        distribution=dist.LogNormal,
        parameters={"loc": Real(10.0), "scale": Positive(SCALE.lower, 2.0)},
        prior_parameters={"loc": 0.0, "scale": 1.0},
        support=constraints.positive,
        description="z = exp(μ + σ·ε), ε ~ N(0, 1)",
    )
)

GAMMA = register_family(
    ElementwiseFamily(
        name="gamma",
        categories=("composition",),
        distribution=dist.Gamma,
        parameters={"concentration": CONCENTRATION, "rate": Positive(0.1, 1e4)},
        prior_parameters={"concentration": 1.0, "rate": 1.0},
        support=constraints.nonnegative,
        description="Gamma(α, β) by torch's implicit reparameterization",
    )
)

BETA = register_family(
    ElementwiseFamily(
        name="beta",
        categories=("composition",),
        distribution=NormalizedGammaBeta,
        parameters={"concentration1": CONCENTRATION, "concentration0": CONCENTRATION},
        prior_parameters={"concentration1": 1.0, "concentration0": 1.0},
        support=constraints.unit_interval,
        description="z = G₁/(G₁ + G₀), Gᵢ ~ Gamma(αᵢ, 1)",
    )
)

#: χ²₂ = Exponential(1/2): a finite, positive density at 0, so the prior does not
#: reward collapsing z to 0 (χ²₁'s density is infinite there).
CHI2 = register_family(
    ElementwiseFamily(
        name="chi2",
        categories=("composition",),
        distribution=dist.Chi2,
        parameters={"df": DEGREES_OF_FREEDOM},
        prior_parameters={"df": 2.0},
        support=constraints.nonnegative,
        description="χ²_ν = Gamma(ν/2, 1/2), the sum of ν squared normals for integer ν",
    )
)

#: ν₂ ≥ 2.5 keeps the mean ν₂/(ν₂ − 2), the family's centre, finite.
FISHER_SNEDECOR = register_family(
    ElementwiseFamily(
        name="f",
        categories=("composition",),
        distribution=dist.FisherSnedecor,
        parameters={"df1": DEGREES_OF_FREEDOM, "df2": Positive(2.5, 100.0)},
        prior_parameters={"df1": 5.0, "df2": 5.0},
        support=constraints.positive,
        description="z = (χ²_{ν₁}/ν₁)/(χ²_{ν₂}/ν₂), each χ² a gamma",
    )
)


class DirichletFamily(LatentFamily):
    r"""Dirichlet q(z|x) on the simplex, drawn as normalized gammas.

    .. math::
        z_i = \frac{G_i}{\sum_j G_j}, \qquad G_i \sim \mathrm{Gamma}(α_i, 1)

    The d coordinates of z are one point of the (d − 1)-simplex, so ``latent_dim``
    must be at least 2. The encoder outputs the d concentrations α (one raw value
    each); the prior is Dirichlet(1, …, 1), uniform on the simplex, and the KL is
    closed form.

    Args:
        prior_concentration: the prior's concentration, the same in every coordinate.
    """

    name = "dirichlet"
    categories = ("composition",)
    support = constraints.simplex
    description = "z = G/ΣG, Gᵢ ~ Gamma(αᵢ, 1), on the simplex"

    def __init__(self, prior_concentration: float = 1.0) -> None:
        self.concentration = CONCENTRATION
        self.prior_concentration = float(prior_concentration)

    def num_raw_parameters(self, latent_dim: int) -> int:
        """One concentration per coordinate: d."""
        if latent_dim < 2:
            raise InputError(f"latent family 'dirichlet' needs latent_dim >= 2; got {latent_dim}")
        return latent_dim

    def posterior(self, raw: Tensor) -> dist.TorchDistribution:
        """Dirichlet(α), batch shape ``raw.shape[:-1]``, event shape ``[d]``."""
        self.num_raw_parameters(raw.shape[-1])
        return NormalizedGammaDirichlet(self.concentration(raw))

    def prior_like(self, zeros: Tensor) -> dist.TorchDistribution:
        """Dirichlet(prior_concentration · 1)."""
        return dist.Dirichlet(zeros + self.prior_concentration)

    def describe_parameters(self) -> str:
        """One raw value per coordinate."""
        return self.concentration.describe("concentration")


DIRICHLET = register_family(DirichletFamily())
