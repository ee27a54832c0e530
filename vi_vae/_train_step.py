"""One SVI step of :func:`vi_vae.fit`, and the mini-batches of points it steps on.

A keyword argument of model and guide is *per point* when it is a tensor with one
row per data point (its first dimension is the number of points, as ``ys``, the
labels of a semi-supervised model): it is sliced with every batch, so that row n
of it travels with row n of the data. Any other keyword argument is passed as it is.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro.infer import SVI
from pyro.poutine.trace_struct import Trace
from torch import Tensor

from vi_vae._training import TrainingState, parameters_finite
from vi_vae._validation import available_device
from vi_vae.contract import per_point_keywords, refuse_unsplit_sequences
from vi_vae.errors import InputError
from vi_vae.support import (
    DataOutsideSupport,
    check_data_support,
    check_whole_support,
    checked_before,
    mark_checked,
)

__all__ = ["Diverged", "Points", "diverged_message", "train_step"]

logger = logging.getLogger(__name__)

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class Points:
    """Data points ``x: [N, ...]`` with the keyword arguments of model and guide.

    Attributes:
        x: the points, on the host or any device (batches are moved to ``device``).
        kwargs: keyword arguments of model and guide, on ``device``.
        per_point: the names in ``kwargs`` that are per point (module docstring).
        device: where batches go.
        batch_transform: applied to each batch of ``x`` with a generator, e.g.
            dynamic binarization.
    """

    x: Tensor
    kwargs: dict[str, Any]
    per_point: frozenset[str]
    device: torch.device
    batch_transform: BatchTransform | None = None

    @classmethod
    def checked(
        cls,
        name: str,
        x: Any,
        kwargs: Mapping[str, Any] | None,
        device: str | torch.device | None,
        batch_transform: BatchTransform | None = None,
    ) -> Points:
        """Refuse data that are not a non-empty, finite tensor of points; ``name`` names it."""
        if not isinstance(x, Tensor) or x.dim() < 1 or len(x) == 0:
            raise InputError(
                f"{name} must be a non-empty tensor with data points along dimension 0"
            )
        if x.is_floating_point() and not all_finite(x):
            raise InputError(f"{name} data contain NaN or infinite values; all must be finite")
        if kwargs is not None and not (
            isinstance(kwargs, Mapping) and all(isinstance(key, str) for key in kwargs)
        ):
            raise InputError(
                f"the keyword arguments of {name} must be a dict of argument name -> value"
            )
        kwargs = dict(kwargs or {})
        per_point = per_point_keywords(kwargs, len(x))
        what = "model_kwargs" if name == "train" else f"the {name} keyword arguments"
        refuse_unsplit_sequences(kwargs, len(x), what)
        device = available_device(device) if device is not None else x.device
        moved = {key: kwargs[key].to(device) if key in per_point else kwargs[key] for key in kwargs}
        if batch_transform is not None:
            _check_transform(batch_transform, x)
        return cls(x, moved, per_point, device, batch_transform)

    @classmethod
    def validation(
        cls, validation: Any, train: Points, pair: tuple[Callable, ...]
    ) -> Points | None:
        """``fit``'s ``validation``: data, ``(data, kwargs)`` or ``None``.

        Raises:
            InputError: where the training points have per-point keyword arguments
                (labels) that the validation points lack and model or guide requires
                (one with a default, ``ys=None``, scores unlabelled points).
        """
        if validation is None:
            return None
        x, kwargs = validation if isinstance(validation, tuple) else (validation, None)
        held_out = cls.checked("validation", x, kwargs, train.device)
        required = set().union(*(_required_keywords(function) for function in pair))
        missing = sorted((train.per_point - held_out.kwargs.keys()) & required)
        if missing:
            named = ", ".join(f"{key!r}: ..." for key in missing)
            raise InputError(
                f"model_kwargs give {missing} per training point, and the validation data "
                f"have no such keyword argument; pass validation=(x, {{{named}}}) with the "
                "validation points' own"
            )
        return held_out

    def check_support(
        self, model: Callable, guide: Callable, name: str, whole: Points | None = None
    ) -> tuple[Trace, Trace]:
        """Refuse points outside the support of the model's observed sites (naming ``name``).

        With ``whole``, the points whose first rows these are, every row of ``whole``
        is checked, at the cost of one batch where it can be: model and guide run on
        these rows, and each site that observes the data or a per-point argument as it
        is given is checked against its support on every row
        (:func:`vi_vae.support.check_whole_support`). Where a site observes something
        else (a slice or a function of the data, or has a support that depends on the
        parameters), model and guide run on the other rows too, batch by batch, once
        per data and pair until the data are written to. Data a ``batch_transform``
        changes are checked as transformed, in these rows only.

        Returns:
            the model's and the guide's traces on these rows.
        """
        try:
            traces = check_data_support(model, guide, (self.x,), self.kwargs)
            trace = traces[0]
            if whole is None or len(whole) <= len(self):
                return traces
            transformed = whole.batch_transform is not None
            rows_of = [(self.kwargs[key], whole.kwargs[key]) for key in whole.per_point]
            rows_of += [] if transformed else [(self.x, whole.x)]
            try:
                unchecked = check_whole_support(trace, rows_of)
            except DataOutsideSupport as error:
                # equal to the data on these rows, the site may observe a function of them
                # (x.round()): the model, run on the point's rows, has the last word
                batch = whole.rows(slice(error.point, error.point + len(self)))
                try:
                    check_data_support(model, guide, (batch.x,), batch.kwargs)
                except InputError:
                    raise error from None
                unchecked = [error.site]
            if unchecked and not transformed:
                whole._check_by_running(model, guide, len(self), tuple(unchecked))
        except InputError as error:
            raise InputError(f"{name} data: {error}") from None
        return traces

    def _check_by_running(
        self, model: Callable, guide: Callable, start: int, sites: tuple[str, ...]
    ) -> None:
        """Run model and guide on the points from ``start`` on, ``start`` at a time."""
        arguments = tuple((key, _Same.key(value)) for key, value in sorted(self.kwargs.items()))
        check = ("run", _Same(model), _Same(guide), arguments, sites, start)
        # the data and the per-point arguments, each as it is now (support.mark_checked)
        tensors = [self.x, *(self.kwargs[key] for key in self.per_point)]
        if all(checked_before(tensor, check) for tensor in tensors):
            return
        logger.info(
            "checking the support of points %d to %d by running the model on them (what "
            "site(s) %s observe is not the data as given)",
            start,
            len(self) - 1,
            ", ".join(sites),
        )
        for first in range(start, len(self), start):
            batch = self.rows(slice(first, first + start))
            try:
                check_data_support(model, guide, (batch.x,), batch.kwargs)
            except InputError as error:
                last = first + len(batch) - 1
                raise InputError(f"{error} (in points {first} to {last})") from None
        for tensor in tensors:
            mark_checked(tensor, check)

    def __len__(self) -> int:
        return len(self.x)

    def rows(self, index: Tensor | slice, generator: torch.Generator | None = None) -> Points:
        """The points ``index`` picks (transformed with ``generator``), on the device."""
        x = self.x[index]
        if self.batch_transform is not None and generator is not None:
            x = _transformed(self.batch_transform, x, generator)
        kwargs = {
            key: value[index] if key in self.per_point else value
            for key, value in self.kwargs.items()
        }
        return Points(x.to(self.device), kwargs, self.per_point, self.device)

    def batches(
        self, order: Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[int, Points]]:
        """``(step, batch)`` over the points in the shuffled ``order``."""
        for step, start in enumerate(range(0, len(order), batch_size)):
            yield step, self.rows(order[start : start + batch_size], generator)


def _required_keywords(function: Callable) -> set[str]:
    """The parameters of ``function`` after its first that have no default."""
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]
    except (TypeError, ValueError):  # no signature to read: its call says
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty}


def _check_transform(transform: Any, x: Tensor) -> None:
    """Refuse a ``batch_transform`` that cannot be called as ``transform(batch, generator)``."""
    try:
        inspect.signature(transform).bind(x[:1], torch.Generator())
    except TypeError:
        raise InputError(
            "batch_transform must be a function called as batch_transform(batch, generator) "
            f"that returns the transformed batch; got {transform!r}"
        ) from None
    except ValueError:  # a builtin without a signature: its first call says
        pass


def _transformed(transform: BatchTransform, x: Tensor, generator: torch.Generator) -> Tensor:
    """``transform(x, generator)``, refused unless it is a finite tensor of the batch's rows."""
    batch = transform(x, generator)
    if not isinstance(batch, Tensor) or batch.dim() < 1 or len(batch) != len(x):
        got = f"shape {list(batch.shape)}" if isinstance(batch, Tensor) else type(batch).__name__
        raise InputError(
            f"batch_transform must return a tensor with the batch's {len(x)} rows along "
            f"dimension 0; it returned {got}"
        )
    if batch.is_floating_point() and not all_finite(batch):
        raise InputError("batch_transform returned NaN or infinite values; all must be finite")
    return batch


