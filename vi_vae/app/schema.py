"""The one JSON codec of the application layer: typed dataclasses <-> plain JSON values.

Every file a run directory holds in JSON (``config.json``, ``metrics.json``,
``comparison.json``) is a frozen dataclass written with :func:`to_json` and read
back with :func:`from_json`, which checks every field against its type hint and
names the offending field (``config.training.learning_rate must be a number;
got '1e-3'``). So a renamed or retyped field breaks in the tests or at load
time with one clear line, never as a ``KeyError`` in a report.

Supported field types: ``bool``, ``int``, ``float`` (NaN and ±infinity, which JSON
has no number for, as the strings of :data:`vi_vae.checkpoint.NON_FINITE`; ``null``,
as older files held them, reads as NaN), ``str``, ``X | None``, ``list[X]`` /
``tuple[X, ...]``, ``Sequence[X]`` (read as a tuple), ``dict[str, X]``, ``Literal[...]`` and nested
dataclasses. A dataclass stores the fields :func:`stored_fields` lists.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

from vi_vae.checkpoint import NON_FINITE
from vi_vae.errors import InputError

__all__ = ["SchemaError", "from_json", "stored_fields", "to_json"]


class SchemaError(InputError):
    """A stored value does not fit its field; ``field`` is the dotted path of the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def stored_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a dataclass stores in JSON: its ``__init__``'s, less its ``_unstored``.

    A config section that is a library settings object leaves out the settings the
    run decides itself, such as the data's image shape.
    """
    unstored = getattr(cls, "_unstored", ())
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in unstored]


def to_json(value: Any) -> Any:
    """A dataclass (or container of them) as plain JSON values; tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in stored_fields(type(value))}
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def from_json(cls: type, data: Any, where: str) -> Any:
    """Rebuild a ``cls`` dataclass from :func:`to_json` output, checking every field.

    Unknown keys are refused; missing keys take the field's default (a field
    without a default must be present).

    Raises:
        SchemaError: naming the field (``where.field.subfield``) and what it accepts.
    """
    return _decode(cls, data, where)


def _decode(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, value, where)
            except SchemaError as error:
                errors.append(error)
        raise errors[0]
    if origin is typing.Literal:
        allowed = typing.get_args(kind)
        if value not in allowed:
            raise SchemaError(
                where, f"{where} must be one of {', '.join(map(repr, allowed))}; got {value!r}"
            )
        return value
    if dataclasses.is_dataclass(kind):
        return _decode_dataclass(kind, value, where)
    if origin in (list, tuple, Sequence) or kind in (list, tuple):
        if not isinstance(value, list):
            raise SchemaError(where, f"{where} must be a list; got {value!r}")
        arguments = [a for a in typing.get_args(kind) if a is not Ellipsis] or [Any]
        items = [_decode(arguments[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if (origin or kind) is list else tuple(items)
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise SchemaError(where, f"{where} must be a JSON object; got {value!r}")
        arguments = typing.get_args(kind) or (str, Any)
        return {key: _decode(arguments[1], item, f"{where}.{key}") for key, item in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise SchemaError(where, f"{where} must be true or false; got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(where, f"{where} must be an integer; got {value!r}")
        return value
    if kind is float:
        if value is None:
            return math.nan
        if isinstance(value, str) and value in NON_FINITE:
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(where, f"{where} must be a number; got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise SchemaError(where, f"{where} must be a string; got {value!r}")
        return value
    raise TypeError(f"{where}: the schema does not handle fields of type {kind!r}")


def _decode_dataclass(cls: Any, value: Any, where: str) -> Any:
    # a class whose stored form changed reads its older form through upgrade_json
    value = cls.upgrade_json(value) if hasattr(cls, "upgrade_json") else value
    if not isinstance(value, dict):
        raise SchemaError(where, f"{where} must be a JSON object; got {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in stored_fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise SchemaError(
            where, f"{where} has unknown fields {unknown}; accepted fields: {', '.join(fields)}"
        )
    arguments = {}
    for name, field in fields.items():
        if name in value:
            arguments[name] = _decode(hints[name], value[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where}.{name}", f"{where}.{name} is missing")
    return cls(**arguments)
