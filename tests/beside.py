"""Long checks of a whole process, started as soon as pytest has collected them.

The documentation build (and the parse of its pages), the README's code, the examples
and the two same-script processes each keep one core busy for seconds to a minute,
while the rest of the suite, mostly small tensors, leaves the other core partly idle.
A test module that declares a :class:`Job` (or a dict of them) at module level gets it
queued by ``tests/conftest.py`` before the first test runs; the test waits for it and
checks what it left. The jobs run one at a time, in the order their tests come, so
they take one core and leave the other to the tests (all at once, nine torch
processes would crowd the tests' own threads). A job that a test asks for before its
turn starts then.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from pathlib import Path


@dataclasses.dataclass
class Job:
    """A command in its own process; its output goes to files, so no pipe fills up.

    ``{directory}`` in an argument stands for the job's own folder (made by pytest's
    ``tmp_path_factory``), where the command may write what its test reads.
    """

    name: str
    argv: list[str]
    environment: dict[str, str]
    #: seconds from its start after which the job has hung: it is killed and its test fails
    timeout: float
    #: the working folder (default: the job's own folder)
    cwd: Path | None = None
    directory: Path | None = None
    process: subprocess.Popen | None = None
    started: float = 0.0
    #: the queue's thread and a test may both start the job: the first one does
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def start(self, directory: Path) -> None:
        """Start the command in ``directory`` (its working folder and output), once."""
        with self.lock:
            if self.process is not None:
                return
            directory.mkdir(parents=True, exist_ok=True)
            self.directory = directory
            argv = [argument.replace("{directory}", str(directory)) for argument in self.argv]
            out, err = open(directory / "stdout.txt", "w"), open(directory / "stderr.txt", "w")
            with out, err:
                self.process = subprocess.Popen(
                    argv, stdout=out, stderr=err, cwd=self.cwd or directory, env=self.environment
                )
            self.started = time.monotonic()

    def wait(self, directory: Path) -> subprocess.CompletedProcess:
        """The finished command (started in ``directory`` if it was not started yet)."""
        self.start(directory)
        assert self.process is not None and self.directory is not None
        try:
            self.process.wait(timeout=max(self.timeout - (time.monotonic() - self.started), 0))
        finally:
            self.stop()
        return subprocess.CompletedProcess(
            self.argv,
            self.process.returncode,
            (self.directory / "stdout.txt").read_text(),
            (self.directory / "stderr.txt").read_text(),
        )

    def stop(self) -> None:
        """Kill the command if it still runs (a timeout, or a session that ended early)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Queue:
    """Jobs started one after another by a thread: the next when the last has finished."""

    def __init__(self, jobs: list[tuple[Job, Path]]):
        self.jobs = jobs
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, name="beside-the-suite", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        for job, directory in self.jobs:
            if self.stopping.is_set():
                return
            job.start(directory)
            while job.process.poll() is None and not self.stopping.wait(0.2):
                pass

    def stop(self) -> None:
        """Start nothing more, and kill what still runs (the session is over)."""
        self.stopping.set()
        self.thread.join()
        for job, _ in self.jobs:
            job.stop()