def all_finite(x: Tensor) -> bool:
    """Whether every value of the floating-point ``x`` is finite.

    The smallest and the largest value are finite exactly when all are (a NaN
    anywhere makes both NaN, ``torch.aminmax`` propagates it; an infinity is
    the one or the other): one reduction without a boolean copy of ``x``, a
    fraction of ``torch.isfinite(x).all()``'s time on a whole training set.
    """
    if x.numel() == 0:
        return True
    smallest, largest = torch.aminmax(x)
    return bool(torch.isfinite(smallest) & torch.isfinite(largest))


class _Same:
    """An object in a check's key: equal to another while both refer to one live object.

    It holds a weak reference (a ``WeakMethod`` for a bound method, which Python makes
    anew at each attribute access), so that a key neither keeps a model alive nor
    matches a new object that a freed one's address was reused for.
    """

    def __init__(self, value: Any) -> None:
        self.id = id(getattr(value, "__self__", value)), id(getattr(value, "__func__", value))
        try:
            self.ref = weakref.WeakMethod(value) if inspect.ismethod(value) else weakref.ref(value)
        except TypeError:  # not weakly referable: never the same as another key
            self.ref = lambda: None

    @staticmethod
    def key(value: Any) -> Hashable:
        """A plain value as it is, a tensor as itself at its version, anything else a ``_Same``."""
        if isinstance(value, (bool, int, float, str, type(None))):
            return value
        return (_Same(value), value._version) if isinstance(value, Tensor) else _Same(value)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Same) or self.id != other.id:
            return False
        mine, theirs = self.ref(), other.ref()
        return mine is not None and theirs is not None and (mine is theirs or mine == theirs)


