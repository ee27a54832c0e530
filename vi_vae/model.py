"""The VAE template: a Pyro model/guide pair whose networks live in one PyroModule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import Tensor, nn

from vi_vae._deprecation import pop_renamed
from vi_vae._random import seeded
from vi_vae._validation import check_positive_int
from vi_vae.errors import InputError
from vi_vae.latents import LatentFamily, get_family
from vi_vae.likelihoods import Likelihood, get_likelihood
from vi_vae.nets import MLP

__all__ = ["VAE"]


class VAE(PyroModule):
    r"""A variational autoencoder written as a Pyro model and guide.

    .. math::
        p_θ(x, z) = p(z)\, p_θ(x \mid z), \qquad q_φ(z \mid x)

    ``model(x)`` and ``guide(x)`` put the data dimension in ``pyro.plate(data_plate)``
    and name the latent site ``"z"`` and the observed site ``"x"``, so they work
    with ``pyro.infer.SVI`` and with every estimator and evaluator of vi_vae.

    Args:
        input_dim: dimension D of a flattened data point.
        latent_dim: dimension of z.
        latent_family: latent family name (``vi-vae families`` lists them) or a
            :class:`~vi_vae.latents.LatentFamily`; fixes q's form and the prior.
        likelihood: likelihood name or :class:`~vi_vae.likelihoods.Likelihood`.
        hidden_sizes: hidden widths of the MLP encoder; the decoder mirrors them
            (empty: linear encoder and decoder).
        activation: activation of both MLPs.
        encoder: optional module ``[batch, D] -> [batch, family.num_raw_parameters(latent_dim)]``
            that replaces the MLP encoder (converted in place to a PyroModule).
        decoder: optional module ``[..., latent_dim] -> [..., likelihood.num_outputs(D)]``.
        likelihood_options: keyword options of the likelihood, e.g. ``{"scale": 0.1}``.
        data_plate: name of the data plate.
        image_shape: shape to show a data point as an image, e.g. ``(28, 28)``.
        seed: seed of the networks' initial weights (drawn from a forked stream, so
            the global one is left untouched); ``None`` draws them from torch's
            global stream.

    Example:
        >>> import torch
        >>> vae = VAE(input_dim=784, latent_dim=2)
        >>> vae.encode(torch.zeros(5, 784)).batch_shape, vae.sample(3).shape
        (torch.Size([5]), torch.Size([3, 784]))
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 20,
        latent_family: str | LatentFamily = "normal",
        likelihood: str | Likelihood = "bernoulli",
        hidden_sizes: Sequence[int] = (400,),
        activation: str = "relu",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        likelihood_options: dict[str, Any] | None = None,
        data_plate: str = "data",
        image_shape: Sequence[int] | None = None,
        seed: int | None = None,
        **deprecated: Any,
    ) -> None:
        super().__init__()
        latent_family = pop_renamed(
            "VAE", deprecated, "latent", "latent_family", latent_family, "normal"
        )
        if deprecated:
            raise TypeError(f"VAE() got unexpected keyword arguments {sorted(deprecated)}")
        check_positive_int("input_dim", input_dim)
        check_positive_int("latent_dim", latent_dim)
        for width in hidden_sizes:
            check_positive_int("hidden_sizes", width)
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.latent_family = get_family(latent_family)
        self.likelihood = get_likelihood(likelihood, **(likelihood_options or {}))
        self.data_plate = data_plate
        self.image_shape = tuple(image_shape) if image_shape else None
        self._num_raw = self.latent_family.num_raw_parameters(latent_dim)
        with seeded(seed):
            if encoder is None:
                encoder = MLP(input_dim, hidden_sizes, self._num_raw, activation)
            if decoder is None:
                decoder = MLP(
                    latent_dim,
                    list(reversed(hidden_sizes)),
                    self.likelihood.num_outputs(input_dim),
                    activation,
                )
        to_pyro_module_(encoder)
        to_pyro_module_(decoder)
        self.encoder = encoder
        self.decoder = decoder
        #: p(z) by (device, dtype): built once, not at every model call
        self._priors: dict[tuple[torch.device, torch.dtype], dist.TorchDistribution] = {}

    # -- the Pyro pair -------------------------------------------------------------

    def model(self, x: Tensor) -> None:
        """p(z) p_θ(x|z) for ``x: [batch, input_dim]``."""
        key = (x.device, x.dtype)
        prior = self._priors.get(key)
        if prior is None:
            prior = self._priors[key] = self.prior(x.device, x.dtype)
        with pyro.plate(self.data_plate, x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: Tensor) -> None:
        """q_φ(z|x) for ``x: [batch, input_dim]``."""
        with pyro.plate(self.data_plate, x.shape[0]):
            pyro.sample("z", self.encode(x))

    # -- the pieces ----------------------------------------------------------------

    def prior(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> dist.TorchDistribution:
        """p(z): the latent family's default prior, event shape ``[latent_dim]``."""
        return self.latent_family.prior(self.latent_dim, device=device, dtype=dtype)

    def encode(self, x: Tensor) -> dist.TorchDistribution:
        """q_φ(z|x), batch shape ``x.shape[:-1]``, event shape ``[latent_dim]``."""
        raw = self.encoder(x)
        if raw.shape[-1] != self._num_raw:
            raise InputError(
                f"encoder returned {raw.shape[-1]} values per data point; latent family "
                f"{self.latent_family.name!r} with latent_dim={self.latent_dim} "
                f"needs {self._num_raw}"
            )
        return self.latent_family.posterior(raw)

    def decode(self, z: Tensor) -> dist.TorchDistribution:
        """p_θ(x|z), event shape ``[input_dim]``."""
        return self.likelihood.distribution(self.decoder(z))

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> Tensor:
        """Generate ``[num_samples, input_dim]`` data: z ~ p(z), then E[x|z] (or a draw of x)."""
        check_positive_int("num_samples", num_samples)
        device = next(self.decoder.parameters()).device
        z = self.prior(device).sample((num_samples,))
        raw = self.decoder(z)
        return self.likelihood.mean(raw) if mean else self.likelihood.distribution(raw).sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor, sample_latent: bool = False) -> Tensor:
        """E[x|z] at z = the centre of q(z|x) (or a draw from q when ``sample_latent``)."""
        q = self.encode(x)
        z = q.sample() if sample_latent else self.latent_family.center(q)
        return self.likelihood.mean(self.decoder(z))

    def check_data(self, x: Any, name: str = "x") -> Tensor:
        """Return ``x`` if it is a ``[N, input_dim]`` tensor in the likelihood's support."""
        if not isinstance(x, Tensor):
            raise InputError(f"{name} must be a torch.Tensor of shape [N, {self.input_dim}]")
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise InputError(
                f"{name} has shape {list(x.shape)}; expected [N, {self.input_dim}] "
                "(flatten images to vectors)"
            )
        if not x.is_floating_point():
            raise InputError(f"{name} must be a floating point tensor; got {x.dtype}")
        self.likelihood.validate(x, name)
        return x
