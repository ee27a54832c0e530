"""The chunked fallback gives the loss and gradients of the one-pass computation."""

import pyro
import pytest
import torch
from estimator_cases import ESTIMATORS
from gaussian_pair import GaussianPair, gradients
from torch.testing import assert_close

#: 8 points × 2 latent dims = 16 normal draws per particle. torch's CPU sampler fills
#: normals in blocks of 16, so drawing particles in chunks then yields exactly the
#: numbers of one pass, and the comparison can be exact rather than in distribution.
NUM_POINTS = 8


def run(estimator, pair, x, seed=21):
    pyro.set_rng_seed(seed)
    loss, grads = gradients(estimator, pair.model, pair.guide, x)
    return loss, grads, torch.get_rng_state()


#: one particle cannot be split into chunks: those cases are covered by their K > 1 twins
CHUNKABLE = [name for name, (make, _) in ESTIMATORS.items() if make().num_particles > 1]


@pytest.mark.parametrize("name", CHUNKABLE)
def test_chunked_loss_and_gradients_equal_one_pass(name):
    pair = GaussianPair()
    x = pair.sample(NUM_POINTS)
    make = ESTIMATORS[name][0]
    chunked = make()
    chunked.chunk_size = NUM_POINTS  # one particle per pass
    loss, grads, state = run(make(), pair, x)
    chunked_loss, chunked_grads, chunked_state = run(chunked, pair, x)
    assert len(chunked._chunk_sizes()) > 1
    assert chunked_loss == pytest.approx(loss, rel=1e-12)
    assert grads.keys() == chunked_grads.keys()
    for parameter, gradient in grads.items():
        assert_close(chunked_grads[parameter], gradient, rtol=1e-9, atol=1e-12)
    # the global random stream moves on as if the particles had been drawn once
    assert torch.equal(chunked_state, state)


def test_chunked_loss_without_gradients_equals_one_pass():
    pair = GaussianPair()
    x = pair.sample(NUM_POINTS)
    make = ESTIMATORS["piwae"][0]
    chunked = make()
    chunked.chunk_size = 3 * NUM_POINTS
    pyro.set_rng_seed(2)
    one_pass = make().per_point_bound(pair.model, pair.guide, x)
    pyro.set_rng_seed(2)
    assert_close(chunked.per_point_bound(pair.model, pair.guide, x), one_pass, rtol=0, atol=1e-12)
