"""Small argument checks shared across the package, raising :class:`InputError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vi_vae.errors import InputError

__all__ = ["check_choice", "check_positive_int", "check_positive_float"]


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    choices = list(choices)
    if value not in choices:
        accepted = ", ".join(str(c) for c in choices)
        raise InputError(f"unknown {name} {value!r}; accepted values: {accepted}")
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a positive number; got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise InputError(f"{name} must be a positive finite number; got {value!r}")
    return number
