"""Small argument checks shared across the package, raising :class:`InputError`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from vi_vae.errors import InputError

__all__ = [
    "MAX_SEED",
    "available_device",
    "check_bool",
    "check_callables",
    "check_choice",
    "check_nonnegative_float",
    "check_plate_name",
    "check_positive_float",
    "check_positive_int",
    "check_seed",
    "spelled_count",
]

#: seeds are what every generator accepts: numpy takes 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


def available_device(value: str | torch.device, name: str = "device") -> torch.device:
    """``torch.device(value)``, refusing a CUDA device this machine does not have.

    Checked where the device is used, not where a setting is declared: a run trained on
    a GPU is still read, and evaluated on the CPU, on a machine without one.
    """
    device = torch.device(value)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InputError(
            f"{name} {str(value)!r} was asked for but no CUDA device is available; accepted "
            "here: cpu"
        )
    if device.index is not None and device.index >= count:
        accepted = ", ".join(["cpu", "cuda", *(f"cuda:{i}" for i in range(count))])
        raise InputError(
            f"{name} {str(value)!r} was asked for but this machine has {count} CUDA "
            f"device(s); accepted here: {accepted}"
        )
    return device


def check_callables(model: Any, guide: Any) -> None:
    """Refuse a model or guide that is not a function (Pyro's error prints the data).

    ``model`` first: ``f(x, model, guide)`` is caught there, naming the tensor it got.
    """
    for name, value in (("model", model), ("guide", guide)):
        if not callable(value):
            got = repr(value)
            if torch.is_tensor(value):
                got = f"a tensor of shape {list(value.shape)}"
            raise InputError(
                f"{name} must be a Pyro {name} function, called as {name}(x, **kwargs); got "
                f"{got} (the arguments are model, guide, x, in that order)"
            )


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False``, else raise (``"yes"`` is not a flag)."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    choices = list(choices)
    if value not in choices:
        accepted = ", ".join(str(c) for c in choices)
        raise InputError(f"unknown {name} {value!r}; accepted values: {accepted}")
    return value


def check_plate_name(name: str, value: Any) -> str:
    """Return ``value`` if it can name a ``pyro.plate`` (a non-empty string), else raise."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} must be a plate name, a non-empty string; got {value!r}")
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    return _check_float(name, value, zero=False)


def check_nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise."""
    return _check_float(name, value, zero=True)


def _check_float(name: str, value: Any, *, zero: bool) -> float:
    """``value`` as a float if it is finite and > 0 (>= 0 with ``zero``), else raise."""
    kind, finite = ("a number >= 0", "a finite number >= 0") if zero else (
        "a positive number", "a positive finite number"
    )  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be {kind}; got {value!r}")
    number = float(value)
    if not (number >= 0 if zero else number > 0) or math.isinf(number):
        raise InputError(f"{name} must be {finite}; got {value!r}")
    return number


def spelled_count(
    name: str, spelling: str, count: str, what: str, default: int, accepted: str
) -> int:
    """K of a ``"name:K"`` ``spelling`` (``count`` the text after its colon): ``default`` if empty.

    Raises:
        InputError: naming ``name``, ``what`` K counts and the ``accepted`` spellings,
            unless K is an integer >= 1.
    """
    if not count:
        return default
    if not count.isdigit() or int(count) < 1:
        raise InputError(
            f"{name} {spelling!r}: the number of {what} must be an integer >= 1; {accepted}"
        )
    return int(count)


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` if it is an integer in [0, 2**32 - 1], else raise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name} must be an integer in [0, {MAX_SEED}]; got {seed!r}")
    return seed
