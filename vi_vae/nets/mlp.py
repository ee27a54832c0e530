"""Multilayer perceptrons: encoders x -> raw q parameters, decoders z -> raw p parameters."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vi_vae._validation import check_choice

__all__ = ["ACTIVATIONS", "MLP"]

#: name -> activation module class
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class MLP(nn.Sequential):
    """Fully connected layers ``in -> hidden... -> out`` with an activation between them.

    Args:
        in_features: input size.
        hidden_sizes: widths of the hidden layers (may be empty: a linear map).
        out_features: output size, left unconstrained (the likelihood or latent
            family maps it into its parameter space).
        activation: a name from :data:`ACTIVATIONS`.

    Example:
        >>> import torch
        >>> MLP(784, [400], 40)(torch.zeros(3, 784)).shape
        torch.Size([3, 40])
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        activation: str = "relu",
    ) -> None:
        activation_class = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), activation_class()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers to ``x: [..., in_features]``."""
        return super().forward(x)
