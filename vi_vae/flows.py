r"""Flow guides: a latent family's q(z|x) pushed through conditional inverse autoregressive flows.

.. math::
    u_0 \sim q_{\text{family}}(\cdot \mid x), \qquad
    u_k = \sigma_k \odot u_{k-1} + (1 - \sigma_k) \odot m_k, \quad
    (m_k, \operatorname{logit} \sigma_k) = \mathrm{MADE}_k(u_{k-1}, h), \qquad z = u_K,

    \log q(z \mid x) = \log q_{\text{family}}(u_0 \mid x) - \sum_{k=1}^K \sum_i \log \sigma_{k,i}

with h an extra output of the encoder (the context), K = ``flow_layers``
(Kingma et al. 2016, eq. 14, the numerically stable form). Each layer is Pyro's
``ConditionalAffineAutoregressive(stable=True)``; the variable order is reversed
after every layer, as Kingma et al. do. The log-density is exact (draws are scored
through the transforms' caches, other points through their exact inverse), so every
estimator and evaluator works on a flow guide unchanged.

Which families a flow supports: the flow acts on unconstrained vectors. A family
whose support is the real line (normal, laplace, studentt, cauchy, logistic,
gumbel) or real vectors (elliptical) is used as the base as it is. A family with
a constrained support whose ``biject_to`` maps R to it coordinate by coordinate
(positive, bounded, ...) is flowed in unconstrained space:
z = b(IAF(b⁻¹(u₀))) with b = ``biject_to(support)``, its Jacobians included. A family
on the simplex (dirichlet) is refused: its bijection changes the dimension.

References:
    [1] Improving Variational Inference with Inverse Autoregressive Flow, Kingma,
        Salimans, Jozefowicz, Chen, Sutskever & Welling, NeurIPS 2016.
    [2] MADE: Masked Autoencoder for Distribution Estimation, Germain, Gregor,
        Murray & Larochelle, ICML 2015.
"""

from __future__ import annotations

import warnings

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineAutoregressive, ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import Tensor, nn
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import Transform

from vi_vae._validation import check_positive_int, spelled_count
from vi_vae.errors import InputError
from vi_vae.latents import FAMILIES, LatentFamily, PushforwardPosterior

__all__ = [
    "DEFAULT_FLOW_LAYERS",
    "FLOWS",
    "ConditionalIAF",
    "IncrementalInverseIAF",
    "check_flow_family",
    "flow_context_dim",
    "parse_flow",
    "support_bijection",
]

#: flow names a VAE accepts (``flow=None`` is the family's own q)
FLOWS = ("iaf",)
#: K when a flow is named without a layer count (``parse_flow("iaf")``): two layers,
#: one in each variable order.
DEFAULT_FLOW_LAYERS = 2
#: the MADE's hidden width per latent dimension (it must be at least 1; Pyro's
#: conditional default is 10, which makes a flow step several times dearer on CPU).
IAF_HIDDEN_PER_LATENT = 4


def flow_context_dim(latent_dim: int) -> int:
    """Features of the context h the encoder adds for a flow: as many as z has dimensions."""
    return latent_dim


def support_bijection(family: LatentFamily, latent_dim: int) -> Transform | None:
    """``biject_to(family.support)`` when z is constrained, ``None`` when it is unconstrained.

    Raises:
        InputError: naming the families a flow supports, when the family's support
            has no coordinate-wise bijection from unconstrained space.
    """
    supported, transform = _flowable(family, latent_dim)
    if not supported:
        raise InputError(
            f"flow needs a latent family on an unconstrained space or one that biject_to maps "
            f"onto it coordinate by coordinate; latent_family {family.name!r} is neither. "
            f"Accepted values of latent_family with a flow: {', '.join(supported_families())}"
        )
    return transform


def supported_families() -> list[str]:
    """Registered families a flow supports, by name."""
    return [name for name, family in FAMILIES.items() if _flowable(family, 2)[0]]


def _flowable(family: LatentFamily, latent_dim: int) -> tuple[bool, Transform | None]:
    """Whether a flow supports the family, and the bijection onto its support (or None)."""
    try:
        transform = _bijection(family.support)
    except NotImplementedError:
        return False, None
    if transform is None:
        return True, None
    return tuple(transform.inverse_shape((latent_dim,))) == (latent_dim,), transform


