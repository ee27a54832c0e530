"""Old names kept for one release, each with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["DEPRECATED_IN", "REMOVED_IN", "pop_renamed", "warn_renamed"]

#: the release that renamed them, and the one that will remove them
DEPRECATED_IN = "0.2"
REMOVED_IN = "0.3"


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is now called ``new``."""
    warnings.warn(
        f"{old} is deprecated since vi_vae {DEPRECATED_IN} and will be removed in "
        f"{REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def pop_renamed(
    function: str, kwargs: dict[str, Any], old: str, new: str, current: Any, unset: Any = None
) -> Any:
    """Take the deprecated keyword ``old`` out of ``kwargs``: its value, or ``current``.

    Raises:
        TypeError: when both the old and the new keyword were given.
    """
    if old not in kwargs:
        return current
    value = kwargs.pop(old)
    if current is not unset:
        raise TypeError(f"{function}() got both {old}= (deprecated) and {new}=; pass {new}= only")
    warn_renamed(f"{function}({old}=...)", f"{new}=", stacklevel=4)
    return value
