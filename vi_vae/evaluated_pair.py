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
differ, or that masks a latent site, is refused, saying what to change (the scores are
``vi_vae._density_scores``). AIS's
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
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._density_scores import check_scores, part_failure
from vi_vae._modules import modules_called
from vi_vae._pair_trial import run_without_particles
from vi_vae.contract import (
    EVALUATOR_SUBSAMPLING,
    PairLayout,
    check_pair,
    per_point_keywords,
    refuse_unsplit_sequences,
    rows_of,
)
from vi_vae.errors import InputError, UnobservedPointsWarning
from vi_vae.keys import forked
from vi_vae.precision import refuse_low_precision, warn_of_tf32
from vi_vae.support import (
    check_observed_support,
    point_masses,
    site_layers,
    warn_of_point_masses,
)

__all__ = ["FIXED_DENSITY_ROWS", "check_evaluated_pair"]

#: rows of x the density check runs on (the first ones): enough for a dependence on the
#: other rows to show, few enough to cost one small pass
FIXED_DENSITY_ROWS = 64


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
            raise part_failure(error, x.shape[0], rows.shape[0]) from error
        if fixed_density:
            refuse_low_precision(model_trace, guide_trace)
            warn_of_tf32(x.device, list(modules))
        part = (rows, row_kwargs, per_point, x.shape[0])
        flags = (fixed_density, fixed_guide)
        check_scores((model, guide), (model_trace, guide_trace), part, layout, data_plate, flags)
    return layout


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
