"""The torch modules a call runs, found as it runs them, wherever they are held.

A model/guide pair holds its networks in a ``PyroModule``, registers them with
``pyro.module`` or closes over them: there is no one place to look them up. A
global forward pre-hook sees each module as the pair calls it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["RANDOM_OR_BATCHWISE", "modules_called"]

#: the layers whose output in training mode is random (dropout) or depends on the other
#: rows of the batch (batch normalization)
RANDOM_OR_BATCHWISE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


@contextlib.contextmanager
def modules_called(eval_mode: bool = False) -> Iterator[dict[nn.Module, bool]]:
    """Collect every torch module called inside the block, with its mode at its first call.

    Args:
        eval_mode: also run each in eval mode inside the block (switched at its first
            call), and put each back in its own mode on leaving.

    Yields:
        The modules called so far, in the order of their first call, each with its mode
        (``module.training``) as it was found.
    """
    modes: dict[nn.Module, bool] = {}

    def first_call(module: nn.Module, _: Any) -> None:
        if module not in modes:
            modes[module] = module.training
            if eval_mode:
                module.training = False

    hook = torch.nn.modules.module.register_module_forward_pre_hook(first_call)
    try:
        yield modes
    finally:
        hook.remove()
        for module, mode in modes.items() if eval_mode else ():
            module.training = mode
