"""Long checks of a whole process, started as soon as pytest has collected them.

The documentation build and the README's code each keep one core busy for a minute
while the rest of the suite, mostly small tensors on one thread, leaves the other
core idle. A test module that declares a :class:`Job` at module level gets it
started by ``tests/conftest.py`` before the first test runs, in its own process;
the test waits for it and checks what it left. A job that a test asks for before it
was started (a module run by itself under another runner) starts then.
"""

from __future__ import annotations

import dataclasses
import subprocess
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

    def start(self, directory: Path) -> None:
        """Start the command in ``directory`` (its working folder and output), once."""
        if self.process is not None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        argv = [argument.replace("{directory}", str(directory)) for argument in self.argv]
        with open(directory / "stdout.txt", "w") as out, open(directory / "stderr.txt", "w") as err:
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
