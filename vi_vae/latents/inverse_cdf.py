r"""Kingma & Welling category 1, tractable inverse CDF: ε ~ U(0, 1), z = F⁻¹(ε).

Where torch draws by another route that is still F⁻¹ of uniform noise
(``exponential_`` for the exponential, Pareto and Weibull, ``cauchy_`` for the
Cauchy, a uniform through two logs for the Gumbel) its sampler is used; Rayleigh,
Gompertz, reciprocal, Erlang and a NaN-safe logistic are in
:mod:`vi_vae.latents.distributions`. Erlang(k, λ) is the one family here whose own
inverse CDF is not closed form: it is drawn as a sum of k exponential F⁻¹ draws,
the construction Kingma & Welling list it under.

Priors: a fixed member of the same family (so heavy tails meet equally heavy
tails); a Pareto posterior's lower end is at least the prior's, and a reciprocal
posterior's interval lies inside the prior's [0.1, 10].

References:
    [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014, §2.4.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
from torch import Tensor
from torch.distributions import constraints

from vi_vae.latents.distributions import Erlang, Gompertz, Logistic, Rayleigh, Reciprocal
from vi_vae.latents.parameters import SCALE, Positive
from vi_vae.latents.registry import (
    ElementwiseFamily,
    interval_family,
    location_scale_family,
    register_family,
)

__all__ = [
    "CAUCHY",
    "ERLANG",
    "ERLANG_SHAPE",
    "EXPONENTIAL",
    "GOMPERTZ",
    "GUMBEL",
    "LOGISTIC",
    "PARETO",
    "RAYLEIGH",
    "RECIPROCAL",
    "WEIBULL",
    "reciprocal_inside_prior",
]

#: Rates in [0.1, 1e4]: the reciprocals of the location-scale families' scale box.
RATE = Positive(1 / SCALE.upper, 1 / SCALE.lower)
#: k of the Erlang family: the smallest k for which Erlang is not the exponential.
ERLANG_SHAPE = 2
#: Support of the reciprocal prior: two decades around 1.
RECIPROCAL_PRIOR_LOW, RECIPROCAL_PRIOR_HIGH = 0.1, 10.0
#: Lower end of the Pareto prior's support; every posterior's is at least this.
PARETO_PRIOR_SCALE = 1.0


def reciprocal_inside_prior(position: Tensor, width: Tensor) -> Reciprocal:
    """Reciprocal(low, high) with [low, high] ⊆ [0.1, 10], placed in log space.

    Args:
        position: where log [low, high] sits in the slack of log [0.1, 10], ∈ [0, 1].
        width: log(high/low) as a fraction of log(10/0.1), ∈ (0, 1].
    """
    log_low = math.log(RECIPROCAL_PRIOR_LOW)
    span = math.log(RECIPROCAL_PRIOR_HIGH / RECIPROCAL_PRIOR_LOW)
    log_width = width * span
    log_start = log_low + (span - log_width) * position
    low, high = log_start.exp(), (log_start + log_width).exp()
    return Reciprocal(low.clamp(min=RECIPROCAL_PRIOR_LOW), high.clamp(max=RECIPROCAL_PRIOR_HIGH))


EXPONENTIAL = register_family(
    ElementwiseFamily(
        name="exponential",
        categories=("inverse_cdf",),
        distribution=dist.Exponential,
        parameters={"rate": RATE},
        prior_parameters={"rate": 1.0},
        support=constraints.nonnegative,
        description="z = −log(ε)/λ",
    )
)

CAUCHY = register_family(
    location_scale_family(
        "cauchy",
        ("inverse_cdf",),
        dist.Cauchy,
        "z = μ + γ·tan(π(ε − 1/2)); no mean, so the centre is μ (the median)",
        center=lambda posterior: posterior.base_dist.loc,
    )
)

LOGISTIC = register_family(
    location_scale_family(
        "logistic",
        ("inverse_cdf", "location_scale"),
        Logistic,
        "z = μ + s·log(ε/(1 − ε)): an inverse CDF and a location-scale map",
    )
)

RAYLEIGH = register_family(
    ElementwiseFamily(
        name="rayleigh",
        categories=("inverse_cdf",),
        distribution=Rayleigh,
        parameters={"scale": SCALE},
        prior_parameters={"scale": 1.0},
        support=constraints.positive,
        description="z = σ·√(−2 log ε)",
    )
)

#: α ≥ 1.5 keeps the mean, the family's centre, finite (it is infinite for α ≤ 1).
PARETO = register_family(
    ElementwiseFamily(
        name="pareto",
        categories=("inverse_cdf",),
        distribution=dist.Pareto,
        parameters={
            "scale": Positive(PARETO_PRIOR_SCALE, PARETO_PRIOR_SCALE + SCALE.upper),
            "alpha": Positive(1.5, 100.0),
        },
        prior_parameters={"scale": PARETO_PRIOR_SCALE, "alpha": 3.0},
        support=constraints.greater_than_eq(PARETO_PRIOR_SCALE),
        description="z = x_m·ε^(−1/α), x_m at least the prior's 1",
    )
)

#: Concentration k ≥ 0.5: z = λ E^{1/k} with E ≥ 1e-7 (float32) stays ≥ 1e-14·λ, far
#: from underflow, where the density (infinite at 0 for k < 1) would be evaluated at 0.
WEIBULL = register_family(
    ElementwiseFamily(
        name="weibull",
        categories=("inverse_cdf",),
        distribution=dist.Weibull,
        parameters={"scale": SCALE, "concentration": Positive(0.5, 100.0)},
        prior_parameters={"scale": 1.0, "concentration": 1.0},
        support=constraints.positive,
        description="z = λ·(−log ε)^(1/k)",
    )
)

RECIPROCAL = register_family(
    interval_family(
        "reciprocal",
        ("inverse_cdf",),
        reciprocal_inside_prior,
        1e-3,
        constraints.interval(RECIPROCAL_PRIOR_LOW, RECIPROCAL_PRIOR_HIGH),
        "log-uniform, z = a·(b/a)^ε, [a, b] inside the prior's [0.1, 10]",
    )
)

#: η ≥ 0.01 and s ≤ 5 bound draws by 5·log(1 + 17.4/0.01) ≈ 37 in float32, so the
#: prior's e^{z} (≈ 1e16 there) and its gradient stay finite.
GOMPERTZ = register_family(
    ElementwiseFamily(
        name="gompertz",
        categories=("inverse_cdf",),
        distribution=Gompertz,
        parameters={"concentration": Positive(0.01, 100.0), "scale": Positive(1e-3, 5.0)},
        prior_parameters={"concentration": 1.0, "scale": 1.0},
        support=constraints.nonnegative,
        description="z = s·log(1 − log(1 − ε)/η); no closed-form mean, so the centre is the median",
        center=lambda posterior: posterior.base_dist.median,
    )
)

GUMBEL = register_family(
    location_scale_family("gumbel", ("inverse_cdf",), dist.Gumbel, "z = μ − β·log(−log ε)")
)

ERLANG = register_family(
    ElementwiseFamily(
        name="erlang",
        categories=("inverse_cdf",),
        distribution=Erlang,
        parameters={"rate": RATE},
        prior_parameters={"rate": 1.0},
        fixed_parameters={"shape": ERLANG_SHAPE},
        support=constraints.nonnegative,
        description=f"sum of k = {ERLANG_SHAPE} exponential inverse-CDF draws, −Σ log εᵢ / λ",
    )
)
