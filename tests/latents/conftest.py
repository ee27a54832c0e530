"""Fixtures for the latent-family battery: every registered family, plus unregistered variants.

Each test that takes ``family`` runs once per entry of
:data:`latent_cases.ALL_FAMILIES`, with the family names as ids, so a family is
tested the moment it is registered.
"""

import pytest
import torch
from latent_cases import ALL_FAMILIES

from vi_vae.latents import LatentFamily


@pytest.fixture(params=list(ALL_FAMILIES.values()), ids=list(ALL_FAMILIES))
def family(request: pytest.FixtureRequest) -> LatentFamily:
    return request.param


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tensors are small, and the machine may be shared.

    With a second busy process on a 2-core machine, two spinning torch threads make
    small operations tens of times slower; one thread is never much slower here.
    """
    torch.set_num_threads(1)
