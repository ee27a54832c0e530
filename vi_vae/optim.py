"""Pyro optimizers that step every parameter with one torch optimizer: one step per SVI step.

``pyro.optim.PyroOptim`` builds one torch optimizer per parameter and steps them
one by one, so an SVI step of a model with P parameters pays P optimizer steps'
fixed costs (argument handling, profiler records, one call of the update per
tensor). :class:`SingleOptimizer` keeps one torch optimizer over every parameter
it has seen and takes one step, with the same updates to the last bit and the
same per-parameter state in ``get_state``/``set_state``, so checkpoints move
between the two in both directions. :func:`vi_vae.fit` trains with
:func:`Adam` by default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import pyro
import torch
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam as PyroClippedAdam
from torch import Tensor
from torch.optim import Optimizer

from vi_vae._validation import check_bool
from vi_vae.errors import InputError

__all__ = ["Adam", "ClippedAdam", "SingleOptimizer"]

#: what ``optim_args`` and ``clip_args`` may be, as in ``pyro.optim.PyroOptim``
OptimArgs = dict[str, Any] | Callable[..., dict[str, Any]]


class SingleOptimizer(PyroOptim):
    """``pyro.optim.PyroOptim`` with ONE torch optimizer over all parameters, not one each.

    A drop-in for ``PyroOptim(optim_constructor, optim_args, clip_args)``: for
    any optimizer that updates each parameter from its own state and its group's
    settings (every ``torch.optim`` optimizer but LBFGS, Pyro's ``ClippedAdam``)
    the parameters are bitwise those Pyro's per-parameter optimizers give:

    - a parameter joins the optimizer the first time it is stepped, in a
      parameter group with its own ``optim_args`` (a callable ``optim_args`` is
      called with the parameter's name, as Pyro does), sharing a group with the
      parameters whose settings are identical; state waiting from
      :meth:`set_state` is loaded into it then, as Pyro does;
    - a parameter seen before but not among the ``params`` of a step is not
      touched by that step: the step runs over views of the groups that hold only
      the stepped parameters, and a group whose settings the step changes (e.g.
      ``ClippedAdam``'s learning-rate decay) is split, so that the settings of
      each parameter follow its own steps;
    - ``clip_args`` clip each parameter's gradient on its own, as Pyro does;
    - :meth:`get_state` returns Pyro's format, ``{parameter name: the state dict
      of a one-parameter torch optimizer}``, which ``pyro.optim`` optimizers load,
      and :meth:`set_state` takes it.

    The implementation is the one ``optim_args`` choose (``foreach`` or ``fused``;
    torch's choice when they name neither) and stays this optimizer's: state
    loaded by :meth:`set_state` brings its numbers, not another optimizer's choice
    of implementation. A ``closure`` passed to a step is called once, not once
    per parameter.

    After its step it sets the stepped parameters' ``.grad`` to ``None``, as
    torch's ``zero_grad(set_to_none=True)`` does (``set_to_none=False`` leaves
    them): SVI's zeroing of the gradients after the step then has nothing to do,
    and the next backward pass writes new gradients instead of adding them to
    zeros, the same values (0 + g = g; only the sign of a zero can differ).

    Args:
        optim_constructor: a ``torch.optim.Optimizer`` subclass, or a callable
            ``(params, **optim_args) -> Optimizer`` (not a learning-rate scheduler).
        optim_args: the optimizer's keyword arguments, or a callable that returns
            them for a parameter name (``name -> dict``, or Pyro's deprecated
            ``(module_name, param_name) -> dict``).
        clip_args: ``{"clip_norm": ..., "clip_value": ...}`` for each parameter's
            gradient, or a callable ``(module_name, param_name) -> dict``.
        set_to_none: set the ``.grad`` of the stepped parameters to ``None`` after
            the step (``False``: leave them for SVI to zero, as Pyro's optimizers do).

    Raises:
        InputError: ``optim_args`` or ``clip_args`` that are neither a dict nor a
            callable, or a constructor that does not return a ``torch.optim.Optimizer``.

    Example:
        >>> import pyro.distributions as dist
        >>> from pyro.infer import SVI, Trace_ELBO
        >>> def model(x):
        ...     loc = pyro.param("loc", torch.zeros(()))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
        >>> pyro.clear_param_store()
        >>> optimizer = SingleOptimizer(torch.optim.Adam, {"lr": 0.1})
        >>> svi = SVI(model, lambda x: None, optimizer, Trace_ELBO())
        >>> losses = [svi.step(torch.full((10,), 2.0)) for _ in range(200)]
        >>> round(pyro.param("loc").item(), 2), list(optimizer.get_state())
        (2.0, ['loc'])
    """

    def __init__(
        self,
        optim_constructor: Callable[..., Optimizer],
        optim_args: OptimArgs,
        clip_args: OptimArgs | None = None,
        *,
        set_to_none: bool = True,
    ) -> None:
        check_bool("set_to_none", set_to_none)
        for name, value in (("optim_args", optim_args), ("clip_args", clip_args)):
            if not (value is None or isinstance(value, dict) or callable(value)):
                raise InputError(
                    f"{name} must be a dict of keyword arguments or a callable returning one "
                    f"per parameter name, not {type(value).__name__}"
                )
        super().__init__(optim_constructor, optim_args, clip_args)
        #: the one torch optimizer, built when the first parameter is stepped
        self.optimizer: Optimizer | None = None
        self.set_to_none = set_to_none

    def __call__(self, params: Iterable[Tensor], *args: Any, **kwargs: Any) -> None:
        """Take one optimizer step on ``params`` (each once), adding those not seen before.

        Args:
            params: the parameters to update, e.g. those of an SVI step's trace.
            *args: passed to the torch optimizer's ``step`` (a closure).
            **kwargs: passed to the torch optimizer's ``step``.
        """
        params = list(dict.fromkeys(params))  # tensors hash by identity
        for param in params:
            if param not in self.optim_objs:
                self._add(param)
        for param in params:
            clip = self.grad_clip[param]
            if clip is not None:
                clip(param)
        if not params:
            return
        assert self.optimizer is not None
        if len(params) == len(self.optim_objs):  # every parameter seen so far: one plain step
            self.optimizer.step(*args, **kwargs)
        else:
            self._step_some(params, *args, **kwargs)
        if self.set_to_none:
            for param in params:
                param.grad = None

    def get_state(self) -> dict[str, dict[str, Any]]:
        """Pyro's per-parameter state: ``{name: a one-parameter optimizer's state dict}``.

        The state tensors are the optimizer's own (as in ``Optimizer.state_dict``),
        not copies. ``pyro.optim`` optimizers and :meth:`set_state` load it.
        """
        if self.optimizer is None:
            return {}
        settings = {}
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                settings[param] = _settings(group)
        store = pyro.get_param_store()
        state = self.optimizer.state
        return {
            store.param_name(param): {
                "state": {0: state[param]} if param in state else {},
                "param_groups": [{**settings[param], "params": [0]}],
            }
            for param in self.optim_objs
        }

    def _add(self, param: Tensor) -> None:
        """Give ``param`` a group (its settings, any waiting state) in the one optimizer."""
        # A one-parameter optimizer built exactly as Pyro builds it fills in the
        # defaults and loads a waiting state with torch's own casts; its group and
        # state then move into the shared optimizer.
        alone = self.pt_optim_constructor([param], **self._get_optim_args(param))
        if not isinstance(alone, Optimizer):
            raise InputError(
                "optim_constructor must build a torch.optim.Optimizer from (params, "
                f"**optim_args); it built a {type(alone).__name__} (for a learning-rate "
                "scheduler use pyro.optim's schedulers)"
            )
        waiting = self._state_waiting_to_be_consumed.pop(
            pyro.get_param_store().param_name(param), None
        )
        if waiting is not None:
            group = alone.param_groups[0]
            chosen = {key: group[key] for key in _IMPLEMENTATION if key in group}
            alone.load_state_dict(waiting)
            alone.param_groups[0].update(chosen)
        if self.optimizer is None:
            self.optimizer = alone
        else:
            group = alone.param_groups[0]
            settings = _settings(group)
            same = [g for g in self.optimizer.param_groups if _same(_settings(g), settings)]
            if same:
                same[0]["params"].append(param)
            else:
                self.optimizer.add_param_group(group)
            if param in alone.state:
                self.optimizer.state[param] = alone.state[param]
        self.optim_objs[param] = self.optimizer
        self.grad_clip[param] = self._get_grad_clip(param)

    def _step_some(self, params: list[Tensor], *args: Any, **kwargs: Any) -> None:
        """Step only ``params``: the others neither move nor change their group's settings."""
        assert self.optimizer is not None
        stepped = set(params)
        groups = self.optimizer.param_groups
        views = {}
        for index, group in enumerate(groups):
            members = [p for p in group["params"] if p in stepped]
            if members:
                views[index] = {**group, "params": members}
        self.optimizer.param_groups = list(views.values())
        try:
            self.optimizer.step(*args, **kwargs)
        finally:
            self.optimizer.param_groups = groups
        for index, view in views.items():
            group = groups[index]
            changed = {k: v for k, v in _settings(view).items() if group.get(k) is not v}
            if not changed:
                continue
            if len(view["params"]) == len(group["params"]):
                group.update(changed)
            else:  # the stepped parameters' settings moved on: they leave for a group of their own
                group["params"] = [p for p in group["params"] if p not in stepped]
                groups.append(view)


#: the settings of torch's optimizers that choose how a step is computed, not its numbers
_IMPLEMENTATION = ("foreach", "fused")


def _settings(group: dict[str, Any]) -> dict[str, Any]:
    """A parameter group's settings: everything but its parameters."""
    return {key: value for key, value in group.items() if key != "params"}


def _same(settings: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two groups' settings are equal (tensors by identity: shared, not copied)."""
    if settings.keys() != other.keys():
        return False
    for key, value in settings.items():
        if value is other[key]:
            continue
        if isinstance(value, Tensor) or isinstance(other[key], Tensor):
            return False
        if type(value) is not type(other[key]) or value != other[key]:
            return False
    return True


def Adam(optim_args: OptimArgs, clip_args: OptimArgs | None = None) -> SingleOptimizer:
    """``pyro.optim.Adam`` with one torch optimizer: a :class:`SingleOptimizer` of torch's Adam.

    The same parameters, bit for bit, as ``pyro.optim.Adam(optim_args, clip_args)``,
    and checkpoints of either load into the other; faster, as the update is one
    optimizer step over every parameter instead of one step per parameter, with
    torch's multi-tensor (``foreach``) Adam unless ``optim_args`` choose otherwise:
    on CPU it is the per-tensor loop's arithmetic in the same order, so the same
    bits (tested), and on a GPU torch's default. On CPU it takes about the loop's
    share of a ``fit`` epoch (``python benchmarks/adam_share.py``).

    ``{"fused": True}`` in ``optim_args`` opts into torch's fused Adam kernel
    (``fit(..., optimizer=Adam({"lr": 1e-3, "fused": True}))``), about half the loop's
    time inside ``fit`` on CPU (the same script) but not bitwise equal: it rounds
    each update differently, so one step from the same state gives a parameter
    within ``4 ε (|θ| + |Δθ|)`` of the loop's (ε the dtype's machine epsilon, θ
    the parameter, Δθ its update; ``tests/test_optim.py`` checks it), and such
    differences grow through training as any rounding difference does.

    Args:
        optim_args: ``torch.optim.Adam``'s keyword arguments, e.g. ``{"lr": 1e-3}``,
            or a callable returning them per parameter name.
        clip_args: optional per-parameter gradient clipping, as in ``pyro.optim``.

    Example:
        >>> optimizer = Adam({"lr": 1e-3})
        >>> type(optimizer).__name__, optimizer.pt_optim_constructor.__name__
        ('SingleOptimizer', 'Adam')
    """
    return SingleOptimizer(torch.optim.Adam, _multi_tensor(optim_args), clip_args)


def _multi_tensor(optim_args: OptimArgs) -> OptimArgs:
    """``optim_args`` with ``foreach=True`` where they choose no implementation."""
    if isinstance(optim_args, dict):
        if any(key in optim_args for key in _IMPLEMENTATION):
            return optim_args
        return {**optim_args, "foreach": True}
    if callable(optim_args):
        # wraps: Pyro reads the user's signature (one name, or the deprecated two) through it
        @functools.wraps(optim_args)
        def chosen(*names: str) -> dict[str, Any]:
            return _multi_tensor(optim_args(*names))

        return chosen
    return optim_args  # refused by SingleOptimizer, naming optim_args


def ClippedAdam(optim_args: OptimArgs) -> SingleOptimizer:
    """``pyro.optim.ClippedAdam`` with one torch optimizer.

    Pyro's :class:`pyro.optim.clipped_adam.ClippedAdam` clamps each gradient
    element to ``[-clip_norm, clip_norm]`` and multiplies the learning rate by
    ``lrd`` at every step of a parameter; here too, per parameter (a parameter
    left out of a step keeps its learning rate).

    Args:
        optim_args: ClippedAdam's keyword arguments (``lr``, ``betas``, ``clip_norm``,
            ``lrd``, ...), or a callable returning them per parameter name.

    Example:
        >>> optimizer = ClippedAdam({"lr": 1e-3, "lrd": 0.999})
        >>> optimizer.pt_optim_constructor.__name__
        'ClippedAdam'
    """
    return SingleOptimizer(PyroClippedAdam, optim_args)
