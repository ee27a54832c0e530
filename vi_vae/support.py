"""Data against the support of the distributions that observe them, checked once up front.

A Bernoulli likelihood on grey pixels evaluates to a finite, meaningless number
instead of failing (its log density is a cross-entropy for any value), so the
evaluators and :func:`vi_vae.fit` check the data against every observed site's
support before drawing, and name the site. The same holds for a latent value outside
its prior's support: :func:`support_reach` compares a guide's support with the prior's
(the contract refuses a wider one, importance sampling flags a narrower one), and
:func:`proposes_outside` says whether a guide can draw where the prior has no density.
A guide that draws from a point mass has no density at all (:func:`point_masses`).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import constraints

from vi_vae._pair_trial import run_without_particles
from vi_vae.errors import BINARIZE_HINT, GuideSupportWarning, InputError

__all__ = [
    "check_data_support",
    "check_observed_support",
    "check_points",
    "check_whole_support",
    "checked_before",
    "DataOutsideSupport",
    "mark_checked",
    "point_masses",
    "proposes_outside",
    "site_layers",
    "support_reach",
    "warn_of_point_masses",
]


def check_points(x: Any, name: str = "x") -> Tensor:
    """Return ``x`` if it is a tensor of finite values with data points along dimension 0.

    Raises:
        InputError: naming ``name``.
    """
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise InputError(f"{name} must be a tensor with the data points along its first dimension")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or infinite values; all values must be finite")
    return x


def check_data_support(
    model: Callable, guide: Callable, args: tuple, kwargs: dict[str, Any] | None = None
) -> tuple[Trace, Trace]:
    """Refuse data outside the support of the distributions that observe them.

    A Bernoulli likelihood on grey pixels evaluates to a finite, meaningless
    number instead of failing (its log density is a cross-entropy for any value),
    so the evaluators and :func:`vi_vae.fit` check the data once, before drawing.
    The guide and model run once on all of ``args`` under a forked random stream:
    the caller's draws are the same with or without the check.

    A failure of the pair on the data (their width, their dtype, a plate ``"data"`` of
    another size) is explained as :func:`vi_vae.contract.check_pair` explains it.

    Returns:
        The model's trace, for :func:`check_whole_support`, and the guide's.

    Raises:
        InputError: naming the observed site and its support, or what to change.
    """
    x = args[0] if args and isinstance(args[0], Tensor) else None
    model_trace, guide_trace = run_without_particles(
        model, guide, args, kwargs or {}, x, "data", fork=True, gradients=False
    )
    check_observed_support(model_trace)
    return model_trace, guide_trace


def check_observed_support(model_trace: Trace) -> None:
    """Refuse observed values outside the support of their site's distribution.

    Raises:
        InputError: naming the observed site and its support.
    """
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        value = site["value"]
        if not isinstance(value, Tensor):
            raise InputError(
                f"the data observed at site {name!r} are a {type(value).__name__}, not a "
                "tensor; observe tensors (torch.as_tensor)"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"the data observed at site {name!r} contain NaN or infinite values")
        if not bool(site["fn"].support.check(value).all()):
            raise InputError(_outside(name, site["fn"].support))


def check_whole_support(model_trace: Trace, rows_of: Iterable[tuple[Tensor, Tensor]]) -> list[str]:
    """Refuse any row of a whole tensor that a trace of its first rows would refuse.

    ``fit`` runs the model on one batch (:func:`check_data_support`); the rest of
    the training set is checked here without running it. ``rows_of`` holds pairs
    ``(rows, whole)``: a tensor the model was called with and the tensor whose first
    rows it is. Each observed site whose value is ``rows`` (equal, in any shape with
    one row per point) and whose support is fixed (no parameter in it: values 0 or 1,
    a category range, positive values, ...) is checked on every row of ``whole``.
    A (tensor, support) pair that passed is not checked again until the tensor is
    written to, so that a ``fit`` per epoch checks its data once.

    Returns:
        The observed sites this could not check: their value is not one of the
        tensors as given (a slice or a function of the data) or their support
        depends on parameters. Only running the model on the other rows checks them.

    Raises:
        DataOutsideSupport: naming the observed site, its support and the first row
            outside it. A value equal to the data on the first rows may still be a
            function of them (``x.round()``): running the model on that row decides.
    """
    unchecked = []
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        value, support = site["value"], site["fn"].support
        observed = [whole for rows, whole in rows_of if _observes(value, rows)]
        if not observed or not _fixed(support):
            unchecked.append(name)
            continue
        whole = observed[0]
        key = (repr(support), tuple(value.shape[1:]))
        if checked_before(whole, key):
            continue
        points = whole.reshape(len(whole), *value.shape[1:])
        # element by element: an event over the rows too (no data plate, ``.to_event(2)``)
        # would fold them into one verdict
        elements = _base(support)
        for start in range(0, len(points), _CHECK_ROWS):
            chunk = points[start : start + _CHECK_ROWS].to(value.device, value.dtype)
            inside = elements.check(chunk).reshape(len(chunk), -1).all(1)
            if not bool(inside.all()):
                point = start + int((~inside).nonzero()[0])
                raise DataOutsideSupport(_outside(name, support, point), name, point)
        mark_checked(whole, key)
    return unchecked


class DataOutsideSupport(InputError):
    """:func:`check_whole_support` found the data of ``site`` outside its support at ``point``."""

    def __init__(self, message: str, site: str, point: int) -> None:
        super().__init__(message)
        self.site, self.point = site, point


def checked_before(tensor: Tensor, key: Hashable) -> bool:
    """Whether ``tensor``, as it is now, passed the check ``key`` names (:func:`mark_checked`)."""
    sums, passed = _PASSED.get(id(tensor), (None, ()))
    return (tensor._version, key) in passed and torch.equal(sums, _row_sums(tensor))


def mark_checked(tensor: Tensor, key: Hashable) -> None:
    """Remember that ``tensor`` passed the check ``key`` names, until it is written to or freed.

    A write is seen by the tensor's version counter, and by a weighted sum of each row
    (:func:`_row_sums`): the counter misses a write through a numpy array that shares
    the memory, or through ``.data``.
    """
    sums = _row_sums(tensor)
    if id(tensor) not in _PASSED:
        weakref.finalize(tensor, _PASSED.pop, id(tensor), None)
    elif not torch.equal(_PASSED[id(tensor)][0], sums):
        del _PASSED[id(tensor)]  # changed since: what it passed then does not count
    _PASSED.setdefault(id(tensor), (sums, set()))[1].add((tensor._version, key))


def _row_sums(tensor: Tensor) -> Tensor:
    """Each row of ``tensor`` summed with weights from 1 to 2 across it (one pass).

    A change of one entry changes its row's sum, and so does moving a value to another
    column: a plain sum would miss a one-hot row made [0.5, 0.5, 0] (still summing to 1).
    """
    rows = tensor.detach()
    if rows.dim() == 1:
        return rows.clone()
    rows = rows.flatten(1)
    rows = rows if rows.is_floating_point() else rows.double()
    return rows @ torch.linspace(1.0, 2.0, rows.shape[1], dtype=rows.dtype, device=rows.device)


def _outside(name: str, support: constraints.Constraint, point: int | None = None) -> str:
    """What to say of data observed at site ``name`` outside ``support`` (first at ``point``)."""
    base = _base_constraint(support)
    where = "" if point is None else f", the first at point {point}"
    hint = BINARIZE_HINT if base is constraints.boolean else "transform the data"
    return (
        f"the data observed at site {name!r} lie outside the support of its distribution "
        f"({_SUPPORT_NAMES.get(base, str(base))}){where}; {hint}"
    )


#: rows of a whole tensor checked at once by :func:`check_whole_support` (bounds its memory)
_CHECK_ROWS = 8192
#: ``id(tensor) -> (its row sums, {(its version, check)})``: the checks a tensor passed
#: (:func:`mark_checked`)
_PASSED: dict[int, tuple[Tensor, set[tuple[int, Hashable]]]] = {}


def _base(support: constraints.Constraint) -> constraints.Constraint:
    """``support`` without its ``independent`` wrappers: checked per element, not per event."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _fixed(support: constraints.Constraint) -> bool:
    """Whether ``support`` holds no tensor: the same for every point and every parameter."""
    while True:
        if constraints.is_dependent(support) or any(
            isinstance(value, Tensor) for value in vars(support).values()
        ):
            return False
        if not isinstance(support, constraints.independent):
            return True
        support = support.base_constraint


