"""Pyro's param store and the names of a module tree's parameters.

Pyro's param store maps each ``pyro.param`` name to one tensor;
:func:`claim_parameter_names` makes the names of a
:class:`~vi_vae.VAE`'s PyroModule parameters mean its own tensors again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyro
from torch import nn

__all__ = ["claim_parameter_names", "module_dicts"]


def claim_parameter_names(root: nn.Module) -> None:
    """Make Pyro's param store hold ``root``'s parameters under their names.

    The store keeps one tensor per name, the first registered: a second VAE with
    the same names (another run loaded in the same process) would have its
    ``param`` sites record the first one's tensors while its networks compute with
    its own, so whatever reads parameters from a trace (gradient SNRs, Pyro's
    optimizers) would see tensors the loss does not depend on. The VAE whose
    model or guide runs takes its names back; with one VAE nothing changes.
    """
    store = pyro.get_param_store()
    for state in module_dicts(root):
        prefix = state.get("_pyro_name")
        if prefix is None:  # not a PyroModule: Pyro names its parameters otherwise
            continue
        for name, parameter in state["_parameters"].items():
            fullname = f"{prefix}.{name}" if prefix else name
            held = store._params.get(fullname)
            if held is None or held is parameter or parameter is None:
                continue
            store._param_to_name.pop(held, None)
            store._params[fullname] = parameter
            store._param_to_name[parameter] = fullname


def module_dicts(root: nn.Module) -> Iterator[dict[str, Any]]:
    """The ``__dict__`` of ``root`` and of every module below it.

    The module tree by hand: ``root.modules()`` costs more than a step's sampling,
    and the per-step callers (:func:`claim_parameter_names`, the replayed step's
    state) read only the dicts.
    """
    pending = [root]
    while pending:
        state = pending.pop().__dict__
        pending.extend(child for child in state["_modules"].values() if child is not None)
        yield state
