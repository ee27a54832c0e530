"""Every estimator under test, and its bound written out independently of vi_vae."""

import math

from vi_vae.estimators import CIWAE, ELBO, IWAE, MIWAE, PIWAE, STL, DReG, RenyiVR


def log_mean_exp(values, dim=0):
    return values.logsumexp(dim) - math.log(values.shape[dim])


def grouped(log_weights, group_size):
    """[G·k, N] -> mean over the G groups of log mean exp within each group."""
    groups = log_weights.reshape(-1, group_size, log_weights.shape[-1])
    return log_mean_exp(groups, 1).mean(0)


def renyi(alpha):
    def bound(log_weights):
        return log_mean_exp((1 - alpha) * log_weights) / (1 - alpha)

    return bound


#: id -> (constructor, the bound of its estimate as a function of log w [K, N]).
#: ``None`` marks the analytic-KL ELBO, whose expectation is the closed-form ELBO.
ESTIMATORS = {
    "elbo": (lambda: ELBO(3), lambda lw: lw.mean(0)),
    "elbo-analytic": (lambda: ELBO(3, analytic_kl=True), None),
    "iwae": (lambda: IWAE(5), log_mean_exp),
    "vr-0.5": (lambda: RenyiVR(0.5, 5), renyi(0.5)),
    "vr-minus-1": (lambda: RenyiVR(-1.0, 5), renyi(-1.0)),
    "vr-max": (lambda: RenyiVR(-math.inf, 5), lambda lw: lw.max(0).values),
    "stl": (lambda: STL(2), lambda lw: lw.mean(0)),
    "dreg": (lambda: DReG(5), log_mean_exp),
    "miwae": (lambda: MIWAE(3, 4), lambda lw: grouped(lw, 4)),
    "ciwae": (lambda: CIWAE(0.3, 5), lambda lw: 0.3 * lw.mean(0) + 0.7 * log_mean_exp(lw)),
    "piwae": (lambda: PIWAE(2, 3), log_mean_exp),
    "piwae-grouped": (lambda: PIWAE(2, 3, 3), lambda lw: grouped(lw, 3)),
}
