"""The ``vi-vae`` command: the only layer that knows flags and prints."""

from vi_vae.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
