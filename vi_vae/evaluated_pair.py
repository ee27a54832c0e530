"""The evaluators' check of a pair: the contract, and a log density fixed per point (clause 8).

An evaluator (importance sampling, the bounds, AIS, BDMC, the inference gaps, the ArviZ
export's log weights) turns log p(x_n, z) into a number about the model. That number is
one of the model only if log p(x_n, z) is a fixed function of the point's own row and its
own z:

- not random beyond the sample sites: a network in training mode with dropout scores
  the same (x, z) differently at every call, and importance sampling then estimates
  the log of an average over dropout masks, about a nat above the model's log p(x)
  on a small decoder, with a standard error and k̂ that look fine;
- not a function of the other rows: BatchNorm in training mode, data normalized by
  statistics of the batch, or a value computed from the row's place among them
  (``torch.arange(len(x))``), make a point's number depend on which rows share its pass
  (``chunk_size``, the shard);
- whole: a mask on a latent site (Pyro's deep Markov model masks the steps a sequence
  lacks) leaves that density out of the log weight, which is then log p(x) only where
  the masked latents affect nothing observed.

:func:`check_evaluated_pair` runs the pair on the first rows of ``x``, scores the same
draws again, and then the first and the last of those rows alone, each at its own draw
(the first row's place is 0 in any pass); a pair whose model scores
differ, or that masks a latent site, is refused, saying what to change. AIS's
transitions also need the guide's log density fixed (it is part of the annealed
target); importance sampling does not (a random proposal with its own density in the
weight is still a proposal).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.distributions import MaskedDistribution
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor

from vi_vae._modules import modules_called
from vi_vae._pair_trial import first_line, replayed, run_without_particles
from vi_vae._particle_trial import differ
from vi_vae.contract import (
    EVALUATOR_SUBSAMPLING,
    PairLayout,
    check_pair,
    per_point_keywords,
    refuse_unsplit_sequences,
    rows_of,
)
from vi_vae.errors import InputError, RandomDensityWarning, UnobservedPointsWarning
from vi_vae.keys import forked
from vi_vae.precision import refuse_low_precision, warn_of_tf32
from vi_vae.support import (
    check_observed_support,
    point_masses,
    site_layers,
    warn_of_point_masses,
)
from vi_vae.weights import sum_per_point

__all__ = ["FIXED_DENSITY_ROWS", "check_evaluated_pair"]

#: rows of x the density check runs on (the first ones): enough for a dependence on the
#: other rows to show, few enough to cost one small pass
FIXED_DENSITY_ROWS = 64
#: the warning of a validation ELBO whose model density is random (one text, so shown once)
RANDOM_VALIDATION = (
    "the model's log density of the same x and z changes between calls, with the "
    "networks in eval mode: it is random beyond its sample sites (a draw inside the "
    "model, such as obs=torch.bernoulli(x)), so the validation ELBO averages over that "
    "randomness, and the evaluators will refuse the pair; keep randomness in sample "
    "sites, and binarize outside the model (fit's batch_transform)"
)


def check_evaluated_pair(
    model: Callable,
    guide: Callable,
    x: Tensor,
    kwargs: dict[str, Any],
    data_plate: str,
    match_latents: bool = True,
    fixed_guide: bool = False,
    fixed_density: bool = True,
    vectorized: bool = True,
) -> PairLayout:
    """The evaluators' check: the contract on all of ``x``, then clause 8 on its first rows.

    :func:`~vi_vae.contract.check_pair` with every row of ``x`` in the data plate (the
    evaluators split ``x`` by rows themselves), ``x`` in the support of every observed
    site and no latent site masked; then the model's log density of each of the first
    :data:`FIXED_DENSITY_ROWS` points, scored twice at the same draw and, for the first
    and the last of them, alone (module docstring), each site's log density in float32 or wider
    (:func:`~vi_vae.precision.refuse_low_precision`), and a warning where a GPU would
    compute it in TF32 (:func:`~vi_vae.precision.warn_of_tf32`). ``fixed_guide`` also
    requires the guide's log density fixed (AIS);
    ``fixed_density`` false runs the first row alone but compares no scores and takes
    masked latents (``fit``'s validation ELBO), and warns
    (:class:`~vi_vae.errors.RandomDensityWarning`) where the model's scores differ.
    ``vectorized`` false: the caller draws the particles one after another (no particle
    check, :func:`~vi_vae.contract.check_pair`).

    Raises:
        InputError: naming what breaks the contract and what to change.
    """
    refuse_unsplit_sequences(kwargs, x.shape[0], "keyword argument(s)")
    model_traces = []  # the check's model trace, on all of x

    def inspect(model_trace: Trace, guide_trace: Trace) -> None:
        model_traces.append(model_trace)
        (_inspect_traces if fixed_density else _inspect_data)(model_trace, guide_trace)

    layout = check_pair(
        model,
        guide,
        (x,),
        kwargs,
        data_plate=data_plate,
        subsampling_refusal=EVALUATOR_SUBSAMPLING,
        inspect=inspect,
        match_latents=match_latents,
        vectorized=vectorized,
    )
    if fixed_density:
        _warn_of_unobserved_points(model_traces[0], data_plate, x.shape[0])
    per_point = per_point_keywords(kwargs, x.shape[0])
    rows, row_kwargs = rows_of(x, kwargs, slice(0, FIXED_DENSITY_ROWS), per_point)
    with forked(x.device), torch.no_grad(), poutine.block(), modules_called() as modules:
        try:
            model_trace, guide_trace = run_without_particles(
                model, guide, (rows,), row_kwargs, None, data_plate, False, False
            )
        except Exception as error:
            raise _part_failure(error, x.shape[0], rows.shape[0]) from error
        if fixed_density:
            refuse_low_precision(model_trace, guide_trace)
            warn_of_tf32(x.device, list(modules))
        part = (rows, row_kwargs, per_point, x.shape[0])
        flags = (fixed_density, fixed_guide)
        _check_scores((model, guide), (model_trace, guide_trace), part, layout, data_plate, flags)
    return layout


def _check_scores(
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


def _inspect_data(model_trace: Trace, guide_trace: Trace) -> None:
    check_observed_support(model_trace)
    warn_of_point_masses(guide_trace)


def _inspect_traces(model_trace: Trace, guide_trace: Trace) -> None:
    """The observed sites' data in their supports, latent sites unmasked, a guide density."""
    check_observed_support(model_trace)
    _refuse_point_masses(guide_trace)
    for trace, which in ((model_trace, "model"), (guide_trace, "guide")):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            masked = sum(
                int((~torch.as_tensor(mask, dtype=torch.bool)).sum()) for mask, _ in _masks(site)
            )
            if masked:
                raise InputError(
                    f"latent site {name!r} is masked in the {which} ({masked} of its entries): "
                    "a mask leaves those entries' density out of log p(x, z) - log q(z|x), so "
                    "the estimate would not be log p(x) (it is right only where the masked "
                    "latents affect nothing observed); mask the observed sites only (the "
                    "likelihood's .mask() or pyro.poutine.mask around the observation), and "
                    "leave latent sites whole: a latent of a step without data keeps its prior "
                    "and guide densities, whose ratio averages to 1"
                )


def _warn_of_unobserved_points(model_trace: Trace, data_plate: str, size: int) -> None:
    """Warn of data points whose every observed entry is masked (their log p(x_n) is 0).

    ``size``: the data points, the rows of x.
    """
    observed: Tensor | None = None  # per row of the data plate: does any site observe it?
    for site in model_trace.nodes.values():
        if site["type"] != "sample" or not site["is_observed"] or site_is_subsample(site):
            continue
        frame = next(f for f in site["cond_indep_stack"] if f.name == data_plate)
        rows = _rows_observed(site, frame.dim, size)
        observed = rows if observed is None else observed | rows
    unobserved = size if observed is None else int((~observed).sum())
    if unobserved:
        warnings.warn(
            f"data points with every observed entry masked: {unobserved} of {size}; the "
            "model observes nothing of them, so their log p(x) is 0 whatever the "
            "model, and the mean over points counts those zeros; leave such points out "
            "of x, or check the mask",
            UnobservedPointsWarning,
            stacklevel=2,
        )


def _rows_observed(site: dict, dim: int, size: int) -> Tensor:
    """Per row of the data plate (``dim`` of the site's batch shape), whether any entry is kept.

    A mask this reading cannot place (:func:`_masks`) counts as keeping every entry.
    """
    placed = _masks(site)
    outer = len(site["fn"].batch_shape)
    extra = max((inner for _, inner in placed), default=0)
    kept = torch.ones((1,) * (outer + extra), dtype=torch.bool)
    for mask, inner in placed:
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        mask = mask.reshape(mask.shape + (1,) * (extra - inner))
        try:
            kept = kept & mask
        except RuntimeError:  # a shape that does not broadcast so
            continue
    data_dim = kept.dim() - extra + dim
    if data_dim < 0 or kept.shape[data_dim] != size:  # the same for every row
        return kept.any().expand(size)
    return kept.movedim(data_dim, 0).reshape(size, -1).any(1)


def _refuse_point_masses(guide_trace: Trace) -> None:
    masses = point_masses(guide_trace)
    if masses:
        name, kind = next(iter(masses.items()))
        raise InputError(
            f"the guide draws latent site {name!r} from a point mass ({kind}): the "
            "evaluators divide by the guide's density, and a point mass has none, so the "
            "estimate would be log p(x, z) at one z, not log p(x); give the guide a density "
            "(e.g. a Normal around the same point, or AutoNormal in place of AutoDelta), or "
            "estimate by AIS from the prior (guide=None, initial='prior')"
        )


def _masks(site: dict) -> list[tuple[Any, int]]:
    """A sample site's masks, each with how many event dims of the site it also covers.

    ``poutine.mask``'s lines up with the site's batch shape; a ``.mask()`` with its
    layer's, whose dims beyond the site's batch shape are event dims of the site
    (``.mask(m).to_event(1)``).
    """
    layers = site_layers(site)
    outer = len(layers[0].batch_shape)
    masks = [] if site["mask"] is None else [(site["mask"], 0)]
    return masks + [
        (fn._mask, max(0, len(fn.batch_shape) - outer))
        for fn in layers
        if isinstance(fn, MaskedDistribution)
    ]


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
        raise _part_failure(error, num_rows, 1, index) from error


def _part_failure(error: Exception, num_rows: int, part: int, index: int = 0) -> InputError:
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
