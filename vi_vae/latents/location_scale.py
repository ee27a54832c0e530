"""Kingma & Welling category 2, location-scale families: z = loc + scale·ε."""

import pyro.distributions as dist
from torch.distributions import constraints

from vi_vae.latents.registry import ElementwiseFamily, register_family

__all__ = ["NORMAL"]

NORMAL = register_family(
    ElementwiseFamily(
        name="normal",
        categories=("location_scale",),
        distribution=dist.Normal,
        parameters={"loc": constraints.real, "scale": constraints.positive},
        prior_parameters={"loc": 0.0, "scale": 1.0},
        support=constraints.real,
        description="diagonal Gaussian, z = μ + σ·ε with ε ~ N(0, 1); the default",
    )
)
