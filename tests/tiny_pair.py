"""The smallest VAE template pair the settings and execution tests call: 4 inputs, 2 latents.

Its numbers mean nothing; the tests compare two calls on it with each other.
"""

import torch

from vi_vae import VAE

VAE_4 = VAE(input_dim=4, latent_dim=2, hidden_sizes=(8,), seed=0)
X = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
