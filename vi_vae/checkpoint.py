"""Atomic writes, safe loads and fingerprinted checkpoints.

Every file is written to a temporary file in the same directory (named
``.<name>.<random>.tmp``), flushed to disk, then renamed over the target: a
crash leaves either the old file or the new one, never a partial one, and a
rename replaces a symbolic link instead of writing through it. Files get the
permissions the user's umask gives new files (as ``open`` would), not
``mkstemp``'s 0600. :func:`remove_stale_temporaries` removes what a killed
write left behind.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which refuses to
unpickle arbitrary code, and carry a SHA-256 checksum of every tensor they hold,
so flipped bytes are refused instead of evaluated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from vi_vae.errors import InputError

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "HISTORY_FILE",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_checkpoint",
    "read_json",
    "remove_stale_temporaries",
    "save_checkpoint",
    "tensor_checksum",
]

#: the files a run directory's checkpoint sink writes after every epoch of :func:`vi_vae.fit`
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"
CHECKPOINT_FORMAT = "vi_vae-checkpoint-2"
#: checkpoints of vi_vae 0.1 (no checksum); still loaded
_OLD_FORMATS = ("vi_vae-checkpoint-1",)
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
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN and infinity are written as null)."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
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
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` (tensors, numbers, strings, containers) atomically.

    A checksum of its tensors (:func:`tensor_checksum`) is stored with it.
    """
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "checksum": tensor_checksum(state), **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, never unpickling code.

    Raises:
        InputError: when the file is missing, damaged, not a vi_vae checkpoint, or
            its tensors do not match their checksum.
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
    if not isinstance(state, dict) or state.get("format") not in (
        CHECKPOINT_FORMAT,
        *_OLD_FORMATS,
    ):
        raise InputError(f"{path} is not a vi_vae checkpoint (format {CHECKPOINT_FORMAT})")
    if state["format"] == CHECKPOINT_FORMAT:
        stored = state.pop("checksum", None)
        content = {key: value for key, value in state.items() if key != "format"}
        if stored != tensor_checksum(content):
            raise InputError(
                f"checkpoint {path} does not match its checksum: its tensors were changed or "
                "damaged after it was written; delete it or use another run directory"
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
