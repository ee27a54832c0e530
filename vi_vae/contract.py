r"""The contract of a user's model/guide pair: written here, and checked here at the first call.

vi_vae runs any Pyro model/guide pair that keeps these clauses (the user's version,
with the error each breach gets, is ``docs/howto/custom-model.md``):

1. **The data are the rows of x**, the first argument: floating point, of the
   parameters' dtype, one data point per row.
2. **The data plate runs over the rows of x**: every sample site lies in one
   vectorized ``pyro.plate(data_plate)`` (default ``"data"``) of size ``x.shape[0]``.
   The evaluators split ``x`` by rows into passes, so they refuse a plate that
   subsamples.
3. **Model and guide sample the same latent sites, with the same shapes**: a log
   weight is log p(x, z) − log q(z|x) over the same z; the guide's support is not
   wider than the prior's (:func:`check_guide_support`). The guide observes nothing,
   but an auxiliary model (``infer={"is_auxiliary": True}``), no part of q, which the
   evaluators leave out and the estimators refuse (:func:`refuse_auxiliary_models`).
4. **Particles are a leading batch dimension**: all K particles of every point are
   drawn in one vectorized pass, inside ``pyro.plate(PARTICLE_PLATE, K)`` to the left
   of the pair's plates, even at K = 1.
5. **Keyword arguments** reach model and guide unchanged, except *per-point* ones: a
   tensor whose first dimension equals ``x.shape[0]`` is split by rows with ``x``
   (:func:`rows_of`); a list or array of ``x.shape[0]`` values is refused, since it
   would reach every part of the rows whole (:func:`refuse_unsplit_sequences`).
6. **Scales**: a site's scale multiplies its log density inside the log weight, so an
   estimator whose bound is not linear in the log weights refuses a data plate that
   subsamples (:func:`biased_under_subsampling`).
7. **The guide's parameters** are those its distributions depend on (found by
   autograd at the first call), wherever ``pyro.param``/``pyro.module`` registered
   them: in the guide, in the model or in both.
8. **For an evaluator, log p(x_n, z) is a fixed function of the point's row and its z**:
   not random beyond the sample sites (dropout in training mode), not a function of
   the other rows (BatchNorm in training mode), every latent density whole (no mask on
   a latent site); AIS also needs log q(z|x) fixed
   (:func:`vi_vae.evaluated_pair.check_evaluated_pair`).

:func:`check_pair` runs the pair once, without the particle dimension, and checks
clauses 1-3, 6 and 7 there, and clause 4 by value on the first rows
(``vi_vae._particle_trial.check_particle_dimension``: the same draws score the same
with a particle dimension), turning a failure inside the pair (a wrong dtype or width
of ``x``, a plate that indexes rows ``x`` does not have) into an
:class:`~vi_vae.errors.InputError` that says what to change; it returns the
:class:`PairLayout` the callers cache. :func:`particle_dimension_error` explains a
failure under the particle dimension (clause 4), and :func:`check_latent_sites`
(clause 3) is cheap enough to run on every trace. The plates and shapes (clause 2,
clause 3's shapes) are checked in ``vi_vae._pair_shapes``, clause 5's split of the
keyword arguments is ``vi_vae._point_keywords``, and clause 6's rule for estimators
under subsampling ``vi_vae._subsampling``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro.distributions as dist
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from vi_vae._pair_shapes import (
    check_observed_shapes,
    check_shapes,
    data_plate_size,
    outside_data_plate,
    plate_nesting_of,
    sample_sites,
)
from vi_vae._pair_trial import (
    PARTICLE_HINT,
    particle_dimension_error,
    run_without_particles,
)
from vi_vae._particle_trial import check_particle_dimension
from vi_vae._point_keywords import per_point_keywords, refuse_unsplit_sequences, rows_of
from vi_vae._subsampling import biased_under_subsampling, subsampling_refusal
from vi_vae._validation import check_callables
from vi_vae.errors import InputError
from vi_vae.support import proposes_outside

__all__ = [
    "EVALUATOR_SUBSAMPLING",
    "PARTICLE_HINT",
    "PairLayout",
    "biased_under_subsampling",
    "check_guide_support",
    "check_latent_sites",
    "check_pair",
    "outside_data_plate",
    "particle_dimension_error",
    "per_point_keywords",
    "refuse_auxiliary_models",
    "refuse_unsplit_sequences",
    "rows_of",
    "subsampling_refusal",
]

#: why the evaluators refuse a data plate that subsamples
EVALUATOR_SUBSAMPLING = (
    "the evaluators split x by rows into passes themselves and need every row of x in the "
    "data plate: pyro.plate(data_plate, x.shape[0]) without subsample_size"
)


@dataclass(frozen=True)
class PairLayout:
    """What the first call learned about a model/guide pair.

    Attributes:
        plate_nesting: plate dims the pair uses (the particle dim is left of them).
        batch_size: points in one pass of the data plate (its subsample size).
        plate_size: the data plate's full size (equal to ``batch_size`` unless it subsamples).
        guide_parameters: names of the ``param`` sites whose tensors the guide's
            distributions depend on, or ``None`` when not asked for.
    """

    plate_nesting: int
    batch_size: int
    plate_size: int
    guide_parameters: frozenset[str] | None = None


def check_pair(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any] | None = None,
    *,
    data_plate: str = "data",
    subsampling_refusal: str | None = None,
    inspect: Callable[[Trace, Trace], None] | None = None,
    parameters: bool = False,
    fork: bool = True,
    match_latents: bool = True,
    vectorized: bool = True,
) -> PairLayout:
    """Run the pair once without particles; refuse it if it breaks the contract, saying why.

    Args:
        model: Pyro model ``model(*args, **kwargs)``; ``args[0]``, when a tensor, is ``x``.
        guide: Pyro guide with the same signature.
        args: positional arguments.
        kwargs: keyword arguments.
        data_plate: name of the data plate.
        subsampling_refusal: why the caller cannot use a data plate that subsamples
            (``None``: it can).
        inspect: further checks of the trial's model and guide traces, raising an
            :class:`~vi_vae.errors.InputError` (the evaluators': the data against the
            support of every observed site, clause 8).
        parameters: find which parameters the guide's distributions depend on (runs
            the trial with gradients and one backward pass through the guide).
        fork: draw the trial from a forked random stream (the caller's stream is left
            alone); ``False`` draws from the caller's stream.
        match_latents: require the guide to sample the model's latent sites (clause 3);
            ``False`` for a guide that draws none (AIS started from the prior).
        vectorized: the caller draws all particles in one vectorized pass, so clause 4 is
            checked by value; ``False`` for one that draws them one after another
            (``ExecutionOptions(vectorize_particles=False)``).

    Returns:
        The :class:`PairLayout`.

    Raises:
        InputError: naming what breaks the contract and what to change.
    """
    check_callables(model, guide)
    kwargs = kwargs or {}
    x = args[0] if args and isinstance(args[0], Tensor) else None
    model_trace, guide_trace = run_without_particles(
        model, guide, args, kwargs, x, data_plate, fork, parameters
    )
    if match_latents:
        check_latent_sites(model_trace, guide_trace)
        check_guide_support(model_trace, guide_trace)
    if inspect is not None:
        inspect(model_trace, guide_trace)
    plate_nesting = plate_nesting_of(model_trace, guide_trace)
    check_shapes(model_trace, guide_trace, plate_nesting)
    batch_size, plate_size = data_plate_size(model_trace, guide_trace, data_plate, x)
    if batch_size < plate_size and subsampling_refusal is not None:
        raise InputError(
            f"pyro.plate({data_plate!r}) subsamples {batch_size} of its {plate_size} points; "
            f"{subsampling_refusal}"
        )
    check_observed_shapes(model_trace)
    # before the particle check: a flow scores the trial's draws from its cache of the last
    # one it made (Pyro's Planar has no inverse), which the check's own draws replace
    guide_parameters = _guide_parameters(model_trace, guide_trace) if parameters else None
    if vectorized:
        subsampled = batch_size < plate_size
        check_particle_dimension(model, guide, args, kwargs, plate_nesting, data_plate, subsampled)
    return PairLayout(plate_nesting, batch_size, plate_size, guide_parameters)


def _obs_mask_hint(missing: list[str], model_trace: Trace) -> str:
    """What to write instead, where a missing site is the one Pyro makes for ``obs_mask``."""
    masked = [
        name.removesuffix("_unobserved")
        for name in missing
        if name.endswith("_unobserved")
        and model_trace.nodes.get(name.removesuffix("_unobserved") + "_observed", {}).get(
            "is_observed"
        )
    ]
    if not masked:
        return ""
    return (
        f"; Pyro makes a latent site of the entries that obs_mask hides in {masked}: to leave "
        "them out of log p(x), observe all of x under pyro.poutine.mask(mask=...) instead of "
        "obs_mask (the masked entries then add nothing, and the guide needs no site for them)"
    )


def check_guide_support(model_trace: Trace, guide_trace: Trace) -> None:
    """Refuse a guide that proposes latent values where the prior has no density.

    Torch's ``log_prob`` outside a distribution's support is not −∞ (an exponential's
    at −1 is finite) unless Pyro's validation is on, when it raises: such draws would
    enter the weights and the ELBO as if the prior gave them that density
    (:func:`~vi_vae.support.proposes_outside` says where the guide can draw).
    """
    model_latents = _latents(model_trace)
    wider = {
        name: (guide_trace.nodes[name]["fn"].support, model_trace.nodes[name]["fn"].support)
        for name in _latents(guide_trace)
        if name in model_latents
        and proposes_outside(
            guide_trace.nodes[name]["fn"],
            guide_trace.nodes[name]["value"],
            model_trace.nodes[name]["fn"],
        )
    }
    if wider:
        described = "; ".join(f"{name!r}: {q} against {p}" for name, (q, p) in wider.items())
        raise InputError(
            f"the guide's support is wider than the prior's at latent site(s) {described}: "
            "the guide would propose values where the prior has no density, whose log_prob "
            "torch does not make -inf; sample each from a distribution on the prior's "
            "support (e.g. dist.TransformedDistribution(base, biject_to(prior.support)), a "
            "LogNormal for a positive prior)"
        )


def refuse_auxiliary_models(guide_trace: Trace) -> None:
    """Refuse guide sites observed as an auxiliary model: vi_vae's estimators would drop them.

    Their log densities are no part of q, so the log weights leave them out (clause 3);
    a loss trains them only where it adds them itself (``pyro.contrib.cevae``'s
    ``TraceCausalEffect_ELBO``), and Pyro's ``Trace_ELBO`` counts them in log q.
    """
    auxiliary = [name for name, site in sample_sites(guide_trace) if _auxiliary_model(site)]
    if auxiliary:
        raise InputError(
            f"the guide observes site(s) {auxiliary} as an auxiliary model (is_auxiliary): "
            "they are no part of q, so vi_vae's estimators leave them out and would not "
            "train them; train with a loss that adds their log density (for "
            "pyro.contrib.cevae, its TraceCausalEffect_ELBO), and estimate log p(x) with "
            "vi_vae's evaluators, which take such a guide"
        )


def _auxiliary_model(site: dict) -> bool:
    """A guide site that observes a value as an auxiliary model (``is_auxiliary``).

    ``pyro.factor``'s ``Unit`` site is marked auxiliary too, but is a term of the loss,
    not a model of a value: not one of these.
    """
    return (
        site["is_observed"]
        and bool(site["infer"].get("is_auxiliary"))
        and not isinstance(site["fn"], dist.Unit)
    )


def check_latent_sites(model_trace: Trace, guide_trace: Trace) -> None:
    """Refuse a pair whose model and guide do not sample the same latent sites (clause 3).

    Cheap enough for every trace: the evaluators' passes run it too. A guide site
    observed with ``infer={"is_auxiliary": True}`` (an auxiliary model of observed
    values, as ``pyro.contrib.cevae``'s guide has) is no part of q: the log weights
    leave it out, and vi_vae's estimators refuse it (:func:`refuse_auxiliary_models`).
    """
    observed = [
        name
        for name, site in sample_sites(guide_trace)
        if site["is_observed"]
        and not site["infer"].get("_deterministic")
        and not _auxiliary_model(site)
    ]
    if observed:
        raise InputError(
            f"the guide observes site(s) {observed} (pyro.factor, or obs=): Pyro's Trace_ELBO "
            "counts such a site in log q, which is then no density that the guide's draws "
            "come from, and vi_vae's log weights take q at the latent sites alone, so the "
            "two would give different numbers; to train, put the factor in the model (its "
            "sign flipped), or make it part of the distribution the guide samples from "
            "(pyro.deterministic stays allowed); to estimate log p(x), leave a term that only "
            "trains (such as a classification loss) out of the pair: it changes no draw"
        )
    model_latents, guide_latents = _latents(model_trace), _latents(guide_trace)
    missing = [name for name in model_latents if name not in guide_latents]
    if missing:
        raise InputError(
            f"the guide has no sample site for the model's latent site(s) {missing}; "
            "importance weights need q for every latent variable of the model"
            + _obs_mask_hint(missing, model_trace)
        )
    extra = [name for name in guide_latents if name not in model_latents]
    auxiliary = [name for name in extra if guide_trace.nodes[name]["infer"].get("is_auxiliary")]
    if auxiliary:
        raise InputError(
            f"the guide samples auxiliary site(s) {auxiliary} (infer={{'is_auxiliary': True}}, "
            "as Pyro's autoguides AutoNormal and AutoDiagonalNormal do) that the model does "
            "not have; vi_vae's importance weights p(x, z) / q(z|x) take q's density at the "
            "model's latent sites and cannot check that a value computed from an auxiliary "
            "draw carries one: sample the model's latent sites in the guide directly, e.g. "
            "pyro.sample(name, dist.Normal(loc, scale).to_event(1)) inside the data plate"
        )
    if extra:
        raise InputError(
            f"the guide samples site(s) {extra} that the model does not have; a log weight "
            "log p(x, z) - log q(z|x) needs the same latent sites in both: rename the guide's "
            "site to the model's, or remove it"
        )


# -- the clauses ----------------------------------------------------------------------


def _latents(trace: Trace) -> list[str]:
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    ]


def _guide_parameters(model_trace: Trace, guide_trace: Trace) -> frozenset[str]:
    """Names of the ``param`` sites (of either trace) the guide's distributions depend on.

    Found by autograd: the leaves that Σ log q(z|x) over the guide's latent sites reaches.
    A parameter registered in the model only (``pyro.module`` there, as Pyro's SS-VAE
    does) is the guide's when the guide uses it.
    """
    candidates: dict[str, Tensor] = {}
    for trace in (guide_trace, model_trace):
        for name, site in trace.nodes.items():
            if site["type"] == "param" and name not in candidates:
                value = site["value"]
                leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
                if leaf.requires_grad:
                    candidates[name] = leaf
    with torch.enable_grad():  # the caller may run under no_grad (the trial did not)
        log_guide = [
            site["fn"].log_prob(site["value"]).sum()
            for name, site in sample_sites(guide_trace)
            if not site["is_observed"]
        ]
        total = sum(log_guide) if log_guide else None
        if not candidates or total is None or not total.requires_grad:
            return frozenset()
        names = list(candidates)
        found = torch.autograd.grad(total, [candidates[n] for n in names], allow_unused=True)
    return frozenset(name for name, grad in zip(names, found, strict=True) if grad is not None)
