"""Old names kept for one release, each with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "DEPRECATED_IN",
    "MOVED_MODULES",
    "REMOVED_IN",
    "MovedModuleFinder",
    "install_moved_module_finder",
    "renamed_keywords",
    "warn_renamed",
]

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


#: modules of vi_vae 0.1 that moved, old name -> new name
MOVED_MODULES = {
    "vi_vae.diagnostics": "vi_vae.evaluation.diagnostics",
    "vi_vae.inference_data": "vi_vae.evaluation.inference_data",
    "vi_vae.config": "vi_vae.app.config",
    "vi_vae.runs": "vi_vae.app.runs",
    "vi_vae.report": "vi_vae.app.report",
    "vi_vae.plots": "vi_vae.app.plots",
    "vi_vae.estimators.spec": "vi_vae.estimators.registry",
    "vi_vae.estimators._weights": "vi_vae.weights",
    "vi_vae.estimators._bounds": "vi_vae.bounds",
    "vi_vae.estimators._base": "vi_vae.estimators.particle_estimator",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a module of :data:`MOVED_MODULES` under its old name, with a warning."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """A spec for an old module name; ``None`` for every other name."""
        if name not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: Any) -> Any:
        """The module under its new name (imported now)."""
        warn_renamed(f"module {spec.name}", MOVED_MODULES[spec.name], stacklevel=8)
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the new module was imported by :meth:`create_module`."""


def install_moved_module_finder() -> None:
    """Let ``import vi_vae.runs`` (and the other old names) work for one release."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
