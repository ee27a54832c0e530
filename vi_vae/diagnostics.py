"""Deprecated since vi_vae 0.2: the diagnostics live in :mod:`vi_vae.evaluation`."""

from vi_vae._deprecation import warn_renamed
from vi_vae.evaluation import (
    ACTIVE_UNIT_THRESHOLD,
    ActiveUnits,
    GradientSNR,
    active_units,
    gradient_snr,
    to_inference_data,
)

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "ActiveUnits",
    "GradientSNR",
    "active_units",
    "gradient_snr",
    "to_inference_data",
]

warn_renamed("vi_vae.diagnostics", "vi_vae.evaluation (or the names exported by vi_vae)", 2)
