"""What the latent-family battery needs to know about each family beyond its registry entry.

Keyed by family name: the scipy equivalent of a posterior and, where the default
raw values would leave a moment a test needs infinite, shifted raw values. The
``family`` fixture (``conftest.py``) runs over :data:`ALL_FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

from vi_vae.latents import ELLIPTICAL_STUDENT_T, FAMILIES, LatentFamily

#: Registered families and the variants that are exported but not registered.
ALL_FAMILIES: dict[str, LatentFamily] = {
    **FAMILIES,
    ELLIPTICAL_STUDENT_T.name: ELLIPTICAL_STUDENT_T,
}

#: Raw values are seeded N(0, 0.5²) plus this shift (default 0). A larger shift makes
#: shapes larger, so that E[z⁴], which the variance of a Monte Carlo gradient of
#: E[z²] needs, is finite: Pareto α > 4, F's ν₂ > 8.
RAW_SHIFT = {"pareto": 3.0, "f": 7.0}


def latent_dim_for(family: LatentFamily, wanted: int) -> int:
    """The latent dimension a test should use: at least 2 on the simplex."""
    return max(wanted, 2) if family.support is torch.distributions.constraints.simplex else wanted


def example_raw(
    family: LatentFamily,
    latent_dim: int,
    batch_shape: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> torch.Tensor:
    """Seeded raw encoder outputs ``[*batch_shape, num_raw]`` of moderate size."""
    generator = torch.Generator().manual_seed(seed)
    shape = (*batch_shape, family.num_raw_parameters(latent_dim))
    raw = 0.5 * torch.randn(shape, generator=generator, dtype=torch.float64)
    return (raw + RAW_SHIFT.get(family.name, 0.0)).to(dtype)


# -- scipy equivalents -------------------------------------------------------------


@dataclass
class ScipyEquivalent:
    """How scipy.stats writes one posterior (batch shape ``[]``, float64).

    Attributes:
        marginals: ``q -> [(project, frozen)]``: ``project`` maps draws ``[N, d]`` to
            ``[N]`` whose law is the frozen scipy distribution.
        logpdf: ``(q, z [N, d]) -> [N]`` log-density of whole draws.
    """

    marginals: Callable
    logpdf: Callable


def _elementwise(make: Callable) -> ScipyEquivalent:
    """Independent coordinates; ``make(base, i)`` is coordinate i's frozen scipy law."""

    def marginals(q):
        base = q.base_dist
        return [(lambda z, i=i: z[:, i], make(base, i)) for i in range(q.event_shape[0])]

    def logpdf(q, z):
        return sum(frozen.logpdf(project(z)) for project, frozen in marginals(q))

    return ScipyEquivalent(marginals, logpdf)


def _float(tensor: torch.Tensor, i: int) -> float:
    return float(tensor.detach().reshape(-1)[i])


def _direction(d: int) -> np.ndarray:
    direction = np.arange(1.0, d + 1.0)
    return direction / np.linalg.norm(direction)


def _elliptical(student_t: bool) -> ScipyEquivalent:
    """A projection vᵀz of an elliptical law is the same law in 1-D, scale √(vᵀΣv)."""

    def parts(q):
        loc = q.loc.detach().numpy()
        tril = q.scale_tril.detach().numpy()
        return loc, tril @ tril.T

    def marginals(q):
        loc, covariance = parts(q)
        v = _direction(len(loc))
        scale = float(np.sqrt(v @ covariance @ v))
        frozen = (
            stats.t(float(q.df), loc=float(v @ loc), scale=scale)
            if student_t
            else stats.norm(loc=float(v @ loc), scale=scale)
        )
        return [(lambda z: z @ v, frozen)]

    def logpdf(q, z):
        loc, covariance = parts(q)
        if student_t:
            return stats.multivariate_t(loc=loc, shape=covariance, df=float(q.df)).logpdf(z)
        return stats.multivariate_normal(mean=loc, cov=covariance).logpdf(z)

    return ScipyEquivalent(marginals, logpdf)


