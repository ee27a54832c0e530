"""Two estimates of log p(x) on the same points, compared point by point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vi_vae.errors import InputError
from vi_vae.evaluation.estimates import LogLikelihoodEstimate, standard_error_over_points

__all__ = ["PairedDifference"]


@dataclass(frozen=True)
class PairedDifference:
    r"""One estimate's log p(x) minus another's, point by point on the same points.

    .. math::
        \bar d = \frac{1}{N}\sum_n \big(\log \hat p_a(x_n) - \log \hat p_b(x_n)\big),
        \qquad \mathrm{SE} = \frac{\mathrm{sd}(d)}{\sqrt{N}}.

    The spread of the points' log p(x), shared by two models evaluated on the same
    points, cancels in d, so this SE is far smaller than either estimate's own; it
    includes both estimates' Monte Carlo noise, independent from point to point. It
    is the SE of these two models' difference, not of the methods that trained them:
    another training seed gives other models.

    Attributes:
        mean: :math:`\bar d`, nats per point.
        standard_error: the SE of :math:`\bar d` over the points.
        num_points: N.
    """

    mean: float
    standard_error: float
    num_points: int

    @classmethod
    def of(
        cls, estimate: LogLikelihoodEstimate, reference: LogLikelihoodEstimate
    ) -> PairedDifference:
        """``estimate`` minus ``reference``, point by point: both must be of the same points.

        In the same order, too: an estimate does not record its points, so only their
        number is checked.

        Example:
            >>> a = LogLikelihoodEstimate(torch.tensor([-3.0, -5.0]), *[torch.zeros(2)] * 3, 10)
            >>> b = LogLikelihoodEstimate(torch.tensor([-4.0, -5.5]), *[torch.zeros(2)] * 3, 10)
            >>> PairedDifference.of(a, b)
            PairedDifference(mean=0.75, standard_error=0.25, num_points=2)
        """
        return cls.between(estimate.log_likelihood, reference.log_likelihood)

    @classmethod
    def between(
        cls, values: Tensor | Sequence[float], reference: Tensor | Sequence[float]
    ) -> PairedDifference:
        """``values − reference`` per point (float64), summarized; both of the same points.

        In the same order; only their number is checked.

        Raises:
            InputError: when the two hold different numbers of points.
        """
        first = torch.as_tensor(values, dtype=torch.float64).flatten()
        second = torch.as_tensor(reference, dtype=torch.float64).flatten().to(first.device)
        if first.numel() != second.numel():
            raise InputError(
                f"a paired difference needs the same points: {first.numel()} values against "
                f"{second.numel()}"
            )
        differences = first - second
        return cls(
            differences.mean().item(),
            standard_error_over_points(differences),
            differences.numel(),
        )
