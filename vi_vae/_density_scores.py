"""Clause 8's scores: a pair's log density of the same draws, again and row by row alone.

:func:`check_scores` is the second half of
:func:`vi_vae.evaluated_pair.check_evaluated_pair`: the model's scores of the first
rows of ``x``, scored again at the same draws (dropout in training mode changes them),
and the first and the last of those rows scored alone (BatchNorm in training mode, a
statistic of the batch, or a row's place among the others changes them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor

from vi_vae._pair_trial import first_line, replayed
from vi_vae._particle_trial import differ
from vi_vae.contract import PairLayout, rows_of
from vi_vae.errors import InputError, RandomDensityWarning
from vi_vae.weights import sum_per_point

__all__ = ["RANDOM_VALIDATION", "check_scores", "part_failure"]

#: the warning of a validation ELBO whose model density is random (one text, so shown once)
RANDOM_VALIDATION = (
    "the model's log density of the same x and z changes between calls, with the "
    "networks in eval mode: it is random beyond its sample sites (a draw inside the "
    "model, such as obs=torch.bernoulli(x)), so the validation ELBO averages over that "
    "randomness, and the evaluators will refuse the pair; keep randomness in sample "
    "sites, and binarize outside the model (fit's batch_transform)"
)


def check_scores(
    pair: tuple[Callable, Callable],
    traces: tuple[Trace, Trace],
    part: tuple[Tensor, dict[str, Any], frozenset[str], int],
    layout: PairLayout,
    data_plate: str,
    flags: tuple[bool, bool],
) -> None:
    """Clause 8 on the first rows: the same scores again, and the first and last row alone.

    ``traces`` are the pair's on the rows of ``part`` (``(rows, kwargs, per_point,
    rows of x)``);
    ``flags`` are ``(fixed_density, fixed_guide)`` (:func:`check_evaluated_pair`).
    """
    (model, guide), (model_trace, guide_trace) = pair, traces
    rows, row_kwargs, per_point, num_rows = part
    fixed_density, fixed_guide = flags
    score = _scorer(layout, data_plate)
    first = score(model_trace)
    if fixed_density:
        _refuse_nan("the model", first, model_trace)
    # replayed on its own trace: a guide may draw no site (AIS's prior)
    again = score(replayed(model, model_trace, (rows,), row_kwargs))
    if fixed_density:
        _refuse_unless_equal("the model", first, again)
    elif differ(first, again):
        warnings.warn(RANDOM_VALIDATION, RandomDensityWarning, stacklevel=3)
    if fixed_density and fixed_guide:
        replayed_guide = replayed(guide, guide_trace, (rows,), row_kwargs)
        _refuse_unless_equal("the guide", score(guide_trace), score(replayed_guide))
    # the first row alone (a pair must run on part of the rows), and, where the density
    # must be fixed, the last too (a density that reads the row's place among them)
    last = rows.shape[0] - 1
    for index in ((0, last) if fixed_density else (0,)) if last else ():
        row, one_kwargs = rows_of(rows, row_kwargs, slice(index, index + 1), per_point)
        by_itself = _score_row_alone(
            model, guide, model_trace, row, one_kwargs, score, data_plate, index, num_rows
        )
        if fixed_density:
            _refuse_unless_alike(first[..., index], by_itself[..., 0], index, rows.shape[0])


def _scorer(layout: PairLayout, data_plate: str) -> Callable[[Trace], Tensor]:
    """Per-point sum of a trace's unscaled log densities, ``[1, rows]``."""

    def score(trace: Trace) -> Tensor:
        return sum_per_point(
            prune_subsample_sites(trace),
            lambda site: site["fn"].log_prob(site["value"]),
            latent_only=False,
            plate_nesting=layout.plate_nesting,
            data_plate=data_plate,
            scaled=False,
        ).double()

    return score


