r"""Random numbers keyed by (seed, stream, point index, ...), whatever the chunking of points.

A sampler that processes data points in chunks draws its noise from torch's
stream in chunk-shaped blocks, so its numbers change with the chunk size and
with the sharding of points across processes. Here every number is a function
of its key instead: a tuple of integers such as
``(seed, stream, point index, chain, step, coordinate)`` is folded into one
32-bit counter by a mixing hash, and that counter becomes a uniform (and, by
Box–Muller, a normal) variate. Vectorized over tensors of keys, no Python loop.

The mixing function is Wellons' ``triple32`` (three xorshift-multiply rounds, a
bijection on 32-bit integers with the lowest avalanche bias he found) [1]; it
runs on ``int64`` tensors holding 32-bit values, with the 32 × 32-bit products
split in 16-bit halves so that no intermediate overflows. Each variate carries
32 bits, so normals are truncated at |z| ≈ 6.7 (probability 2·10⁻¹¹): fine for
HMC momenta and acceptance tests, not for tail-probability estimation.

References:
    [1] C. Wellons, "Prospecting for Hash Functions", 2018
        (nullprogram.com/blog/2018/07/31/).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["combine", "key_grid", "normal", "point_seeds", "uniform"]

_MASK_32 = 0xFFFFFFFF
_MASK_16 = 0xFFFF
#: triple32's shifts and odd multipliers (Wellons 2018)
_SHIFTS = (17, 11, 15, 14)
_MULTIPLIERS = (0xED5AD4BB, 0xAC4C1B51, 0x31848BAB)
_TWO_POW_32 = 2.0**32


def _multiply(x: Tensor | int, constant: int) -> Tensor | int:
    """(x · constant) mod 2³² for 32-bit x, without an intermediate above 2⁴⁹."""
    high, low = x >> 16, x & _MASK_16
    return ((((high * constant) & _MASK_16) << 16) + low * constant) & _MASK_32


def _mix(x: Tensor | int) -> Tensor | int:
    """Wellons' triple32: a bijective 32-bit mixing function."""
    for shift, multiplier in zip(_SHIFTS[:-1], _MULTIPLIERS, strict=True):
        x = _multiply(x ^ (x >> shift), multiplier)
    return x ^ (x >> _SHIFTS[-1])


def combine(key: Tensor | int, value: Tensor | int) -> Tensor | int:
    """Fold ``value`` (an integer or integer tensor) into ``key``; broadcasts like ``^``."""
    return _mix(key ^ _mix(value & _MASK_32))


def key_grid(seed: int, stream: int, point_index: Tensor, *sizes: int) -> Tensor:
    """Keys ``[sizes[0], len(point_index), *sizes[1:]]`` from (seed, stream, point, indices).

    The first size is the chains' (left of the points, as in a ``[num_chains, N]``
    tensor); the others follow the points.
    """
    key = combine(combine(_mix(seed & _MASK_32), stream), point_index.long())
    device = point_index.device
    leading, *trailing = sizes
    key = combine(key.unsqueeze(0), torch.arange(leading, device=device).unsqueeze(1))
    for size in trailing:
        key = combine(key.unsqueeze(-1), torch.arange(size, device=device))
    return key


def uniform(key: Tensor, counter: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """U(0, 1) variates, one per key, for draw number ``counter``; never 0 or 1."""
    return ((combine(key, counter) + 0.5) / _TWO_POW_32).to(dtype)


def normal(key: Tensor, counter: int, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""N(0, 1) variates by Box–Muller: :math:`\sqrt{-2 \log u_1} \cos(2 \pi u_2)`."""
    first = uniform(key, 2 * counter)
    second = uniform(key, 2 * counter + 1)
    return ((-2.0 * first.log()).sqrt() * torch.cos(2.0 * math.pi * second)).to(dtype)


def point_seeds(seed: int, stream: int, point_index: Tensor) -> list[int]:
    """One 32-bit seed per point, for draws that must come from torch's own samplers."""
    return combine(combine(_mix(seed & _MASK_32), stream), point_index.long()).tolist()
