r"""What every vi_vae estimator shares: vectorized draws, chunked passes, gradient routing.

An estimator is two small functions of the per-point log weights
``log_weights: [num_particles, batch]`` (see :mod:`vi_vae.weights`):

- ``_bound(log_weights) -> [batch]``, the Monte Carlo estimate of the bound it
  names; ``loss`` is minus its sum over the batch.
- ``_gradient_terms(log_weights) -> list[GradientTerm]``, the gradient it follows,
  written as coefficients :math:`c_{k,n}` (functions of the log weights' values
  only, computed without gradients) on the gradients of the log weights,

  .. math::
      g = \sum_{k,n} c_{k,n}\, \nabla \log w_{k,n},

  for all parameters, or for the guide's or the model's alone, with log w either
  fully reparameterized or with the score term of log q dropped (its path
  derivative, :meth:`WeightedTraces.path_log_weights`). The default,
  :math:`c = \partial\, \text{bound} / \partial \log w`, is the reparameterized
  gradient of the bound itself.

Every gradient is therefore linear in ∇ log w with coefficients fixed by the values,
which is what makes the chunked fallback exact when ``num_particles × batch``
exceeds ``chunk_size`` (:mod:`vi_vae.estimators.chunking`): memory is then bounded
by one chunk, at the price of one extra forward pass without gradients.

Guide parameters are those the guide's distributions depend on, found by autograd
at the first call (:func:`vi_vae.contract.check_pair`), whether ``pyro.param`` or
``pyro.module`` registered them in the guide, in the model (as Pyro's SS-VAE
example does) or in both; model parameters are the other ``param`` sites of
either trace. The first call with a model/guide pair also checks the rest of the
pair's contract (:mod:`vi_vae.contract`), once: later calls with the same pair
cost nothing more.

With ``compile=True`` each pass (the one-pass gradient step, a pass without
gradients, a chunk's gradient) is traced once per input shape into a pure
function of (parameters, data, noise) and compiled with ``torch.compile``
(:mod:`vi_vae.estimators.compiled_passes`); the same seed gives the same draws
as the eager path, and values and gradients equal to floating-point rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import torch
from pyro.infer.elbo import ELBO as PyroELBO
from pyro.poutine.trace_struct import Trace
from pyro.util import warn_if_nan
from torch import Tensor

from vi_vae._validation import check_bool, check_positive_int
from vi_vae.compiled import CompiledCache
from vi_vae.contract import check_pair, refuse_auxiliary_models, subsampling_refusal
from vi_vae.estimators import compiled_passes
from vi_vae.estimators.chunking import chunk_sizes, draw_values, redraw_gradients
from vi_vae.estimators.compiled_passes import PassCall
from vi_vae.estimators.gradient_terms import (
    GradientTerm,
    ParameterGroup,
    accumulate,
    bound_coefficients,
    check_reparameterized,
    group_gradients,
    group_surrogates,
)
from vi_vae.support import warn_of_point_masses
from vi_vae.weights import WeightedTraces, trace_log_weights

__all__ = [
    "DEFAULT_TRAINING_CHUNK_SIZE",
    "GradientTerm",
    "ParticleEstimator",
    "bound_coefficients",
]

#: (particle, data point) pairs per pass with gradients before the chunked fallback
#: (the evaluators' passes have no gradients and a smaller default, 8192).
#: Measured on the 784-400-20 MLP VAE (CPU, peak RSS): about 12 KB per pair for IWAE
#: and 17 KB for DReG (its second backward pass), so 0.8-1.1 GB at this default.
DEFAULT_TRAINING_CHUNK_SIZE = 65_536


class ParticleEstimator(PyroELBO):
    """Base class: a bound estimated from ``num_particles`` vectorized draws per point.

    Subclasses implement ``_bound`` and, when their gradient is not the plain
    reparameterized gradient of the bound, ``_gradient_terms`` (and set
    ``follows_bound_gradient = False``).

    Args:
        num_particles: draws per data point, all in one vectorized pass.
        data_plate: name of the model's and guide's data plate.
        max_plate_nesting: plate dims the model/guide use (not counting the particle
            dim); guessed on the first call when left at infinity.
        chunk_size: (particle, point) pairs per pass with gradients; above
            it, particles are processed in chunks (module docstring). The batch size
            it is compared with is that of the previous call (of a first trial run
            on the first call). Chunks redraw everything the guide draws, so a data
            plate that subsamples at random (``pyro.plate(..., subsample_size=B)``)
            would see different points in different chunks: pick the mini-batch
            outside the model (as :func:`vi_vae.fit` does) when chunking. An
            estimator whose bound is not linear in the log weights (IWAE-type, K > 1)
            refuses a subsampling data plate: it would be biased
            (:func:`vi_vae.contract.biased_under_subsampling`).
        compile: trace each pass once per input shape into a pure tensor function
            and run it compiled by ``torch.compile`` (module docstring); a pair the
            tracer cannot handle runs eagerly, after one
            :class:`~vi_vae.errors.CompileWarning` naming why. Python values the
            model, guide or estimator read (e.g. a float KL weight) are fixed when a
            shape is first traced; :meth:`clear_compiled` forgets the traces.
            ``differentiable_loss`` always runs eagerly.
    """

    #: whether the gradient is that of the bound (then ``differentiable_loss`` is −Σ bound)
    follows_bound_gradient: bool = True

    def __init__(
        self,
        num_particles: int,
        *,
        data_plate: str = "data",
        max_plate_nesting: float = math.inf,
        chunk_size: int = DEFAULT_TRAINING_CHUNK_SIZE,
        compile: bool = False,
    ) -> None:
        check_positive_int("num_particles", num_particles)
        check_positive_int("chunk_size", chunk_size)
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.vectorize_particles = True  # always; max_plate_nesting excludes the particle dim
        self.data_plate = data_plate
        self.chunk_size = chunk_size
        self.compile = check_bool("compile", compile)
        self._batch_size: int | None = None
        self._compiled = CompiledCache()
        #: the cache of the replayed eager step (``vi_vae._replay``), when fit set one, and
        #: the pair's Python state, part of a replayed step's key (``None``: step eagerly)
        self._replay: CompiledCache | None = None
        self._replay_state: Callable[[], Hashable | None] | None = None
        self._checked_pair: tuple | None = None
        self._guide_parameters: frozenset[str] | None = None

    def clear_compiled(self) -> None:
        """Forget the compiled passes; the next call traces and compiles again."""
        self._compiled = CompiledCache()

    # -- what a subclass defines -----------------------------------------------------

    def _bound(self, log_weights: Tensor) -> Tensor:
        """The estimate of the named bound for each point, ``[batch]``."""
        raise NotImplementedError

    def _gradient_terms(self, log_weights: Tensor) -> list[GradientTerm]:
        """The gradient to follow; by default the reparameterized gradient of the bound."""
        return [GradientTerm(bound_coefficients(self._bound, log_weights))]

    def _particle_values(self, traces: WeightedTraces, path_derivative: bool = False) -> Tensor:
        """Per-particle values the bound is a function of: the log weights by default."""
        return traces.path_log_weights() if path_derivative else traces.log_weights

    # -- the pyro.infer.ELBO interface ------------------------------------------------

    def per_point_bound(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> Tensor:
        """The estimate of the named bound for each data point, ``[batch]``, without gradients.

        Site scales apply (as in :meth:`loss`), so under a KL weight β this is the
        β-weighted objective, not the bound of the unscaled model.
        """
        self._prepare(model, guide, args, kwargs)
        call = PassCall(model, guide, args, kwargs, self.num_particles)
        log_weights, _ = self._draw_values(call, self._chunk_sizes())
        with torch.no_grad():
            return self._bound(log_weights)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, summed over the batch (nats), from one draw of the particles."""
        loss = -self.per_point_bound(model, guide, *args, **kwargs).sum().item()
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """:meth:`loss`, and this estimator's gradient of it accumulated into ``.grad``."""
        self._prepare(model, guide, args, kwargs)
        chunks = self._chunk_sizes()
        call = PassCall(model, guide, args, kwargs, self.num_particles)
        compiled = self._compiled_step(call) if len(chunks) == 1 else None
        if compiled is not None:
            compiled_loss, self._batch_size = compiled
            warn_if_nan(compiled_loss, "loss")
            return compiled_loss
        if len(chunks) == 1:
            traces = self._trace(model, guide, args, kwargs, self.num_particles)
            surrogates, log_weights = self._step_surrogates(traces)
            self._accumulate(traces, surrogates)
        else:
            log_weights, states = self._draw_values(call, chunks)
            terms = self._gradient_terms(log_weights)
            redraw_gradients(
                self._passes(), call, chunks, states, terms, self.compile, self._backward
            )
        loss = -self._bound(log_weights).sum().item()
        warn_if_nan(loss, "loss")
        return loss

    def _compiled_step(self, call: PassCall) -> tuple[float, int] | None:
        """The one-pass step compiled, or replayed (``vi_vae._replay``); ``None``: eagerly."""
        if self.compile:
            return compiled_passes.step(self._passes(), call)
        state = None if self._replay_state is None else self._replay_state()
        if state is None:  # not replayed, or a hook is registered
            return None
        return compiled_passes.step(self._passes(self._replay, state), call)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> Tensor:
        """Minus the bound summed over the batch, as a tensor whose gradient is this estimator's.

        All particles are drawn in one pass (no chunking), eagerly (also with
        ``compile=True``: the compiled passes return gradients, not a graph to
        differentiate). Estimators that route
        different objectives to guide and model parameters (DReG, PIWAE) have no
        such single tensor and raise ``NotImplementedError``; use
        :meth:`loss_and_grads`.
        """
        self._prepare(model, guide, args, kwargs)
        traces = self._trace(model, guide, args, kwargs, self.num_particles)
        values = self._particle_values(traces)
        bound = self._bound(values).sum()
        if self.follows_bound_gradient:
            return -bound
        terms = self._gradient_terms(values.detach())
        if any(term.parameters != "all" for term in terms):
            raise NotImplementedError(
                f"{type(self).__name__} routes different objectives to guide and model "
                "parameters, so no single differentiable loss has its gradient; use "
                "loss_and_grads (as pyro.infer.SVI does)"
            )
        surrogate = sum(
            (term.coefficients * self._particle_values(traces, term.path_derivative)).sum()
            for term in terms
        )
        return -(bound.detach() + surrogate - surrogate.detach())

    def _get_trace(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        """Model and guide traces of one vectorized draw of ``num_particles`` particles."""
        self._prepare(model, guide, args, kwargs)
        traces = self._trace(model, guide, args, kwargs, self.num_particles)
        return traces.model_trace, traces.guide_trace

    def _get_traces(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> Iterator[tuple[Trace, Trace]]:
        """The one vectorized pair of traces (Pyro's would vectorize a second time)."""
        yield self._get_trace(model, guide, args, kwargs)

    # -- the machinery -------------------------------------------------------------

    def _prepare(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> None:
        """Check the pair's contract at its first call (:func:`vi_vae.contract.check_pair`)."""
        key = self._pair_key(model, guide)
        if self._checked_pair == key and self.max_plate_nesting != math.inf:
            return
        # The very first trial draws from the caller's stream (so the draws after it
        # are those of every earlier vi_vae); a later pair's trial leaves it alone.
        layout = check_pair(
            model,
            guide,
            args,
            kwargs,
            data_plate=self.data_plate,
            subsampling_refusal=self._subsampling_refusal(),
            parameters=True,
            fork=self._batch_size is not None,
            inspect=lambda model_trace, guide_trace: _inspect_guide(guide_trace),
        )
        if self.max_plate_nesting == math.inf:
            self.max_plate_nesting = layout.plate_nesting
        self._batch_size = layout.batch_size
        self._guide_parameters = layout.guide_parameters
        self._checked_pair = key

    def _pair_key(self, model: Callable, guide: Callable) -> tuple:
        """The pair and the settings its check depends on (a copy with another K checks again)."""
        settings = tuple(item for item in self._plain_settings() if item[0] != "max_plate_nesting")
        return model, guide, settings

    def _plain_settings(self) -> tuple[tuple[str, Any], ...]:
        """The public attributes that are plain values (``num_particles``, ``alpha``, ...)."""
        return tuple(
            (name, value)
            for name, value in sorted(vars(self).items())
            if not name.startswith("_") and isinstance(value, (bool, int, float, str, type(None)))
        )

    def _subsampling_refusal(self) -> str | None:
        """Why this estimator refuses a data plate that subsamples, or ``None`` if it need not."""
        return subsampling_refusal(
            type(self).__name__,
            self.num_particles,
            self._bound,
            lambda log_weights: [term.coefficients for term in self._gradient_terms(log_weights)],
        )

    def _chunk_sizes(self) -> list[int]:
        return chunk_sizes(self.num_particles, self._batch_size or 1, self.chunk_size)

    def _passes(
        self, cache: CompiledCache | None = None, state: Hashable = None
    ) -> compiled_passes.PassFunctions:
        """This estimator's maths, cache (default: its compiled passes') and settings.

        ``state``: the pair's Python state, for a replayed step (``vi_vae._replay``).
        """
        return compiled_passes.PassFunctions(
            type(self).__name__,
            # every compiled pass's key: the class (a replay cache is shared), the settings
            # and the state
            (type(self), self._plain_settings(), state),
            self._compiled if cache is None else cache,
            self._trace,
            self._particle_values,
            self._bound,
            self._step_surrogates,
            self._surrogates,
            self._gradients,
        )

    def _trace(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int
    ) -> WeightedTraces:
        traces = trace_log_weights(
            model,
            guide,
            args,
            kwargs,
            num_particles=num_particles,
            plate_nesting=int(self.max_plate_nesting),
            data_plate=self.data_plate,
            scaled=True,
        )
        self._batch_size = traces.log_guide.shape[-1]
        return traces

    def _draw_values(self, call: PassCall, chunks: list[int]) -> tuple[Tensor, list[tuple]]:
        """:func:`~vi_vae.estimators.chunking.draw_values` of this estimator's passes."""
        values, states = draw_values(self._passes(), call, chunks, self.compile)
        self._batch_size = values.shape[-1]
        return values, states

    def _surrogates(
        self, traces: WeightedTraces, terms: list[GradientTerm]
    ) -> dict[ParameterGroup, Tensor]:
        """Σ c log w of each parameter group, for the groups whose sum has a gradient.

        :func:`~vi_vae.estimators.gradient_terms.group_surrogates` of this estimator's values.
        """
        return group_surrogates(traces, terms, self._particle_values)

    def _step_surrogates(
        self, traces: WeightedTraces
    ) -> tuple[dict[ParameterGroup, Tensor], Tensor]:
        """The one-pass step's surrogates (see :meth:`_surrogates`) and the log weights."""
        values = self._particle_values(traces)
        log_weights = values.detach()
        if self.follows_bound_gradient:  # the shortcut: back-propagate the bound itself
            check_reparameterized(traces.guide_trace)
            bound = self._bound(values).sum()
            return ({"all": bound} if bound.requires_grad else {}), log_weights
        return self._surrogates(traces, self._gradient_terms(log_weights)), log_weights

    def _gradients(
        self, traces: WeightedTraces, surrogates: dict[ParameterGroup, Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``(parameters, gradients)``: −∇ of each group's surrogate for its parameters.

        What :meth:`_accumulate` adds to ``.grad``, returned instead (for a traced
        pass); a parameter may appear once per group.
        """
        pairs = [
            pair
            for group, surrogate in surrogates.items()
            for pair in group_gradients(
                traces, group, surrogate, self._guide_parameters, retain=True
            )
        ]
        return [parameter for parameter, _ in pairs], [gradient for _, gradient in pairs]

    def _backward(self, traces: WeightedTraces, terms: list[GradientTerm]) -> None:
        """Accumulate Σ c ∇ log w of each term into the ``.grad`` of its parameters."""
        self._accumulate(traces, self._surrogates(traces, terms))

    def _accumulate(self, traces: WeightedTraces, surrogates: dict[ParameterGroup, Tensor]) -> None:
        """Accumulate −∇ of each group's surrogate into the ``.grad`` of its parameters."""
        accumulate(traces, surrogates, self._guide_parameters, retain_graph=bool(self.retain_graph))


def _inspect_guide(guide_trace: Trace) -> None:
    """The estimators' checks of the trial's guide: no auxiliary model, point masses warned of."""
    refuse_auxiliary_models(guide_trace)
    warn_of_point_masses(guide_trace)
