"""Eager training without Pyro's per-step bookkeeping: trace once, replay, the same bits.

An eager SVI step runs model and guide through Pyro's stack of handlers: each
``pyro.param`` of each PyroModule parameter and each plate and sample site passes
through it, about a millisecond a step whatever the size of the networks (a tenth
of an MNIST MLP's step, ``benchmarks/issue_targets.py``). :func:`vi_vae.fit`
replays the step instead where it can prove that the Python around the tensor
operations does the same on every step of one batch shape:

- the pair is a :class:`~vi_vae.VAE`'s own ``model`` and ``guide`` (not a
  subclass's), whose control flow depends on shapes and on settings fixed when
  it was built;
- every module in it, its likelihood and its latent family are vi_vae's, Pyro's
  or torch's code with neither randomness nor state of its own (no dropout, no
  batch norm: :data:`OWN_CODE` lists the modules that code may come from).

Such a step is traced once per batch shape (:func:`vi_vae.compiled.trace_pure`)
and its ATen graph runs as it is, without ``torch.compile``
(``CompiledCache(replay=True)``): the same operations in the same order as the
eager step, so the same numbers to the last bit and the same draws from torch's
generator (``tests/test_replay.py`` checks both against Pyro's eager step). A
(pair, batch shape) is traced once it has taken :data:`REPLAY_AFTER_STEPS` eager
steps in this process, so that a short fit never pays for a trace; a pair that
cannot be traced (a latent family drawn by ``_standard_gamma``) goes on stepping
eagerly. The KL weight is a tensor read by reference (``KLWeight``), so a warm-up
is replayed too. The VAE's Python state is part of the replayed step's key
(:func:`python_state`): a setting changed or a hook registered between steps or
between fits is seen, not replayed over.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Hashable
from typing import Any

import torch
from pyro.infer.elbo import ELBO as PyroELBO
from torch import Tensor

from vi_vae._param_names import module_dicts
from vi_vae.compiled import CompiledCache
from vi_vae.estimators.particle_estimator import ParticleEstimator
from vi_vae.model import VAE

__all__ = ["OWN_CODE", "REPLAY_AFTER_STEPS", "python_state", "replayable", "replaying"]

#: eager steps of a (pair, batch shape) in this process before it is traced: a trace of
#: an MNIST MLP step costs about 0.15 s, what 150 steps save
REPLAY_AFTER_STEPS = 200
#: where the code of a replayed VAE's classes and functions may come from (a name ending
#: in "." is a package, any other one module): vi_vae, the PyroModule machinery, Pyro's
#: autoregressive networks, distributions and transforms, torch's distributions and
#: stateless layers (torch.nn.modules' dropout and normalization modules are not here)
OWN_CODE = (
    "vi_vae.",
    "pyro.nn.module",
    "pyro.nn.auto_reg_nn",
    "pyro.nn.dense_nn",
    "pyro.distributions.",
    "torch.distributions.",
    "torch.nn.modules.module",
    "torch.nn.modules.linear",
    "torch.nn.modules.conv",
    "torch.nn.modules.activation",
    "torch.nn.modules.container",
    "torch.nn.modules.flatten",
    "torch.nn.functional",
    "torch",
)
#: the eager steps replayed in this process, by pair, estimator and batch shape; two pairs
#: (a VAE's, and the same under a KL weight), so that it keeps no more models alive
_REPLAYED = CompiledCache(replay=True, trace_after=REPLAY_AFTER_STEPS, max_groups=2)


def replaying(loss: PyroELBO, model: Callable, guide: Callable) -> PyroELBO:
    """``loss`` replaying its eager steps of the pair (module docstring), or ``loss`` itself.

    A copy of one of vi_vae's estimators (without ``compile``) when the pair is
    :func:`replayable`; any other loss is returned as it is.
    """
    if not isinstance(loss, ParticleEstimator) or loss.compile or not replayable(model, guide):
        return loss
    replayed = copy.copy(loss)
    replayed._replay = _REPLAYED
    replayed._replay_state = functools.partial(python_state, model.__self__)
    return replayed


def python_state(vae: VAE) -> tuple | None:
    """What a replayed step would not see change: the VAE's Python state, as a key.

    For the VAE, each of its modules, its likelihood and its latent family: plain
    values (numbers, strings, tuples of them) by value, containers by identity and
    length, any other object by identity. Tensors are left out (the trace reads
    them by reference), and so are submodules (each has its own entries). A
    replayed step runs only under the key its trace was taken with; any change is
    a new key, stepped eagerly and traced anew after :data:`REPLAY_AFTER_STEPS`
    steps. About 0.04 ms a step for an MLP.

    Returns:
        the key, or ``None`` while a module hook is registered (on one of the
        VAE's modules or for all modules): a hook is Python run on every forward
        or backward pass, which a replay would skip, so such steps run eagerly.
    """
    if any(_global_hooks()):
        return None
    state = []
    for entries in (vars(vae.likelihood), vars(vae.latent_family), *module_dicts(vae)):
        if any(entries.get(name) for name in _HOOKS):
            return None
        for name, value in entries.items():
            if name not in _NOT_STATE and not isinstance(value, Tensor):
                state.append((name, _value_key(value)))
    return tuple(state)


#: the entries of a module's ``__dict__`` that torch keeps for every module (its tensors,
#: submodules, hooks and state-dict machinery), but ``training``: not what a step reads
_NOT_STATE = frozenset(vars(torch.nn.Module())) - {"training"}
#: the entries of a module's ``__dict__`` that hold hooks run on its passes
_HOOKS = frozenset(
    {"_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"}
)


def _global_hooks() -> tuple:
    hooks = torch.nn.modules.module
    return (
        hooks._global_forward_hooks,
        hooks._global_forward_pre_hooks,
        hooks._global_backward_hooks,
        hooks._global_backward_pre_hooks,
    )


_PLAIN = (bool, int, float, str, bytes, type(None))


def _value_key(value: Any) -> Hashable:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, tuple) and all(isinstance(item, _PLAIN) for item in value):
        return value
    if isinstance(value, (dict, list, set)):
        return id(value), len(value)
    return id(value)


def replayable(model: Callable, guide: Callable) -> bool:
    """Whether every step of ``model``/``guide`` does the same Python per batch shape."""
    vae = getattr(model, "__self__", None)
    if not isinstance(vae, VAE) or getattr(guide, "__self__", None) is not vae:
        return False
    if getattr(model, "__func__", None) is not VAE.model:
        return False
    if getattr(guide, "__func__", None) is not VAE.guide:
        return False
    return all(_own_code(part) for part in (*vae.modules(), vae.likelihood, vae.latent_family))


def _own_code(part: Any) -> bool:
    """Whether the classes of ``part`` and the callables it holds are :data:`OWN_CODE`'s."""
    classes = [kind for kind in type(part).__mro__ if kind.__module__ not in ("builtins", "abc")]
    held = [value for value in vars(part).values() if callable(value)]
    return all(_from_own_code(getattr(value, "__module__", None)) for value in classes + held)


def _from_own_code(module: str | None) -> bool:
    return module is not None and any(
        module.startswith(name) if name.endswith(".") else module == name for name in OWN_CODE
    )
