r"""Bidirectional Monte Carlo (BDMC): AIS between two stochastic bounds, on simulated data.

On data simulated from the model, an exact posterior sample is known: draw
z ~ p(z), x ~ p(x | z); then z ~ p(z | x). BDMC (Grosse et al. 2015) runs

- forward AIS from f_0 (guide or prior) to p(z | x): log mean w, a stochastic
  **lower** bound on log p(x) (E[w] = p(x), Jensen);
- reverse AIS from the simulating z back to f_0, the same schedule backwards:
  its weights have E[w_rev] = 1/p(x), so −log mean w_rev is a stochastic
  **upper** bound.

The true log p(x) lies between them, and the gap (upper − lower) bounds the
error of forward AIS with the same settings on data like these: a small gap on
simulated data is the evidence that those settings give accurate AIS on real
data from the same model (Wu et al. 2017, §3). All reverse chains of a point
start at its one simulating z, as in Grosse et al. The reverse run uses, at each
β, the step size the forward run's pilot chains chose there: fixed in advance,
independent of the reverse chains, so E[w_rev] = 1/p(x) holds exactly. The forward run draws the
same numbers as :func:`~vi_vae.evaluation.ais.annealed_importance_sampling` on
the simulated data with the same seed, so the two give the same lower bound.

Example:
    >>> import torch
    >>> from vi_vae import VAE
    >>> vae = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
    >>> x = torch.zeros(3, 4)
    >>> result = bdmc(vae.model, vae.guide, x, num_steps=10, num_chains=2, seed=0)
    >>> result.x.shape, result.gap.shape
    (torch.Size([3, 4]), torch.Size([3]))

References:
    [1] Sandwiching the marginal likelihood using bidirectional Monte Carlo, Grosse,
        Ghahramani & Adams, 2015.
    [2] On the Quantitative Analysis of Decoder-Based Generative Models, Wu, Burda,
        Salakhutdinov & Grosse, ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor

from vi_vae.contract import rows_of
from vi_vae.errors import InputError
from vi_vae.evaluation.ais import (
    AISEstimate,
    checked_start,
    run_options,
    summarize_annealing,
)
from vi_vae.evaluation.annealed_density import AnnealedDensity
from vi_vae.evaluation.annealing import (
    RANDOM_STREAMS,
    AISSettings,
    Annealing,
    Progress,
    anneal,
    annealed_density,
    forward_annealing,
)
from vi_vae.evaluation.convergence import Convergence, bdmc_gap_check, warn_unless_converged
from vi_vae.evaluation.estimates import standard_error_over_points
from vi_vae.execution import ExecutionOptions
from vi_vae.keys import RandomKey, resolve_seed, seeded
from vi_vae.weights import guess_plates

__all__ = ["BDMCResult", "bdmc", "simulate"]


@dataclass
class BDMCResult:
    """Forward and reverse AIS on data simulated from the model.

    Attributes:
        x: the simulated data, one row per row of the ``x`` given, ``[N, ...]``.
        z: the simulating latent values per site (data points along the data
            plate's dimension, e.g. ``[N, latent_dim]``).
        lower: forward AIS, a stochastic lower bound on log p(x_n) (``method="ais"``).
        upper: reverse AIS, a stochastic upper bound (``method="ais-reverse"``).
    """

    x: Tensor
    z: dict[str, Tensor]
    lower: AISEstimate
    upper: AISEstimate

    @property
    def gap(self) -> Tensor:
        """Upper − lower bound per point, ``[N]``, nats (≥ 0 in expectation)."""
        return self.upper.log_likelihood - self.lower.log_likelihood

    @property
    def mean_gap(self) -> float:
        """Average gap over points, nats per point."""
        return self.gap.mean().item()

    @property
    def mean_gap_standard_error(self) -> float:
        """Standard error of :attr:`mean_gap` as an estimate of the expected gap on such data.

        The standard deviation of the per-point gaps over √N: each point is an
        independent draw of (z*, x) and of its chains, so this covers all three. The
        chains' Monte Carlo errors alone miss the spread due to z*, from which every
        reverse chain of a point starts (one z* per point is all a simulation gives);
        it is used only for a single point.
        """
        if self.gap.numel() > 1:
            return standard_error_over_points(self.gap)
        variance = self.lower.monte_carlo_standard_error.pow(2) + (
            self.upper.monte_carlo_standard_error.pow(2)
        )
        return variance.sum().sqrt().item()

    @property
    def convergence(self) -> Convergence:
        """The forward run's verdict with the gap's (:func:`bdmc_gap_check`)."""
        check = bdmc_gap_check(self.mean_gap, self.mean_gap_standard_error)
        return self.lower.convergence.with_check(check)


def simulate(
    model: Callable,
    x: Tensor,
    *,
    seed: int,
    plate_nesting: int,
    data_plate: str = "data",
    **kwargs: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One exact draw (z, x) ~ p(z) p(x | z) per row of ``x``, point i keyed by (seed, i).

    The model must have exactly one observed site, whose value has the shape of
    the data (``x`` gives the shape; its values are not used).

    Returns:
        ``(x_simulated [N, ...], z)``, z per latent site with its batch dims
        padded to ``plate_nesting`` (data points along the data plate's dim).
    """
    seeds = RandomKey(seed).point_seeds(RANDOM_STREAMS["simulate"], torch.arange(x.shape[0]))
    rows_x, rows_z = [], {}
    axes = {}
    with torch.no_grad(), pyro.validation_enabled(False):
        for row, point_seed in enumerate(seeds):
            point_x, point_kwargs = rows_of(x, kwargs, slice(row, row + 1))
            with seeded(point_seed, x.device):
                trace = poutine.trace(poutine.uncondition(model)).get_trace(point_x, **point_kwargs)
            trace = prune_subsample_sites(trace)
            rows_x.append(_simulated_data(trace, x[row : row + 1]))
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                if site["infer"].get("was_observed", False):
                    continue
                frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
                if frame is None:
                    raise InputError(
                        f"latent site {name!r} is outside pyro.plate({data_plate!r}); "
                        "BDMC simulates one latent value per data point"
                    )
                value = site["value"]
                padding = plate_nesting - len(site["fn"].batch_shape)
                rows_z.setdefault(name, []).append(value.reshape((1,) * padding + value.shape))
                axes[name] = plate_nesting + frame.dim
    z = {name: torch.cat(values, dim=axes[name]) for name, values in rows_z.items()}
    return torch.cat(rows_x), z


def _simulated_data(trace: Any, x_row: Tensor) -> Tensor:
    observed = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and site["infer"].get("was_observed", False)
    ]
    value = trace.nodes[observed[0]]["value"] if len(observed) == 1 else None
    if value is None or value.shape != x_row.shape:
        raise InputError(
            f"bdmc simulates the data from the model's observed site; the model has "
            f"observed site(s) {observed}, and needs exactly one whose value has the "
            f"shape of a row of x ({list(x_row.shape)})"
        )
    return value.to(x_row.dtype)


