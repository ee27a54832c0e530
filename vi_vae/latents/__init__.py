"""Reparameterizable latent families for q(z|x), registered by name.

Importing this package registers every family: one module per Kingma & Welling
category (:mod:`~vi_vae.latents.inverse_cdf`, :mod:`~vi_vae.latents.location_scale`,
:mod:`~vi_vae.latents.composition`), the distributions torch and Pyro lack
(:mod:`~vi_vae.latents.distributions`, with the gamma-based ones in
:mod:`~vi_vae.latents.gamma_compositions` and the noise in
:mod:`~vi_vae.latents.sampling`) and their closed-form KLs
(:mod:`~vi_vae.latents.kl`).
"""

# Registration order is Kingma & Welling's order of categories, the order of `vi-vae families`.
# isort: off
from vi_vae.latents import inverse_cdf, location_scale, composition

# isort: on
from vi_vae.latents import distributions, gamma_compositions, kl, sampling
from vi_vae.latents.composition import DirichletFamily
from vi_vae.latents.location_scale import ELLIPTICAL_STUDENT_T, EllipticalFamily
from vi_vae.latents.parameters import Interval, ParameterMap, Positive, Real
from vi_vae.latents.pushforward import PushforwardPosterior
from vi_vae.latents.registry import (
    CATEGORIES,
    FAMILIES,
    ElementwiseFamily,
    LatentFamily,
    get_family,
    register_family,
)

__all__ = [
    "CATEGORIES",
    "ELLIPTICAL_STUDENT_T",
    "FAMILIES",
    "DirichletFamily",
    "ElementwiseFamily",
    "EllipticalFamily",
    "Interval",
    "LatentFamily",
    "ParameterMap",
    "Positive",
    "PushforwardPosterior",
    "Real",
    "composition",
    "distributions",
    "gamma_compositions",
    "get_family",
    "inverse_cdf",
    "kl",
    "location_scale",
    "register_family",
    "sampling",
]
