"""Every registered estimator under test, and its bound written out independently of vi_vae.

The cases come from the registry (:data:`vi_vae.estimators.ESTIMATOR_SPECS`, each
spec's example spelling), so an estimator is truth-tested the moment it is
registered; :data:`REFERENCE_BOUNDS` must then say what its estimate's
expectation is (``test_every_registered_estimator_has_a_reference`` fails until
it does). A few extra cases cover settings the examples do not.
"""

import math

from vi_vae.estimators import (
    ELBO,
    ESTIMATOR_SPECS,
    PIWAE,
    ParticleEstimator,
    RenyiVR,
    parse_estimator,
)


def log_mean_exp(values, dim=0):
    return values.logsumexp(dim) - math.log(values.shape[dim])


def grouped(group_size):
    """[G·k, N] -> mean over the G groups of log mean exp within each group."""

    def bound(log_weights):
        groups = log_weights.reshape(-1, group_size, log_weights.shape[-1])
        return log_mean_exp(groups, 1).mean(0)

    return bound


def renyi(alpha):
    def bound(log_weights):
        return log_mean_exp((1 - alpha) * log_weights) / (1 - alpha)

    return bound


#: registry name -> the bound its example spelling estimates, as a function of log w
#: [K, N]. ``None`` marks the analytic-KL ELBO, whose expectation is the closed-form
#: ELBO. Pyro's own ELBOs are not per-point estimators and are compared with ELBO in
#: test_estimator_registry.py.
REFERENCE_BOUNDS = {
    "elbo": lambda lw: lw.mean(0),
    "elbo-analytic": None,
    "iwae": log_mean_exp,  # iwae:5
    "vr": renyi(0.5),  # vr:0.5:5
    "vrmax": lambda lw: lw.max(0).values,  # vrmax:5
    "stl": lambda lw: lw.mean(0),  # stl:2
    "dreg": log_mean_exp,  # dreg:5
    "miwae": grouped(4),  # miwae:3:4
    "ciwae": lambda lw: 0.3 * lw.mean(0) + 0.7 * log_mean_exp(lw),  # ciwae:0.3:5
    "piwae": grouped(3),  # piwae:2:3:3
}


def _builder(spelling):
    return lambda: parse_estimator(spelling)


def _missing(log_weights):
    raise AssertionError("no independent reference bound for this estimator")


#: the registered estimators that keep per-point weights
REGISTERED = [
    name
    for name, spec in ESTIMATOR_SPECS.items()
    if isinstance(parse_estimator(spec.example), ParticleEstimator)
]

#: id -> (constructor, reference bound)
ESTIMATORS = {
    name: (_builder(ESTIMATOR_SPECS[name].example), REFERENCE_BOUNDS.get(name, _missing))
    for name in REGISTERED
} | {
    "elbo-3": (lambda: ELBO(3), lambda lw: lw.mean(0)),
    "elbo-analytic-3": (lambda: ELBO(3, analytic_kl=True), None),
    "vr-minus-1": (lambda: RenyiVR(-1.0, 5), renyi(-1.0)),
    "piwae-one-group": (lambda: PIWAE(2, 3), log_mean_exp),
}
