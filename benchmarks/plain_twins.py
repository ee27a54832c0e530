"""Hand-written plain-PyTorch twins of vi_vae's SVI steps and evaluator, for compiled.py.

Same networks and initial weights as the VAE template, the default family's
parameter maps, the same reparameterized draws and surrogates, torch's Adam.
"""

import math

import torch
import torch.nn.functional as F
from step_time import HIDDEN, INPUT_DIM, LATENT, normal_parameters
from torch import nn


def plain_networks(vae, device):
    encoder = nn.Sequential(nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM))
    encoder.load_state_dict(vae.encoder.state_dict())
    decoder.load_state_dict(vae.decoder.state_dict())
    return encoder.to(device), decoder.to(device)


def log_weights(encoder, decoder, x, num_particles, path_derivative=False):
    """log w [K, B] of the default family and a Bernoulli likelihood, as vi_vae computes it."""
    loc, scale = normal_parameters(encoder(x))
    z = loc + scale * torch.randn(num_particles, *loc.shape, device=x.device)
    if path_derivative:  # log q with its parameters held fixed: the path derivative only
        loc, scale = loc.detach(), scale.detach()
    log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = decoder(z)
    log_likelihood = -F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
    return log_likelihood + log_prior - log_q


def plain_step(encoder, decoder, optimizer, x, num_particles, gradient):
    """One training step written in plain PyTorch: the twin of a vi_vae SVI step.

    Without an optimizer, only the loss and the gradients (set, as after ``zero_grad``).
    """
    for parameter in [*encoder.parameters(), *decoder.parameters()]:
        parameter.grad = None
    if gradient == "iwae":  # the reparameterized gradient of the bound (ELBO for K = 1)
        values = log_weights(encoder, decoder, x, num_particles)
        loss = -(values.logsumexp(0) - math.log(num_particles)).sum()
        loss.backward()
    else:  # DReG: squared normalized weights on the path derivative for the encoder
        values = log_weights(encoder, decoder, x, num_particles, path_derivative=True)
        normalized = values.detach().softmax(0)
        encoder_parameters, decoder_parameters = (
            list(encoder.parameters()),
            list(decoder.parameters()),
        )
        encoder_gradients = torch.autograd.grad(
            -(normalized.square() * values).sum(), encoder_parameters, retain_graph=True
        )
        decoder_gradients = torch.autograd.grad(-(normalized * values).sum(), decoder_parameters)
        parameters = encoder_parameters + decoder_parameters
        for parameter, grad in zip(parameters, encoder_gradients + decoder_gradients, strict=True):
            parameter.grad = grad
        loss = -(values.detach().logsumexp(0) - math.log(num_particles)).sum()
    if optimizer is not None:
        optimizer.step()
    return loss
