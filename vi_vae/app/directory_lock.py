"""One writer at a time: an exclusive ``flock`` on a lock file inside a run directory.

A second process that asks for a directory in use is refused at once with
:class:`RunDirectoryInUse` rather than queued behind it (a training can take
hours, and a queued ``train --overwrite`` would then destroy the run it waited
for). The lock is the kernel's, so a killed holder frees it. The holder removes
the file when it lets go; one that opened the file just before is told by the
file's inode that it holds a removed file, and tries again.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vi_vae.errors import InputError

__all__ = ["LOCK_FILE", "RunDirectoryInUse", "directory_lock"]

#: the file whose ``flock`` says which process writes the directory; it holds its pid
LOCK_FILE = ".vi_vae.lock"
#: directories this process holds the lock of: a nested lock of the same one is a no-op
_HELD: set[Path] = set()


class RunDirectoryInUse(InputError):
    """Another process holds the run directory's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"run directory {path} is in use by another vi_vae process{holder}; wait for it "
            "to finish, or use another run directory"
        )
        self.path = path


@contextmanager
def directory_lock(directory: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold ``directory``'s lock (which must exist) while the block runs.

    Args:
        directory: the directory.
        enabled: false on a process that does not write (a rank other than 0).

    Raises:
        RunDirectoryInUse: when another process holds it.
    """
    key = Path(directory).absolute()
    if not enabled or key in _HELD:
        yield
        return
    descriptor = _acquire(key / LOCK_FILE)
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        (key / LOCK_FILE).unlink(missing_ok=True)  # still held: see the module docstring
        os.close(descriptor)


def _acquire(lock: Path) -> int:
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            os.close(descriptor)
            raise RunDirectoryInUse(lock.parent, f" (pid {holder})" if holder else "") from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            return descriptor
        os.close(descriptor)  # the holder let go and removed the file: try again
