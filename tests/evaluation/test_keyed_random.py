import math
import random

import pytest
import torch
from scipy import stats

from vi_vae import keys
from vi_vae.errors import InputError
from vi_vae.keys import SPLITMIX64, TRIPLE32, RandomKey


def test_keys_of_a_point_do_not_depend_on_the_other_points():
    whole = RandomKey(7).grid(2, torch.arange(100), 4, 3)
    part = RandomKey(7).grid(2, torch.arange(40, 60), 4, 3)
    assert whole.shape == (4, 100, 3)
    assert torch.equal(whole[:, 40:60], part)


def test_normals_look_standard_and_independent():
    # 4 chains × 2000 points × 5 coordinates = 40,000 draws: the standard error of a
    # mean or a correlation is 1/√40000 = 0.005; tolerances are 4 standard errors,
    # and the KS test's p-value is above 10⁻³.
    grid = RandomKey(0).grid(2, torch.arange(2000), 4, 5)
    z = keys.normal(grid, 3)
    assert abs(z.mean().item()) < 0.02 and abs(z.var().item() - 1) < 0.03
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    next_step = keys.normal(grid, 4)
    for a, b in [
        (z, next_step),  # the next draw
        (z[:, 1:], z[:, :-1]),  # neighbouring points
        (z[1:], z[:-1]),  # neighbouring chains
        (z[..., 1:], z[..., :-1]),  # neighbouring coordinates
    ]:
        assert abs((a * b).mean().item()) < 4 / math.sqrt(a.numel())


def test_uniforms_lie_strictly_inside_the_unit_interval():
    u = keys.uniform(RandomKey(1).grid(3, torch.arange(5000), 8), 0)
    assert (u > 0).all() and (u < 1).all()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 1e-3


def test_seeds_and_streams_give_different_numbers():
    index = torch.arange(50)
    a = keys.uniform(RandomKey(0).grid(1, index, 2), 0)
    assert not torch.equal(a, keys.uniform(RandomKey(1).grid(1, index, 2), 0))
    assert not torch.equal(a, keys.uniform(RandomKey(0).grid(2, index, 2), 0))
    seeds = RandomKey(0).point_seeds(1, index)
    assert len(set(seeds)) == 50 and all(0 <= s < 2**32 for s in seeds)


def test_seed_for_is_32_bits_and_differs_by_index_and_group():
    key = RandomKey(3)
    seeds = {key.seed_for(index, group) for index in range(100) for group in range(3)}
    assert len(seeds) == 300 and all(0 <= s < 2**32 for s in seeds)
    assert key.seed_for(5) == RandomKey(3).seed_for(5, 0) != RandomKey(4).seed_for(5)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_a_key_refuses_a_seed_outside_32_bits(seed):
    with pytest.raises(InputError, match="seed"):
        RandomKey(seed)


def test_splitmix64_finalizer_gives_the_published_first_output():
    # SplitMix64 seeded with 0 outputs 0xE220A8397B1DCDAF first (Steele, Lea & Flood's
    # reference generator): the finalizer of 0 + the golden gamma.
    assert SPLITMIX64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


def test_triple32_on_tensors_equals_exact_integer_arithmetic():
    # the tensor path multiplies in 16-bit halves; Python integers multiply exactly
    rng = random.Random(0)
    values = [rng.getrandbits(32) for _ in range(2000)] + [0, 1, 2**32 - 1]
    mixed = TRIPLE32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert mixed == [TRIPLE32(v) for v in values]
    assert len(set(mixed)) == len(set(values))  # a bijection: no collisions
    with pytest.raises(TypeError, match="64-bit"):
        SPLITMIX64(torch.tensor(values))


def test_rng_state_round_trip_with_and_without_a_generator():
    generator = torch.Generator().manual_seed(1)
    state, checkpoint = keys.get_rng_state(), keys.get_rng_state(generator)
    first = (torch.rand(3), torch.rand(2, generator=generator), random.random())
    keys.set_rng_state(state)
    assert torch.equal(torch.rand(3), first[0])
    keys.set_rng_state(checkpoint, generator)
    again = (torch.rand(3), torch.rand(2, generator=generator), random.random())
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    assert again[2] == first[2]


def test_resolve_seed_checks_a_seed_and_draws_one_from_torch_otherwise():
    assert keys.resolve_seed(5) == 5
    torch.manual_seed(0)
    drawn = keys.resolve_seed(None)
    torch.manual_seed(0)
    assert keys.resolve_seed(None) == drawn and 0 <= drawn < 2**32
    with pytest.raises(InputError, match="seed"):
        keys.resolve_seed(-3)
