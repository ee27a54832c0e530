import math

import pytest
import torch

from vi_vae.bounds import grouped_iwae_bound, iwae_bound, iwae_groups, log_mean_exp
from vi_vae.errors import InputError


def test_iwae_groups_are_log_means_of_consecutive_weights_dropping_the_remainder():
    weights = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 8.0], [6.0, 4.0], [5.0, 100.0]])
    groups = iwae_groups(weights.double().log(), 2)
    expected = torch.tensor([[2.0, 2.0], [4.0, 6.0]], dtype=torch.float64).log()
    assert torch.allclose(groups, expected, rtol=0, atol=1e-12)


def test_grouped_iwae_bound_is_the_mean_over_groups_and_needs_whole_groups():
    log_weights = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    expected = (iwae_bound(log_weights[:3]) + iwae_bound(log_weights[3:])) / 2
    assert torch.allclose(grouped_iwae_bound(log_weights, 3), expected, rtol=0, atol=1e-6)
    assert torch.equal(grouped_iwae_bound(log_weights, 6), iwae_bound(log_weights))
    with pytest.raises(InputError, match="group_size must divide"):
        grouped_iwae_bound(log_weights, 4)


def test_log_mean_exp_is_stable_far_from_zero():
    values = torch.tensor([1000.0, 1000.0 + math.log(3.0)], dtype=torch.float64)
    assert log_mean_exp(values).item() == pytest.approx(1000.0 + math.log(2.0), abs=1e-12)
    # far below zero too: (e^-1000 + e^-1000 / 3) / 2 = e^-1000 · 2/3, not an underflow or a clamp
    expected = -1000.0 + math.log(2.0 / 3.0)
    assert log_mean_exp(-values).item() == pytest.approx(expected, abs=1e-12)
