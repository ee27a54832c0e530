"""SHA-256 digests: of a tensor's values (dtype, shape and bytes in order), of a file.

One digest for every caller that must tell data apart: a run's splits
(:meth:`vi_vae.data.Dataset.digests`), the data each rank passes under torchrun
(:func:`vi_vae.distributed.data_fingerprint`), the constants a compiled graph holds,
the checkpoint a run's ``metrics.json`` was computed from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["file_sha256", "tensor_bytes", "tensor_sha256"]


def tensor_bytes(values: Tensor) -> np.ndarray:
    """``values``' bytes in order, as a flat ``uint8`` array (copied to the CPU first).

    What every digest of a tensor in vi_vae reads: :func:`tensor_sha256` and the
    checkpoint's checksums (:mod:`vi_vae.checkpoint`), each with its own header of
    dtype and shape.
    """
    return values.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def tensor_sha256(values: Tensor) -> str:
    """The hex SHA-256 of ``values``' dtype, shape and bytes (copied to the CPU first).

    Any change of a value, of the order of the values, of the shape or of the dtype
    changes it.

    Example:
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> digest = tensor_sha256(x)
        >>> digest == tensor_sha256(x.clone()), digest == tensor_sha256(x.flip(0))
        (True, False)
    """
    digest = hashlib.sha256(f"{values.dtype} {list(values.shape)}".encode())
    digest.update(tensor_bytes(values))
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