def _dirichlet() -> ScipyEquivalent:
    """Each coordinate of Dirichlet(α) is Beta(αᵢ, Σα − αᵢ)."""

    def marginals(q):
        alpha = q.concentration.detach().numpy()
        return [
            (lambda z, i=i: z[:, i], stats.beta(alpha[i], alpha.sum() - alpha[i]))
            for i in range(len(alpha))
        ]

    def logpdf(q, z):
        alpha = q.concentration.detach().numpy()
        # scipy wants points strictly inside the simplex, summing to 1 to ~1e-10.
        return np.array([stats.dirichlet(alpha).logpdf(point / point.sum()) for point in z])

    return ScipyEquivalent(marginals, logpdf)


#: Family name -> its scipy equivalent. A family missing here fails the scipy tests
#: until it is added (or mapped to None with a reason, if scipy lacks it).
SCIPY_EQUIVALENTS: dict[str, ScipyEquivalent | None] = {
    "exponential": _elementwise(lambda b, i: stats.expon(scale=1 / _float(b.rate, i))),
    "cauchy": _elementwise(
        lambda b, i: stats.cauchy(loc=_float(b.loc, i), scale=_float(b.scale, i))
    ),
    "logistic": _elementwise(
        lambda b, i: stats.logistic(loc=_float(b.loc, i), scale=_float(b.scale, i))
    ),
    "rayleigh": _elementwise(lambda b, i: stats.rayleigh(scale=_float(b.scale, i))),
    "pareto": _elementwise(
        lambda b, i: stats.pareto(b=_float(b.alpha, i), scale=_float(b.scale, i))
    ),
    "weibull": _elementwise(
        lambda b, i: stats.weibull_min(c=_float(b.concentration, i), scale=_float(b.scale, i))
    ),
    "reciprocal": _elementwise(lambda b, i: stats.loguniform(_float(b.low, i), _float(b.high, i))),
    "gompertz": _elementwise(
        lambda b, i: stats.gompertz(c=_float(b.concentration, i), scale=_float(b.scale, i))
    ),
    "gumbel": _elementwise(
        lambda b, i: stats.gumbel_r(loc=_float(b.loc, i), scale=_float(b.scale, i))
    ),
    "erlang": _elementwise(lambda b, i: stats.erlang(a=b.shape, scale=1 / _float(b.rate, i))),
    "normal": _elementwise(lambda b, i: stats.norm(loc=_float(b.loc, i), scale=_float(b.scale, i))),
    "laplace": _elementwise(
        lambda b, i: stats.laplace(loc=_float(b.loc, i), scale=_float(b.scale, i))
    ),
    "studentt": _elementwise(
        lambda b, i: stats.t(df=_float(b.df, i), loc=_float(b.loc, i), scale=_float(b.scale, i))
    ),
    "uniform": _elementwise(
        lambda b, i: stats.uniform(loc=_float(b.low, i), scale=_float(b.high - b.low, i))
    ),
    "triangular": _elementwise(
        lambda b, i: stats.triang(
            c=_float(b.peak, i), loc=_float(b.low, i), scale=_float(b.high - b.low, i)
        )
    ),
    "elliptical": _elliptical(student_t=False),
    "elliptical-studentt": _elliptical(student_t=True),
    "lognormal": _elementwise(
        lambda b, i: stats.lognorm(s=_float(b.scale, i), scale=np.exp(_float(b.loc, i)))
    ),
    "gamma": _elementwise(
        lambda b, i: stats.gamma(a=_float(b.concentration, i), scale=1 / _float(b.rate, i))
    ),
    "beta": _elementwise(
        lambda b, i: stats.beta(_float(b.concentration1, i), _float(b.concentration0, i))
    ),
    "chi2": _elementwise(lambda b, i: stats.chi2(df=_float(b.df, i))),
    "f": _elementwise(lambda b, i: stats.f(dfn=_float(b.df1, i), dfd=_float(b.df2, i))),
    "dirichlet": _dirichlet(),
}


def scipy_equivalent(family: LatentFamily) -> ScipyEquivalent:
    """The family's scipy equivalent; fails if none is declared, skips if declared None."""
    if family.name not in SCIPY_EQUIVALENTS:
        pytest.fail(f"add the scipy equivalent of family {family.name!r} to SCIPY_EQUIVALENTS")
    equivalent = SCIPY_EQUIVALENTS[family.name]
    if equivalent is None:
        pytest.skip(f"scipy has no equivalent of {family.name!r}")
    return equivalent
