"""Every registered estimator trains every template: a few SVI steps improve its own bound."""

import math
import warnings

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI
from template_cases import TEMPLATE_NAMES, binary_data, make_template, single_thread

from vi_vae.estimators import ESTIMATOR_SPECS, parse_estimator


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


#: Adam steps on one batch of 64 points; at initialization the bound is about
#: −12 log 2 ≈ −8.3 nats per point, and these steps gain 0.9 to 3 nats with every
#: estimator on every template (seeds as here).
STEPS = 12
LEARNING_RATE = 0.03
#: the required gain, nats per point: well above the noise of a bound averaged over
#: NUM_EVALUATIONS seeded evaluations of 64 points (its SE is about 0.1 nats).
MIN_GAIN = 0.5
NUM_EVALUATIONS = 2


def _bound(estimator, vae, x):
    """Minus the estimator's loss per point, averaged over seeded evaluations."""
    values = []
    with torch.no_grad():
        for seed in range(NUM_EVALUATIONS):
            pyro.set_rng_seed(seed)
            values.append(-estimator.loss(vae.model, vae.guide, x) / len(x))
    return sum(values) / len(values)


@pytest.mark.parametrize("spelling", [spec.example for spec in ESTIMATOR_SPECS.values()])
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_estimator_improves_its_bound_on_every_template(template, spelling):
    vae = make_template(template)
    x = binary_data()
    estimator = parse_estimator(spelling)
    with warnings.catch_warnings():
        if spelling == "pyro-meanfield-elbo" and vae.num_layers > 1:
            # Pyro's TraceMeanField_ELBO checks that guide and model draw their sites
            # in the same order; q(z1|x) q(z2|z1) against p(z2) p(z1|z2) cannot, and Pyro
            # says so. Its KL for z1 is then biased, so it is trained, not trusted here.
            warnings.filterwarnings("ignore", "Failed to verify mean field restriction")
        before = _bound(estimator, vae, x)
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": LEARNING_RATE}), estimator)
        losses = [svi.step(x) for _ in range(STEPS)]
        after = _bound(estimator, vae, x)
    assert all(math.isfinite(loss) for loss in losses)
    assert after > before + MIN_GAIN, (before, after)