def _observes(value: Tensor, rows: Tensor) -> bool:
    """Whether the observed ``value`` is ``rows``, one row per point in any shape."""
    return (
        value.dim() >= 1
        and len(value) == len(rows)
        and value.numel() == rows.numel()
        and torch.equal(value.reshape(rows.shape), rows.to(value.device, value.dtype))
    )


def support_reach(guide: Any, prior: Any) -> tuple[bool, bool]:
    """``(narrower, wider)``: the support ``guide`` against ``prior``, by their bounds.

    Narrower where a lower bound lies above the prior's or an upper bound below it
    (somewhere, for bounds that vary by point); wider where one lies beyond it. Both
    can hold (a shifted interval); supports without bounds (simplex) are neither.
    """
    guide_lower, guide_upper = _bounds(guide)
    prior_lower, prior_upper = _bounds(prior)
    narrower = bool((guide_lower > prior_lower).any() or (guide_upper < prior_upper).any())
    wider = bool((guide_lower < prior_lower).any() or (guide_upper > prior_upper).any())
    return narrower, wider


def proposes_outside(guide: Any, value: Tensor, prior: Any) -> bool:
    """Whether the distribution ``guide``, which drew ``value``, draws outside ``prior``'s support.

    By the declared supports (:func:`support_reach`), or by ``value`` where the guide's
    declared support is not where its draws fall: a ``Delta`` (``AutoDelta``'s declares
    its event's whole space and proposes one value) or a ``TransformedDistribution``
    (it declares its last transform's codomain: ``biject_to(positive)`` ends in an
    affine map onto the real line).
    """
    base = guide
    while isinstance(base, (dist.Independent, dist.MaskedDistribution)):
        base = base.base_dist
    if not isinstance(base, (dist.Delta, torch.distributions.TransformedDistribution)):
        return support_reach(guide.support, prior.support)[1]
    try:
        return not bool(prior.support.check(value).all())
    except (NotImplementedError, ValueError):  # constraints.dependent: nothing to check against
        return False


