"""Reparameterizable latent families for q(z|x), registered by name."""

from vi_vae.latents import location_scale
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
    "FAMILIES",
    "ElementwiseFamily",
    "LatentFamily",
    "get_family",
    "location_scale",
    "register_family",
]
