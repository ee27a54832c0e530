import math

import torch
from scipy import stats

from vi_vae import _keyed_random as keyed


def test_keys_of_a_point_do_not_depend_on_the_other_points():
    whole = keyed.key_grid(7, 2, torch.arange(100), 4, 3)
    part = keyed.key_grid(7, 2, torch.arange(40, 60), 4, 3)
    assert whole.shape == (4, 100, 3)
    assert torch.equal(whole[:, 40:60], part)


def test_normals_look_standard_and_independent():
    # 4 chains × 2000 points × 5 coordinates = 40,000 draws: the standard error of a
    # mean or a correlation is 1/√40000 = 0.005; tolerances are 4 standard errors,
    # and the KS test's p-value is above 10⁻³.
    keys = keyed.key_grid(0, 2, torch.arange(2000), 4, 5)
    z = keyed.normal(keys, 3)
    assert abs(z.mean().item()) < 0.02 and abs(z.var().item() - 1) < 0.03
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    next_step = keyed.normal(keys, 4)
    for a, b in [
        (z, next_step),  # the next draw
        (z[:, 1:], z[:, :-1]),  # neighbouring points
        (z[1:], z[:-1]),  # neighbouring chains
        (z[..., 1:], z[..., :-1]),  # neighbouring coordinates
    ]:
        assert abs((a * b).mean().item()) < 4 / math.sqrt(a.numel())


def test_uniforms_lie_strictly_inside_the_unit_interval():
    u = keyed.uniform(keyed.key_grid(1, 3, torch.arange(5000), 8), 0)
    assert (u > 0).all() and (u < 1).all()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3


def test_seeds_and_streams_give_different_numbers():
    index = torch.arange(50)
    a = keyed.uniform(keyed.key_grid(0, 1, index, 2), 0)
    assert not torch.equal(a, keyed.uniform(keyed.key_grid(1, 1, index, 2), 0))
    assert not torch.equal(a, keyed.uniform(keyed.key_grid(0, 2, index, 2), 0))
    seeds = keyed.point_seeds(0, 1, index)
    assert len(set(seeds)) == 50 and all(0 <= s < 2**32 for s in seeds)
