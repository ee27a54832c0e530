"""ArviZ export: draws of the latent variables and their importance weights, per data point.

``to_inference_data`` puts the guide's draws for chosen data points into an
``arviz.InferenceData`` so that ``az.summary`` and the ``az.plot_*`` functions
work on them, with the log importance weights alongside.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vi_vae._validation import check_positive_int
from vi_vae.contract import rows_of
from vi_vae.errors import InputError
from vi_vae.evaluated_pair import check_evaluated_pair
from vi_vae.evaluation.importance_sampling import DEFAULT_CHUNK_SIZE, DEFAULT_NUM_PARTICLES
from vi_vae.keys import seeded
from vi_vae.weights import PARTICLE_PLATE, guess_plates, trace_log_weights

if TYPE_CHECKING:
    import arviz

__all__ = ["to_inference_data"]


def to_inference_data(
    model: Callable,
    guide: Callable,
    x: Tensor,
    point_indices: Sequence[int],
    num_particles: int = DEFAULT_NUM_PARTICLES,
    *,
    num_chains: int = 4,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    data_plate: str = "data",
    seed: int | None = None,
    **kwargs: Any,
) -> arviz.InferenceData:
    """Draws of every latent site from the guide, with their log weights, for ArviZ.

    For each chosen point x_n, ``num_particles`` independent draws z ~ q(z | x_n) are
    split into ``num_chains`` chains (independent draws, so R-hat ≈ 1 and the ESS
    ≈ the number of draws check the export rather than a sampler).

    Groups:
        - ``posterior``: each latent site of the guide, dims ``(chain, draw, point,
          ...)``: the site's other plates by plate name, then its event dims
          ``<site>_dim_<i>``. These are draws from the **guide**, the variational
          posterior; ``az.summary`` of them summarizes q(z|x), not p(z|x).
        - ``sample_stats``: ``log_weight`` = log p(x_n, z) − log q(z|x_n), ``lp`` =
          log p(x_n, z) and ``log_guide`` = log q(z|x_n), dims ``(chain, draw, point)``
          (unscaled). Self-normalized weights ``exp(log_weight)`` over a point's draws
          turn expectations under q into estimates under p(z|x_n);
          ``az.psislw(log_weight)`` smooths them (Pareto-smoothed importance sampling).

    The ``point`` coordinate holds ``point_indices``. The pair is checked on ``x`` as
    the evaluators check it (:func:`~vi_vae.evaluated_pair.check_evaluated_pair`): a
    point-mass guide, or a model whose density is random (dropout in training mode),
    is refused.

    Args:
        model: Pyro model ``model(x, **kwargs)``.
        guide: Pyro guide with the same signature.
        x: data, ``[N, ...]``.
        point_indices: rows of ``x`` to export.
        num_particles: draws per point in total, a multiple of ``num_chains``.
        num_chains: chains to split the draws into.
        chunk_size: (particle, point) pairs per vectorized pass; bounds memory.
        data_plate: name of the data plate.
        seed: seed for reproducible draws (the global RNG is left untouched).
        **kwargs: passed to model and guide; a per-point tensor at ``point_indices``.

    Returns:
        An ``arviz.InferenceData``.
    """
    import arviz  # imported here: it is slow to import

    indices = _checked_indices(x, point_indices, num_particles, num_chains, chunk_size)
    check_evaluated_pair(model, guide, x, kwargs, data_plate)
    points, point_kwargs = rows_of(x, kwargs, indices)
    per_pass = max(1, chunk_size // len(indices))
    with torch.no_grad(), seeded(seed, x.device):
        posterior, stats, dims = _guide_draws(
            model, guide, points, point_kwargs, num_particles, per_pass, data_plate
        )

    def by_chain(parts: list[Tensor]) -> Any:
        values = torch.cat(parts).double().cpu().numpy()
        return values.reshape(num_chains, num_particles // num_chains, *values.shape[1:])

    return arviz.from_dict(
        posterior={name: by_chain(parts) for name, parts in posterior.items()},
        sample_stats={name: by_chain(parts) for name, parts in stats.items()},
        coords={"point": indices},
        dims=dims,
        posterior_attrs={
            "inference_library": "vi_vae",
            "draws_from": "the guide q(z|x); weight by exp(log_weight) for p(z|x)",
        },
        sample_stats_attrs={
            "log_weight": "log p(x, z) - log q(z|x), unscaled",
            "lp": "log p(x, z)",
            "log_guide": "log q(z|x)",
        },
    )


def _checked_indices(
    x: Tensor, point_indices: Sequence[int], num_particles: int, num_chains: int, chunk_size: int
) -> list[int]:
    """``point_indices`` as a list of ints, after checking every argument of the export."""
    check_positive_int("num_particles", num_particles)
    check_positive_int("chunk_size", chunk_size)
    check_positive_int("num_chains", num_chains)
    if num_particles % num_chains:
        raise InputError(
            f"num_particles ({num_particles}) must be a multiple of num_chains ({num_chains})"
        )
    try:  # int() would take 1.5 as row 1 and True as row 1
        if any(isinstance(i, bool) for i in point_indices):
            raise TypeError
        indices = [operator.index(i) for i in point_indices]
    except TypeError:
        raise InputError(
            f"point_indices must be a sequence of integer row numbers; got {point_indices!r}"
        ) from None
    if not indices:
        raise InputError("point_indices must name at least one data point")
    if not isinstance(x, Tensor) or not all(-len(x) <= i < len(x) for i in indices):
        raise InputError(f"point_indices must index the {len(x)} rows of x; got {indices}")
    rows = [i % len(x) for i in indices]
    repeated = sorted({i for i in rows if rows.count(i) > 1})
    if repeated:
        raise InputError(
            f"point_indices names row(s) {repeated} more than once; each point is exported "
            "once (a repeat would count its weights twice over the points)"
        )
    return indices


def _guide_draws(
    model: Callable,
    guide: Callable,
    points: Tensor,
    kwargs: dict[str, Any],
    num_particles: int,
    per_pass: int,
    data_plate: str,
) -> tuple[dict[str, list[Tensor]], dict[str, list[Tensor]], dict[str, list[str]]]:
    """``(posterior, sample_stats, dims)``: the latent sites' draws and log weights, by pass."""
    posterior: dict[str, list[Tensor]] = {}
    stats: dict[str, list[Tensor]] = {"log_weight": [], "lp": [], "log_guide": []}
    dims: dict[str, list[str]] = {name: ["point"] for name in stats}
    plate_nesting, _ = guess_plates(model, guide, (points,), kwargs, data_plate)
    for start in range(0, num_particles, per_pass):
        traces = trace_log_weights(
            model,
            guide,
            (points,),
            kwargs,
            num_particles=min(per_pass, num_particles - start),
            plate_nesting=plate_nesting,
            data_plate=data_plate,
            scaled=False,
        )
        stats["log_weight"].append(traces.log_weights)
        stats["lp"].append(traces.log_model)
        stats["log_guide"].append(traces.log_guide)
        for name, site in traces.guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                value, site_dims = _point_major(site, plate_nesting, data_plate)
                posterior.setdefault(name, []).append(value)
                dims[name] = ["point", *site_dims]
    return posterior, stats, dims


