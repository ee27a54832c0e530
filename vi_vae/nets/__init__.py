"""Encoder and decoder networks."""

from vi_vae.nets.conv import CONV_CHANNELS, ConvDecoder, ConvEncoder
from vi_vae.nets.mlp import ACTIVATIONS, MLP

__all__ = ["ACTIVATIONS", "CONV_CHANNELS", "MLP", "ConvDecoder", "ConvEncoder"]
