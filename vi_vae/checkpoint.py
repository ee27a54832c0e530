"""Atomic writes, safe loads and fingerprinted checkpoints.

Every file is written to a temporary file in the same directory (named
``.<name>.<random>.tmp``), flushed to disk, then renamed over the target: a
crash leaves either the old file or the new one, never a partial one, and a
rename replaces a symbolic link instead of writing through it. Files get the
permissions the user's umask gives new files (as ``open`` would), not
``mkstemp``'s 0600. :func:`remove_stale_temporaries` removes what a killed
write left behind.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which refuses to
unpickle arbitrary code, and carry a SHA-256 checksum of their whole content
(:func:`content_checksum`): the format name, every tensor, and every other field
(epoch, best epoch, history, metadata). A flipped byte anywhere in that content,
the format name included, is refused instead of evaluated. Older formats are
refused unless the caller asks for them (``allow_unverified=True``): format 1
(vi_vae 0.1) has no checksum at all, format 2 one over its tensors only.

A JSON file written with ``atomic_write_json(..., checksum=True)`` carries the same
checksum over its content, as read back (:func:`check_json_checksum`): a hand edit
of any number, however consistent, is refused. One written by an older vi_vae has
none; it is read with an :class:`UnverifiedFileWarning`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from vi_vae._digest import tensor_bytes
from vi_vae.errors import InputError, UnverifiedCheckpointWarning, UnverifiedFileWarning

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "CHECKSUM_FIELD",
    "HISTORY_FILE",
    "NON_FINITE",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_json_checksum",
    "content_checksum",
    "load_checkpoint",
    "read_json",
    "remove_stale_temporaries",
    "save_checkpoint",
    "tensor_checksum",
]

#: the files a run directory's checkpoint sink writes after every epoch of :func:`vi_vae.fit`
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"
CHECKPOINT_FORMAT = "vi_vae-checkpoint-3"
#: format 2's checksum covers its tensors only; format 1 (vi_vae 0.1) has none
_TENSOR_CHECKSUM_FORMAT = "vi_vae-checkpoint-2"
_UNCHECKSUMMED_FORMAT = "vi_vae-checkpoint-1"
#: the field of a checkpoint, and of a checksummed JSON object, that holds the checksum
CHECKSUM_FIELD = "checksum"
#: how :func:`atomic_write_json` writes the floats JSON has no number for: their ``repr``,
#: which ``float`` reads back (JSON null would read back as neither: a -inf log-likelihood
#: must not come back as NaN)
NON_FINITE = frozenset({"nan", "inf", "-inf"})
#: the temporary files of :func:`atomic_write_bytes`: ``.<name>.<8 random chars>.tmp``
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _file_mode() -> int:
    """The mode ``open`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _file_mode())
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        if path.is_dir():
            raise InputError(f"cannot write {path}: it is a directory") from None
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, *, checksum: bool = False) -> None:
    """Write ``data`` as indented JSON atomically (NaN and ±infinity: :data:`NON_FINITE`).

    Args:
        path: the file.
        data: plain JSON values; a dict when ``checksum`` is set.
        checksum: add the field :data:`CHECKSUM_FIELD` (last), the
            :func:`content_checksum` of the content as it reads back: keys as strings,
            tuples as lists, each float by the ``repr`` the file holds.
            :func:`check_json_checksum` checks it.
    """
    content = _json_safe(data)
    if checksum:
        if not isinstance(content, dict) or CHECKSUM_FIELD in content:
            raise ValueError(f"a checksummed JSON file holds a dict without {CHECKSUM_FIELD!r}")
        content = json.loads(json.dumps(content, allow_nan=False))
        content[CHECKSUM_FIELD] = content_checksum(content)
    atomic_write_text(path, json.dumps(content, indent=2, allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, turning a missing or corrupt file into an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error.__class__.__name__})") from None


def check_json_checksum(path: str | os.PathLike, stored: Any, remedy: str) -> dict[str, Any]:
    """The content of ``stored``, JSON read from ``path``, once its checksum matches.

    ``stored`` without the field :data:`CHECKSUM_FIELD` was written by a vi_vae older
    than the checksum: it is returned with an :class:`UnverifiedFileWarning` (once per
    file and process, under Python's default warning filter), as a checkpoint of
    vi_vae 0.2 loads with an :class:`UnverifiedCheckpointWarning`.

    Args:
        path: the file, for the messages.
        stored: its content, as :func:`read_json` returned it.
        remedy: what to do when it does not match, e.g. ``"delete it and evaluate the
            run again"``.

    Raises:
        InputError: when ``stored`` is not a JSON object, or does not match its checksum.
    """
    if not isinstance(stored, dict):
        raise InputError(f"{path} is not a JSON object; {remedy}")
    content = {key: value for key, value in stored.items() if key != CHECKSUM_FIELD}
    if CHECKSUM_FIELD not in stored:
        warnings.warn(
            f"{path} has no checksum (an older vi_vae wrote it), so a change made to it "
            "since cannot be detected; it gets one the next time vi_vae writes it",
            UnverifiedFileWarning,
            stacklevel=1,  # one place: the default filter then shows each file's once
        )
    elif stored[CHECKSUM_FIELD] != content_checksum(content):
        raise InputError(
            f"{path} does not match its checksum: it was changed or damaged after it was "
            f"written, so its numbers cannot be trusted; {remedy}"
        )
    return content


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left in ``directory``.

    Only files of this module's naming (``.<name>.<random>.tmp``) are touched.
    Call it when a run opens its directory, before anything writes there.
    """
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for path in directory.iterdir():
            if path.is_file() and not path.is_symlink() and _TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def tensor_checksum(state: Any) -> str:
    """SHA-256 over every tensor in ``state`` (nested dicts and lists), in a fixed order.

    Names, dtypes, shapes and bytes all enter it, so any change to a stored
    tensor changes the checksum.
    """
    digest = hashlib.sha256()
    for name, tensor in _tensors(state, ""):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def _tensors(value: Any, prefix: str):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _tensors(value[key], f"{prefix}/{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{prefix}[{index}]")


def content_checksum(state: dict[str, Any]) -> str:
    """SHA-256 over everything in a checkpoint: tensors and every other field alike.

    Each leaf enters with its path, its type and its value (a tensor with its
    dtype, shape and bytes; a float by its exact ``repr``), dict keys in sorted
    order, so changing, adding or removing any field changes the checksum. The
    ``"format"`` field is part of ``state``, so the format name is covered too.
    """
    digest = hashlib.sha256()
    for name, value in _leaves(state, ""):
        if isinstance(value, torch.Tensor):
            digest.update(f"{name}|tensor|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(tensor_bytes(value))
        else:
            digest.update(f"{name}|{type(value).__name__}|{value!r}\n".encode())
    return digest.hexdigest()


def _leaves(value: Any, prefix: str):
    """Every leaf of nested dicts, lists and tuples, with its path; empty containers too."""
    if isinstance(value, dict):
        yield f"{prefix}{{}}", len(value)
        for key in sorted(value, key=repr):
            yield from _leaves(value[key], f"{prefix}/{key!r}")
    elif isinstance(value, (list, tuple)):
        yield f"{prefix}[]", len(value)
        for index, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` (tensors, numbers, strings, containers) atomically.

    The format name and a checksum of the whole content (:func:`content_checksum`)
    are stored with it.
    """
    content = {"format": CHECKPOINT_FORMAT, **state}
    buffer = io.BytesIO()
    torch.save({**content, CHECKSUM_FIELD: content_checksum(content)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    *,
    allow_unverified: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, never unpickling code.

    Args:
        path: the checkpoint file.
        map_location: where its tensors go.
        allow_unverified: also load format 1 (vi_vae 0.1), which has no checksum.
            Only for files you trust. Format 2 (vi_vae 0.2) always loads: its
            tensors' checksum is checked, and an :class:`UnverifiedCheckpointWarning`
            says that its epoch and history are not (training the run further
            rewrites it in the current format).

    Raises:
        InputError: when the file is missing, damaged, not a vi_vae checkpoint, does
            not match its checksum, or is of an older format not asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise InputError(
            f"checkpoint {path} is corrupt or not a vi_vae checkpoint "
            f"({error.__class__.__name__}); delete it or use another run directory"
        ) from None
    formats = (CHECKPOINT_FORMAT, _TENSOR_CHECKSUM_FORMAT, _UNCHECKSUMMED_FORMAT)
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise InputError(f"{path} is not a vi_vae checkpoint (format {CHECKPOINT_FORMAT})")
    if state["format"] == _UNCHECKSUMMED_FORMAT and not allow_unverified:
        raise InputError(
            f"checkpoint {path} is of the older format {state['format']!r}, which has no "
            "checksum, so damage to it could go unnoticed; retrain the run, or load it with "
            "allow_unverified=True if you trust the file"
        )
    stored = state.pop(CHECKSUM_FIELD, None)
    if state["format"] == CHECKPOINT_FORMAT:
        expected = content_checksum(state)
    elif state["format"] == _TENSOR_CHECKSUM_FORMAT:
        expected = tensor_checksum({key: value for key, value in state.items() if key != "format"})
    else:
        expected = None  # format 1 had no checksum: one present means a damaged name
    if stored != expected:
        raise InputError(
            f"checkpoint {path} does not match its checksum: it was changed or damaged "
            "after it was written; delete it or use another run directory"
        )
    if state["format"] == _TENSOR_CHECKSUM_FORMAT:
        warnings.warn(
            f"checkpoint {path} is of the older format {state['format']!r}: its weights "
            "match their checksum, but its epoch, best epoch and history are not covered "
            "by one; training the run further rewrites it in the current format",
            UnverifiedCheckpointWarning,
            stacklevel=2,
        )
    return state


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
