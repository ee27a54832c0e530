"""A user-written linear Gaussian model/guide pair with trainable parameters and closed forms.

Model: z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_D), so p(x) = N(b, W Wᵀ + σ² I) and
p(z | x) = N(Σ Wᵀ (x − b) / σ², Σ) with Σ = (I + WᵀW / σ²)⁻¹.
Guide: q(z | x) = N(A x + c, L Lᵀ), amortized and full-covariance, so it can be
the exact posterior (A = Σ Wᵀ / σ², c = −A b, L = chol Σ).

Everything is float64 so that identities hold to ~1e-10 and zero variances are zero.
"""

import math

import linear_gaussian
import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

DTYPE = torch.float64


class GaussianPair:
    """Pyro model/guide with ``pyro.param`` sites: W, b, sigma (model); A, c, L (guide)."""

    def __init__(self, latent_dim=2, data_dim=3, noise=0.7, seed=0, prior="mvn"):
        generator = torch.Generator().manual_seed(seed)
        self.latent_dim, self.data_dim = latent_dim, data_dim
        self.prior = prior
        self.init = {
            "W": torch.randn(data_dim, latent_dim, generator=generator, dtype=DTYPE),
            "b": torch.randn(data_dim, generator=generator, dtype=DTYPE),
            "sigma": torch.tensor(noise, dtype=DTYPE),
        }
        exact = self.exact_guide_parameters(self.init["W"], self.init["b"], self.init["sigma"])
        # a guide near, not at, the posterior: the bounds then differ by tenths of nats
        self.init["A"] = exact["A"] * 0.7
        self.init["c"] = exact["c"] + 0.3
        self.init["L"] = exact["L"] * 1.4

    # -- the Pyro pair ---------------------------------------------------------

    def model(self, x):
        W, b, sigma = self.model_parameters()
        with pyro.plate("data", x.shape[0]):
            zeros = x.new_zeros(self.latent_dim)
            if self.prior == "mvn":
                identity = torch.eye(self.latent_dim, dtype=x.dtype)
                prior = dist.MultivariateNormal(zeros, scale_tril=identity)
            else:  # no KL(MVN ‖ Independent Normal) is registered: the sampled fallback
                prior = dist.Normal(zeros, 1.0).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(z @ W.T + b, sigma).to_event(1), obs=x)

    def guide(self, x):
        A, c, L = self.guide_parameters()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(x @ A.T + c, scale_tril=L))

    def model_parameters(self):
        return (
            pyro.param("W", self.init["W"]),
            pyro.param("b", self.init["b"]),
            pyro.param("sigma", self.init["sigma"], constraint=constraints.positive),
        )

    def guide_parameters(self):
        return (
            pyro.param("A", self.init["A"]),
            pyro.param("c", self.init["c"]),
            pyro.param("L", self.init["L"], constraint=constraints.lower_cholesky),
        )

    # -- closed forms ------------------------------------------------------------

    def sample(self, num_points, seed=1):
        W, b, sigma = (self.init[name] for name in ("W", "b", "sigma"))
        return linear_gaussian.sample(W, b, sigma, num_points, seed)

    def exact_guide_parameters(self, W, b, sigma):
        exact = linear_gaussian.posterior_parameters(W, b, sigma)
        return {"A": exact["A"], "c": exact["c"], "L": torch.linalg.cholesky(exact["covariance"])}

    def set_exact_guide(self):
        """Overwrite the guide's parameters with the exact posterior of the current model."""
        store = pyro.get_param_store()
        W, b, sigma = (p.detach() for p in self.model_parameters())
        for name, value in self.exact_guide_parameters(W, b, sigma).items():
            store[name] = value

    def log_marginal(self, x):
        return linear_gaussian.log_marginal(x, *self.model_parameters())

    def guide_distribution(self, x):
        A, c, L = self.guide_parameters()
        return torch.distributions.MultivariateNormal(x @ A.T + c, scale_tril=L)

    def posterior_distribution(self, x):
        W, b, sigma = self.model_parameters()
        exact = self.exact_guide_parameters(W, b, sigma)
        loc = x @ exact["A"].T + exact["c"]
        return torch.distributions.MultivariateNormal(loc, scale_tril=exact["L"])

    def elbo(self, x):
        """Closed form per point: log p(x) − KL(q(z|x) ‖ p(z|x)); differentiable in the params."""
        return self.log_marginal(x) - torch.distributions.kl_divergence(
            self.guide_distribution(x), self.posterior_distribution(x)
        )

    def independent_log_weights(self, x, num_particles, seed):
        """log w [num_particles, N] from torch.distributions directly, not through Pyro."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            q = self.guide_distribution(x)
            W, b, sigma = self.model_parameters()
            shape = (num_particles, *x.shape[:-1], self.latent_dim)
            eps = torch.randn(shape, generator=generator, dtype=DTYPE)
            z = q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
            log_prior = -0.5 * z.pow(2).sum(-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)
            log_likelihood = torch.distributions.Normal(z @ W.T + b, sigma).log_prob(x).sum(-1)
            return log_prior + log_likelihood - q.log_prob(z)


GUIDE_PARAMETERS = ("A", "c", "L")
MODEL_PARAMETERS = ("W", "b", "sigma")


def gradients(estimator, model, guide, *args):
    """Run ``loss_and_grads`` once: (loss, {param name: gradient of its unconstrained value})."""
    store = pyro.get_param_store()
    for _, parameter in store.named_parameters():
        parameter.grad = None
    loss = estimator.loss_and_grads(model, guide, *args)
    grads = {}
    for name, parameter in store.named_parameters():
        grads[name] = parameter.grad.clone() if parameter.grad is not None else None
        parameter.grad = None
    return loss, grads


def flat(grads, names):
    return torch.cat([grads[name].reshape(-1) for name in names])
