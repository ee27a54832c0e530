"""Model/guide pairs with a closed-form log p(x) for the AIS and BDMC tests.

- ``poor_guide(lg)``: for :class:`linear_gaussian.LinearGaussian`, q(z|x) shifted two
  posterior standard deviations off the posterior mean and half as wide, so that
  importance sampling with K = 1000 is about 2 nats low.
- ``TwoLayerGaussian``: z1 ~ N(0, I), z2 | z1 ~ N(A z1, s² I), x | z2 ~ N(B z2 + b, σ² I),
  two latent sites, with p(x) = N(b, B (A Aᵀ + s² I) Bᵀ + σ² I); its guide is
  q(z1|x) q(z2|z1, x), the second site depending on the first.
"""

import pyro
import pyro.distributions as dist
import torch

DTYPE = torch.float64
#: the poor guide's offset and width, in posterior standard deviations
POOR_GUIDE_SHIFT, POOR_GUIDE_SCALE = 2.0, 0.5


def poor_guide(lg, shift=POOR_GUIDE_SHIFT, scale=POOR_GUIDE_SCALE):
    sd = lg.posterior_covariance.diagonal().sqrt()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc = lg.posterior_mean(x) + shift * sd
            pyro.sample("z", dist.Normal(loc, scale * sd).to_event(1))

    return guide


class TwoLayerGaussian:
    def __init__(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.A = torch.randn(2, 2, generator=generator, dtype=DTYPE)
        self.B = torch.randn(3, 2, generator=generator, dtype=DTYPE)
        self.b = torch.randn(3, generator=generator, dtype=DTYPE)
        self.s, self.sigma = 0.7, 0.5

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            z2 = pyro.sample("z2", dist.Normal(z1 @ self.A.T, self.s).to_event(1))
            pyro.sample("x", dist.Normal(z2 @ self.B.T + self.b, self.sigma).to_event(1), obs=x)

    def guide(self, x):
        # a crude amortized guide: z1 from a fixed linear map of x, z2 around A z1
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(0.3 * (x - self.b)[..., :2], 0.6).to_event(1))
            pyro.sample("z2", dist.Normal(z1 @ self.A.T, 0.5).to_event(1))

    def log_marginal(self, x):
        z2_covariance = self.A @ self.A.T + self.s**2 * torch.eye(2, dtype=DTYPE)
        covariance = self.B @ z2_covariance @ self.B.T + self.sigma**2 * torch.eye(3, dtype=DTYPE)
        return dist.MultivariateNormal(self.b, covariance).log_prob(x)

    def sample(self, num_points, seed=1):
        generator = torch.Generator().manual_seed(seed)
        z1 = torch.randn(num_points, 2, generator=generator, dtype=DTYPE)
        z2 = z1 @ self.A.T + self.s * torch.randn(num_points, 2, generator=generator, dtype=DTYPE)
        noise = torch.randn(num_points, 3, generator=generator, dtype=DTYPE)
        return z2 @ self.B.T + self.b + self.sigma * noise
