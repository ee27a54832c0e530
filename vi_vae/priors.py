r"""Priors p(z) for the VAE template: the latent family's default, or a VampPrior.

The VampPrior (Tomczak & Welling 2018) is the guide's posterior averaged over K
learned pseudo-inputs u_k in data space,

.. math::
    p_λ(z) = \frac{1}{K} \sum_{k=1}^K q_φ(z \mid u_k), \qquad
    \log p_λ(z) = \operatorname{logsumexp}_k \log q_φ(z \mid u_k) - \log K,

so it shares the encoder's parameters φ and adds the K × D pseudo-inputs λ.
Its support is q's, which lies inside the family's default prior's support.

References:
    [1] VAE with a VampPrior, Tomczak & Welling, AISTATS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import constraints

from vi_vae._validation import check_positive_int, spelled_count
from vi_vae.bounds import log_mean_exp
from vi_vae.errors import InputError

__all__ = [
    "DEFAULT_NUM_PSEUDO_INPUTS",
    "PRIORS",
    "UniformMixture",
    "VampPrior",
    "parse_prior",
]

#: prior names a VAE accepts: the latent family's default prior, or a VampPrior
PRIORS = ("standard", "vamp")
#: K pseudo-inputs when none is given: Tomczak & Welling's choice for MNIST (K = 500).
DEFAULT_NUM_PSEUDO_INPUTS = 500


def parse_prior(spelling: str) -> tuple[str, int]:
    """``"vamp:100"`` -> ``("vamp", 100)``; ``"vamp"`` -> ``("vamp", 500)``; ``"standard"``.

    The pair is ``(prior, num_pseudo_inputs)`` of :class:`vi_vae.VAE`
    (``"standard"`` comes with the default count, which it ignores).

    Raises:
        InputError: naming ``prior`` and the accepted spellings.

    Example:
        >>> parse_prior("vamp:100")
        ('vamp', 100)
    """
    accepted = "accepted values: standard, vamp, vamp:K (K >= 1 pseudo-inputs)"
    if not isinstance(spelling, str):
        raise InputError(f"prior must be a string such as 'vamp:100'; got {spelling!r}; {accepted}")
    name, _, count = spelling.strip().partition(":")
    if name not in PRIORS or (name == "standard" and count):
        raise InputError(f"unknown prior {spelling!r}; {accepted}")
    return name, spelled_count(
        "prior", spelling, count, "pseudo-inputs", DEFAULT_NUM_PSEUDO_INPUTS, accepted
    )


class UniformMixture(dist.TorchDistribution):
    r"""The equal-weight mixture of the last batch dimension of ``components``.

    .. math::
        p(z) = \frac{1}{K} \sum_{k=1}^K p_k(z)

    Args:
        components: a distribution with batch shape ``[..., K]``; the mixture has
            batch shape ``[...]`` and the components' event shape. Unlike
            ``MixtureSameFamily`` it expands a value to every component before
            scoring it, so components whose parameters enter through a network
            (a flow's context) score it too.

    Example:
        >>> p = UniformMixture(dist.Normal(torch.tensor([-1.0, 1.0]), 1.0))
        >>> zero = torch.tensor(0.0)
        >>> torch.allclose(p.log_prob(zero), dist.Normal(1.0, 1.0).log_prob(zero))
        True
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    has_rsample = False

    def __init__(self, components: dist.TorchDistribution, validate_args: bool | None = None):
        if not components.batch_shape:
            raise ValueError("components need a batch dimension of mixture components")
        self.components = components
        super().__init__(
            components.batch_shape[:-1], components.event_shape, validate_args=validate_args
        )

    @property
    def num_components(self) -> int:
        """K."""
        return self.components.batch_shape[-1]

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        """The components' support."""
        return self.components.support

    def log_prob(self, value: Tensor) -> Tensor:
        """The log-sum-exp over components of their log densities, minus log K."""
        if _is_diagonal_normal(self.components) and len(self.components.batch_shape) == 1:
            return _diagonal_normal_mixture_log_prob(self.components.base_dist, value)
        event_dims = len(self.event_shape)
        value = value.unsqueeze(-1 - event_dims)
        batch = torch.broadcast_shapes(
            value.shape[: value.dim() - event_dims], self.components.batch_shape
        )
        log_probs = self.components.log_prob(value.expand(batch + self.event_shape))
        return log_mean_exp(log_probs, -1)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        """Pick a component uniformly, then draw from it (``sample_shape + batch + event``)."""
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            draws = self.components.sample(sample_shape)
            index = torch.randint(
                self.num_components, sample_shape + self.batch_shape, device=draws.device
            )
            event_dims = len(self.event_shape)
            index = index.reshape(index.shape + (1,) * (1 + event_dims))
            index = index.expand(index.shape[: -event_dims or None] + self.event_shape)
            return draws.gather(-1 - event_dims, index).squeeze(-1 - event_dims)


def _is_diagonal_normal(components: dist.TorchDistribution) -> bool:
    return (
        isinstance(components, torch.distributions.Independent)
        and type(components.base_dist) in (dist.Normal, torch.distributions.Normal)
        and components.reinterpreted_batch_ndims == 1
    )


def _diagonal_normal_mixture_log_prob(normal: dist.Normal, value: Tensor) -> Tensor:
    r"""The mixture of K diagonal normals at ``value: [..., d]``, through matrix products.

    .. math::
        \sum_i \frac{(z_i - μ_{ki})^2}{σ_{ki}^2}
        = z^2 \cdot a_k - 2\, z \cdot (μ_k a_k) + μ_k^2 \cdot a_k, \qquad a_k = σ_k^{-2},

    so the K × d comparison costs two ``[N, d] @ [d, K]`` products instead of an
    ``[N, K, d]`` tensor (a VampPrior's K = 500 components at K = 5000 particles).
    The quadratic form is summed in float64: its terms cancel where z is near μ_k
    and σ_k is small.
    """
    loc, scale = normal.loc.reshape(-1, value.shape[-1]), normal.scale
    scale = scale.expand(normal.batch_shape).reshape(loc.shape)
    points = value.reshape(-1, value.shape[-1]).double()
    precision = scale.double().pow(-2)
    scaled_loc = loc.double() * precision
    quadratic = (
        points.pow(2) @ precision.T
        - 2 * points @ scaled_loc.T
        + (loc.double() * scaled_loc).sum(-1)
    )
    normalizer = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    log_probs = -0.5 * quadratic.to(value.dtype) - normalizer
    mixture = log_mean_exp(log_probs, -1)
    return mixture.reshape(value.shape[:-1])


class VampPrior(nn.Module):
    """K learned pseudo-inputs; calling it with the encoder gives the mixture of q over them.

    Args:
        num_pseudo_inputs: K.
        input_dim: D, the dimension of a flattened data point.

    The pseudo-inputs start as independent Uniform(0, 1) values, the range every
    dataset of vi_vae is scaled to, and are free parameters afterwards.

    Example:
        >>> prior = VampPrior(num_pseudo_inputs=4, input_dim=3)
        >>> encode = lambda u: dist.Normal(u[:, :2], 1.0).to_event(1)
        >>> p = prior(encode)
        >>> p.batch_shape, p.event_shape, p.log_prob(torch.zeros(6, 2)).shape
        (torch.Size([]), torch.Size([2]), torch.Size([6]))
    """

    def __init__(self, num_pseudo_inputs: int, input_dim: int) -> None:
        super().__init__()
        check_positive_int("num_pseudo_inputs", num_pseudo_inputs)
        self.pseudo_inputs = nn.Parameter(torch.rand(num_pseudo_inputs, input_dim))

    def forward(self, encode: Callable[[Tensor], dist.TorchDistribution]) -> UniformMixture:
        """p(z) = mean over k of ``encode(u_k)``; ``encode``: ``[K, D]`` -> q of batch ``[K]``.

        Call the module (not ``forward``): inside a PyroModule the call is what
        registers the pseudo-inputs with Pyro's param store, so that SVI trains them.
        """
        q = encode(self.pseudo_inputs)
        if q.batch_shape != self.pseudo_inputs.shape[:1]:
            raise InputError(
                f"the encoder gave q with batch shape {list(q.batch_shape)} for "
                f"{len(self.pseudo_inputs)} pseudo-inputs; a VampPrior needs one q per input"
            )
        return UniformMixture(q)