def check_flow_family(family: LatentFamily, latent_dims: tuple[int, ...]) -> None:
    """Raise :class:`InputError` unless a flow supports ``family`` at every latent size."""
    for latent_dim in latent_dims:
        support_bijection(family, latent_dim)


def parse_flow(spelling: str) -> tuple[str | None, int]:
    """``"iaf:2"`` -> ``("iaf", 2)``; ``"iaf"`` -> ``("iaf", DEFAULT_FLOW_LAYERS)``; ``"none"`` -> ``(None, DEFAULT_FLOW_LAYERS)``.

    The pair is ``(flow, flow_layers)`` of :class:`vi_vae.VAE`.

    Raises:
        InputError: naming ``flow`` and the accepted spellings.

    Example:
        >>> parse_flow("iaf:3")
        ('iaf', 3)
    """  # noqa: E501
    accepted = "accepted values: none, " + ", ".join(f"{name}, {name}:K (K >= 1)" for name in FLOWS)
    if not isinstance(spelling, str):
        raise InputError(f"flow must be a string such as 'iaf:2'; got {spelling!r}; {accepted}")
    name, _, count = spelling.strip().partition(":")
    if name == "none" and not count:
        return None, DEFAULT_FLOW_LAYERS
    if name not in FLOWS:
        raise InputError(f"unknown flow {spelling!r}; {accepted}")
    return name, spelled_count("flow", spelling, count, "layers", DEFAULT_FLOW_LAYERS, accepted)


class ConditionalIAF(nn.Module):
    """K conditional IAF layers for one stochastic layer of a guide.

    Args:
        latent_dim: dimension of z.
        context_dim: features of the context h.
        num_layers: K.
        support: the latent family's support (see :func:`support_bijection`).

    Example:
        >>> flow = ConditionalIAF(latent_dim=3, context_dim=3, num_layers=2)
        >>> base = dist.Normal(torch.zeros(5, 3), 1.0).to_event(1)
        >>> q = flow.push(base, torch.zeros(5, 3))
        >>> z = q.rsample()
        >>> z.shape, q.log_prob(z).shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    def __init__(
        self,
        latent_dim: int,
        context_dim: int,
        num_layers: int,
        support: constraints.Constraint = constraints.real_vector,
    ) -> None:
        super().__init__()
        check_positive_int("flow_layers", num_layers)
        self.latent_dim = latent_dim
        self.support = support
        order = torch.arange(latent_dim)
        networks = []
        for index in range(num_layers):
            with warnings.catch_warnings():
                # Pyro suggests a plain affine map for a 1-D input; a conditional IAF
                # on one dimension is that map, with its shift and scale from h.
                warnings.filterwarnings("ignore", "ConditionalAutoRegressiveNN input_dim = 1")
                networks.append(
                    ConditionalAutoRegressiveNN(
                        latent_dim,
                        context_dim,
                        [IAF_HIDDEN_PER_LATENT * latent_dim],
                        permutation=order if index % 2 == 0 else order.flip(0),
                    )
                )
        #: the MADEs, registered as submodules (a PyroModule converts them in place)
        self.networks = nn.ModuleList(networks)
        # Pyro's conditional transforms over the same MADEs, kept out of the module tree:
        # their class cannot become a PyroModule, and they hold no parameters of their own.
        self._layers = [ConditionalAffineAutoregressive(made, stable=True) for made in networks]

    def transforms(self, context: Tensor) -> list[Transform]:
        """The bijections u₀ -> z given the context ``h: [..., context_dim]``."""
        flow = [_condition(layer, context) for layer in self._layers]
        bijection = _bijection(self.support)
        if bijection is None:
            return flow
        # Separate cached copies, so a draw is scored through the caches, not the inverses.
        return [bijection.with_cache(1).inv, *flow, _bijection(self.support).with_cache(1)]

    def push(self, base: dist.TorchDistribution, context: Tensor) -> PushforwardPosterior:
        """q(z|x): ``base`` (event shape ``[latent_dim]``) pushed through the flow given h."""
        return PushforwardPosterior(base, self.transforms(context))


def _condition(layer: ConditionalAffineAutoregressive, context: Tensor) -> AffineAutoregressive:
    """``layer.condition(context)``, whose inverse is :class:`IncrementalInverseIAF`'s."""
    conditioned = layer.condition(context)
    return IncrementalInverseIAF(conditioned.arn, **layer.kwargs)


