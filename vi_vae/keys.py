r"""Randomness in one place: seeds, the random key, keyed draws that ignore chunking and ranks.

- :func:`seed_everything`, :func:`seeded`, :func:`resolve_seed`: torch's global stream.
- :func:`get_rng_state` / :func:`set_rng_state`: save and restore it (a chunk's
  redraw, a compiled pass's trace, a training checkpoint).
- :class:`RandomKey`: the seed of a computation and everything derived from it.
  Importance sampling, AIS, BDMC and data-parallel training draw from streams
  keyed by (seed, indices) instead of from one global stream, so a point's numbers
  do not depend on the chunk size, the other points or the rank that evaluates it.
- :func:`key_block_size`: the blocks of importance sampling's keyed passes
  (:func:`vi_vae.evaluation.passes.keyed_log_weight_chunks`).

One hash family. Keys are mixed by xorshift-multiply finalizers, ``x ^= x >> s;
x *= m`` rounds followed by a last ``x ^= x >> s``, bijections of b-bit integers
(:class:`Mixer`). Two members are used, for their bit streams' sake: Wellons'
``triple32`` [1] (32 bits, three rounds) for the per-coordinate counters of AIS
and BDMC, which run on ``int64`` tensors (32-bit values, products in 16-bit halves
so that nothing overflows), and SplitMix64's finalizer [2] (64 bits, two rounds)
for the per-block seeds of importance sampling and the ranks of training, which
are Python integers. A 32-bit counter becomes a uniform (and, by Box–Muller, a
normal) variate, so normals are truncated at :math:`|z| \approx 6.7` (probability
2·10⁻¹¹): fine for HMC momenta and acceptance tests, not for tail probabilities.

Importance sampling's key blocks. To give each point the same draws whether it is
evaluated alone, with any ``chunk_size``, or in a shard on one of several ranks
(:mod:`vi_vae.distributed`), the points are cut by their global index into blocks of

.. math::
    G(K) = \max(1, \lfloor P_{\mathrm{key}} / K \rfloor)

consecutive points, :math:`P_{\mathrm{key}} =` :data:`KEYED_PAIRS`, the particles
of a block into groups of at most :data:`KEYED_PAIRS`, and each (block, group) is
drawn from torch's stream seeded by :meth:`RandomKey.seed_for` (the global index of
the block's first point, the group). For K ≥ :data:`KEYED_PAIRS` / 2 (the default
K = 5000) a block is one point and one pass, exactly the passes of the unkeyed
default; seeding a generator costs microseconds against a pass of thousands of
particles. For small K a block keeps the pass as large as that default (K = 1:
8192 points per pass) instead of paying one Pyro trace per point; the price is
that a point's draws depend on its block, so blocks are the unit of sharding
(:func:`vi_vae.distributed.shard` with ``block=G(K)``) and the last, shorter
block depends on where ``x`` ends. ``chunk_size`` still bounds memory: a block with
more pairs than ``chunk_size`` is drawn by the guide once and the model replayed
on slices of those draws (the same draws; sums may round differently).

References:
    [1] C. Wellons, "Prospecting for Hash Functions", 2018
        (nullprogram.com/blog/2018/07/31/).
    [2] G. Steele, D. Lea & C. Flood, "Fast Splittable Pseudorandom Number
        Generators", OOPSLA 2014.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from torch import Tensor

from vi_vae._validation import check_positive_int, check_seed
from vi_vae.weights import DEFAULT_CHUNK_SIZE

__all__ = [
    "KEYED_PAIRS",
    "SPLITMIX64",
    "TRIPLE32",
    "Mixer",
    "RandomKey",
    "RngState",
    "forked",
    "get_rng_state",
    "key_block_size",
    "normal",
    "resolve_seed",
    "seed_everything",
    "seeded",
    "set_rng_state",
    "uniform",
]

# -- torch's global stream -------------------------------------------------------------

#: torch's CPU stream, every CUDA stream once CUDA is initialized, and, in a
#: checkpoint's state, the shuffling generator's and Python's ``random``'s
RngState = dict[str, Any]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and numpy, as Pyro's ``set_rng_seed``.

    Call it before building a model: the networks' initial weights come from torch's
    global stream. :func:`vi_vae.fit` calls it with its ``seed`` before training, and
    :class:`vi_vae.VAE` accepts ``seed=`` for its initial weights, so that

    >>> from vi_vae import VAE
    >>> a, b = VAE(input_dim=4, latent_dim=2, seed=0), VAE(input_dim=4, latent_dim=2, seed=0)
    >>> all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))
    True

    On CPU the same seed then gives bitwise-identical runs across processes.
    """
    pyro.set_rng_seed(check_seed(seed))


@contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's RNG seeded by ``seed``, restoring the global state after.

    With ``seed=None`` the block runs on the global stream, unchanged. The CUDA
    stream of ``device`` is forked too when it is a CUDA device.
    """
    if seed is None:
        yield
        return
    with forked(device):
        torch.manual_seed(check_seed(seed))
        yield


def forked(device: torch.device | str = "cpu") -> AbstractContextManager:
    """Fork torch's CPU stream (and ``device``'s, a CUDA device): restored after the block."""
    device = torch.device(device)
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def resolve_seed(seed: int | None) -> int:
    """``seed`` (checked), or one drawn from torch's global stream when it is ``None``."""
    if seed is None:
        return int(torch.randint(0, 2**32, ()).item())
    return check_seed(seed)


def get_rng_state(generator: torch.Generator | None = None) -> RngState:
    """The state of torch's streams that Pyro's draws consume (CPU, CUDA once initialized).

    With ``generator`` (training's shuffling generator) it is a checkpoint's state:
    that generator's and Python's ``random``'s are saved too.
    """
    state: RngState = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["generator"] = generator.get_state()
        state["python"] = list(random.getstate()[1])
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: RngState, generator: torch.Generator | None = None) -> None:
    """Restore a state saved by :func:`get_rng_state` (with the same ``generator``)."""
    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["generator"])
        random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the hash family and the key -------------------------------------------------------

_MASK_16 = 0xFFFF
_MASK_32 = 0xFFFFFFFF
_MASK_64 = (1 << 64) - 1
#: SplitMix64's increment, 2⁶⁴ / φ, added before its finalizer
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_TWO_POW_32 = 2.0**32


@dataclass(frozen=True)
class Mixer:
    """An xorshift-multiply finalizer: a bijection of ``bits``-bit integers.

    Each round is ``x ^= x >> shift; x *= multiplier`` (mod 2^bits), then a last
    ``x ^= x >> shifts[-1]``. Python integers of any width; ``int64`` tensors of
    32-bit values for a 32-bit mixer.
    """

    bits: int
    shifts: tuple[int, ...]
    multipliers: tuple[int, ...]

    def __call__(self, x: Tensor | int) -> Tensor | int:
        """The mixed value of ``x``."""
        for shift, multiplier in zip(self.shifts[:-1], self.multipliers, strict=True):
            x = self._multiply(x ^ (x >> shift), multiplier)
        return x ^ (x >> self.shifts[-1])

    def _multiply(self, x: Tensor | int, constant: int) -> Tensor | int:
        if isinstance(x, int):
            return (x * constant) & ((1 << self.bits) - 1)
        if self.bits != 32:
            raise TypeError(f"a {self.bits}-bit mixer runs on Python integers only")
        # (x · constant) mod 2³² in 16-bit halves: no intermediate above 2⁴⁹
        high, low = x >> 16, x & _MASK_16
        return ((((high * constant) & _MASK_16) << 16) + low * constant) & _MASK_32


