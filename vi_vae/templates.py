"""The VAE template's choices: architectures, stochastic layer sizes, and their spellings.

:class:`vi_vae.VAE` takes plain values (strings, integers, tuples), so that a run
directory can store its arguments as JSON. The ``parse_*`` helpers turn the
short spellings a command line uses (``"100,50"``, ``"iaf:2"``, ``"vamp:100"``;
the last two in :mod:`vi_vae.flows` and :mod:`vi_vae.priors`) into those values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.errors import InputError
from vi_vae.flows import DEFAULT_FLOW_LAYERS, FLOWS
from vi_vae.nets import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder
from vi_vae.nets.conv import channels_height_width
from vi_vae.priors import DEFAULT_NUM_PSEUDO_INPUTS
from vi_vae.settings import Settings, merge, passed

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_LATENT_DIM",
    "Template",
    "parse_latent_dims",
    "resolve_latent_dims",
]

#: networks between x and z_1: fully connected, or convolutional (:mod:`vi_vae.nets.conv`)
ARCHITECTURES = ("mlp", "conv")
#: dimension of z when neither latent_dim nor latent_dims is given
DEFAULT_LATENT_DIM = 20


@dataclass(frozen=True)
class Template(Settings):
    """The template's choices for the parts :class:`vi_vae.VAE` builds itself, checked once here.

    The command line's model flags are these (and the VAE's latent family,
    likelihood and prior). ``VAE(..., template=Template(...))`` takes one; the VAE's
    keywords of the same names are shortcuts for its fields (the rule: :mod:`vi_vae.settings`).

    Attributes:
        hidden_sizes: hidden widths of the MLP encoder (of the fully connected layers
            after the convolutions for ``"conv"``); the decoder mirrors them (empty:
            linear encoder and decoder).
        activation: activation of every network.
        architecture: ``"mlp"`` or ``"conv"`` (:mod:`vi_vae.nets.conv`; needs
            ``image_shape``) for the networks between x and z_1.
        image_shape: shape to show a data point as an image, e.g. ``(28, 28)``; the
            conv nets' input shape, (C, H, W) or (H, W) for one channel.
        latent_dims: sizes of the stochastic layers from the data up, e.g. ``(100, 50)``
            (``None``: one layer of the VAE's ``latent_dim``).
        flow: ``None`` (q is the family's) or ``"iaf"``: each layer's q pushed through
            ``flow_layers`` conditional inverse autoregressive flows (:mod:`vi_vae.flows`).
        flow_layers: K, IAF layers per stochastic layer (used with a flow).
        num_pseudo_inputs: K pseudo-inputs of the VampPrior (used with ``prior="vamp"``).
        likelihood_options: keyword options of a likelihood given by name, e.g.
            ``{"scale": 0.1}`` (default ``{}``: none).

    Raises:
        InputError: naming the first bad choice and its accepted values.
    """

    hidden_sizes: Sequence[int] = (400,)
    activation: str = "relu"
    architecture: str = ARCHITECTURES[0]
    image_shape: Sequence[int] | None = None
    latent_dims: Sequence[int] | None = None
    flow: str | None = None
    flow_layers: int = DEFAULT_FLOW_LAYERS
    num_pseudo_inputs: int = DEFAULT_NUM_PSEUDO_INPUTS
    likelihood_options: dict[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self._where  # the prefix of the names in errors (vi_vae.settings.Settings)
        for width in self.hidden_sizes:
            check_positive_int(where + "hidden_sizes", width)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        if self.flow is not None and self.flow not in FLOWS:
            accepted = ", ".join(FLOWS)
            raise InputError(f"unknown flow {self.flow!r}; accepted values: None, {accepted}")
        check_positive_int(where + "flow_layers", self.flow_layers)
        check_positive_int(where + "num_pseudo_inputs", self.num_pseudo_inputs)
        if self.latent_dims is not None:
            resolve_latent_dims(None, self.latent_dims, name=where + "latent_dims")

    def encoder(self, input_dim: int, out_features: int) -> nn.Module:
        """The network x -> ``out_features`` raw parameters of q(z_1|x)."""
        if self.architecture == "conv":
            shape = _conv_shape(self.image_shape, input_dim)
            return ConvEncoder(shape, out_features, self.hidden_sizes, self.activation)
        return MLP(input_dim, self.hidden_sizes, out_features, self.activation)

    def decoder(self, latent_dim: int, input_dim: int, out_features: int) -> nn.Module:
        """The network z_1 -> ``out_features`` raw parameters of p(x|z_1), mirroring the encoder."""
        hidden_sizes = list(reversed(self.hidden_sizes))
        if self.architecture == "conv":
            shape = _conv_shape(self.image_shape, input_dim)
            return ConvDecoder(latent_dim, shape, out_features, hidden_sizes, self.activation)
        return MLP(latent_dim, hidden_sizes, out_features, self.activation)

    @classmethod
    def build(
        cls, template: Template | None, shortcuts: Mapping[str, Any], *, owner: str | None = None
    ) -> Template:
        """``template`` (default: the defaults) with the shortcuts that are not ``None``.

        The shortcuts are :class:`~vi_vae.VAE`'s keywords, declared with the default
        ``None``, so ``None`` is "not passed" (:func:`~vi_vae.settings.passed`); the
        others replace their field (:func:`~vi_vae.settings.merge`).
        """
        return merge(cls, template, passed(shortcuts), owner=owner, argument="template")


def parse_latent_dims(spelling: str) -> tuple[int, ...]:
    """``"100,50"`` -> ``(100, 50)``: stochastic layer sizes from the data up.

    Raises:
        InputError: naming ``latent_dims`` and what it accepts.

    Example:
        >>> parse_latent_dims("100, 50")
        (100, 50)
    """
    accepted = "accepted values: comma-separated integers >= 1 from the data up, e.g. 100,50"
    if not isinstance(spelling, str):
        raise InputError(f"latent_dims must be a string such as '100,50'; got {spelling!r}")
    parts = [part.strip() for part in spelling.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise InputError(f"latent_dims {spelling!r} is not valid; {accepted}")
    return tuple(int(part) for part in parts)


def resolve_latent_dims(
    latent_dim: int | None, latent_dims: Sequence[int] | None, *, name: str = "latent_dims"
) -> tuple[int, ...]:
    """The stochastic layer sizes a VAE's ``latent_dim`` and ``latent_dims`` ask for.

    ``name`` names ``latent_dims`` in the errors.

    Raises:
        InputError: when a size is not an integer >= 1, when ``latent_dims`` is
            empty, or when ``latent_dim`` is given and is not ``latent_dims[-1]``.
    """
    if latent_dims is None:
        latent_dim = DEFAULT_LATENT_DIM if latent_dim is None else latent_dim
        return (check_positive_int("latent_dim", latent_dim),)
    accepted = "integers >= 1, one per stochastic layer from the data up, e.g. (100, 50)"
    if isinstance(latent_dims, str) or not isinstance(latent_dims, Sequence):
        raise InputError(f"{name} must be a sequence of {accepted}; got {latent_dims!r}")
    dims = tuple(latent_dims)
    valid = [isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims]
    if not dims or not all(valid):
        raise InputError(f"{name} must be {accepted}; got {list(dims)!r}")
    if latent_dim is not None and latent_dim != dims[-1]:
        raise InputError(
            f"latent_dim ({latent_dim}) is the top layer's size and must equal "
            f"latent_dims[-1] ({dims[-1]}); give latent_dims alone"
        )
    return dims


def _conv_shape(image_shape: Sequence[int] | None, input_dim: int) -> tuple[int, int, int]:
    if image_shape is None:
        raise InputError(
            "architecture 'conv' needs image_shape, (channels, height, width) or (height, width)"
        )
    return channels_height_width(image_shape, input_dim)
