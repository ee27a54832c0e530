"""Convolutional encoder and decoder for images, with data flattened to ``[..., D]`` outside.

The encoder halves the height and width at each convolution (3×3 kernels, stride 2,
padding 1, so a side of n pixels becomes ⌈n/2⌉), then fully connected layers map
the features to the raw parameters of q. The decoder mirrors it: fully connected
layers, then transposed convolutions whose output padding restores every side
exactly, so images of any height and width, square or not, come back at their own
size. Both take and return flattened tensors, so a VAE, its estimators and its
figures see ``[N, D]`` data whichever networks it uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vi_vae._validation import check_choice, check_positive_int
from vi_vae.errors import InputError
from vi_vae.nets.mlp import ACTIVATIONS, MLP

__all__ = ["CONV_CHANNELS", "ConvDecoder", "ConvEncoder", "channels_height_width"]

#: channels after each stride-2 convolution: two halvings take 28×28 MNIST to 7×7,
#: as in the convolutional VAEs of the literature (e.g. Pythae's MNIST nets).
CONV_CHANNELS = (32, 64)
_KERNEL, _STRIDE, _PADDING = 3, 2, 1


def channels_height_width(image_shape: Sequence[int], input_dim: int) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``image_shape`` = (C, H, W) or (H, W) (one channel).

    Raises:
        InputError: when the shape is not 2 or 3 positive integers, or when their
            product is not ``input_dim``.
    """
    shape = tuple(image_shape) if image_shape is not None else ()
    if len(shape) not in (2, 3) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
    ):
        raise InputError(
            f"image_shape must be (channels, height, width) or (height, width) of positive "
            f"integers for architecture 'conv'; got {image_shape!r}"
        )
    if math.prod(shape) != input_dim:
        raise InputError(
            f"image_shape {list(shape)} has {math.prod(shape)} values but input_dim is "
            f"{input_dim}; image_shape must multiply out to input_dim"
        )
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def _layout(
    image_shape: Sequence[int], channels: Sequence[int], activation: str
) -> tuple[tuple[int, int, int], list[tuple[int, int]], type[nn.Module]]:
    """What encoder and decoder share: ``(C, H, W)`` checked, the sides, the activation.

    The sides are (H, W) before each convolution and after the last (n -> ⌈n/2⌉).
    """
    shape = channels_height_width(image_shape, math.prod(image_shape))
    if not len(channels):
        raise InputError("channels must name at least one convolution; got none")
    for width in channels:
        check_positive_int("channels", width)
    sides = [shape[1:]]
    for _ in channels:
        h, w = sides[-1]
        sides.append(((h + 1) // 2, (w + 1) // 2))
    return shape, sides, ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]


class ConvEncoder(nn.Module):
    """Images -> raw parameters: stride-2 convolutions, then an MLP.

    Args:
        image_shape: (C, H, W), or (H, W) for one channel.
        out_features: outputs per image (e.g. the family's raw parameters).
        hidden_sizes: widths of the fully connected layers after the convolutions.
        activation: a name from :data:`~vi_vae.nets.ACTIVATIONS`.
        channels: channels after each convolution.

    Example:
        >>> import torch
        >>> ConvEncoder((1, 9, 6), 4)(torch.zeros(2, 3, 54)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_features: int,
        hidden_sizes: Sequence[int] = (),
        activation: str = "relu",
        channels: Sequence[int] = CONV_CHANNELS,
    ) -> None:
        super().__init__()
        self.in_features = math.prod(image_shape)
        self.image_shape, sides, activation_class = _layout(image_shape, channels, activation)
        layers: list[nn.Module] = []
        previous = self.image_shape[0]
        for width in channels:
            layers += [nn.Conv2d(previous, width, _KERNEL, _STRIDE, _PADDING), activation_class()]
            previous = width
        self.convolutions = nn.Sequential(*layers)
        height, width = sides[-1]
        self.head = MLP(previous * height * width, hidden_sizes, out_features, activation)
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        """``x: [..., C·H·W]`` -> ``[..., out_features]``."""
        leading = x.shape[:-1]
        features = self.convolutions(x.reshape(-1, *self.image_shape))
        return self.head(features.flatten(1)).reshape(*leading, self.out_features)


class ConvDecoder(nn.Module):
    """Latents -> raw likelihood parameters per pixel: an MLP, then transposed convolutions.

    Args:
        in_features: dimension of z.
        image_shape: (C, H, W), or (H, W) for one channel.
        out_features: outputs per z, a multiple m of C·H·W (m raw parameters per
            pixel, e.g. 2 for a Gaussian with learned scale). The output is laid
            out parameter by parameter, ``[..., m·C·H·W]``, as the likelihood heads
            split it.
        hidden_sizes: widths of the fully connected layers before the convolutions.
        activation: a name from :data:`~vi_vae.nets.ACTIVATIONS`.
        channels: channels of the encoder it mirrors, in the encoder's order.

    Example:
        >>> import torch
        >>> ConvDecoder(2, (9, 6), 108)(torch.zeros(5, 2)).shape
        torch.Size([5, 108])
    """

    def __init__(
        self,
        in_features: int,
        image_shape: Sequence[int],
        out_features: int,
        hidden_sizes: Sequence[int] = (),
        activation: str = "relu",
        channels: Sequence[int] = CONV_CHANNELS,
    ) -> None:
        super().__init__()
        pixels = math.prod(image_shape)
        self.image_shape, sides, activation_class = _layout(image_shape, channels, activation)
        if out_features % pixels:
            raise InputError(
                f"a conv decoder outputs whole images: out_features ({out_features}) must be a "
                f"multiple of the {pixels} values in image_shape {list(image_shape)}"
            )
        self.parameters_per_pixel = out_features // pixels
        self.out_features = out_features
        self.start_shape = (channels[-1], *sides[-1])
        self.head = MLP(in_features, hidden_sizes, math.prod(self.start_shape), activation)
        widths = [*reversed(channels), self.parameters_per_pixel * self.image_shape[0]]
        layers: list[nn.Module] = [activation_class()]
        for index, (previous, width) in enumerate(zip(widths, widths[1:], strict=False)):
            target = sides[len(channels) - 1 - index]
            source = sides[len(channels) - index]
            # out = 2·(n − 1) − 2 + 3 + p = 2n − 1 + p, so p = target − (2n − 1) ∈ {0, 1}
            padding = tuple(t - (2 * s - 1) for t, s in zip(target, source, strict=True))
            layers.append(nn.ConvTranspose2d(previous, width, _KERNEL, _STRIDE, _PADDING, padding))
            if index < len(channels) - 1:
                layers.append(activation_class())
        self.convolutions = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """``z: [..., in_features]`` -> ``[..., out_features]``."""
        leading = z.shape[:-1]
        features = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start_shape)
        images = self.convolutions(features)
        channels = self.image_shape[0]
        images = images.reshape(-1, self.parameters_per_pixel, channels, *self.image_shape[1:])
        return images.reshape(*leading, self.out_features)