def bdmc(
    model: Callable,
    guide: Callable | None,
    x: Tensor,
    settings: AISSettings | None = None,
    *,
    seed: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
    data_plate: str = "data",
    execution: ExecutionOptions | None = None,
    chunk_size: int | str | None = None,
    compile: bool | None = None,
    **kwargs: Any,
) -> BDMCResult:
    """Sandwich log p(x) on simulated data between forward and reverse AIS.

    One (z, x) pair is drawn from the model per row of ``x`` (its shape only); forward
    AIS (:func:`~vi_vae.evaluation.ais.annealed_importance_sampling`, the same arguments)
    bounds log p(x_sim) from below, reverse AIS from the simulating z from above.

    Args:
        model: Pyro model ``model(x, **kwargs)`` with one observed site, the data.
        guide: Pyro guide (unused, may be ``None``, when ``initial="prior"``).
        x: ``[N, ...]``, gives the number and shape of the simulated points.
        settings: the :class:`~vi_vae.evaluation.annealing.AISSettings` of both
            directions (a guide narrower than the prior: both start from the prior).
        seed: seed of every draw (simulation included); ``None`` takes one from torch.
        on_step: ``on_step(done, total)`` from ``done = 0``, after each step both ways.
        data_plate: name of the data plate.
        execution: device, compiled passes and pass size of both directions, as in
            :func:`~vi_vae.evaluation.ais.annealed_importance_sampling`.
        chunk_size: shortcut for ``execution.chunk_size``.
        compile: shortcut for ``execution.compile``.
        **kwargs: shortcuts for the settings' fields, and the model's keywords (as in
            :func:`~vi_vae.evaluation.ais.annealed_importance_sampling`).

    Returns:
        :class:`BDMCResult`: both bounds carry ``settings``, and its ``convergence``
        the gap's check; warns when a check failed.
    """
    settings, execution, kwargs = run_options(
        guide, settings, execution, {"chunk_size": chunk_size, "compile": compile}, kwargs
    )
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise InputError("x must be a tensor with the data points along its first dimension")
    x, kwargs = execution.place(x, kwargs)
    seed = resolve_seed(seed)
    with seeded(seed, x.device):
        plate_nesting, _ = guess_plates(
            poutine.uncondition(model), lambda *a, **k: None, (x,), kwargs, data_plate
        )
    simulated_x, simulated_z = simulate(
        model, x, seed=seed, plate_nesting=plate_nesting, data_plate=data_plate, **kwargs
    )
    settings = checked_start(model, guide, simulated_x, settings, kwargs, data_plate)
    chunks = settings.chunks(x.shape[0], execution.pairs_per_pass())
    progress = Progress(on_step, 2 * settings.num_steps * len(chunks)).start()
    common = dict(plate_nesting=plate_nesting, data_plate=data_plate, compile=execution.compile)
    forward, reverse = [], []
    for rows in chunks:
        rows_x, rows_kwargs = rows_of(simulated_x, kwargs, rows)
        density = annealed_density(model, guide, rows_x, settings, kwargs=rows_kwargs, **common)
        forward.append(forward_annealing(density, rows, settings, seed=seed, on_step=progress))
        chains = settings.num_chains  # the reverse chains start at z*: no pilots
        density = annealed_density(
            model, guide, simulated_x[rows], settings, kwargs=kwargs, num_chains=chains, **common
        )
        reverse.append(
            _reverse_annealing(
                density, simulated_z, rows, settings, forward[-1], seed=seed, on_step=progress
            )
        )
    result = BDMCResult(
        x=simulated_x,
        z=simulated_z,
        lower=summarize_annealing(forward, settings),
        upper=summarize_annealing(reverse, settings, reverse=True),
    )
    warn_unless_converged(result.convergence, "AIS (checked by BDMC)")
    return result


def _reverse_annealing(
    density: AnnealedDensity,
    simulated_z: dict[str, Tensor],
    rows: slice,
    settings: AISSettings,
    forward: Annealing,
    *,
    seed: int,
    on_step: Callable[[], None],
) -> Annealing:
    """Reverse AIS of the points ``rows`` from their simulating z, with the forward step sizes."""
    z_start = {
        site.name: _chains(simulated_z[site.name], site.data_dim - 1, rows, settings.num_chains)
        for site in density.sites
    }
    start = density.unconstrain(z_start, "the simulated latent values")
    return anneal(
        density,
        start,
        settings.betas().flip(0),
        settings,
        seed=seed,
        streams=RANDOM_STREAMS["reverse"],
        point_index=torch.arange(rows.start, rows.stop, device=start.device),
        step_sizes=forward.step_sizes.flip(0),
        on_step=on_step,
    )


def _chains(value: Tensor, axis: int, rows: slice, num_chains: int) -> Tensor:
    """The rows of ``value`` along ``axis``, repeated for every chain in a new dim 0."""
    value = value.narrow(axis, rows.start, rows.stop - rows.start)
    return value.unsqueeze(0).expand(num_chains, *value.shape)
