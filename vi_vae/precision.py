"""Whether a pair computes its log densities precisely enough for an estimate of log p(x).

log p(x, z) sums hundreds of terms, one per pixel, and an estimate of log p(x) is
quoted to a tenth of a nat with a standard error of hundredths. Two things round those
terms by more than that without a word: log densities computed in half precision
(networks in ``bfloat16`` or ``float16``, ``torch.autocast``), which the evaluators
refuse, and TF32 products or convolutions on a GPU, of which they warn. Both are
checked on the evaluators' first rows (:mod:`vi_vae.evaluated_pair`). ``fit`` warns
of the first where it rounds the validation ELBO that early stopping compares.
"""

from __future__ import annotations

import warnings

import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import nn

from vi_vae.errors import InputError, LowPrecisionWarning, TF32Warning

__all__ = [
    "LOW_PRECISION",
    "refuse_low_precision",
    "warn_of_low_precision_validation",
    "warn_of_tf32",
]

#: float dtypes too narrow for a log density, with their bits of precision
LOW_PRECISION = {torch.bfloat16: 8, torch.float16: 11}


def warn_of_tf32(device: torch.device, modules: list[nn.Module]) -> None:
    """Warn (:class:`~vi_vae.errors.TF32Warning`) where a GPU would compute the pair in TF32.

    ``modules``: those the pair called; a convolution among them runs in TF32 under
    cuDNN's default (``torch.backends.cudnn.allow_tf32``), and every matrix product does
    where torch was told to allow it.
    """
    if device.type != "cuda":
        return
    products = (
        torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    )
    convolutions = torch.backends.cudnn.allow_tf32 and any(
        isinstance(module, nn.modules.conv._ConvNd) for module in modules
    )
    if products or convolutions:
        what = " and ".join(
            name
            for name, used in (("matrix products", products), ("convolutions", convolutions))
            if used
        )
        flags = "torch.backends.cudnn.allow_tf32 = False" if convolutions else ""
        if products:
            flags += (" and " if flags else "") + (
                "torch.backends.cuda.matmul.allow_tf32 = False with "
                "torch.set_float32_matmul_precision('highest')"
            )
        warnings.warn(
            f"the pair's {what} run in TF32 on this GPU (10 bits of mantissa): a log p(x) "
            f"sums hundreds of terms computed from them and carries their rounding; set "
            f"{flags} for float32",
            TF32Warning,
            stacklevel=4,
        )


def refuse_low_precision(model_trace: Trace, guide_trace: Trace) -> None:
    """Refuse a site whose log density comes in a half-precision dtype.

    log p(x, z) sums hundreds of terms (one per pixel): in bfloat16 a Bernoulli
    likelihood of 784 pixels near -1074 nats is stored to the nearest multiple of 8,
    its sum off by several nats, far beyond any standard error the estimate reports.
    """
    found = _low_precision_site(model_trace, guide_trace)
    if found is not None:
        raise InputError(
            f"{found}, far beyond the estimate's standard error; evaluate in float32 or "
            "float64: the networks and x in float32 (module.float(), x.float()), outside "
            "torch.autocast"
        )


def warn_of_low_precision_validation(model_trace: Trace, guide_trace: Trace) -> None:
    """Warn (:class:`~vi_vae.errors.LowPrecisionWarning`) of a validation ELBO in half precision.

    The traces are those of the pair on the validation data. Training in half precision
    is the user's choice; but the validation ELBO that early stopping and the best epoch
    compare, and the history reports, is then rounded by nats.
    """
    found = _low_precision_site(model_trace, guide_trace)
    if found is not None:
        warnings.warn(
            f"{found}: the validation ELBO that early stopping and the best epoch compare "
            "carries that rounding, and epochs closer than it are ordered by chance; train "
            "in float32 for a validation ELBO to a tenth of a nat",
            LowPrecisionWarning,
            stacklevel=4,
        )


def _low_precision_site(model_trace: Trace, guide_trace: Trace) -> str | None:
    """What rounds the pair's log density by nats: its first site in half precision."""
    for trace, which in ((model_trace, "model"), (guide_trace, "guide")):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            dtype = site["fn"].log_prob(site["value"]).dtype
            if dtype in LOW_PRECISION:
                return (
                    f"the {which}'s log density at site {name!r} is computed in {dtype}, "
                    f"whose {LOW_PRECISION[dtype]} bits of precision round a log density of "
                    "hundreds of terms by nats (a 784-pixel Bernoulli near -1074 nats is "
                    "stored in bfloat16 as a multiple of 8)"
                )
    return None
