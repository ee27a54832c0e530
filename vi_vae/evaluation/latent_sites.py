"""The latent sites of a pair as AIS sees them: packed, fixed, constrained, and their supports.

:class:`LatentSite` places a site in the packed ``[num_chains, n, D]`` coordinates of
:class:`~vi_vae.evaluation.annealed_density.AnnealedDensity`; :class:`Fix` and
:class:`Constrain` set the latent sites of a run of the model or guide;
:func:`narrower_guide_sites` finds where the guide cannot reach all of the prior's
support, so that AIS starts from the prior there
(:func:`~vi_vae.evaluation.ais.reachable_start`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor
from torch.distributions import biject_to

from vi_vae.keys import seeded
from vi_vae.support import support_reach

__all__ = ["Constrain", "Fix", "LatentSite", "latent_sites", "narrower_guide_sites"]


@dataclass(frozen=True)
class LatentSite:
    """Where one latent site lives in the packed ``[num_chains, n, D]`` coordinates.

    Attributes:
        name: the sample site's name.
        data_dim: the dimension of the site's value that indexes data points
            (chains are dimension 0).
        trailing_shape: the shape of one (chain, point)'s unconstrained value, i.e. the
            unconstrained value's shape without its chain and data dimensions.
        offset: the site's first coordinate in the packed D.
    """

    name: str
    data_dim: int
    trailing_shape: torch.Size
    offset: int

    @property
    def size(self) -> int:
        """Coordinates per (chain, point)."""
        return self.trailing_shape.numel()


class Fix(Messenger):
    """Set the latent sites named in ``values`` to those values (as ``poutine.replay``)."""

    def __init__(self, values: dict[str, Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] in self.values and not msg["is_observed"]:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True


class Constrain(Messenger):
    """Set latent site s to T_s(u_s), T_s = biject_to(its support), and record log|det J|."""

    def __init__(self, unconstrained: dict[str, Tensor]) -> None:
        super().__init__()
        self.unconstrained = unconstrained
        self.log_jacobians: dict[str, Tensor] = {}

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] not in self.unconstrained or msg["is_observed"]:
            return
        u = self.unconstrained[msg["name"]]
        transform = biject_to(msg["fn"].support)
        msg["value"] = transform(u)
        msg["done"] = True
        self.log_jacobians[msg["name"]] = transform.log_abs_det_jacobian(u, msg["value"])


def latent_sites(trace: Trace) -> dict[str, dict]:
    """The latent sample sites of ``trace`` by name (not observed, not subsample)."""
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def narrower_guide_sites(
    model: Callable, guide: Callable, x: Tensor, kwargs: dict[str, Any]
) -> list[str]:
    """The latent sites whose support under the guide is narrower than under the model.

    A site's guide support is narrower where its lower bound lies above the prior's,
    or its upper bound below (e.g. a uniform q(z|x) inside a uniform prior's interval,
    a Pareto q whose scale exceeds the prior's). AIS from the guide then never
    reaches the rest of the prior's support and estimates only the part of p(x) on
    the guide's: a lower bound, too low however long the chains run.
    """
    with seeded(0, x.device), torch.no_grad(), pyro.validation_enabled(False):
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(x, **kwargs))
        latents = latent_sites(guide_trace)
        values = {name: site["value"] for name, site in latents.items()}
        model_trace = poutine.trace(Fix(values)(model)).get_trace(x, **kwargs)
    return [
        name
        for name, site in latents.items()
        if name in model_trace.nodes
        and support_reach(site["fn"].support, model_trace.nodes[name]["fn"].support)[0]
    ]
