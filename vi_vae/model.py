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

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.errors import InputError
from vi_vae.flows import (
    DEFAULT_FLOW_LAYERS,
    FLOWS,
    ConditionalIAF,
    check_flow_family,
    flow_context_dim,
)
from vi_vae.keys import seeded
from vi_vae.latents import LatentFamily, get_family
from vi_vae.likelihoods import Likelihood, get_likelihood
from vi_vae.nets import MLP
from vi_vae.nets.top_down import TopDownDecoder
from vi_vae.priors import DEFAULT_NUM_PSEUDO_INPUTS, PRIORS, VampPrior
from vi_vae.templates import (
    ARCHITECTURES,
    build_decoder,
    build_encoder,
    resolve_latent_dims,
)

__all__ = ["VAE"]


def _check_choices(
    hidden_sizes: Sequence[int],
    architecture: str,
    flow: str | None,
    flow_layers: int,
    prior: str,
    num_pseudo_inputs: int,
) -> None:
    """Check the template's network, flow and prior choices (:class:`VAE`'s arguments)."""
    for width in hidden_sizes:
        check_positive_int("hidden_sizes", width)
    check_choice("architecture", architecture, ARCHITECTURES)
    if flow is not None and flow not in FLOWS:
        raise InputError(f"unknown flow {flow!r}; accepted values: None, {', '.join(FLOWS)}")
    check_positive_int("flow_layers", flow_layers)
    check_choice("prior", prior, PRIORS)
    check_positive_int("num_pseudo_inputs", num_pseudo_inputs)