def _point_major(site: dict, plate_nesting: int, data_plate: str) -> tuple[Tensor, list[str]]:
    """A vectorized site value as ``[particles, points, other plates..., event...]``."""
    value = site["value"]
    event_dim = site["fn"].event_dim
    batch_dims = value.dim() - event_dim
    names = {
        frame.dim: frame.name
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.name != PARTICLE_PLATE
    }
    value = value.reshape((1,) * (plate_nesting + 1 - batch_dims) + tuple(value.shape))
    data_dim = next(dim for dim, name in names.items() if name == data_plate)
    order = [0, plate_nesting + 1 + data_dim] + [
        plate_nesting + 1 + dim for dim in range(-plate_nesting, 0) if dim != data_dim
    ]
    order += list(range(plate_nesting + 1, value.dim()))
    value = value.permute(order)
    plate_dims = [dim for dim in range(-plate_nesting, 0) if dim != data_dim]
    kept_shape, dims = list(value.shape[:2]), []
    for position, dim in enumerate(plate_dims, start=2):
        if dim in names:
            kept_shape.append(value.shape[position])
            dims.append(names[dim])
    event_shape = value.shape[2 + len(plate_dims) :]
    dims += [f"{site['name']}_dim_{i}" for i in range(len(event_shape))]
    return value.reshape(*kept_shape, *event_shape), dims
