r"""Per-data-point log importance weights from vectorized Pyro traces.

Every estimator and evaluator in vi_vae starts here. For a model p(x, z) and a
guide q(z|x) that put the data dimension in ``pyro.plate(data_plate)``, draw
``num_particles`` samples z_k ~ q(z|x) in one vectorized pass and return

.. math::
    \log w_{k,n} = \log p(x_n, z_{k,n}) - \log q(z_{k,n} \mid x_n),

shape ``[num_particles, batch]``. Unlike Pyro's ``vectorized_importance_weights``,
the batch is kept: bounds are sums of per-point bounds, and diagnostics (ESS,
Pareto k̂) are per point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyro
import pyro.poutine as poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor

from vi_vae._particle_trial import PARTICLE_PLATE
from vi_vae.contract import check_latent_sites, outside_data_plate, particle_dimension_error
from vi_vae.errors import InputError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "PARTICLE_PLATE",
    "sum_per_point",
    "WeightedTraces",
    "guess_plates",
    "trace_log_weights",
]

#: (particle, data point) pairs per vectorized pass without gradients (the evaluators and
#: validation; the evaluators' ``chunk_size="auto"`` on CPU): about 73 MB above baseline
#: for the 784-400-20 MLP VAE, 37 MB compiled (docs/evaluation_memory.md)
DEFAULT_CHUNK_SIZE = 8192


def guess_plates(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    data_plate: str = "data",
) -> tuple[int, int | None]:
    """Run guide and model once, unvectorized: their plate nesting and data-plate size.

    Returns:
        ``(plate_nesting, batch_size)``: the number of plate dims the pair uses, and
        the size of ``pyro.plate(data_plate)`` (its subsample size when it subsamples),
        or ``None`` when no sample site lies in that plate.
    """
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    frames = [
        frame
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    plate_nesting = -min(frame.dim for frame in frames) if frames else 0
    batch_size = next((frame.size for frame in frames if frame.name == data_plate), None)
    return plate_nesting, batch_size


@dataclass
class WeightedTraces:
    """Traces of ``num_particles`` vectorized draws with per-point log densities.

    Attributes:
        log_model: log p(x_n, z_{k,n}), ``[num_particles, batch]``.
        log_guide: log q(z_{k,n} | x_n), ``[num_particles, batch]``.
        model_trace: the vectorized model trace (replayed on the guide's samples).
        guide_trace: the vectorized guide trace.
        plate_nesting: plate dims used by the model/guide (the particle dim is left of them).
        data_plate: name of the data plate.
        scaled: whether site scales (``poutine.scale``, subsampling) were applied.
    """

    log_model: Tensor
    log_guide: Tensor
    model_trace: Trace
    guide_trace: Trace
    plate_nesting: int
    data_plate: str
    scaled: bool

    @property
    def log_weights(self) -> Tensor:
        """Log w = log p(x, z) − log q(z|x), ``[num_particles, batch]``."""
        return self.log_model - self.log_guide

    def log_guide_stopped(self) -> Tensor:
        """Log q_φ(sg(z) | x): q's log density with gradients through its parameters only.

        ``log_guide - log_guide_stopped()`` has value 0 and gradient equal to the
        path derivative ∂ log q/∂z · ∂z/∂φ; the difference is how STL and DReG drop
        the score term ∂ log q/∂φ (Roeder et al. 2017, Tucker et al. 2019).
        Shape ``[num_particles, batch]``.
        """
        return self.sum_per_point(
            lambda site: site["fn"].log_prob(site["value"].detach()), guide=True, latent_only=True
        )

    def path_log_weights(self) -> Tensor:
        """Log w with the score term removed from its gradient: ``[num_particles, batch]``.

        Value ``log_weights``; gradient ∂ log p/∂θ for the model's parameters and the
        path derivative (∂ log w/∂z)(∂z/∂φ) for the guide's, i.e. log w computed with
        log q_{sg(φ)}(z) (the "sticking the landing" form, Roeder et al. 2017).
        """
        stopped = self.log_guide_stopped()
        return self.log_weights + stopped - stopped.detach()

    def sum_per_point(
        self, log_density: Callable[[dict], Tensor], *, guide: bool, latent_only: bool
    ) -> Tensor:
        """Sum ``log_density(site)`` over one trace's sample sites, per particle and point.

        Scales, masks and plate dims are handled as for :attr:`log_model`, so a
        per-site quantity (e.g. an analytic KL) can replace a site's log density.

        Args:
            log_density: maps a site of the chosen trace to a tensor shaped like its
                log probability.
            guide: use the guide trace (else the model trace).
            latent_only: skip observed sites.

        Returns:
            A tensor that broadcasts to ``[num_particles, batch]``.
        """
        return sum_per_point(
            self.guide_trace if guide else self.model_trace,
            log_density,
            latent_only=latent_only,
            plate_nesting=self.plate_nesting,
            data_plate=self.data_plate,
            scaled=self.scaled,
            like=self.log_guide,
        )


def trace_log_weights(
    model: Callable,
    guide: Callable,
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    *,
    num_particles: int,
    plate_nesting: int,
    data_plate: str = "data",
    scaled: bool = True,
    vectorized: bool = True,
) -> WeightedTraces:
    """Draw ``num_particles`` z ~ q in one vectorized pass; log densities per data point.

    Args:
        model: Pyro model; its sample sites must all lie in ``pyro.plate(data_plate)``.
        guide: Pyro guide with the same plate and every latent site of the model.
        args: positional arguments of model and guide.
        kwargs: keyword arguments of model and guide.
        num_particles: K, the number of draws per data point.
        plate_nesting: plate dims used by model/guide (see :func:`guess_plate_nesting`).
        data_plate: name of the data plate.
        scaled: apply each site's scale (KL weight, subsampling) as Pyro's ELBOs
            do; evaluators pass ``False`` to get unscaled log weights.
        vectorized: draw inside ``pyro.plate(PARTICLE_PLATE, num_particles)``; ``False``
            runs the pair once as it is written, without the particle plate (one draw
            per point, ``num_particles`` 1: ``ExecutionOptions(vectorize_particles=False)``).

    Returns:
        :class:`WeightedTraces` with ``log_model`` and ``log_guide`` of shape
        ``[num_particles, batch]``.

    Raises:
        InputError: when model and guide sample different latent sites, a site lies
            outside the vectorized data plate, or the pair fails only because of the
            particle dimension (:mod:`vi_vae.contract`, clauses 2-4; the original
            error is the cause).
    """
    kwargs = kwargs or {}
    particle_plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=-(plate_nesting + 1))
    if not vectorized:
        if num_particles != 1:
            raise ValueError(f"one run of the pair draws one particle; got {num_particles}")
        particle_plate = lambda fn: fn  # noqa: E731 - the pair as it is written
    try:
        guide_trace = poutine.trace(particle_plate(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(
            poutine.replay(particle_plate(model), trace=guide_trace)
        ).get_trace(*args, **kwargs)
    except Exception as error:
        explained = particle_dimension_error(model, guide, args, kwargs, error)
        if explained is None or not vectorized:
            raise
        raise explained from error
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    check_latent_sites(model_trace, guide_trace)

    def log_prob(site: dict) -> Tensor:
        return site["fn"].log_prob(site["value"])

    per_point = partial(
        sum_per_point, plate_nesting=plate_nesting, data_plate=data_plate, scaled=scaled
    )
    log_model = per_point(model_trace, log_prob, latent_only=False)
    log_guide = per_point(guide_trace, log_prob, latent_only=True, like=log_model)
    log_model, log_guide = log_model.expand_as(log_guide), log_guide.expand_as(log_model)
    return WeightedTraces(
        log_model, log_guide, model_trace, guide_trace, plate_nesting, data_plate, scaled
    )


def sum_per_point(
    trace: Trace,
    log_prob: Callable[[dict], Tensor],
    *,
    latent_only: bool,
    plate_nesting: int,
    data_plate: str,
    scaled: bool,
    like: Tensor | None = None,
) -> Tensor:
    """Sum the trace's site log densities over every dim but particles and data points.

    Returns a tensor that broadcasts to ``[num_particles, batch]`` (it is
    ``[num_particles, batch]`` unless the trace has no sites, when it is ``0 * like``).
    """
    total: Tensor | None = None
    num_dims = plate_nesting + 1
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or (latent_only and site["is_observed"]):
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
        if frame is None or not frame.vectorized:
            raise InputError(outside_data_plate(name, data_plate, (trace,)))
        value = log_prob(site)
        value = scale_and_mask(value, site["scale"] if scaled else 1.0, site["mask"])
        if value.dim() > num_dims:
            raise ValueError(
                f"sample site {name!r} has batch shape {tuple(value.shape)} with dims that no "
                "plate declares; wrap them in pyro.plate or use .to_event()"
            )
        value = value.reshape((1,) * (num_dims - value.dim()) + tuple(value.shape))
        data_index = num_dims + frame.dim
        other = [i for i in range(1, num_dims) if i != data_index]
        if other:
            value = value.sum(other)
        total = value if total is None else total + value
    if total is None:
        if like is None:
            raise ValueError("the model has no sample sites")
        return like.new_zeros(()).expand_as(like)
    return total
