"""How an evaluation runs, apart from what it computes: one frozen, checked object.

:class:`ExecutionOptions` holds the device, whether the passes run compiled, the
size of a vectorized pass, and whether particles are drawn in one (vectorized) pass.
None of them changes the estimator: compiled passes agree to float rounding, and
particles drawn one after another are other draws of the same one. They are not
settings of an estimate, and results do not carry them. The evaluators
(:func:`vi_vae.importance_sampling`, :func:`vi_vae.annealed_importance_sampling`,
:func:`vi_vae.bdmc`, …) take one as ``execution=``, or some of its fields as keyword
shortcuts (``compile=True``; the rule: :mod:`vi_vae.settings`).

Ranks are not options: under ``torchrun`` they are the process group's
(:mod:`vi_vae.distributed`), and every evaluator shards its points by them.

Example:
    >>> base = ExecutionOptions(chunk_size=64)
    >>> ExecutionOptions.build(base, {"compile": True, "chunk_size": None})
    ExecutionOptions(device=None, compile=True, chunk_size=64, vectorize_particles=True)
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vi_vae._validation import available_device, check_bool
from vi_vae.errors import InputError
from vi_vae.settings import Settings, merge, passed
from vi_vae.weights import DEFAULT_CHUNK_SIZE

__all__ = ["AUTO", "ExecutionOptions", "release_freed_memory"]

#: ``chunk_size="auto"``: the evaluator picks (importance sampling fills a GPU, AIS
#: takes :data:`~vi_vae.weights.DEFAULT_CHUNK_SIZE`)
AUTO = "auto"


@dataclass(frozen=True)
class ExecutionOptions(Settings):
    """Where and how an evaluation runs; checked once here.

    Attributes:
        device: where the data points are evaluated (they are moved there; the model's
            parameters must be there already); ``None``: where the data is.
        compile: run the passes compiled by ``torch.compile``, once per pass shape
            (the same draws, the same numbers to float rounding; ``docs/howto/compiled.md``).
        chunk_size: (particle, point) pairs per vectorized pass, a positive integer, or
            ``"auto"`` (:data:`AUTO`). Bounds memory; does not change the numbers.
        vectorize_particles: draw the K particles of every point in one vectorized pass
            (clause 4 of :mod:`vi_vae.contract`). ``False`` draws them one after another,
            each a run of the pair as it is written, as Pyro's ELBOs do by default: for a
            pair not written for a leading particle dimension, at K times the Python
            cost of a pass. The same estimator from other draws (its number moves within
            its Monte Carlo error; keyed by ``seed`` as before, so it does not depend on
            the passes). Importance sampling only (:func:`~vi_vae.log_marginal_likelihood`,
            :func:`~vi_vae.bounds`, :func:`~vi_vae.importance_sampling`): AIS moves its
            chains as one batch, and refuses it (:meth:`require_vectorized`); not with
            ``compile``, which compiles the vectorized pass.

    Raises:
        InputError: naming the bad option and its accepted values.
    """

    device: str | torch.device | None = None
    compile: bool = False
    chunk_size: int | str = AUTO
    vectorize_particles: bool = True

    def __post_init__(self) -> None:
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise InputError(
                    f"device must be None or a torch device such as 'cpu' or 'cuda:0'; "
                    f"got {self.device!r}"
                ) from error
        check_bool("compile", self.compile)
        check_bool("vectorize_particles", self.vectorize_particles)
        if self.compile and not self.vectorize_particles:
            raise InputError(
                "compile=True compiles the vectorized pass and vectorize_particles=False draws "
                "the particles one after another: choose one"
            )
        size = self.chunk_size
        if not (size == AUTO and isinstance(size, str)) and (
            isinstance(size, bool) or not isinstance(size, int) or size < 1
        ):
            raise InputError(
                f"chunk_size must be a positive integer (pairs per pass) or 'auto'; got {size!r}"
            )

    @classmethod
    def build(
        cls,
        options: ExecutionOptions | None,
        shortcuts: Mapping[str, Any],
        *,
        owner: str | None = None,
    ) -> ExecutionOptions:
        """``options`` (default: the defaults) with the shortcuts that are not ``None``.

        The shortcuts are keywords the evaluators declare with the default ``None``, so
        ``None`` is "not passed" (:func:`~vi_vae.settings.passed`); the others replace their
        field (:func:`~vi_vae.settings.merge`).
        """
        return merge(cls, options, passed(shortcuts), owner=owner, argument="execution")

    def require_vectorized(self, owner: str) -> None:
        """Refuse ``vectorize_particles=False`` for ``owner``, an evaluator that needs the batch.

        Raises:
            InputError: naming ``owner`` and the evaluators that take it.
        """
        if not self.vectorize_particles:
            raise InputError(
                f"{owner} moves its chains (or particles) as one vectorized batch and cannot "
                "take execution.vectorize_particles=False, which importance sampling "
                "(log_marginal_likelihood, bounds, importance_sampling) takes; write the pair "
                "for a leading batch dimension (docs/howto/custom-model.md, clause 4)"
            )

    def pairs_per_pass(self) -> int:
        """``chunk_size``, with ``"auto"`` read as :data:`~vi_vae.weights.DEFAULT_CHUNK_SIZE`."""
        return DEFAULT_CHUNK_SIZE if self.chunk_size == AUTO else int(self.chunk_size)

    def place(self, x: Tensor, kwargs: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """``x`` and the tensors among ``kwargs`` on :attr:`device` (unchanged when ``None``)."""
        if self.device is None:
            return x, kwargs
        device = available_device(self.device, "execution.device")
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        return x.to(device), moved


def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` on Linux (glibc's), or None: elsewhere, or without one."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:  # pragma: no cover - a Linux without a loadable C library
        return None


def _resident_bytes() -> int:
    """This process's resident set, from ``/proc/self/statm`` (Linux)."""
    return int(Path("/proc/self/statm").read_bytes().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_MALLOC_TRIM = _malloc_trim()
#: growth of the resident set since the last trim that makes the next one: each trim
#: returns pages the next chunks fault back in, so a trim once a second made a K = 5000
#: evaluation 6-12% slower, and one per chunk a third; where nothing grows, none runs
TRIM_GROWTH_BYTES = 256 * 2**20
_after_last_trim = [0]


def release_freed_memory() -> None:
    """Hand the host memory freed so far back to the operating system (glibc only).

    A chunked evaluation frees each chunk's large transients (K × pixels) while
    its small per-point results live on. With a second thread running (the command
    line's progress heartbeat), glibc's malloc served the large blocks from its heap
    and the small survivors between them kept the freed pages resident: the resident
    set grew by about a chunk per chunk although nothing was alive, and a four-run
    Fashion-MNIST comparison at K = 5000 on 2,000 points passed 23 GB.
    ``malloc_trim(0)`` returns the free pages (the numbers are unchanged). Evaluators
    call this once per chunk; it trims when the resident set has grown by
    :data:`TRIM_GROWTH_BYTES` since the last trim. Elsewhere a no-op.
    """
    if _MALLOC_TRIM is None:
        return
    if _resident_bytes() - _after_last_trim[0] >= TRIM_GROWTH_BYTES:
        _MALLOC_TRIM(0)
        _after_last_trim[0] = _resident_bytes()
