"""The decoder of a VAE with several stochastic layers, as one module ``z_L -> raw p(x|z_1)``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vi_vae.latents import LatentFamily

__all__ = ["TopDownDecoder"]


class TopDownDecoder(nn.Module):
    """p(z_{l} | z_{l+1}) networks from the top layer down, then the network of p(x | z_1).

    Calling it maps the top layer's z to the likelihood's raw parameters through
    the centre (``family.center``) of each conditional p(z_l | z_{l+1}): the
    deterministic path that figures decode along. The model itself draws every
    layer.

    Args:
        conditionals: ``conditionals[l]`` maps z_{l+2} to the raw parameters of
            p(z_{l+1} | z_{l+2}) (layers counted from 1 at the data), for
            l = 0 .. L − 2.
        observation: maps z_1 to the likelihood's raw parameters.
        family: the latent family of every conditional.
    """

    def __init__(
        self, conditionals: Sequence[nn.Module], observation: nn.Module, family: LatentFamily
    ) -> None:
        super().__init__()
        self.conditionals = nn.ModuleList(conditionals)
        self.observation = observation
        self.family = family

    def forward(self, z: Tensor) -> Tensor:
        """``z: [..., latent_dims[-1]]`` -> ``[..., likelihood outputs]``."""
        for network in reversed(self.conditionals):
            z = self.family.center(self.family.posterior(network(z)))
        return self.observation(z)
