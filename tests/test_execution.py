"""ExecutionOptions: one checked object for device, compiled passes and pass size."""

from __future__ import annotations

import pytest
import torch
from float_rounding import RELATIVE
from tiny_pair import VAE_4, X

from vi_vae import (
    ExecutionOptions,
    InputError,
    TrainSettings,
    annealed_importance_sampling,
    bdmc,
    execution,
    fit,
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


@pytest.mark.parametrize(
    ("cuda_devices", "device", "message"),
    [
        (0, "cuda", r"'cuda' was asked for but no CUDA device is available; accepted here: cpu"),
        (1, "cuda:3", r"'cuda:3' was asked for but this machine has 1 CUDA device\(s\); "
         r"accepted here: cpu, cuda, cuda:0"),
    ],
)  # fmt: skip
def test_a_cuda_device_the_machine_lacks_is_refused_where_it_is_used(
    monkeypatch, cuda_devices, device, message
):
    # fit and the evaluators took the device as declared and failed inside torch ("Found
    # no NVIDIA driver on your system"); the settings themselves stay valid, so that a run
    # trained on a GPU is still read on a machine without one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_devices)
    options = ExecutionOptions(device=device)
    with pytest.raises(InputError, match="execution.device " + message):
        log_marginal_likelihood(VAE_4.model, VAE_4.guide, X, 10, execution=options)
    with pytest.raises(InputError, match="execution.device " + message):
        annealed_importance_sampling(VAE_4.model, VAE_4.guide, X, execution=options)
    settings = TrainSettings(epochs=1, device=device)
    with pytest.raises(InputError, match="^device " + message):
        fit(VAE_4.model, VAE_4.guide, X, settings)


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


def test_a_chunked_evaluation_asks_once_per_chunk_to_hand_freed_memory_back(monkeypatch):
    # The fix for a resident set that grew by a chunk per chunk (glibc kept the freed
    # pages; benchmarks/resident_memory.py): every chunk of importance sampling asks.
    readings = []
    monkeypatch.setattr(execution, "_MALLOC_TRIM", lambda pad: 0)
    monkeypatch.setattr(execution, "_resident_bytes", lambda: readings.append(1) or 0)
    x = X.repeat(4, 1)
    log_marginal_likelihood(VAE_4.model, VAE_4.guide, x, 50, chunk_size=50)
    assert len(readings) == x.shape[0]  # one chunk per point at chunk_size = K


def test_freed_memory_is_handed_back_when_the_resident_set_has_grown_by_the_threshold(
    monkeypatch,
):
    # a trim costs the pages the next chunks fault back in: it runs only after the
    # resident set grew by TRIM_GROWTH_BYTES since the last one (none where nothing grows)
    megabyte, resident, trims = 2**20, [0], []

    def trim(pad):
        trims.append(pad)
        resident[0] = 10 * megabyte  # what the trim gave back

    monkeypatch.setattr(execution, "_MALLOC_TRIM", trim)
    monkeypatch.setattr(execution, "_resident_bytes", lambda: resident[0])
    monkeypatch.setattr(execution, "_after_last_trim", [0])
    threshold = execution.TRIM_GROWTH_BYTES
    for value, trimmed in [
        (threshold - 1, 0),
        (threshold, 1),  # the trim: resident 10 MB after it
        (threshold + 9 * megabyte, 1),  # grown by threshold - 1 since
        (threshold + 10 * megabyte, 2),
    ]:
        resident[0] = value
        execution.release_freed_memory()
        assert len(trims) == trimmed
    assert trims == [0, 0]