def site_layers(site: dict) -> list:
    """A site's distribution and each one it wraps (``.base_dist``: masked, independent, …)."""
    layers = [site["fn"]]
    while getattr(layers[-1], "base_dist", None) is not None:
        layers.append(layers[-1].base_dist)
    return layers


def point_masses(guide_trace: Trace) -> dict[str, str]:
    """The guide's latent sites drawn from a point mass: ``{site: "Delta" or "Empirical"}``.

    The evaluators divide by the guide's density: a point mass q(z|x) = δ(z − f(x)) (a
    deterministic encoder, Pyro's ``AutoDelta``) has log q = 0 at its one point, so
    importance sampling returned log p(x, f(x)) with a standard error of the points'
    spread and a verdict of "converged" (on the linear Gaussian model with its point at
    z = 0.1: 16 nats below log p(x)); AIS from it failed with torch's raw autograd error.
    The evaluators refuse it; the estimators train with it (MAP, an autoencoder) and
    warn that its ELBO is log p(x, z) at the point, not a bound on log p(x)
    (:func:`warn_of_point_masses`).
    """
    found = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        fn = site_layers(site)[-1]
        if isinstance(fn, (dist.Delta, dist.Empirical)):
            found[name] = type(fn).__name__
    return found


def warn_of_point_masses(guide_trace: Trace) -> None:
    """Warn (``GuideSupportWarning``) that a point-mass guide's ELBO is no bound on log p(x).

    The estimators warn at their first call of a pair, ``fit``'s validation too (its
    loss may be Pyro's own); the message and place are the same, so Python's filters
    show it once.
    """
    sites = point_masses(guide_trace)
    if sites:
        warnings.warn(
            f"the guide draws latent site(s) {list(sites)} from a point mass "
            f"({', '.join(sorted(set(sites.values())))}): training maximizes log p(x, z) at "
            "the point (MAP), and its ELBO is that value, not a lower bound on log p(x); "
            "compare it with no guide's ELBO that has a density",
            GuideSupportWarning,
            stacklevel=1,  # one place whoever calls: Python's filters show it once
        )


def _bounds(support: Any) -> tuple[Tensor, Tensor]:
    """(lower, upper) bounds of a constraint as float64 tensors, ±inf where it has none."""
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    lower = getattr(support, "lower_bound", -math.inf)
    upper = getattr(support, "upper_bound", math.inf)
    return torch.as_tensor(lower).detach().double(), torch.as_tensor(upper).detach().double()


def _base_constraint(support: constraints.Constraint) -> constraints.Constraint:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


_SUPPORT_NAMES = {
    constraints.boolean: "values 0 or 1",
    constraints.unit_interval: "values in [0, 1]",
    constraints.real: "finite real values",
    constraints.positive: "positive values",
    constraints.nonnegative_integer: "non-negative integers",
    constraints.one_hot: "one-hot vectors",
    constraints.simplex: "vectors of probabilities",
}
