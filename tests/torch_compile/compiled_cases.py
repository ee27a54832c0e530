"""Tiny models for the compiled-path tests: compiling is their cost, so they are small."""

import torch

from vi_vae import VAE

#: the VAE template, as small as it goes: 6 binary pixels, 2 latent dims, 5 hidden units
TINY_VAE = {"input_dim": 6, "latent_dim": 2, "hidden_sizes": (5,)}


def tiny_vae(latent_family="normal", seed=0):
    return VAE(**TINY_VAE, latent_family=latent_family, seed=seed)


def binary_data(num_points, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(
        torch.full((num_points, TINY_VAE["input_dim"]), 0.4), generator=generator
    )
