import pytest
import torch
from template_cases import TEMPLATES


@pytest.fixture(params=sorted(TEMPLATES))
def template(request) -> str:
    """Each VAE template's name."""
    return request.param


@pytest.fixture(autouse=True)
def _one_thread():
    """These networks are tiny: one thread is faster than two (no hand-off between them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
