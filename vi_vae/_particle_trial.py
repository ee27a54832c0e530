"""Clause 4 checked by value: the same draw scores the same with a leading particle dimension.

vi_vae draws the K particles of every point in one vectorized pass, inside
``pyro.plate(PARTICLE_PLATE, K)`` to the left of the pair's plates. A pair written for
one draw per point may run under that dimension and still compute something else: a
``softmax(..., dim=1)`` over the words of a document (as Pyro's ProdLDA tutorial
writes its decoder) normalizes over the documents once a particle dimension stands in
front, and a ``sum(0)`` adds up particles. No error is raised, and every number that
follows is of another model; importance sampling's even changes with ``chunk_size``.

:func:`check_particle_dimension` runs the pair on the first rows of ``x`` without the
particle dimension, then again with two particles that carry those same draws, and
compares each site's log density: it refuses a pair whose scores differ beyond float
rounding, naming the site and the point. The runs fork the random stream, run outside
``torch.autocast`` and put every network in eval mode (dropout and batch statistics are
clause 8's concern, not this one's); a pair that scores the same draw differently even
without particles (random beyond its sample sites) gets no verdict here, nor does one
that fails under the particle dimension (the pass itself explains that:
:func:`~vi_vae._pair_trial.particle_dimension_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._modules import modules_called
from vi_vae._pair_trial import PARTICLE_HINT, forked_stream, replayed
from vi_vae._point_keywords import per_point_keywords, rows_of
from vi_vae.errors import InputError

__all__ = ["PARTICLE_CHECK_ROWS", "PARTICLE_PLATE", "check_particle_dimension", "differ"]

#: name of the outermost plate that vectorizes particles
PARTICLE_PLATE = "num_particles_vectorized"
#: how far two scores of the same (x_n, z_n) may differ, in nats: float rounding of a
#: pass over other rows or particles (a matrix product blocked differently) stays far
#: below it
TOLERANCE = 1e-3
RELATIVE_TOLERANCE = 1e-4
#: the particles that carry each draw
_PARTICLES = 2
#: rows of x on which the particle dimension is checked (the first ones)
PARTICLE_CHECK_ROWS = 8


def differ(first: Tensor, second: Tensor) -> float:
    """The largest difference of two scores of the same points, if beyond float rounding; else 0.

    Equal infinities do not differ: a draw where the density is 0 (log density -inf)
    scores so every time.
    """
    difference = torch.where(first == second, 0.0, (first - second).abs()).max().item()
    finite = first[torch.isfinite(first)]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    return 0.0 if difference <= TOLERANCE + RELATIVE_TOLERANCE * scale else difference


def check_particle_dimension(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    plate_nesting: int,
    data_plate: str,
    subsampled: bool = False,
) -> None:
    """Refuse a pair that scores the same draw differently under the particle dimension.

    Args:
        model: the Pyro model.
        guide: its guide (one that draws no latent site, AIS's prior, is allowed).
        args: the arguments of one run, ``x`` first (cut here to its first
            :data:`PARTICLE_CHECK_ROWS` rows).
        kwargs: the keyword arguments of that run (per-point ones cut with ``x``).
        plate_nesting: the plate dims the pair uses (the particle dim is left of them).
        data_plate: the data plate's name (the point a difference is at).
        subsampled: the data plate subsamples, so its indices may reach any row: the
            check runs on all of ``args``.

    Raises:
        InputError: naming the site, the point and both scores, and what to change.
    """
    args, kwargs = _first_rows(args, kwargs, subsampled)
    plate = pyro.plate(PARTICLE_PLATE, _PARTICLES, dim=-(plate_nesting + 1))
    device = next((a.device for a in args if isinstance(a, Tensor)), torch.device("cpu"))
    # outside autocast: its rounding (by hundredths of a nat) is not the question here
    exact = torch.autocast(device.type, enabled=False)
    with (
        forked_stream(args),
        exact,
        torch.no_grad(),
        poutine.block(),
        modules_called(eval_mode=True),
    ):
        try:
            found = _compare(model, guide, args, kwargs, plate, plate_nesting, data_plate)
        except Exception:
            # the pass explains a failure under the particle dimension; a draw that cannot
            # be scored again (a flow without an inverse, Pyro's Planar) gets no verdict
            return
    if found is None:
        return
    name, point, alone, together = found
    raise InputError(
        f"the model/guide score the same draw differently with a leading particle "
        f"dimension: site {name!r} has log density {alone:.6g} at point {point} without "
        f"one and {together:.6g} with one, so every number vi_vae gives would be of "
        "another model (a softmax, sum or cat over a dimension counted from the left, "
        "such as softmax(h, dim=1), reads the particles or the points once the particle "
        f"dimension stands in front: count from the right, softmax(h, dim=-1)). {PARTICLE_HINT}"
    )


def _first_rows(args: tuple, kwargs: dict[str, Any], subsampled: bool) -> tuple[tuple, dict]:
    """The first rows of ``x`` (``args[0]``) and of the per-point keyword arguments.

    All of them where ``x`` is no tensor or the data plate subsamples (its indices
    may reach any row).
    """
    x = args[0] if args and isinstance(args[0], Tensor) else None
    if x is None or subsampled:
        return args, kwargs
    per_point = per_point_keywords(kwargs, x.shape[0])
    rows, row_kwargs = rows_of(x, kwargs, slice(0, PARTICLE_CHECK_ROWS), per_point)
    return (rows, *args[1:]), row_kwargs


def _compare(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    plate: pyro.plate,
    plate_nesting: int,
    data_plate: str,
) -> tuple[str, int, float, float] | None:
    """The first difference of the pair's scores without and with particles, or None.

    None too where the scores without particles differ between two runs at the same
    draws (random beyond the sample sites: no verdict).
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = replayed(model, guide_trace, args, kwargs)
    single = (guide_trace, model_trace)
    stacked = (
        replayed(plate(guide), _with_particles(guide_trace, plate_nesting), args, kwargs),
        replayed(plate(model), _with_particles(model_trace, plate_nesting), args, kwargs),
    )
    found = _first_difference(single, stacked, data_plate)
    if found is None or _first_difference(
        single, _again(model, guide, single, args, kwargs), data_plate
    ):
        return None
    return found


def _again(
    model: Callable, guide: Callable, single: tuple[Trace, Trace], args: tuple, kwargs: dict
) -> tuple[Trace, Trace]:
    """Guide and model scored once more at the draws of ``single``, without particles."""
    guide_trace, model_trace = single
    return replayed(guide, guide_trace, args, kwargs), replayed(model, model_trace, args, kwargs)


def _with_particles(trace: Trace, plate_nesting: int) -> Trace:
    """``trace``'s latent draws, each repeated along a particle dim left of the plate dims."""
    particles = Trace()
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        value = site["value"]
        if not site_is_subsample(site):
            batch_dims = value.dim() - site["fn"].event_dim
            padding = (1,) * max(plate_nesting - batch_dims, 0)
            value = value.expand(_PARTICLES, *padding, *value.shape)
        particles.add_node(name, **{**site, "value": value})
    return particles


def _scores(trace: Trace, latent_only: bool) -> dict[str, Tensor]:
    """Each site's log density, in float64; a site scored below float32 is left out.

    Half precision rounds a score by more than the tolerance; the pairs that score so
    are refused by the precision check (:func:`vi_vae.precision.refuse_low_precision`).
    """
    scores = {
        name: site["fn"].log_prob(site["value"])
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site_is_subsample(site)
        and not (latent_only and site["is_observed"])
    }
    return {
        name: score.double()
        for name, score in scores.items()
        if not score.is_floating_point() or torch.finfo(score.dtype).bits >= 32
    }


def _first_difference(
    single: tuple[Trace, Trace], stacked: tuple[Trace, Trace], data_plate: str
) -> tuple[str, int, float, float] | None:
    """``(site, point, score alone, score with particles)`` of the first difference, or None.

    The guide is compared at its latent sites (what enters log q), the model at all of
    its sample sites; a site whose scores do not broadcast together is passed over.
    """
    pairs = zip(single, stacked, (True, False), strict=True)
    for first, second, latent_only in pairs:
        seconds = _scores(second, latent_only)
        for name, alone in _scores(first, latent_only).items():
            if name not in seconds:
                continue
            try:
                alone, together = torch.broadcast_tensors(alone, seconds[name])
            except RuntimeError:
                continue
            if alone.numel() and differ(alone, together):
                gap = torch.where(alone == together, 0.0, (alone - together).abs())
                where = torch.unravel_index(gap.argmax(), gap.shape)
                frames = first.nodes[name]["cond_indep_stack"]
                dims = [frame.dim for frame in frames if frame.name == data_plate]
                point = where[dims[0]].item() if dims and dims[0] is not None else 0
                return name, point, alone[where].item(), together[where].item()
    return None
