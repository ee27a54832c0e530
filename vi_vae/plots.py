"""Deprecated since vi_vae 0.2: the figures live in :mod:`vi_vae.app.plots`."""

from vi_vae._deprecation import warn_renamed
from vi_vae.app.plots import *  # noqa: F403
from vi_vae.app.plots import __all__  # noqa: F401

warn_renamed("vi_vae.plots", "vi_vae.app.plots", 2)
