"""Old names kept for one release, each with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DEPRECATED_IN", "REMOVED_IN", "renamed_keywords", "warn_renamed"]

#: the release that renamed them, and the one that will remove them
DEPRECATED_IN = "0.2"
REMOVED_IN = "0.3"

F = TypeVar("F", bound=Callable[..., Any])


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is now called ``new``."""
    warnings.warn(
        f"{old} is deprecated since vi_vae {DEPRECATED_IN} and will be removed in "
        f"{REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Accept the old keyword names ``renames`` (``old="new"``) for one release, with a warning.

    Example:
        >>> @renamed_keywords(num_samples="num_particles")
        ... def estimate(num_particles=1):
        ...     return num_particles
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     print(estimate(num_samples=5))
        5
    """

    def decorate(function: F) -> F:
        name = function.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{name}() got both {old}= (deprecated) and {new}=; pass {new}= only"
                        )
                    warn_renamed(f"{name}({old}=...)", f"{new}=")
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