class VAE(PyroModule):
    r"""A variational autoencoder written as a Pyro model and guide.

    .. math::
        p_θ(x, z) = p(z)\, p_θ(x \mid z), \qquad q_φ(z \mid x)

    ``model(x)`` and ``guide(x)`` put the data dimension in ``pyro.plate(data_plate)``
    and name the latent site ``"z"`` and the observed site ``"x"``, so they work
    with ``pyro.infer.SVI`` and with every estimator and evaluator of vi_vae.

    With ``latent_dims=(d_1, …, d_L)``, L ≥ 2, the template has L stochastic layers
    (Burda et al. 2016, §5), sites ``"z1"`` … ``"zL"`` counted from the data:

    .. math::
        p(z_L) \prod_{l<L} p_θ(z_l \mid z_{l+1})\, p_θ(x \mid z_1), \qquad
        q_φ(z_1 \mid x) \prod_{l>1} q_φ(z_l \mid z_{l-1}),

    every conditional in the latent family. The networks between x and z_1 are
    the ``architecture``'s with ``hidden_sizes``; those between z_l and z_{l+1}
    are MLPs with as many hidden layers as ``hidden_sizes``, each d_l wide, so
    ``hidden_sizes=(200, 200), latent_dims=(100, 50), activation="tanh"`` is Burda
    et al.'s 784-200-200-100-100-100-50. For the figures, :meth:`encode`,
    :meth:`decode`, :attr:`decoder`, :meth:`prior` and :attr:`latent_dim` refer to
    the top layer z_L (through the centres of the layers between), :meth:`sample`
    draws every layer, and :meth:`reconstruct` goes through z_1.

    Args:
        input_dim: dimension D of a flattened data point.
        latent_dim: dimension of z (default 20); with ``latent_dims``, leave it out
            or give ``latent_dims[-1]``.
        latent_family: latent family name (``vi-vae families`` lists them) or a
            :class:`~vi_vae.latents.LatentFamily`; fixes q's form and the prior.
        likelihood: likelihood name or :class:`~vi_vae.likelihoods.Likelihood`.
        hidden_sizes: hidden widths of the MLP encoder (of the fully connected
            layers after the convolutions for ``"conv"``); the decoder mirrors them
            (empty: linear encoder and decoder).
        activation: activation of every network.
        encoder: optional module ``[batch, D] -> [batch, family.num_raw_parameters(d_1)]``
            (plus ``d_1`` context features with a flow) that replaces the built
            encoder (converted in place to a PyroModule).
        decoder: optional module ``[..., d_1] -> [..., likelihood.num_outputs(D)]``.
        likelihood_options: keyword options of the likelihood, e.g. ``{"scale": 0.1}``.
        data_plate: name of the data plate.
        image_shape: shape to show a data point as an image, e.g. ``(28, 28)``; the
            conv nets' input shape, (C, H, W) or (H, W) for one channel.
        seed: seed of the networks' initial weights (drawn from a forked stream, so
            the global one is left untouched); ``None`` draws them from torch's
            global stream.
        architecture: ``"mlp"`` or ``"conv"`` (:mod:`vi_vae.nets.conv`; needs
            ``image_shape``) for the networks between x and z_1.
        latent_dims: sizes of the stochastic layers from the data up, e.g. ``(100, 50)``.
        flow: ``None`` (q is the family's) or ``"iaf"``: each layer's q pushed
            through ``flow_layers`` conditional inverse autoregressive flows
            (:mod:`vi_vae.flows`, which says which families a flow supports).
        flow_layers: K, IAF layers per stochastic layer (used with a flow).
        prior: ``"standard"`` (the family's default prior) or ``"vamp"``: the
            VampPrior, q(z_L | ·) averaged over learned pseudo-inputs (:mod:`vi_vae.priors`).
        num_pseudo_inputs: K pseudo-inputs of the VampPrior (used with ``"vamp"``).

    Example:
        >>> import torch
        >>> vae = VAE(input_dim=784, latent_dim=2)
        >>> vae.encode(torch.zeros(5, 784)).batch_shape, vae.sample(3).shape
        (torch.Size([5]), torch.Size([3, 784]))
        >>> VAE(input_dim=784, latent_dims=(4, 2), flow="iaf", prior="vamp").latent_sites
        ('z1', 'z2')

    References:
        [1] Auto-Encoding Variational Bayes, Kingma & Welling, ICLR 2014.
        [2] Importance Weighted Autoencoders, Burda, Grosse & Salakhutdinov, ICLR 2016.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int | None = None,
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
        *,
        architecture: str = "mlp",
        latent_dims: Sequence[int] | None = None,
        flow: str | None = None,
        flow_layers: int = DEFAULT_FLOW_LAYERS,
        prior: str = "standard",
        num_pseudo_inputs: int = DEFAULT_NUM_PSEUDO_INPUTS,
    ) -> None:
        super().__init__()
        check_positive_int("input_dim", input_dim)
        dims = resolve_latent_dims(latent_dim, latent_dims)
        _check_choices(hidden_sizes, architecture, flow, flow_layers, prior, num_pseudo_inputs)
        self.input_dim = input_dim
        self.latent_dims = dims
        self.latent_dim = dims[-1]
        self.latent_family = get_family(latent_family)
        self.likelihood = get_likelihood(likelihood, **(likelihood_options or {}))
        self.data_plate = data_plate
        self.image_shape = tuple(image_shape) if image_shape else None
        self.architecture = architecture
        if flow is not None:
            check_flow_family(self.latent_family, dims)
        self._num_raw = [self.latent_family.num_raw_parameters(d) for d in dims]
        self._num_context = [flow_context_dim(d) if flow else 0 for d in dims]
        widths = len(hidden_sizes)
        with seeded(seed):
            if encoder is None:
                encoder = build_encoder(
                    architecture,
                    input_dim,
                    self._num_raw[0] + self._num_context[0],
                    hidden_sizes,
                    activation,
                    image_shape,
                )
            if decoder is None:
                decoder = build_decoder(
                    architecture,
                    dims[0],
                    input_dim,
                    self.likelihood.num_outputs(input_dim),
                    hidden_sizes,
                    activation,
                    image_shape,
                )
            upper_encoders, conditionals = self._layer_networks(widths, activation)
            flows = (
                [
                    ConditionalIAF(d, context, flow_layers, self.latent_family.support)
                    for d, context in zip(dims, self._num_context, strict=True)
                ]
                if flow
                else None
            )
            vamp = VampPrior(num_pseudo_inputs, input_dim) if prior == "vamp" else None
        if len(dims) > 1:
            decoder = TopDownDecoder(conditionals, decoder, self.latent_family)
        to_pyro_module_(encoder)
        to_pyro_module_(decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.upper_encoders = _pyro(nn.ModuleList(upper_encoders)) if len(dims) > 1 else None
        self.flows = _pyro(nn.ModuleList(flows)) if flows else None
        self.vamp_prior = _pyro(vamp) if vamp is not None else None
        #: the family's p(z) by (device, dtype): built once, not at every model call
        self._priors: dict[tuple[torch.device, torch.dtype], dist.TorchDistribution] = {}

    def _layer_networks(self, widths: int, activation: str) -> tuple[list[MLP], list[MLP]]:
        """The MLPs between stochastic layers, ``widths`` hidden layers d_l wide.

        z_l -> q(z_{l+1} | z_l) (the upper encoders) and z_{l+1} -> p(z_l | z_{l+1})
        (the conditionals), drawn in that order from the caller's seeded stream.
        """
        dims = self.latent_dims
        upper_encoders = [
            MLP(below, [below] * widths, raw + context, activation)
            for below, raw, context in zip(
                dims[:-1], self._num_raw[1:], self._num_context[1:], strict=True
            )
        ]
        conditionals = [
            MLP(above, [below] * widths, raw, activation)
            for below, above, raw in zip(dims[:-1], dims[1:], self._num_raw[:-1], strict=True)
        ]
        return upper_encoders, conditionals

    @property
    def num_layers(self) -> int:
        """L, the number of stochastic layers."""
        return len(self.latent_dims)

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """Names of the latent sites from the data up: ``("z",)``, or ``("z1", …, "zL")``."""
        if self.num_layers == 1:
            return ("z",)
        return tuple(f"z{layer}" for layer in range(1, self.num_layers + 1))

    @property
    def observation_net(self) -> nn.Module:
        """The network z_1 -> the likelihood's raw parameters."""
        return self.decoder if self.num_layers == 1 else self.decoder.observation

    # -- the Pyro pair -------------------------------------------------------------

    def model(self, x: Tensor) -> None:
        """p(z_L) ∏ p_θ(z_l|z_{l+1}) p_θ(x|z_1) for ``x: [batch, input_dim]``."""
        sites = self.latent_sites
        with pyro.plate(self.data_plate, x.shape[0]):
            z = pyro.sample(sites[-1], self._model_prior(x.device, x.dtype))
            for layer in reversed(range(self.num_layers - 1)):
                z = pyro.sample(sites[layer], self.layer_prior(layer, z))
            pyro.sample("x", self.likelihood.distribution(self.observation_net(z)), obs=x)

    def _model_prior(self, device: torch.device, dtype: torch.dtype) -> dist.TorchDistribution:
        """:meth:`prior`, the family's default built once per (device, dtype).

        The VampPrior depends on its pseudo-inputs (parameters) and is built anew.
        """
        if self.vamp_prior is not None:
            return self.prior(device, dtype)
        key = (device, dtype)
        if key not in self._priors:
            self._priors[key] = self.prior(device, dtype)
        return self._priors[key]

    def guide(self, x: Tensor) -> None:
        """q_φ(z_1|x) ∏ q_φ(z_l|z_{l-1}) for ``x: [batch, input_dim]``."""
        with pyro.plate(self.data_plate, x.shape[0]):
            h = x
            for layer, site in enumerate(self.latent_sites):
                h = pyro.sample(site, self.layer_posterior(layer, h))

    # -- the pieces ----------------------------------------------------------------

    def prior(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> dist.TorchDistribution:
        """p(z_L): the latent family's default prior or the VampPrior; event ``[latent_dim]``.

        The VampPrior lives where its pseudo-inputs are; ``device`` and ``dtype``
        apply to the default prior.
        """
        if self.vamp_prior is not None:
            return self.vamp_prior(self.encode)
        return self.latent_family.prior(self.latent_dim, device=device, dtype=dtype)

    def layer_posterior(self, layer: int, h: Tensor) -> dist.TorchDistribution:
        """q_φ(z_{layer+1} | h), with ``h = x`` for layer 0 and a draw of z_layer above it.

        Batch shape ``h.shape[:-1]``, event shape ``[latent_dims[layer]]``.
        """
        raw = (self.encoder if layer == 0 else self.upper_encoders[layer - 1])(h)
        expected = self._num_raw[layer] + self._num_context[layer]
        if raw.shape[-1] != expected:
            name = "encoder" if layer == 0 else f"the network of {self.latent_sites[layer]}"
            context = self._num_context[layer]
            plus = f" plus {context} flow context features" if context else ""
            raise InputError(
                f"{name} returned {raw.shape[-1]} values per data point; latent family "
                f"{self.latent_family.name!r} with latent_dim={self.latent_dims[layer]} "
                f"needs {self._num_raw[layer]}{plus}"
            )
        if self.flows is None:
            return self.latent_family.posterior(raw)
        raw, context = raw.split([self._num_raw[layer], self._num_context[layer]], dim=-1)
        return self.flows[layer].push(self.latent_family.posterior(raw), context)

    def layer_prior(self, layer: int, z_above: Tensor) -> dist.TorchDistribution:
        """p_θ(z_{layer+1} | z_{layer+2}) for ``layer < num_layers - 1``."""
        return self.latent_family.posterior(self.decoder.conditionals[layer](z_above))

    def encode(self, x: Tensor) -> dist.TorchDistribution:
        """q_φ(z_L|x), batch shape ``x.shape[:-1]``, event shape ``[latent_dim]``.

        With several layers: q(z_L | z_{L-1}) at the centres of the layers below.
        """
        h = x
        for layer in range(self.num_layers):
            q = self.layer_posterior(layer, h)
            if layer < self.num_layers - 1:
                h = self.latent_family.center(q)
        return q

    def decode(self, z: Tensor) -> dist.TorchDistribution:
        """p_θ(x|z), event shape ``[input_dim]`` (through the centres below z_L)."""
        return self.likelihood.distribution(self.decoder(z))

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> Tensor:
        """Generate ``[num_samples, input_dim]`` data: z ~ p(z), then E[x|z] (or a draw of x).

        Every stochastic layer is drawn, from the top down.
        """
        check_positive_int("num_samples", num_samples)
        device = next(self.decoder.parameters()).device
        z = self.prior(device).sample((num_samples,))
        for layer in reversed(range(self.num_layers - 1)):
            z = self.layer_prior(layer, z).sample()
        raw = self.observation_net(z)
        return self.likelihood.mean(raw) if mean else self.likelihood.distribution(raw).sample()

    @torch.no_grad()
    def reconstruct(self, x: Tensor, sample_latent: bool = False) -> Tensor:
        """E[x|z_1] at z_1 = the centre of q(z_1|x) (or a draw from q when ``sample_latent``)."""
        q = self.layer_posterior(0, x)
        z = q.sample() if sample_latent else self.latent_family.center(q)
        return self.likelihood.mean(self.observation_net(z))

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


def _pyro(module: nn.Module) -> nn.Module:
    to_pyro_module_(module)
    return module
