import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Each test starts with an empty param store and a seeded RNG."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_num_threads(2)
    yield
    pyro.clear_param_store()
