"""Encoder and decoder networks."""

from vi_vae.nets.mlp import ACTIVATIONS, MLP

__all__ = ["ACTIVATIONS", "MLP"]
