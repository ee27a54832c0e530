"""Seeds: one call that makes a run reproducible, and draws that leave other streams alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyro
import torch

from vi_vae._validation import check_seed

__all__ = ["RngState", "get_rng_state", "seed_everything", "seeded", "set_rng_state"]

#: torch's CPU generator state and, once CUDA is initialized, every CUDA generator's
RngState = tuple[torch.Tensor, list[torch.Tensor] | None]


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
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(check_seed(seed))
        yield


def get_rng_state() -> RngState:
    """The state of torch's generators that Pyro's draws consume."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: RngState) -> None:
    """Restore a state saved by :func:`get_rng_state`."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
