"""``vi-vae`` on several ranks: under ``torchrun``, and ``--nproc N``, which starts torchrun.

Under ``torchrun -m vi_vae`` every rank runs the same command: the process group
is joined before the command runs and left after it, rank 0 alone prints to
stdout (the other ranks' stdout is discarded) and shows progress, and an error is
printed by the rank it happened on, naming that rank.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

from vi_vae import distributed
from vi_vae.errors import InputError

__all__ = [
    "DISTRIBUTED_COMMANDS",
    "add_launch_flags",
    "distributed_session",
    "program",
    "relaunch",
    "without_flag",
]

#: the commands that run on several ranks (the listings only print, on rank 0)
DISTRIBUTED_COMMANDS = ("train", "evaluate", "datasets", "families", "estimators")


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--nproc`` to a subcommand that runs on several ranks."""
    from vi_vae.cli.flags import positive_int

    group = parser.add_argument_group("distributed")
    group.add_argument(
        "--nproc",
        type=positive_int,
        metavar="N",
        help="run on N processes of this machine, started by torchrun (CPU: Gloo, one thread "
        "each; GPU: one process per GPU with --device cuda); for several machines, start "
        "torchrun -m vi_vae yourself",
    )


def without_flag(argv: Sequence[str], flag: str, takes_value: bool = True) -> list[str]:
    """``argv`` without ``flag``: ``--flag VALUE`` and ``--flag=VALUE``, or a bare ``--flag``."""
    rest, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == flag:
            skip = takes_value
        elif not argument.startswith(flag + "="):
            rest.append(argument)
    return rest


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``vi-vae ARGV`` without ``--nproc`` under ``torchrun --standalone``; its exit status."""
    if distributed.launched_by_torchrun():
        raise InputError("--nproc starts torchrun; under torchrun, leave it out")
    rest = without_flag(argv, "--nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(nproc), "-m", "vi_vae", *rest]
    return subprocess.call(command)


def program(command: str) -> str:
    """``vi-vae COMMAND``, with the rank under torchrun (read from its environment)."""
    if distributed.launched_by_torchrun():
        rank, world_size = os.environ.get("RANK", "?"), os.environ["WORLD_SIZE"]
        return f"vi-vae {command} (rank {rank} of {world_size})"
    return f"vi-vae {command}"


@contextlib.contextmanager
def distributed_session(command: str) -> Iterator[None]:
    """Join torchrun's process group for the block (a no-op in one process); rank 0 prints.

    Raises:
        InputError: for a command that does not run on several ranks.
    """
    if not distributed.launched_by_torchrun():
        yield
        return
    if command not in DISTRIBUTED_COMMANDS:
        raise InputError(
            f"vi-vae {command} runs in one process; under torchrun, use "
            + " or ".join(DISTRIBUTED_COMMANDS[:2])
        )
    distributed.init_from_environment()
    try:
        if distributed.is_main_process():
            yield
        else:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                yield
    except BaseException:
        sys.stdout.flush()
        distributed.shutdown()  # the other ranks may never get here: no barrier
        raise
    sys.stdout.flush()
    distributed.shutdown(synchronize=True)
