"""Pythae twins of vi_vae's VAE template: its trainer and its log p(x), over the same networks.

Pythae (``pip install pythae``) is optional: :func:`available` says whether it
imports, and nothing here imports it before a twin is built. The twin is
Pythae's ``VAE`` with the template's two networks (784-400-20, the same initial
weights, :func:`plain_twins.plain_networks`) in its ``BaseEncoder`` /
``BaseDecoder`` wrappers: the encoder's 2 × 20 outputs are Pythae's mean and log
variance, the decoder's logits go through a sigmoid for its Bernoulli ("bce")
likelihood. Its loss is Pythae's (analytic KL, mean over the batch); the timed
work per step is the same two networks forward and backward and one Adam step.
"""

import importlib.metadata
import importlib.util
import logging
import tempfile

import torch
from plain_twins import plain_networks
from step_time import INPUT_DIM, LATENT

#: Pythae's ``get_nll`` default: importance samples per forward pass
GET_NLL_BATCH = 100


def available():
    return importlib.util.find_spec("pythae") is not None


def describe():
    """Which Pythae the twins ran on, or how to get one, for a benchmark's header."""
    if not available():
        return "pythae not installed (`pip install pythae` for its rows)"
    return f"pythae {importlib.metadata.version('pythae')}"


def pythae_vae(vae):
    """Pythae's VAE over copies of ``vae``'s encoder and decoder (same sizes and weights)."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            raw = self.network(x)
            return ModelOutput(embedding=raw[:, :LATENT], log_covariance=raw[:, LATENT:])

    class Decoder(BaseDecoder):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.network(z)))

    encoder, decoder = plain_networks(vae, torch.device("cpu"))
    config = VAEConfig(input_dim=(INPUT_DIM,), latent_dim=LATENT, reconstruction_loss="bce")
    return VAE(config, encoder=Encoder(encoder), decoder=Decoder(decoder))


def trainer_epoch(vae, data, batch_size, learning_rate):
    """A function that runs one epoch of Pythae's ``BaseTrainer`` on the twin of ``vae``.

    The trainer is built and prepared once (data loader, Adam, callbacks, output
    folder); each call is one ``train_step``: shuffled batches of ``batch_size``,
    forward, loss, Adam step, its callbacks. Its logging is silenced.
    """
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    for name in list(logging.root.manager.loggerDict):  # each module's logger sets its level
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    output = tempfile.TemporaryDirectory(prefix="pythae-twin-")
    config = BaseTrainerConfig(
        output_dir=output.name,
        per_device_train_batch_size=batch_size,
        num_epochs=1,
        learning_rate=learning_rate,
        optimizer_cls="Adam",
        no_cuda=True,
    )
    dataset = BaseDataset(data, torch.zeros(len(data)))
    trainer = BaseTrainer(pythae_vae(vae), dataset, training_config=config)
    trainer.prepare_training()
    epochs = iter(range(1, 1 << 30))

    def epoch(output=output):  # the folder lives as long as the function
        trainer.train_step(next(epochs))

    return epoch


def get_nll(vae, x, num_particles):
    """A function that runs Pythae's ``get_nll`` on ``x`` with the twin of ``vae``, no gradients."""
    twin = pythae_vae(vae).eval()

    @torch.no_grad()
    def evaluate():
        return twin.get_nll(x, n_samples=num_particles, batch_size=GET_NLL_BATCH)

    return evaluate