#: Wellons' triple32, the lowest avalanche bias he found for three rounds [1]
TRIPLE32 = Mixer(32, (17, 11, 15, 14), (0xED5AD4BB, 0xAC4C1B51, 0x31848BAB))
#: SplitMix64's finalizer [2]
SPLITMIX64 = Mixer(64, (30, 27, 31), (0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _combine(key: Tensor | int, value: Tensor | int) -> Tensor | int:
    """Fold ``value`` (an integer or integer tensor) into a 32-bit key; broadcasts like ``^``."""
    return TRIPLE32(key ^ TRIPLE32(value & _MASK_32))


def _splitmix(value: int) -> int:
    return SPLITMIX64((value + _GOLDEN_GAMMA) & _MASK_64)


@dataclass(frozen=True)
class RandomKey:
    """The seed of a computation, and the keyed seeds and counters derived from it.

    Args:
        seed: an integer in [0, 2³² − 1].

    Example:
        >>> key = RandomKey(0)
        >>> key.seed_for(7) == RandomKey(0).seed_for(7), key.seed_for(7) == key.seed_for(8)
        (True, False)
    """

    seed: int

    def __post_init__(self) -> None:
        check_seed(self.seed)

    def seed_for(self, index: int, group: int = 0) -> int:
        """A 32-bit seed for torch's generator, keyed by (seed, ``index``, ``group``).

        Importance sampling's key blocks (``index`` the block's first point, ``group``
        its particle group) and the training ranks (rank, epoch) use it. SplitMix64
        mixes the three into 32 bits, because torch's CPU generator (a Mersenne
        Twister) keeps only the low 32 bits of its seed: two of n blocks share a
        stream with probability about n² / 2³³, which correlates their noise but
        biases nothing.
        """
        value = _splitmix(_splitmix(_splitmix(self.seed) ^ index) ^ group)
        return (value ^ (value >> 32)) & _MASK_32

    def point_seeds(self, stream: int, point_index: Tensor) -> list[int]:
        """One 32-bit seed per point of ``stream``, for draws from torch's own samplers."""
        return self._point_keys(stream, point_index).tolist()

    def grid(self, stream: int, point_index: Tensor, *sizes: int) -> Tensor:
        """Counters ``[sizes[0], len(point_index), *sizes[1:]]`` for :func:`uniform`/:func:`normal`.

        Keyed by (seed, ``stream``, point, indices): the first size is the chains'
        (left of the points, as in a ``[num_chains, N]`` tensor), the others follow
        the points, so a point's counters do not depend on the other points.
        """
        key = self._point_keys(stream, point_index)
        device = point_index.device
        leading, *trailing = sizes
        key = _combine(key.unsqueeze(0), torch.arange(leading, device=device).unsqueeze(1))
        for size in trailing:
            key = _combine(key.unsqueeze(-1), torch.arange(size, device=device))
        return key

    def _point_keys(self, stream: int, point_index: Tensor) -> Tensor:
        return _combine(_combine(TRIPLE32(self.seed & _MASK_32), stream), point_index.long())


def uniform(keys: Tensor, counter: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """U(0, 1) variates, one per key of :meth:`RandomKey.grid`, draw ``counter``; never 0 or 1."""
    return ((_combine(keys, counter) + 0.5) / _TWO_POW_32).to(dtype)


def normal(keys: Tensor, counter: int, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""N(0, 1) variates by Box–Muller: :math:`\sqrt{-2 \log u_1} \cos(2 \pi u_2)`."""
    first = uniform(keys, 2 * counter)
    second = uniform(keys, 2 * counter + 1)
    return ((-2.0 * first.log()).sqrt() * torch.cos(2.0 * math.pi * second)).to(dtype)


# -- importance sampling's keyed passes --------------------------------------------------

#: (particle, point) pairs drawn from one seeded stream: the evaluators' default
#: chunk_size, so that keyed passes are as large as the default unkeyed ones
KEYED_PAIRS = DEFAULT_CHUNK_SIZE


def key_block_size(num_particles: int) -> int:
    """G(K): the consecutive points whose draws share one seeded stream.

    Example:
        >>> key_block_size(5000), key_block_size(50), key_block_size(1)
        (1, 163, 8192)
    """
    check_positive_int("num_particles", num_particles)
    return max(1, KEYED_PAIRS // num_particles)
