r"""q*: a guide's distributions with their parameters freed per data point, and their optimization.

The amortized guide q_φ(z|x) computes each latent site's distribution parameters
with an encoder. :class:`LocalGuide` traces the guide once on x, takes each site's
distribution, and replaces every parameter that depends on the guide's own
parameters by a leaf tensor with one value per data point, initialized at the
encoder's output; the distribution's type, its constants and its event shape stay.
:func:`optimize_locally` then maximizes each point's ELBO over its own leaves,
all points in one vectorized pass (Cremer, Li & Duvenaud 2018, §3: q* is the best
member of the guide's family for that one point).

What is optimized, and where that is a substitute for the best member of the family:

- A site whose distribution is a pushforward (a flow guide: a base distribution
  through transforms) keeps the transforms the encoder gave that point and frees
  the base distribution's parameters only: the flow's own weights are shared by
  all points and are not optimized per point.
- A guide with several latent sites (stochastic layers, where q(z_2 | z_1, x)
  depends on a draw of z_1) gets independent per-point parameters at each site,
  initialized from one draw of the layers below: q* factorizes across sites.

The gradient is the path derivative (“sticking the landing”, Roeder et al. 2017): the
score term ∂ log q/∂λ, zero in expectation, is dropped. At a q that equals the
posterior the path derivative is zero for every draw, so when the posterior lies in
the family the optimization ends there without gradient noise.

References:
    [1] Inference Suboptimality in Variational Autoencoders, Cremer, Li & Duvenaud,
        ICML 2018.
    [2] Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
        Inference, Roeder, Wu & Duvenaud, NeurIPS 2017.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import constraints, transform_to

from vi_vae.errors import InputError
from vi_vae.weights import trace_log_weights

__all__ = [
    "FreeSite",
    "LocalGuide",
    "LocalOptimization",
    "full_covariance_guide",
    "optimize_locally",
]

Builder = Callable[[dict[str, Tensor]], dist.TorchDistribution]


@dataclass
class FreeSite:
    """One latent site of a :class:`LocalGuide`.

    Attributes:
        name: the sample site's name.
        frames: the vectorized plates it lies in (Pyro's ``CondIndepStackFrame``).
        build: the site's distribution from its (constrained) parameter values.
        constraints: the support of each freed parameter.
        leaves: each freed parameter on unconstrained coordinates, a leaf tensor
            with one value per data point.
        substitute: how the freed family differs from the guide's, or ``None``.
    """

    name: str
    frames: tuple
    build: Builder
    constraints: dict[str, constraints.Constraint]
    leaves: dict[str, Tensor]
    substitute: str | None = None

    def distribution(self, stop: bool = False) -> dist.TorchDistribution:
        """The site's distribution at the leaves' values (``stop``: with them detached)."""
        values = {
            name: transform_to(self.constraints[name])(leaf.detach() if stop else leaf)
            for name, leaf in self.leaves.items()
        }
        return self.build(values)


class LocalGuide:
    """A guide whose sites' distribution parameters are free, per data point.

    Called as ``local_guide(x, **kwargs)`` like the guide it was made from (the
    arguments are ignored: the distributions no longer depend on x), it samples every
    site from its freed distribution in the same plates.
    """

    def __init__(self, sites: list[FreeSite]) -> None:
        self.sites = sites

    @classmethod
    def from_guide(cls, guide: Callable, x: Tensor, kwargs: dict[str, Any]) -> LocalGuide:
        """Free the parameters of ``guide``'s distributions on ``x`` (module docstring).

        Raises:
            InputError: a site whose distribution cannot be rebuilt from its
                parameters, or is not reparameterized; a guide with no parameter to free.
        """
        with torch.enable_grad(), poutine.block():
            trace = poutine.trace(guide).get_trace(x, **kwargs)
        sites = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            if not site["fn"].has_rsample:
                raise InputError(
                    f"the guide's distribution at site {name!r} has no rsample; q* is found "
                    "by reparameterized gradients: give the site a reparameterized "
                    "distribution (a continuous relaxation of a discrete one), or marginalize "
                    "it in the model"
                )
            build, values, substitute = _free(site["fn"], name)
            frames = tuple(frame for frame in site["cond_indep_stack"] if frame.vectorized)
            site_constraints = {key: constraint for key, (_, constraint) in values.items()}
            leaves = {
                key: transform_to(constraint).inv(value.detach()).clone().requires_grad_(True)
                for key, (value, constraint) in values.items()
            }
            sites.append(FreeSite(name, frames, build, site_constraints, leaves, substitute))
        if not any(site.leaves for site in sites):
            raise InputError(
                "the guide's distributions depend on no parameter that requires a gradient "
                f"(sites {[site.name for site in sites]}): q* frees the distribution parameters "
                "a guide computes from its own (an encoder's output); give the guide learnable "
                "parameters, with requires_grad"
            )
        return cls(sites)

    @property
    def leaves(self) -> list[Tensor]:
        """Every freed parameter, on unconstrained coordinates."""
        return [leaf for site in self.sites for leaf in site.leaves.values()]

    @property
    def substitutes(self) -> tuple[str, ...]:
        """How this family differs from the guide's, one sentence per difference."""
        notes = [site.substitute for site in self.sites if site.substitute]
        if len(self.sites) > 1:
            notes.append(
                "the latent sites get independent per-point parameters: q* factorizes "
                "across sites, where the guide's later sites depend on the draws of earlier ones"
            )
        return tuple(notes)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Sample every site from its freed distribution, in the guide's plates."""
        plates: dict[str, pyro.plate] = {}  # each plate made once: its name is a site too
        for site in self.sites:
            with ExitStack() as stack:
                for frame in site.frames:
                    if frame.name not in plates:
                        plates[frame.name] = pyro.plate(frame.name, frame.size, dim=frame.dim)
                    stack.enter_context(plates[frame.name])
                pyro.sample(site.name, site.distribution())

    def stopped_log_density(self, site: dict) -> Tensor:
        """The path-derivative form of log q at a traced site: log q_{sg(λ)}(z)."""
        free = next(s for s in self.sites if s.name == site["name"])
        return free.distribution(stop=True).expand(site["fn"].batch_shape).log_prob(site["value"])


def _free(
    fn: dist.TorchDistribution, name: str
) -> tuple[Builder, dict[str, tuple[Tensor, constraints.Constraint]], str | None]:
    """``(build, {parameter: (value, constraint)}, substitute)`` of the distribution ``fn``."""
    if isinstance(fn, dist.Independent):
        inner, values, substitute = _free(fn.base_dist, name)
        ndims = fn.reinterpreted_batch_ndims
        return lambda p: dist.Independent(inner(p), ndims), values, substitute
    if isinstance(fn, torch.distributions.TransformedDistribution):
        inner, values, _ = _free(fn.base_dist, name)
        transforms, kind = fn.transforms, type(fn)
        substitute = (
            f"site {name!r} is a base distribution pushed through transforms (a flow): the "
            "base distribution's parameters are optimized per point, the transforms stay "
            "those the encoder gave the point"
        )
        if not issubclass(kind, TorchDistributionMixin):
            kind = dist.TransformedDistribution
        return lambda p: kind(inner(p), transforms), values, substitute
    parameters = _parameters(fn)
    fixed = {key: value for key, value in parameters.items() if not _depends(value)}
    freed = {key: value for key, value in parameters.items() if key not in fixed}
    values = {}
    for key, value in freed.items():
        constraint = fn.arg_constraints[key]
        try:
            transform_to(constraint)
        except NotImplementedError:
            raise InputError(
                f"parameter {key!r} of the guide's {type(fn).__name__} at site {name!r} has "
                f"a constraint ({constraint}) that no bijection reaches; q* needs parameters "
                "on real, positive, interval or similar supports"
            ) from None
        values[key] = (value.detach(), constraint)
    kind = type(fn)
    if not issubclass(kind, TorchDistributionMixin) and hasattr(dist, kind.__name__):
        kind = getattr(dist, kind.__name__)
    build = _builder(kind, fixed)
    _check_rebuilt(fn, build({key: value for key, (value, _) in values.items()}), name)
    return build, values, None


def _builder(kind: type, fixed: dict[str, Tensor]) -> Builder:
    return lambda p: kind(**fixed, **p)


def _parameters(fn: torch.distributions.Distribution) -> dict[str, Tensor]:
    """The constructor arguments of ``fn`` among its ``arg_constraints``."""
    if isinstance(fn, torch.distributions.MultivariateNormal):
        return {"loc": fn.loc, "scale_tril": fn.scale_tril}
    found = {}
    for key in fn.arg_constraints:
        static = inspect.getattr_static(fn, key, None)
        if key in vars(fn) or isinstance(static, property):
            found[key] = getattr(fn, key)
    return found


def _depends(value: Any) -> bool:
    """Whether a parameter value depends on the guide's parameters (it has a gradient path)."""
    return isinstance(value, Tensor) and value.requires_grad


def _check_rebuilt(
    original: torch.distributions.Distribution, rebuilt: torch.distributions.Distribution, name: str
) -> None:
    """Refuse a distribution that its parameters do not rebuild (its log density differs)."""
    with torch.no_grad():
        value = original.sample()
        same = (
            rebuilt.batch_shape == original.batch_shape
            and rebuilt.event_shape == original.event_shape
            and torch.allclose(rebuilt.log_prob(value), original.log_prob(value), equal_nan=True)
        )
    if not same:
        raise InputError(
            f"the guide's {type(original).__name__} at site {name!r} is not rebuilt by its "
            "arg_constraints parameters; q* needs a distribution that its constructor "
            "arguments determine"
        )


@dataclass
class LocalOptimization:
    """The trajectory of a local optimization.

    Attributes:
        trajectory: the ELBO estimate of each step, averaged over points, ``[steps]``.
        final_window: the steps over which the returned parameters were averaged.
        point_trajectory: each point's ELBO estimate of each step, ``[steps, points]``.
    """

    trajectory: Tensor
    final_window: int
    point_trajectory: Tensor


def optimize_locally(
    model: Callable,
    local_guide: LocalGuide,
    x: Tensor,
    kwargs: dict[str, Any],
    *,
    num_steps: int,
    learning_rate: float,
    num_particles: int,
    plate_nesting: int,
    data_plate: str,
    on_step: Callable[[], None] | None = None,
) -> LocalOptimization:
    r"""Maximize each point's ELBO over its own leaves of ``local_guide``, in place.

    Adam on the unconstrained leaves, ``num_particles`` draws per point and step, the
    path-derivative gradient (module docstring). Adam acts coordinate by coordinate,
    so each point's parameters follow their own ELBO alone. The leaves are left at
    their average over the last tenth of the steps (Polyak–Ruppert averaging), which
    removes most of the scatter the noisy gradients leave around the optimum.
    """
    leaves = local_guide.leaves
    optimizer = torch.optim.Adam(leaves, lr=learning_rate)
    window = max(1, num_steps // 10)
    totals = [torch.zeros_like(leaf) for leaf in leaves]
    trajectory = torch.empty(num_steps, dtype=torch.float64)
    point_trajectory = torch.empty(num_steps, x.shape[0], dtype=torch.float64)
    for step in range(num_steps):
        with torch.enable_grad():
            traces = trace_log_weights(
                model,
                local_guide,
                (x,),
                kwargs,
                num_particles=num_particles,
                plate_nesting=plate_nesting,
                data_plate=data_plate,
                scaled=False,
            )
            stopped = traces.sum_per_point(
                local_guide.stopped_log_density, guide=True, latent_only=True
            )
            elbo = (traces.log_model - stopped).mean(0)
            gradients = torch.autograd.grad(-elbo.sum(), leaves, allow_unused=True)
        for leaf, gradient in zip(leaves, gradients, strict=True):
            leaf.grad = torch.zeros_like(leaf) if gradient is None else gradient
        optimizer.step()
        point_trajectory[step] = elbo.detach().double()
        trajectory[step] = point_trajectory[step].mean()
        if step >= num_steps - window:
            for total, leaf in zip(totals, leaves, strict=True):
                total += leaf.detach()
        if on_step is not None:
            on_step()
    with torch.no_grad():
        for leaf, total in zip(leaves, totals, strict=True):
            leaf.copy_(total / window)
    return LocalOptimization(trajectory, window, point_trajectory)


def full_covariance_guide(local_guide: LocalGuide) -> LocalGuide:
    """A :class:`LocalGuide` of full-covariance Gaussians at the current diagonal ones.

    Each site of ``local_guide`` must be a diagonal Gaussian over one event dimension
    (``Normal(loc, scale).to_event(1)``); its q becomes N(loc, L Lᵀ) with a free
    lower-triangular L per point, starting at diag(scale): a family that holds the
    diagonal one, so its optimum is at least as good.

    Raises:
        InputError: a site that is not such a Gaussian.
    """
    sites = []
    for site in local_guide.sites:
        q = site.distribution(stop=True)
        base = q.base_dist if isinstance(q, dist.Independent) else None
        if not (isinstance(base, torch.distributions.Normal) and q.reinterpreted_batch_ndims == 1):
            raise InputError(
                "full_covariance needs every latent site of the guide to be a diagonal "
                f"Gaussian, Normal(loc, scale).to_event(1); site {site.name!r} is "
                f"{type(q).__name__}"
            )
        site_constraints = {"loc": constraints.real, "scale_tril": constraints.lower_cholesky}
        values = {"loc": base.loc, "scale_tril": torch.diag_embed(base.scale)}
        leaves = {
            key: transform_to(site_constraints[key])
            .inv(value.detach())
            .clone()
            .requires_grad_(True)
            for key, value in values.items()
        }
        sites.append(
            FreeSite(site.name, site.frames, _full_covariance, site_constraints, leaves, None)
        )
    return LocalGuide(sites)


def _full_covariance(values: dict[str, Tensor]) -> dist.TorchDistribution:
    return dist.MultivariateNormal(values["loc"], scale_tril=values["scale_tril"])
