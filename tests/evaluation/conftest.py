import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """AIS tests run thousands of small tensor ops; on a shared 2-core machine a second
    intra-op thread made them 5-15x slower (synchronization, not work), so use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
