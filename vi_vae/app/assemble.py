"""What a run is built from, read off its config: the device, the data and the VAE.

:func:`check_model_size` refuses, before anything is allocated, sizes whose weights
cannot fit on the device.
"""

from __future__ import annotations

import os

import torch

from vi_vae._validation import available_device
from vi_vae.app.config import DataConfig, RunConfig
from vi_vae.app.schema import SchemaError
from vi_vae.data import Dataset, load_dataset
from vi_vae.distributed import local_device
from vi_vae.errors import InputError
from vi_vae.model import VAE

__all__ = [
    "TRAINING_BYTES_PER_PARAMETER",
    "build_vae",
    "check_model_size",
    "load_data",
    "resolve_device",
]


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, refusing CUDA on a machine without it.

    Under ``torchrun``, ``cuda`` is this rank's GPU (``cuda:LOCAL_RANK``).
    """
    try:
        return available_device(local_device(name))
    except InputError as error:
        raise SchemaError("training.device", str(error)) from None


def load_data(data: DataConfig) -> Dataset:
    """The dataset a config's data section describes."""
    return load_dataset(
        data.dataset,
        binarization=data.binarization,
        data_dir=data.data_dir,
        max_train=data.max_train,
    )


#: bytes per parameter while training: float32 weights, gradients and Adam's two moments
TRAINING_BYTES_PER_PARAMETER = 4 * 4


def check_model_size(config: RunConfig, input_dim: int, device: torch.device) -> None:
    """Refuse sizes whose weights cannot fit in memory, before anything is allocated.

    The count is a lower bound: the weight matrices of an MLP encoder and its mirrored
    decoder through ``hidden_sizes`` and the latent layers, without biases or the
    family's extra outputs. It is compared with the device's total memory.
    """
    model = config.model
    latent_dims = model.latent_dims or (model.latent_dim,)
    widths = [input_dim, *model.hidden_sizes, *latent_dims]
    count = 2 * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    needed = count * TRAINING_BYTES_PER_PARAMETER
    available = _memory_bytes(device)
    if needed > available:
        hidden = ",".join(map(str, model.hidden_sizes))
        raise InputError(
            f"model.hidden_sizes = {hidden} and model.latent_dim = {model.latent_dim} make a "
            f"model of at least {count:.3g} weights, which need {needed / 2**30:.3g} GiB to "
            f"train; the {device.type} device has {available / 2**30:.3g} GiB: choose smaller sizes"
        )


def _memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build_vae(config: RunConfig, dataset: Dataset) -> VAE:
    """The VAE a config describes, sized for ``dataset``, its weights seeded by the run's seed."""
    model = config.model  # the template, and the VAE's other arguments
    return VAE(
        input_dim=dataset.input_dim,
        latent_dim=model.latent_dim,
        latent_family=model.latent_family,
        likelihood=model.likelihood,
        image_shape=dataset.image_shape,
        seed=config.training.seed,
        prior=model.prior,
        template=model,
    )
