"""Clause 5 of the pair's contract: which keyword arguments are split by rows with x.

:mod:`vi_vae.contract` states the clause and re-exports these; ``fit``'s batches, the
evaluators' passes and the shards all split ``x`` and its per-point keyword arguments
with :func:`rows_of`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from vi_vae.errors import InputError

__all__ = ["per_point_keywords", "refuse_unsplit_sequences", "rows_of"]


def per_point_keywords(kwargs: dict[str, Any], num_rows: int) -> frozenset[str]:
    """The names of the per-point keyword arguments (clause 5).

    A keyword argument is *per point* when it is a tensor whose first dimension is
    ``num_rows``, the number of rows of ``x``; every other one is passed whole.
    """
    return frozenset(
        name
        for name, value in kwargs.items()
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == num_rows
    )


def refuse_unsplit_sequences(kwargs: dict[str, Any], num_rows: int, what: str) -> None:
    """Refuse keyword arguments that hold one value per row of x but are no tensors (clause 5).

    Only tensors are split by rows: a list or an array of labels, or a ``PackedSequence``
    of one sequence per row (Pyro's deep Markov model example), would reach every part of
    the rows whole (``fit``'s batches, the evaluators' passes of ``chunk_size`` pairs and
    shards), where it fails or, read as ``ys[:len(x)]``, pairs rows with the wrong labels.
    Whether the evaluators split x depends on the memory they may use, so the refusal
    does not wait for a split. ``what`` names the arguments (``"model_kwargs"``).
    """
    names = [name for name, value in kwargs.items() if _rows_held(value) == num_rows]
    if num_rows > 1 and names:
        raise InputError(
            f"{what} {names} hold {num_rows} values, one per row of x, but are not "
            "tensors: only tensors are split by rows with x (fit's batches, the "
            "evaluators' passes and shards), so these would reach every part whole; "
            "pass them as tensors (torch.as_tensor; a PackedSequence as its padded tensor, "
            "packed inside the pair), or a value shared by every row through a closure of "
            "model and guide"
        )


def _rows_held(value: Any) -> int | None:
    """How many values, one per row, a keyword argument that is no tensor holds."""
    if isinstance(value, PackedSequence):
        return int(value.batch_sizes[0]) if len(value.batch_sizes) else 0
    if isinstance(value, (Tensor, str, bytes, dict)) or not hasattr(value, "__len__"):
        return None
    return len(value)


def rows_of(
    x: Tensor,
    kwargs: dict[str, Any],
    rows: slice | list[int],
    per_point: frozenset[str] | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """``x[rows]`` and the keyword arguments of those rows (clause 5).

    Args:
        x: the data, ``[N, ...]``.
        kwargs: the keyword arguments of model and guide for all of ``x``.
        rows: the rows to take: a slice, or a list of row indices.
        per_point: the names to slice; default :func:`per_point_keywords` of
            ``kwargs`` for ``N`` rows (pass it when ``x`` is itself a slice, so that a
            shared tensor whose first dimension happens to equal the slice's length
            stays whole).

    Example:
        >>> import torch
        >>> x, ys = torch.zeros(4, 3), torch.arange(4)
        >>> part, kwargs = rows_of(x, {"ys": ys, "scale": 2.0}, slice(1, 3))
        >>> part.shape[0], kwargs["ys"].tolist(), kwargs["scale"]
        (2, [1, 2], 2.0)
    """
    if per_point is None:
        per_point = per_point_keywords(kwargs, x.shape[0])
    sliced = {name: value[rows] if name in per_point else value for name, value in kwargs.items()}
    return x[rows], sliced
