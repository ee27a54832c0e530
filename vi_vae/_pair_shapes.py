"""The plates and shapes of a model/guide pair: contract clause 2 and clause 3's shapes.

Every sample site in one vectorized data plate of ``x.shape[0]`` points (or its
subsample), the same batch and event shapes for a latent site in model and guide, and
observed data that fill their distribution's shape. :func:`vi_vae.contract.check_pair`
calls these on its trial traces; the messages say what to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._pair_trial import ROWS_RULE
from vi_vae.errors import InputError

__all__ = [
    "check_batch_scaling",
    "check_shard_scaling",
    "check_observed_shapes",
    "check_shapes",
    "data_plate_size",
    "outside_data_plate",
    "plate_nesting_of",
    "sample_sites",
    "scaled_plate_size",
]


def sample_sites(trace: Trace) -> list[tuple[str, dict]]:
    """The trace's sample sites, ``(name, site)``, without Pyro's subsample sites."""
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def plate_nesting_of(model_trace: Trace, guide_trace: Trace) -> int:
    """How many dims the pair's vectorized plates use (the particle dim goes left of them)."""
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for _, site in sample_sites(trace)
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def check_shapes(model_trace: Trace, guide_trace: Trace, plate_nesting: int) -> None:
    """Refuse a latent site that model and guide shape differently (clause 3)."""
    for name, guide_site in sample_sites(guide_trace):
        if guide_site["is_observed"] or name not in model_trace.nodes:
            continue
        model_shape = _site_shape(model_trace.nodes[name]["fn"], plate_nesting)
        guide_shape = _site_shape(guide_site["fn"], plate_nesting)
        if model_shape != guide_shape:
            raise InputError(
                f"the model and the guide shape latent site {name!r} differently: batch and "
                f"event shape {model_shape[0]} + {model_shape[1]} in the model, "
                f"{guide_shape[0]} + {guide_shape[1]} in the guide; make them equal "
                "(the same plates, the same .to_event dims)"
            )


