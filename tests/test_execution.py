"""ExecutionOptions: one checked object for device, compiled passes and pass size."""

from __future__ import annotations

import math

import pytest
import torch
from float_rounding import RELATIVE
from tiny_pair import VAE_4, X

from vi_vae import (
    ExecutionOptions,
    InputError,
    annealed_importance_sampling,
    bdmc,
    execution,
    log_marginal_likelihood,
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer .* or 'auto'; got 0"),
        ({"chunk_size": "big"}, "chunk_size must be a positive integer"),
        ({"chunk_size": True}, "chunk_size must be a positive integer"),
        ({"compile": 1}, "compile must be"),
        ({"device": "gpu7"}, "device must be None or a torch device"),
    ],
)
def test_bad_options_name_the_field_and_what_it_accepts(options, message):
    with pytest.raises(InputError, match=message):
        ExecutionOptions(**options)


def test_options_of_another_type_are_refused():
    # a shortcut beside the options replaces their field (tests/test_settings.py)
    with pytest.raises(InputError, match="execution must be an instance of ExecutionOptions"):
        bdmc(VAE_4.model, VAE_4.guide, X, execution={"compile": True})


def test_the_options_and_their_shortcuts_give_the_same_numbers():
    """Keyword shortcuts build the same options; an agreeing shortcut beside them is accepted."""
    by_object = log_marginal_likelihood(
        VAE_4.model, VAE_4.guide, X, 40, seed=1, execution=ExecutionOptions(chunk_size=7)
    )
    by_shortcut = log_marginal_likelihood(VAE_4.model, VAE_4.guide, X, 40, seed=1, chunk_size=7)
    both = log_marginal_likelihood(
        VAE_4.model, VAE_4.guide, X, 40, seed=1, execution=ExecutionOptions(chunk_size=7),
        chunk_size=7,
    )  # fmt: skip
    assert torch.equal(by_object.log_likelihood, by_shortcut.log_likelihood)
    assert torch.equal(by_object.log_likelihood, both.log_likelihood)


def test_ais_reads_auto_as_the_default_pass_size_and_moves_the_data_to_the_device():
    settings = {"num_steps": 3, "num_chains": 2, "seed": 0}
    auto = annealed_importance_sampling(VAE_4.model, VAE_4.guide, X, chunk_size="auto", **settings)
    small = annealed_importance_sampling(
        VAE_4.model, VAE_4.guide, X, execution=ExecutionOptions(device="cpu", chunk_size=2),
        **settings,
    )  # fmt: skip
    assert ExecutionOptions().pairs_per_pass() == ExecutionOptions(chunk_size=8192).pairs_per_pass()
    # keyed by point: the same draws however the pairs are chunked. The sums are not
    # bitwise the same: a pass of 2 rows and one of 6 are matrix products of other shapes,
    # for which BLAS may pick other kernels (torch's notes on numerical accuracy: batched
    # and sliced computations need not agree to the bit), so this allows their rounding;
    # another draw would move a log weight by far more than 1e-5 of it
    torch.testing.assert_close(small.log_weights, auto.log_weights, rtol=RELATIVE, atol=0)
    placed, kwargs = ExecutionOptions(device="meta").place(X, {"ys": X[:, 0], "k": 3})
    assert placed.device.type == "meta" and kwargs["ys"].device.type == "meta" and kwargs["k"] == 3


def test_a_chunked_evaluation_hands_freed_memory_back_at_most_once_a_second(monkeypatch):
    # The fix for a resident set that grew by a chunk per chunk (glibc kept the freed
    # pages; benchmarks/resident_memory.py): every chunk asks, and a trim happens when
    # TRIM_INTERVAL_SECONDS have passed since the last. A fake clock advancing 0.3 s per
    # reading makes the count exact: readings 1, 5, 9 trim (0.3 s, 1.5 s, 2.7 s).
    trims, readings = [], []

    def clock():
        readings.append(0.3 * (len(readings) + 1))
        return readings[-1]

    monkeypatch.setattr(execution, "_MALLOC_TRIM", trims.append)
    monkeypatch.setattr(execution, "_clock", clock)
    monkeypatch.setattr(execution, "_last_trim", [-math.inf])
    x = X.repeat(4, 1)
    log_marginal_likelihood(VAE_4.model, VAE_4.guide, x, 50, chunk_size=50)
    assert len(readings) == x.shape[0]  # one chunk per point at chunk_size = K
    assert trims == [0] * math.ceil(x.shape[0] / 4)