def _score_row_alone(
    model: Callable,
    guide: Callable,
    model_trace: Trace,
    row: Tensor,
    kwargs: dict[str, Any],
    score: Callable[[Trace], Tensor],
    data_plate: str,
    index: int,
    num_rows: int,
) -> Tensor:
    """The model's score of row ``index`` alone, at that row's draw in ``model_trace``."""
    draws = prune_subsample_sites(model_trace)
    for name, site in list(draws.nodes.items()):
        if site["type"] == "sample":
            draws.nodes[name] = dict(site, value=_point(site, data_plate, index))
    try:
        guide(row, **kwargs)  # the guide too must run on part of the rows
        return score(replayed(model, draws, (row,), kwargs))
    except Exception as error:
        raise part_failure(error, num_rows, 1, index) from error


def part_failure(error: Exception, num_rows: int, part: int, index: int = 0) -> InputError:
    """Why a pair that runs on all rows of x must run on a part of them too (clause 1).

    The part is the first ``part`` rows, or (``part`` 1) row ``index`` alone.
    """
    # the pair's own error, not the explanation for a pair that fails on all of x
    cause = error.__cause__ if isinstance(error, InputError) and error.__cause__ else error
    first = f"its first {part} rows" if part > 1 else "its first row alone"
    first = f"its row {index} alone" if index else first
    return InputError(
        f"the model/guide run on all {num_rows} rows of x but fail on {first} "
        f"({type(cause).__name__}: {first_line(cause)}); the evaluators call "
        "them on parts of the rows (passes of chunk_size pairs, shards), so nothing "
        "in them may be sized by the whole data set, such as a pyro.param with one "
        "row per data point (a guide that is not amortized) or a mask of fixed "
        "length: compute such values from x, or pass them as keyword arguments whose "
        "first dimension is x.shape[0], which are split by rows with x (a network "
        "that needs several rows, such as BatchNorm in training mode, must be put "
        "in eval mode)"
    )


def _point(site: dict, data_plate: str, index: int) -> Tensor:
    """A site's value at the data plate's ``index`` (unchanged where it broadcasts)."""
    value = site["value"]
    frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
    if frame is None or not isinstance(value, Tensor):
        return value
    dim = frame.dim - site["fn"].event_dim
    if value.dim() < -dim or value.shape[dim] == 1:
        return value
    return value.narrow(dim, index, 1)


def _refuse_nan(what: str, score: Tensor, trace: Trace) -> None:
    """Refuse a log density that is NaN at some of the check's rows, naming them and the sites.

    Compared with a second score, NaN would read as a density that changes between calls.
    """
    points = torch.isnan(score).reshape(-1).nonzero().flatten().tolist()
    if not points:
        return
    sites = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site_is_subsample(site)
        and torch.isnan(site["fn"].log_prob(site["value"])).any()
    ]
    raise InputError(
        f"{what}'s log density is NaN at point(s) {points[:5]} of x (site(s) {sites}): a "
        "network output that overflowed, or a distribution given parameters outside its "
        "domain (with validate_args=False), so log p(x) has no estimate there; find what "
        "turns NaN at those points"
    )


def _refuse_unless_equal(what: str, first: Tensor, again: Tensor) -> None:
    difference = differ(first, again)
    if difference:
        raise InputError(
            f"{what}'s log density of the same x and z changed between two calls (by "
            f"{difference:.3g} nats at a point): it is random beyond its sample sites, "
            "such as a network in training mode with dropout, so its estimate would not "
            "be log p(x) of one model; put the networks in eval mode (module.eval()) "
            "before evaluating, and keep any other randomness in sample sites"
        )


def _refuse_unless_alike(in_batch: Tensor, alone: Tensor, index: int, num_rows: int) -> None:
    if differ(in_batch, alone):
        raise InputError(
            f"the model's log density of row {index} of x at the same z is "
            f"{in_batch.item():.6g} with {num_rows} rows and {alone.item():.6g} alone: it "
            "depends on the other rows it is called with, such as BatchNorm in training "
            "mode, data normalized by statistics of the batch, or a value computed from "
            "the row's place among them (torch.arange(len(x))), so the estimate would "
            "depend on chunk_size; put the networks in eval mode (module.eval()) before "
            "evaluating, compute any statistic of the data once, outside the model, and "
            "pass a value per point as a keyword argument whose first dimension is "
            "x.shape[0] (split by rows with x)"
        )