class Diverged(Exception):
    """A step's loss or parameters are not finite; the message says which."""


def train_step(svi: SVI, batch: Points, validate: bool = True) -> float:
    """One SVI step on ``batch``; its loss (summed over the batch).

    With ``validate=False`` the step runs without Pyro's and torch's validity
    checks (``pyro.validation_enabled(False)``: each distribution's arguments and
    samples, the sites' shapes, the model/guide match, NaN warnings), which
    change no number. ``fit`` checks its data once when they enter it and
    validates the first step of every epoch; the other steps skip the checks,
    which cost a few whole-batch comparisons per site and step. A non-finite
    value in an unchecked step still ends as a non-finite loss.

    Raises:
        Diverged: when the loss is not finite, or when a distribution refused
            non-finite parameters (Pyro's argument validation runs before the
            loss is NaN).
    """
    checks = contextlib.nullcontext() if validate else pyro.validation_enabled(False)
    try:
        with warnings.catch_warnings(), checks:
            # a non-finite loss becomes a TrainingError in fit, not a warning as well
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            value = svi.step(batch.x, **batch.kwargs)
    except ValueError as error:
        if parameters_finite() and not _raised_by_argument_validation(error):
            raise
        raise Diverged(f"non-finite values ({str(error).splitlines()[0][:120]})") from error
    if not math.isfinite(value):
        raise Diverged(f"non-finite loss ({value})")
    return value


def _raised_by_argument_validation(error: BaseException) -> bool:
    """Whether ``error`` or an error it wraps came from a distribution's argument check.

    Pyro re-raises an error of a site with the trace's shapes, so the chain of
    causes is followed to the frame of ``torch.distributions.Distribution.__init__``.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback = error.__traceback__
        while traceback is not None:
            code = traceback.tb_frame.f_code
            if code.co_name == "__init__" and code.co_filename == _DISTRIBUTION_FILE:
                return True
            traceback = traceback.tb_next
        error = error.__cause__ or error.__context__
    return False


#: the module whose ``Distribution.__init__`` validates distribution arguments
_DISTRIBUTION_FILE = torch.distributions.distribution.__file__


def diverged_message(
    what: str, epoch: int, step: int, steps: int, state: TrainingState, sink: Any
) -> str:
    """Where training diverged, where its last checkpoint is, and what to try."""
    where = f"{what} at epoch {epoch}, step {step + 1} of {steps}"
    if state.history and sink is not None:
        where += f"; the checkpoint of epoch {state.last_epoch} is kept in {sink}"
    if not state.history and step == 0:
        return (
            f"{where}: the loss is not finite for the initial parameters, before any update; "
            "check the data and the settings (e.g. a kl_weight so large that the KL term "
            "overflows)"
        )
    return f"{where}; try a smaller learning_rate"
