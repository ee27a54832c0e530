r"""A latent family's posterior pushed through bijections (the form of a flow guide).

.. math::
    z = T(u), \quad u \sim q_{\text{family}}(u \mid x), \qquad
    \log q(z \mid x) = \log q_{\text{family}}(u \mid x)
        - \log\lvert\det \partial T / \partial u\rvert

The density stays exact, so every estimator and evaluator works with it
unchanged. Its mean has no closed form; the families' ``center`` (the point shown
in reconstructions and latent plots) is the family's centre of ``u`` pushed through
T, which :meth:`PushforwardPosterior.push` computes.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor

__all__ = ["PushforwardPosterior"]


class PushforwardPosterior(dist.TransformedDistribution):
    """``TransformedDistribution(base, transforms)`` whose base is a latent family's posterior.

    Example:
        >>> import torch
        >>> from torch.distributions.transforms import ExpTransform
        >>> base = dist.Normal(torch.zeros(3), 1.0).to_event(1)
        >>> q = PushforwardPosterior(base, [ExpTransform()])
        >>> q.push(torch.zeros(3))
        tensor([1., 1., 1.])
    """

    def push(self, u: Tensor) -> Tensor:
        """T(u): apply the transforms to a point of the base's space.

        Calling a transform overwrites its one-entry cache, so score the draws of
        this distribution before pushing other points through it (a later score of
        an earlier draw is still exact, through the inverse, only slower).
        """
        for transform in self.transforms:
            u = transform(u)
        return u