class IncrementalInverseIAF(AffineAutoregressive):
    r"""Pyro's stable ``AffineAutoregressive``, inverted at about the cost of one MADE pass, not d.

    The inverse of an IAF layer is sequential: x_i needs the MADE's outputs at
    i, which depend on the x_j before i in the layer's order. Pyro runs the whole
    MADE once per coordinate, d passes over ``[..., context + d]`` inputs and
    ``[..., 2d]`` outputs. With one hidden layer, a hidden unit u sees the
    context and the inputs up to its degree, so its value

    .. math::
        a_u = \operatorname{relu}\Big(b_u + V_u h + \sum_{j \le \deg u} W_{u j}\, x_j\Big)

    is final as soon as those inputs are set, and the outputs are sums over units:
    each unit is computed once, when its last input is set, and added to running
    output sums, from which coordinate i reads its two outputs when its turn comes.
    The d steps compute each hidden unit once (Pyro's loop computes all H units
    d times), and V h is computed once
    per context, not once per point (a VampPrior scores N points under K contexts:
    N × K inverses of K contexts). The numbers are Pyro's up to the order of the
    sums. A MADE of another form (more hidden layers, skip connections, another
    nonlinearity, or a non-stable layer) is inverted by Pyro's loop.
    """

    def _inverse_stable(self, y: Tensor) -> Tensor:
        made = getattr(self.arn, "func", None)
        context = getattr(self.arn, "keywords", {}).get("context")
        if not _one_relu_hidden_layer(made) or context is None:
            return super()._inverse_stable(y)
        first, last = made.layers
        width, dim = made.context_dim, made.input_dim
        weight_in = first.weight * first.mask
        weight_out = last.weight * last.mask  # rows: d means, then d logits of σ
        order = [int(index) for index in made.permutation]
        # b + V h once per context, broadcast over the points scored under it
        context_part = nn.functional.linear(context, weight_in[:, :width], first.bias)
        output = last.bias.expand(y.shape[:-1] + last.bias.shape)  # sums over the units so far
        x: list[Tensor] = []
        for step, units in enumerate(_units_completed_before(first.mask[:, width:], order)):
            if len(units):
                pre = context_part[..., units]
                if x:  # the inputs set so far, in their order
                    columns = [width + index for index in order[:step]]
                    pre = pre + nn.functional.linear(
                        torch.stack(x, dim=-1), weight_in[units][:, columns]
                    )
                output = output + nn.functional.linear(made.f(pre), weight_out[:, units])
            index = order[step]
            inverse_scale = 1 + torch.exp(-output[..., dim + index] - self.sigmoid_bias)
            x.append(inverse_scale * y[..., index] + (1 - inverse_scale) * output[..., index])
        self._cached_log_scale = self.logsigmoid(output[..., dim:] + self.sigmoid_bias)
        inverse = [None] * dim
        for index, value in zip(order, x, strict=True):
            inverse[index] = value
        return torch.stack(inverse, dim=-1)


def _units_completed_before(mask: Tensor, order: list[int]) -> list[Tensor]:
    """Per step of the inverse, the hidden units whose last input was set in the step before.

    ``mask``: ``[H, d]``, which inputs each unit sees. Step 0 gets the units that see
    no input; units whose last input is the last one set feed no output and are left out.
    """
    position = torch.empty(len(order), dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))
    seen = mask.cpu() != 0
    last = torch.where(seen, position, -1).amax(dim=1)  # -1: the unit sees no input
    return [torch.nonzero(last == step - 1).flatten().to(mask.device) for step in range(len(order))]


def _one_relu_hidden_layer(made: object) -> bool:
    """Whether ``made`` is a conditional MADE with one ReLU hidden layer and no skip layer."""
    return (
        isinstance(made, ConditionalAutoRegressiveNN)
        and len(made.layers) == 2
        and made.skip_layer is None
        and isinstance(made.f, nn.ReLU)
        and list(made.param_dims) == [1, 1]
    )


def _bijection(support: constraints.Constraint) -> Transform | None:
    """``biject_to(support)``, or ``None`` for an unconstrained support."""
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    return None if base is constraints.real else biject_to(support)
