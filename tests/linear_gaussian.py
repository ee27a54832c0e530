"""A linear Gaussian latent-variable model whose log p(x), posterior and ELBO are closed form.

z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_D). Then p(x) = N(b, W Wᵀ + σ² I), and
the posterior is N(A x + c, Σ) with Σ = (I + WᵀW/σ²)⁻¹, A = Σ Wᵀ/σ², c = −A b.
The module functions hold these closed forms; ``LinearGaussian`` is a fixed
model with exact and mean-field guides, and ``tests/estimators/gaussian_pair.py``
a trainable one built on the same functions.
"""

import math

import pyro
import pyro.distributions as dist
import torch


def posterior_parameters(W, b, sigma):
    """p(z|x) = N(A x + c, covariance): {"A", "c", "covariance"}."""
    identity = torch.eye(W.shape[1], dtype=W.dtype)
    covariance = torch.linalg.inv(identity + W.T @ W / sigma**2)
    A = covariance @ W.T / sigma**2
    return {"A": A, "c": -A @ b, "covariance": covariance}


def log_marginal(x, W, b, sigma):
    """log N(x | b, W Wᵀ + σ² I)."""
    covariance = W @ W.T + sigma**2 * torch.eye(W.shape[0], dtype=W.dtype)
    return dist.MultivariateNormal(b, covariance).log_prob(x)


def sample(W, b, sigma, num_points, seed):
    """x = W z + b + σ ε with z, ε standard normal."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(num_points, W.shape[1], generator=generator, dtype=W.dtype)
    noise = torch.randn(num_points, W.shape[0], generator=generator, dtype=W.dtype)
    return z @ W.T + b + sigma * noise


class LinearGaussian:
    def __init__(self, latent_dim=2, data_dim=3, noise=0.5, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.latent_dim, self.data_dim, self.noise = latent_dim, data_dim, noise
        self.weight = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
        self.bias = torch.randn(data_dim, generator=generator, dtype=torch.float64)
        self.posterior = posterior_parameters(self.weight, self.bias, noise)
        self.posterior_covariance = self.posterior["covariance"]
        # mean-field guide: the KL(q‖p)-optimal diagonal, 1 / diag(precision)
        self.mean_field_scale = torch.linalg.inv(self.posterior_covariance).diagonal().rsqrt()

    def sample(self, num_points, seed=1):
        return sample(self.weight, self.bias, self.noise, num_points, seed)

    def posterior_mean(self, x):
        return x @ self.posterior["A"].T + self.posterior["c"]

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample(
                "x", dist.Normal(z @ self.weight.T + self.bias, self.noise).to_event(1), obs=x
            )

    def exact_guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "z",
                dist.MultivariateNormal(
                    self.posterior_mean(x), covariance_matrix=self.posterior_covariance
                ),
            )

    def mean_field_guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.posterior_mean(x), self.mean_field_scale).to_event(1))

    def log_marginal(self, x):
        return log_marginal(x, self.weight, self.bias, self.noise)

    def elbo(self, x, mean, covariance):
        """Closed-form ELBO of q = N(mean, covariance) per data point."""
        d, big_d, s2 = self.latent_dim, self.data_dim, self.noise**2
        residual = x - mean @ self.weight.T - self.bias
        expected_log_lik = -0.5 * big_d * math.log(2 * math.pi * s2) - (
            residual.pow(2).sum(-1) + torch.trace(self.weight @ covariance @ self.weight.T)
        ) / (2 * s2)
        expected_log_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (
            mean.pow(2).sum(-1) + torch.trace(covariance)
        )
        entropy = 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(covariance)
        return expected_log_lik + expected_log_prior + entropy
