"""Fixtures for the latent-family battery: every registered family, plus unregistered variants.

Each test that takes ``family`` runs once per entry of
:data:`latent_cases.ALL_FAMILIES`, with the family names as ids, so a family is
tested the moment it is registered.
"""

import pytest
from latent_cases import ALL_FAMILIES

from vi_vae.latents import LatentFamily


@pytest.fixture(params=list(ALL_FAMILIES.values()), ids=list(ALL_FAMILIES))
def family(request: pytest.FixtureRequest) -> LatentFamily:
    return request.param
