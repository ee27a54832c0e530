"""One rule for a settings object and its keyword shortcuts, for every entry point.

Each job of the library has a frozen settings dataclass (:class:`~vi_vae.TrainSettings`,
:class:`~vi_vae.ImportanceSettings`, :class:`~vi_vae.evaluation.AISSettings`,
:class:`~vi_vae.GapSettings`, :class:`~vi_vae.ExecutionOptions`,
:class:`~vi_vae.templates.Template`). The functions
that take one also take its fields as keyword shortcuts, and they all combine the two
with :func:`merge`, so ``f(..., settings=S, field=v)`` means the same everywhere:

- **A shortcut replaces its field** of ``S`` (of the defaults when ``S`` is ``None``), by
  :func:`dataclasses.replace`, so ``__post_init__`` checks the result again. An object
  is a preset and a shortcut edits it: ``annealed_importance_sampling(..., settings=S,
  num_steps=400)`` is ``S`` at T = 400, as ``dataclasses.replace(S, num_steps=400)``
  would be. (Refusing a shortcut that differs from the object would forbid exactly that
  call, and a caller who gives both clearly wants the edit.)
- **A shortcut counts when it is passed.** A shortcut gathered by ``**kwargs`` is passed
  when it is written, whatever its value: ``target_acceptance=None`` switches the
  adaptation off. A shortcut an entry point declares in its signature with the default
  ``None`` (the evaluators' ``compile=`` and ``chunk_size=``, :class:`~vi_vae.VAE`'s
  template keywords) cannot tell ``None`` from "not passed", so there ``None`` leaves the
  field as it is (:func:`passed`); to set such a field to ``None``, give the object.
- **An unknown name is a** :class:`TypeError`, as Python's own for a bad keyword, naming
  the function and listing the names it accepts. A field holding a settings object of its
  own (``GapSettings.ais``) takes that object's fields as shortcuts too.
- **A settings argument of another type is an** :class:`~vi_vae.InputError` naming the
  argument and the type it must be.

Example:
    >>> from vi_vae.execution import ExecutionOptions
    >>> merge(ExecutionOptions, ExecutionOptions(chunk_size=64), {"chunk_size": 8})
    ExecutionOptions(device=None, compile=False, chunk_size=8, vectorize_particles=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from vi_vae.errors import InputError

__all__ = ["Settings", "merge", "passed", "split_keywords"]


def merge(
    kind: type,
    settings: Any,
    shortcuts: Mapping[str, Any],
    *,
    owner: str | None = None,
    argument: str = "settings",
) -> Any:
    """``settings`` (default ``kind()``) with each of ``shortcuts`` replacing its field.

    Args:
        kind: a frozen dataclass of settings.
        settings: an instance of ``kind`` (a subclass keeps its type) or ``None``.
        shortcuts: the shortcuts passed, by field name; the names of a field that holds
            a settings object of its own reach that object.
        owner: the function that took the shortcuts, for the error message.
        argument: the name of the function's argument that takes ``settings``.

    Raises:
        InputError: ``settings`` is neither ``None`` nor a ``kind``.
        TypeError: a name that is neither a field nor a nested field, listing them.
    """
    if settings is not None and not isinstance(settings, kind):
        raise InputError(
            f"{argument} must be an instance of {kind.__name__} or None; got {settings!r}"
        )
    own = _names(kind)
    nested = _nested_kinds(kind)
    accepted = [*own, *(n for inner in nested.values() for n in _names(inner) if n not in own)]
    unknown = sorted(set(shortcuts) - set(accepted))
    if unknown:
        kinds = " and ".join(k.__name__ for k in (kind, *nested.values()))
        raise TypeError(
            f"{owner or kind.__name__ + '.build'}() got unexpected keyword arguments {unknown}; "
            f"the settings it takes as keywords are the fields of {kinds}: {', '.join(accepted)}"
        )
    base = kind() if settings is None else settings
    direct = {name: value for name, value in shortcuts.items() if name in own}
    for name, inner in nested.items():
        edits = {k: v for k, v in shortcuts.items() if k not in own and k in _names(inner)}
        if edits:
            inner_settings = direct.get(name, getattr(base, name))
            direct[name] = merge(inner, inner_settings, edits, owner=owner, argument=name)
    return dataclasses.replace(base, **direct) if direct else base


def passed(shortcuts: Mapping[str, Any]) -> dict[str, Any]:
    """The shortcuts among keywords declared with the default ``None``: those not ``None``."""
    return {name: value for name, value in shortcuts.items() if value is not None}


def split_keywords(
    kwargs: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the kwargs named in names, the others)``: the shortcuts apart from model keywords."""
    names = set(names)
    shortcuts = {name: value for name, value in kwargs.items() if name in names}
    rest = {name: value for name, value in kwargs.items() if name not in names}
    return shortcuts, rest


class Settings:
    """Base of a frozen settings dataclass: :meth:`names` and :meth:`build` by :func:`merge`.

    Its checks name a bad setting as ``_where + name``: ``_where`` is empty in the
    library, and an application config section that *is* these settings (a subclass)
    sets it to its section, so the same check names ``training.epochs`` there.
    """

    #: prefix of the setting names in error messages (an app config section sets it)
    _where: ClassVar[str] = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fields: the keyword shortcuts of the functions that take these settings."""
        return _names(cls)

    @classmethod
    def build(
        cls, settings: Self | None, shortcuts: Mapping[str, Any], *, owner: str | None = None
    ) -> Self:
        """``settings`` (default: the defaults) with the ``shortcuts`` passed (:func:`merge`).

        ``owner``: the function that took them, named by the error for an unknown name.
        """
        return merge(cls, settings, shortcuts, owner=owner)

    @classmethod
    def split(cls, settings: Self | None, kwargs: Mapping[str, Any]) -> tuple[Self, dict[str, Any]]:
        """``(settings with the shortcuts among kwargs applied, the other kwargs)``.

        For an entry point whose ``**kwargs`` gather both these settings' shortcuts and
        the model's keywords (:func:`vi_vae.annealed_importance_sampling`).
        """
        shortcuts, rest = split_keywords(kwargs, cls.names())
        return cls.build(settings, shortcuts), rest


def _names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind) if f.init)


def _nested_kinds(kind: type) -> dict[str, type]:
    """The fields of ``kind`` whose default is a settings object, by name: their types."""
    factories = {f.name: f.default_factory for f in dataclasses.fields(kind)}
    return {
        name: factory
        for name, factory in factories.items()
        if isinstance(factory, type) and issubclass(factory, Settings)
    }
