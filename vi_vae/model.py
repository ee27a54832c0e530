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

from vi_vae._param_names import claim_parameter_names
from vi_vae._validation import check_choice, check_plate_name, check_positive_int
from vi_vae.errors import InputError
from vi_vae.flows import (
    ConditionalIAF,
    check_flow_family,
    flow_context_dim,
)
from vi_vae.keys import seeded
from vi_vae.latents import LatentFamily, get_family
from vi_vae.likelihoods import Likelihood, get_likelihood
from vi_vae.nets import MLP
from vi_vae.nets.top_down import TopDownDecoder
from vi_vae.priors import PRIORS, VampPrior
from vi_vae.templates import Template, resolve_latent_dims

__all__ = ["VAE"]


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

    The VAE is built from parts, the **encoder** q(z_1|x), the **decoder** p(x|z_1),
    the **prior** p(z_L) and the **likelihood**: each may be given; those not given
    are built from the :class:`~vi_vae.templates.Template` (its fields are also this
    constructor's keywords, e.g. ``hidden_sizes=(200, 200), architecture="conv"``).
    The weights of the built parts are drawn in a fixed order: encoder, decoder, the
    networks between stochastic layers, flows, the VampPrior's pseudo-inputs.

    Args:
        input_dim: dimension D of a flattened data point.
        latent_dim: dimension of z (default 20); with ``latent_dims``, leave it out
            or give ``latent_dims[-1]``.
        latent_family: latent family name (``vi-vae families`` lists them) or a
            :class:`~vi_vae.latents.LatentFamily`; fixes q's form and the prior.
        likelihood: likelihood name or :class:`~vi_vae.likelihoods.Likelihood`.
        hidden_sizes: shortcut for ``template.hidden_sizes``.
        activation: shortcut for ``template.activation``.
        encoder: optional module ``[batch, D] -> [batch, family.num_raw_parameters(d_1)]``
            (plus ``d_1`` context features with a flow) that replaces the built
            encoder (converted in place to a PyroModule).
        decoder: optional module ``[..., d_1] -> [..., likelihood.num_outputs(D)]``.
        likelihood_options: shortcut for ``template.likelihood_options``.
        data_plate: name of the data plate.
        image_shape: shortcut for ``template.image_shape``.
        seed: seed of the networks' initial weights (drawn from a forked stream, so
            the global one is left untouched); ``None`` draws them from torch's
            global stream.
        architecture: shortcut for ``template.architecture``.
        latent_dims: shortcut for ``template.latent_dims``.
        flow: shortcut for ``template.flow`` (:mod:`vi_vae.flows` says which families
            a flow supports).
        flow_layers: shortcut for ``template.flow_layers``.
        prior: ``"standard"`` (the family's default prior), ``"vamp"``: the VampPrior,
            q(z_L | ·) averaged over learned pseudo-inputs (:mod:`vi_vae.priors`), or a
            prior part: a module called as ``prior(vae.encode)`` that returns p(z_L),
            e.g. a :class:`~vi_vae.priors.VampPrior`.
        num_pseudo_inputs: shortcut for ``template.num_pseudo_inputs``.
        template: the choices of the parts built here (default ``Template()``); the
            shortcuts above that are not ``None`` replace its fields (:mod:`vi_vae.settings`).

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
        hidden_sizes: Sequence[int] | None = None,
        activation: str | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        likelihood_options: dict[str, Any] | None = None,
        data_plate: str = "data",
        image_shape: Sequence[int] | None = None,
        seed: int | None = None,
        *,
        architecture: str | None = None,
        latent_dims: Sequence[int] | None = None,
        flow: str | None = None,
        flow_layers: int | None = None,
        prior: str | nn.Module = "standard",
        num_pseudo_inputs: int | None = None,
        template: Template | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("input_dim", input_dim)
        check_plate_name("data_plate", data_plate)
        shortcuts = {
            "hidden_sizes": hidden_sizes, "activation": activation, "architecture": architecture,
            "image_shape": image_shape, "latent_dims": latent_dims, "flow": flow,
            "flow_layers": flow_layers, "num_pseudo_inputs": num_pseudo_inputs,
            "likelihood_options": likelihood_options,
        }  # fmt: skip
        template = Template.build(template, shortcuts)
        dims = resolve_latent_dims(latent_dim, template.latent_dims)
        if not isinstance(prior, nn.Module):
            check_choice("prior", prior, PRIORS)
        self.template = template
        self.input_dim = input_dim
        self.latent_dims = dims
        self.latent_dim = dims[-1]
        self.latent_family = get_family(latent_family)
        self.likelihood = get_likelihood(likelihood, **(template.likelihood_options or {}))
        self.data_plate = data_plate
        self.image_shape = tuple(template.image_shape) if template.image_shape else None
        self.architecture = template.architecture
        if template.flow is not None:
            check_flow_family(self.latent_family, dims)
        self._num_raw = [self.latent_family.num_raw_parameters(d) for d in dims]
        self._num_context = [flow_context_dim(d) if template.flow else 0 for d in dims]
        with seeded(seed):
            encoder, decoder, upper_encoders, conditionals, flows, vamp = self._parts(
                encoder, decoder, prior
            )
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

    def _parts(
        self, encoder: nn.Module | None, decoder: nn.Module | None, prior: str | nn.Module
    ) -> tuple[nn.Module, nn.Module, list[MLP], list[MLP], list | None, nn.Module | None]:
        """The parts not given, built from :attr:`template`, drawn in one fixed order.

        ``(encoder, decoder, upper encoders, conditionals, flows, VampPrior)``: the
        weights come from the caller's (seeded) stream in that order.
        """
        template, dims, input_dim = self.template, self.latent_dims, self.input_dim
        if encoder is None:
            encoder = template.encoder(input_dim, self._num_raw[0] + self._num_context[0])
        if decoder is None:
            decoder = template.decoder(dims[0], input_dim, self.likelihood.num_outputs(input_dim))
        widths = len(template.hidden_sizes)
        upper_encoders, conditionals = self._layer_networks(widths, template.activation)
        flows = (
            [
                ConditionalIAF(d, context, template.flow_layers, self.latent_family.support)
                for d, context in zip(dims, self._num_context, strict=True)
            ]
            if template.flow
            else None
        )
        if isinstance(prior, nn.Module):
            vamp = prior
        else:
            vamp = VampPrior(template.num_pseudo_inputs, input_dim) if prior == "vamp" else None
        return encoder, decoder, upper_encoders, conditionals, flows, vamp

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
        claim_parameter_names(self)
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
        claim_parameter_names(self)
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