def _site_shape(fn: Any, plate_nesting: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(batch shape over the plate dims, padded with 1s on the left; event shape)."""
    batch = tuple(fn.batch_shape)[-plate_nesting:] if plate_nesting else ()
    return (1,) * (plate_nesting - len(batch)) + batch, tuple(fn.event_shape)


def data_plate_size(
    model_trace: Trace, guide_trace: Trace, data_plate: str, x: Tensor | None
) -> tuple[int, int]:
    """(points per pass, full size) of the data plate; refuses a pair that breaks clause 2.

    ``x``: the pair's data, whose rows must be the plate's points (or its subsample).
    """
    sites = [site for trace in (model_trace, guide_trace) for _, site in sample_sites(trace)]
    frames = []
    for site in sites:
        frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
        if frame is None or not frame.vectorized:
            message = outside_data_plate(site["name"], data_plate, (model_trace, guide_trace))
            raise InputError(message)
        frames.append((site, frame))
    if not frames:
        raise InputError("the model has no sample sites")
    batch_size = max(_frame_size(site, frame) for site, frame in frames)
    plate_size = batch_size
    subsample = guide_trace.nodes.get(data_plate) or model_trace.nodes.get(data_plate)
    if subsample is not None and site_is_subsample(subsample):
        plate_size = subsample["fn"].size
    # x holds the plate's points, or (a mini-batch scaled up by the plate) its subsample
    if x is not None and x.shape[0] not in (plate_size, batch_size):
        raise InputError(
            f"pyro.plate({data_plate!r}) has {plate_size} points but x has {x.shape[0]} rows; "
            f"{ROWS_RULE}"
        )
    return batch_size, plate_size


def _frame_size(site: dict, frame: Any) -> int:
    """The data plate's size at a site: its own, or the site's batch size for ``size=None``."""
    if frame.size != -1:
        return frame.size
    batch_shape = site["fn"].batch_shape
    return batch_shape[frame.dim] if len(batch_shape) >= -frame.dim else 1


def outside_data_plate(site: str, data_plate: str, traces: Iterable[Trace]) -> str:
    """What to change when sample site ``site`` is not in the vectorized data plate (clause 2).

    Args:
        site: the site's name.
        data_plate: the data plate's name.
        traces: the pair's traces, whose sites' plates the message names.
    """
    frames = [
        frame
        for trace in traces
        for _, other in sample_sites(trace)
        for frame in other["cond_indep_stack"]
    ]
    if any(frame.name == data_plate and not frame.vectorized for frame in frames):
        return (
            f"pyro.plate({data_plate!r}) is used as a sequential loop (for i in "
            "pyro.plate(...)); vi_vae keeps one log weight per data point and needs the "
            f"vectorized form: with pyro.plate({data_plate!r}, x.shape[0]):"
        )
    plates = sorted({frame.name for frame in frames if frame.name != data_plate})
    if plates:
        where = (
            f"the pair's plates are {plates}; if one of them runs over the data points, "
            "pass its name as data_plate="
        )
    elif any(frame.name == data_plate for frame in frames):
        where = (
            f"the pair's other sites are in it: sample {site!r} once per data point inside "
            f"pyro.plate({data_plate!r}), or make it a parameter of the model (pyro.param)"
        )
    else:
        where = (
            f"the pair uses no pyro.plate: put the sites of the data points in "
            f"pyro.plate({data_plate!r}, x.shape[0])"
        )
    return (
        f"sample site {site!r} is outside pyro.plate({data_plate!r}); per-data-point weights "
        "need every sample site inside the data plate (a global latent variable cannot be "
        f"split across data points); {where}"
    )


def scaled_plate_size(model_trace: Trace, data_plate: str) -> int | None:
    """N where the data plate scales its batch up to N points, else ``None``.

    ``pyro.plate(data_plate, N, subsample=rows)`` weighs each of the batch's sites by
    N / B: a loss over the batch then stands for all N points, not for the B rows.
    """
    sizes = [
        frame.full_size
        for _, site in sample_sites(model_trace)
        for frame in site["cond_indep_stack"]
        if frame.name == data_plate and frame.full_size not in (None, -1, frame.size)
    ]
    return max(sizes, default=None)


def check_batch_scaling(
    model_trace: Trace, data_plate: str, batch_size: int, num_points: int
) -> None:
    """Refuse sample sites outside the data plate that a batch would weigh as all the data.

    A training step on ``batch_size`` of ``num_points`` points estimates the ELBO of all
    of them only if the sites in the data plate weigh N/B times those outside it (a
    global latent variable's): Pyro scales the plate's sites so when the plate has the
    data's size and the batch as its subsample, and a site scaled by B/N
    (``poutine.scale``) gets that weight too. A plate the size of the batch leaves
    both at 1, and each step then counts the global sites once per batch, as if the
    batch were all the data. ``model_trace``: the model's trace on the first batch.

    Raises:
        InputError: naming the sites and the three ways to weigh them right.
    """
    outside = _sites_outside(model_trace, data_plate)
    if batch_size >= num_points or len(outside) == len(sample_sites(model_trace)):
        return  # all the data at once, or no site in the data plate (the contract's to refuse)
    if scaled_plate_size(model_trace, data_plate) == num_points:
        return
    share = batch_size / num_points
    unscaled = [
        name
        for name in outside
        if not math.isclose(
            float(torch.as_tensor(model_trace.nodes[name]["scale"]).mean()), share, rel_tol=1e-6
        )
    ]
    if unscaled:
        raise InputError(
            f"sample site(s) {unscaled} lie outside pyro.plate({data_plate!r}), whose size is "
            f"the batch's ({batch_size} of the {num_points} points): each step would count "
            f"them once per batch, as if the batch were all the data, {1 / share:.3g} times "
            "too much against the data's sites. Give the plate the data's size and the "
            f"batch's rows (model_kwargs={{'rows': torch.arange({num_points})}} and "
            f"pyro.plate({data_plate!r}, {num_points}, subsample=rows)), scale those sites "
            f"by batch_size / N (pyro.poutine.scale), or train on all the points at once "
            f"(batch_size >= {num_points})"
        )


def check_shard_scaling(
    model_trace: Trace, data_plate: str, world_size: int, global_sites: bool = True
) -> None:
    """Refuse, on several ranks, sites a sum over the ranks' shares would count once per rank.

    Data-parallel training sums the gradients of the ranks' shares of each batch
    (:mod:`vi_vae._data_parallel`): exact for sites in a data plate of the share's size,
    but a site outside the plate, and a plate that scales each share to all the points,
    count once per rank, ``world_size`` times. ``model_trace``: the model's trace on the
    first batch; ``global_sites``: whether the loss takes sites outside the data plate
    (Pyro's own ELBOs; vi_vae's estimators refuse them themselves).

    Raises:
        InputError: naming the sites or the plate.
    """
    if world_size < 2:
        return
    scaled = scaled_plate_size(model_trace, data_plate)
    outside = _sites_outside(model_trace, data_plate) if global_sites else []
    if scaled is None and not outside:
        return
    what = (
        f"sample site(s) {outside} lie outside pyro.plate({data_plate!r})"
        if outside
        else f"pyro.plate({data_plate!r}) scales each share to all {scaled} points"
    )
    raise InputError(
        f"on {world_size} ranks each trains on its share of the batch and their gradients "
        f"are summed; {what}, which the sum would count {world_size} times: train this "
        f"pair in one process, or with every site in a pyro.plate({data_plate!r}) of the "
        "share's size"
    )


def _sites_outside(model_trace: Trace, data_plate: str) -> list[str]:
    """The names of the sample sites outside the data plate."""
    return [
        name
        for name, site in sample_sites(model_trace)
        if all(frame.name != data_plate for frame in site["cond_indep_stack"])
    ]


def check_observed_shapes(model_trace: Trace) -> None:
    """Refuse data that an observed site's distribution broadcasts to a larger shape."""
    for name, site in sample_sites(model_trace):
        if not site["is_observed"] or not isinstance(site["value"], Tensor):
            continue
        value_shape = tuple(site["value"].shape)
        fn_shape = tuple(site["fn"].batch_shape + site["fn"].event_shape)
        try:
            broadcast = tuple(torch.broadcast_shapes(value_shape, fn_shape))
        except RuntimeError:
            broadcast = None
        if broadcast != value_shape:
            raise InputError(
                f"the data observed at site {name!r} have shape {list(value_shape)} but its "
                f"distribution has batch and event shape {list(fn_shape)}; the data must fill "
                "the distribution's shape (one row of x per data point, e.g. x of shape "
                "[N, D] for D features)"
            )
