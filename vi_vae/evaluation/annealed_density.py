r"""The annealed log density of a model/guide pair, on unconstrained coordinates, batched.

AIS moves C chains per data point along the geometric path

.. math::
    π_β(z) \propto f_0(z)^{1-β} f_1(z)^β, \qquad
    f_0 = q(z \mid x) \text{ (``initial="guide"``) or } p(z) \text{ (``"prior"``)}, \quad
    f_1 = p(x, z),

from β = 0 to β = 1. HMC needs unconstrained coordinates: every latent site s is
written :math:`z_s = T_s(u_s)` with :math:`T_s` = ``biject_to(support of s)``,
the support read at the site each time it runs (so a support that depends on an
earlier latent, or a guide's support that depends on x, is followed). On u,

.. math::
    \log π_β(u) = (1-β)\, a(u) + β\, b(u), \quad
    a = \log f_0(T(u)) + \log|\det J_T(u)|, \quad
    b = \log f_1(T(u)) + \log|\det J_T(u)|.

The AIS increments only need b − a = log f_1 − log f_0 (the Jacobian cancels);
HMC needs ∇a and ∇b. :class:`AnnealedDensity` evaluates a, b and both gradients
for every (chain, point) pair of a chunk of points in one vectorized pass: the
sites are traced through ``pyro.plate``, the chains in an outer plate, and the
per-pair sums are those of :mod:`vi_vae.weights`. The sites' supports come from
the program that draws the initial states (the guide, or the model's prior), so
with ``initial="guide"`` the path lives on the guide's support.

All latent sites are packed into one ``[num_chains, n, D]`` tensor (chains,
points, coordinates), the layout of :mod:`vi_vae.evaluation.hmc`.

With ``compile=True`` the evaluation of a, b, ∇a and ∇b (model, guide, Jacobians
and both backward passes) is traced once per chunk shape into a pure tensor
function and compiled by ``torch.compile`` (:mod:`vi_vae.compiled`); it has no
random draws, so the compiled and eager paths give the same numbers to
floating-point rounding. A pair that cannot be traced runs eagerly after one
warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor
from torch.distributions import biject_to

from vi_vae.compiled import CompiledCache
from vi_vae.contract import particle_dimension_error, rows_of
from vi_vae.errors import InputError
from vi_vae.evaluation.hmc import HMCState
from vi_vae.evaluation.latent_sites import Constrain, Fix, LatentSite, latent_sites
from vi_vae.keys import seeded
from vi_vae.weights import PARTICLE_PLATE, sum_per_point

__all__ = ["INITIAL_DISTRIBUTIONS", "AnnealedDensity", "no_guide"]

#: where the annealing path starts: the guide q(z|x), or the model's prior p(z)
INITIAL_DISTRIBUTIONS = ("guide", "prior")
#: the compiled density evaluations of every AIS and BDMC run in this process
_COMPILED = CompiledCache()


class AnnealedDensity:
    """log π_β on unconstrained coordinates for ``x`` (one chunk of points) and C chains.

    Args:
        model: Pyro model ``model(x, **kwargs)`` with its data in ``pyro.plate(data_plate)``.
        guide: Pyro guide with the same signature (unused when ``initial="prior"``).
        x: the chunk of data, ``[n, ...]``.
        num_chains: C, chains per point.
        initial: ``"guide"`` (f_0 = q(z|x)) or ``"prior"`` (f_0 = p(z)).
        plate_nesting: plate dims used by model and guide (the chains' plate is left of them).
        data_plate: name of the data plate.
        kwargs: keyword arguments of model and guide.
        compile: evaluate the density compiled by ``torch.compile`` (module docstring).

    Raises:
        InputError: a latent site is discrete, or the guide's latent sites are not
            the model's.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable | None,
        x: Tensor,
        num_chains: int,
        *,
        initial: str,
        plate_nesting: int,
        data_plate: str = "data",
        kwargs: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        self.model, self.guide, self.x = model, guide, x
        self.compile = compile
        self.num_chains, self.initial = num_chains, initial
        self.plate_nesting, self.data_plate = plate_nesting, data_plate
        self.kwargs = kwargs or {}
        self.base = guide if initial == "guide" else model
        with seeded(0, x.device), torch.no_grad(), pyro.validation_enabled(False):
            try:
                base_trace = self._trace(self.base)
                latents = latent_sites(base_trace)
                values = {name: site["value"] for name, site in latents.items()}
                model_latents = latent_sites(self._trace(self.model, Fix(values)))
            except Exception as error:  # the chains are a leading batch dimension
                pair_guide = guide or no_guide
                explained = particle_dimension_error(model, pair_guide, (x,), self.kwargs, error)
                if explained is None:
                    raise
                raise explained from error
        self._check_latents(latents, model_latents)
        self.sites: list[LatentSite] = []
        offset = 0
        for name, site in latents.items():
            u = biject_to(site["fn"].support).inv(site["value"])
            data_dim = self._data_dim(name, site)
            trailing = u.movedim(data_dim, 1).shape[2:]
            self.sites.append(LatentSite(name, data_dim, trailing, offset))
            offset += trailing.numel()
        self.dim = offset

    # -- layout ----------------------------------------------------------------------

    def pack(self, values: dict[str, Tensor]) -> Tensor:
        """Site values (each ``[C, ..., n, ...]``) -> ``[C, n, D]``."""
        parts = [
            values[site.name]
            .movedim(site.data_dim, 1)
            .reshape(values[site.name].shape[0], -1, site.size)
            for site in self.sites
        ]
        return torch.cat(parts, dim=-1)

    def unpack(self, packed: Tensor) -> dict[str, Tensor]:
        """``[C, n, D]`` -> site values, each ``[C, ..., n, ...]``."""
        num_chains, num_points = packed.shape[:2]
        return {
            site.name: packed[..., site.offset : site.offset + site.size]
            .reshape(num_chains, num_points, *site.trailing_shape)
            .movedim(1, site.data_dim)
            for site in self.sites
        }

    # -- states ----------------------------------------------------------------------

    def draw_initial(self, seeds: list[int]) -> Tensor:
        """Exact draws from f_0, C per point, point i on a torch stream seeded by ``seeds[i]``.

        Drawing point by point makes a point's draws independent of which other
        points share its chunk. Returns the unconstrained ``[C, n, D]``.
        """
        per_point = []
        with torch.no_grad(), pyro.validation_enabled(False):
            for row, seed in enumerate(seeds):
                with seeded(seed, self.x.device):
                    point_x, point_kwargs = rows_of(self.x, self.kwargs, slice(row, row + 1))
                    trace = self._trace(self.base, x=point_x, kwargs=point_kwargs)
                values = {}
                for site in self.sites:
                    node = trace.nodes[site.name]
                    values[site.name] = biject_to(node["fn"].support).inv(node["value"])
                per_point.append(self.pack(values))
        return torch.cat(per_point, dim=1)

    def unconstrain(self, values: dict[str, Tensor], what: str = "the latent values") -> Tensor:
        """Latent values ``[C, ..., n, ...]`` in f_0's support -> unconstrained ``[C, n, D]``.

        Raises:
            InputError: a value lies outside the support of f_0 (e.g. a prior draw
                outside a guide's narrower support).
        """
        with torch.no_grad(), pyro.validation_enabled(False):
            trace = self._trace(self.base, Fix(values))
        unconstrained = {}
        for site in self.sites:
            support = trace.nodes[site.name]["fn"].support
            if not bool(support.check(values[site.name]).all()):
                raise InputError(
                    f"{what} at site {site.name!r} lie outside the support of the "
                    f"{self.initial} ({support}); the path from the {self.initial} cannot "
                    "reach them: use initial='prior'"
                )
            unconstrained[site.name] = biject_to(support).inv(values[site.name])
        return self.pack(unconstrained)

    def constrain(self, packed: Tensor) -> dict[str, Tensor]:
        """Unconstrained ``[C, n, D]`` -> latent values z = T(u), ``[C, ..., n, ...]`` per site."""
        with torch.no_grad(), pyro.validation_enabled(False):
            trace = self._trace(self.base, Constrain(self.unpack(packed)))
        return {site.name: trace.nodes[site.name]["value"] for site in self.sites}

    def evaluate(self, packed: Tensor) -> HMCState:
        """a, b and their gradients at ``packed: [C, n, D]``.

        Returns:
            An :class:`HMCState` at β = 0 (log density a), with
            ``aux = (a, b, ∇a, ∇b)``, a and b ``[C, n]`` and the gradients ``[C, n, D]``.
        """
        aux = self._evaluate_compiled(packed) if self.compile else None
        if aux is None:
            aux = self._evaluate(packed, self.x, self.kwargs)
        a, _, gradient_a, _ = aux
        return HMCState(packed.detach(), a, gradient_a, aux)

    def _evaluate(
        self, packed: Tensor, x: Tensor, kwargs: dict[str, Any]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(a, b, ∇a, ∇b)`` at ``packed`` for the points ``x`` (eager Pyro and autograd)."""
        with torch.enable_grad(), pyro.validation_enabled(False):
            packed = packed.detach().requires_grad_(True)
            constrain = Constrain(self.unpack(packed))
            base_trace = self._trace(self.base, constrain, x=x, kwargs=kwargs)
            if self.initial == "guide":
                values = {site.name: base_trace.nodes[site.name]["value"] for site in self.sites}
                model_trace = self._trace(self.model, Fix(values), x=x, kwargs=kwargs)
                log_base = self._sum(base_trace, latent_only=True)
            else:
                model_trace = base_trace
                log_base = self._sum(model_trace, latent_only=True)
            log_jacobian = sum(
                self._per_pair(constrain.log_jacobians[site.name], site.data_dim)
                for site in self.sites
            )
            shape = (self.num_chains, x.shape[0])
            a = (log_base + log_jacobian).expand(shape)
            b = (self._sum(model_trace, latent_only=False) + log_jacobian).expand(shape)
            (gradient_b,) = torch.autograd.grad(b.sum(), packed, retain_graph=True)
            (gradient_a,) = torch.autograd.grad(a.sum(), packed)
        return a.detach(), b.detach(), gradient_a, gradient_b

    def _evaluate_compiled(self, packed: Tensor) -> tuple[Tensor, ...] | None:
        """:meth:`_evaluate`, compiled once per shape; ``None`` when it must run eagerly."""
        result = _COMPILED.run_call(
            "the annealed density of AIS",
            ("annealed density", self.model, self.guide, self.initial, self.data_plate),
            (self.num_chains, self.plate_nesting, tuple(self.sites)),
            lambda call_args, call_kwargs: (self._evaluate(*call_args, call_kwargs), None),
            (packed, self.x),
            self.kwargs,
        )
        return None if result is None else tuple(result[0])

    def target(self, beta: float) -> Callable[[Tensor], HMCState]:
        """The HMC target log π_β: position -> state, keeping (a, b, ∇a, ∇b) as aux."""

        def evaluate(packed: Tensor) -> HMCState:
            return self.at(self.evaluate(packed), beta)

        return evaluate

    @staticmethod
    def at(state: HMCState, beta: float) -> HMCState:
        """The same position and aux, with log π_β and ∇ log π_β from a, b, ∇a, ∇b."""
        a, b, gradient_a, gradient_b = state.aux
        return HMCState(
            state.position,
            (1 - beta) * a + beta * b,
            (1 - beta) * gradient_a + beta * gradient_b,
            state.aux,
        )

    # -- the Pyro side ---------------------------------------------------------------

    def _trace(
        self,
        program: Callable,
        *handlers: Messenger,
        x: Tensor | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Trace:
        """Trace ``program`` on ``x`` (default: the chunk) with the chains in an outer plate."""
        plated = pyro.plate(PARTICLE_PLATE, self.num_chains, dim=-(self.plate_nesting + 1))(program)
        for handler in handlers:
            plated = handler(plated)
        kwargs = self.kwargs if kwargs is None else kwargs
        trace = poutine.trace(plated).get_trace(self.x if x is None else x, **kwargs)
        return prune_subsample_sites(trace)

    def _sum(self, trace: Trace, *, latent_only: bool) -> Tensor:
        return sum_per_point(
            trace,
            lambda site: site["fn"].log_prob(site["value"]),
            latent_only=latent_only,
            plate_nesting=self.plate_nesting,
            data_plate=self.data_plate,
            scaled=False,
        )

    def _per_pair(self, value: Tensor, data_dim: int) -> Tensor:
        """Sum a site-shaped tensor over every dim but chains (0) and points (``data_dim``)."""
        num_dims = self.plate_nesting + 1
        while value.dim() > num_dims:
            value = value.sum(-1)
        value = value.reshape((1,) * (num_dims - value.dim()) + tuple(value.shape))
        other = [dim for dim in range(1, num_dims) if dim != data_dim]
        return value.sum(other) if other else value

    def _data_dim(self, name: str, site: dict) -> int:
        frame = next((f for f in site["cond_indep_stack"] if f.name == self.data_plate), None)
        if frame is None:
            raise InputError(
                f"latent site {name!r} is outside pyro.plate({self.data_plate!r}); AIS "
                "anneals each data point's latents separately (a global latent variable "
                "cannot be split across data points)"
            )
        return self.plate_nesting + 1 + frame.dim

    def _check_latents(self, latents: dict[str, dict], model_latents: dict[str, dict]) -> None:
        for name, site in {**latents, **model_latents}.items():
            if site["fn"].support.is_discrete:
                raise InputError(
                    f"model has a discrete latent site {name!r} "
                    f"({type(site['fn']).__name__}); annealed importance sampling moves "
                    "latents with HMC and needs continuous ones: sum discrete latents out "
                    "of the model (or use log_marginal_likelihood)"
                )
        if self.initial == "guide" and set(latents) != set(model_latents):
            raise InputError(
                f"the guide's latent sites {sorted(latents)} are not the model's "
                f"{sorted(model_latents)}; AIS from the guide needs q for exactly the "
                "model's latent variables (or use initial='prior')"
            )


def no_guide(*args: Any, **kwargs: Any) -> None:
    """The guide of a run from the prior without one (``guide=None``): no sample sites."""
