"""Seeded draws that leave the caller's random streams untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded"]


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
        torch.manual_seed(seed)
        yield
