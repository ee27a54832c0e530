"""torch.distributed on CPU (Gloo): several ranks train and evaluate as one process would.

The ranks are real processes: torch.multiprocessing for the library's API
(``distributed_workers.launch``), ``torchrun`` for the command line. Starting a
process costs seconds (importing torch and Pyro), so each launch checks several
things at once; every launch is bounded by a timeout, so a hang fails the test.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from distributed_workers import (
    AIS_POINTS,
    EVALUATIONS,
    all_checks,
    annealed,
    binary_data,
    evaluate,
    launch,
    tiny_vae,
    train_delta,
)
from float_rounding import one_thread, up_to_reduction_order

from vi_vae import cli
from vi_vae.app.assessment import evaluate as evaluate_run_metrics
from vi_vae.app.runs import load_run
from vi_vae.checkpoint import load_checkpoint
from vi_vae.cli import launch as cli_launch
from vi_vae.distributed import map_shards, shard
from vi_vae.errors import InputError
from vi_vae.evaluation import pareto_k
from vi_vae.evaluation.passes import log_weight_chunks
from vi_vae.keys import key_block_size

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
WORKER = Path(__file__).parent / "torchrun_worker.py"
#: a launch or command that takes longer has hung
TIMEOUT = 180


@pytest.fixture(scope="module")
def one_process():
    """The single-process API, with another chunk size than the ranks use, on their one thread."""
    with one_thread():
        return [evaluate(k, n, 10**6) for k, n, _ in EVALUATIONS]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("two-ranks")
    return launch(all_checks, 2, directory, str(directory / "runs"), EVALUATIONS)


def assert_bitwise_equal(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]) or (
            # NaN (one group of k draws has no error) compares equal only by position
            torch.equal(first[name].isnan(), second[name].isnan())
            and torch.equal(first[name].nan_to_num(), second[name].nan_to_num())
        ), name


def test_two_ranks_with_global_batch_b_train_as_one_process_with_batch_b(two_ranks):
    single_params, single_losses = train_delta(None)
    for rank_result in two_ranks:
        params, losses = rank_result["delta"]
        # The point-mass guide makes the objective deterministic, so only the order of
        # summation differs: one process sums the batch's gradients in one backward pass,
        # two ranks sum their halves and the all-reduce adds the two sums. Float32
        # rounding (~1e-7 relative per step) over 9 Adam steps stays below 1e-6.
        for name in single_params:
            torch.testing.assert_close(params[name], single_params[name], atol=1e-6, rtol=1e-6)
        assert losses == pytest.approx(single_losses, rel=1e-6)
    first, second = (rank_result["delta"][0] for rank_result in two_ranks)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_per_point_keyword_arguments_are_sharded_with_the_batch(two_ranks):
    # issue 20 item 5: fit(model_kwargs={"ys": ...}) gives each rank its share's rows
    for rank_result in two_ranks:
        assert len(rank_result["per_point"]) >= 4 and all(rank_result["per_point"])


def test_ranks_hold_identical_parameters_and_resume_exactly(two_ranks):
    (straight_0, resumed_0, epoch_0), (straight_1, resumed_1, _) = (r["vae"] for r in two_ranks)
    assert epoch_0 == 1
    for name in straight_0:
        assert torch.equal(straight_0[name], straight_1[name]), name  # same after every step
        assert torch.equal(straight_0[name], resumed_0[name]), name  # resume continues exactly
        assert torch.equal(resumed_0[name], resumed_1[name]), name


def test_two_ranks_evaluate_bitwise_as_one_process(two_ranks, one_process):
    for rank_result in two_ranks:
        for sharded, single in zip(rank_result["evaluations"], one_process, strict=True):
            assert_bitwise_equal(sharded, single)


def test_two_ranks_run_ais_bitwise_as_one_process(two_ranks):
    # AIS's random numbers are keyed by the point's index, so a shard gives the numbers
    # of one process; with the same chunks (here: shards of 4 and 3 points cut into chunks
    # of 2, as one process cuts its 7) bitwise, since batched float sums of other sizes
    # round differently (chunk sizes agree to 1e-10: tests/evaluation)
    with one_thread():
        single = annealed(AIS_POINTS, chunk_size=8)
    for rank_result in two_ranks:
        assert_bitwise_equal(rank_result["ais"], single)


def test_a_failing_shard_raises_on_every_rank_instead_of_hanging(two_ranks):
    messages = [rank_result["failing_shard"] for rank_result in two_ranks]
    assert messages == [
        "rank 1 of 2 failed: rank 1 cannot evaluate its shard",
        "rank 1 cannot evaluate its shard",
    ]


def test_sites_the_sum_over_ranks_would_count_once_per_rank_are_refused(two_ranks):
    # a plate scaling each rank's share to all the data, or a site outside the plate
    # (Pyro's ELBO takes it): the ranks' summed gradients counted them twice
    for rank_result in two_ranks:
        scaled, outside, plain, scaled_shares = rank_result["shard_scaling"]
        assert "pyro.plate('data') scales each share to all 16 points" in scaled
        assert "sample site(s) ['offset'] lie outside pyro.plate('data')" in outside
        assert "which the sum would count 2 times" in scaled and outside
        assert plain is None  # the same pair in a plate of the share's size trains
        # one batch of all the points: the check saw the global batch, unscaled, and let
        # the shares' gradients through twice their weight
        assert scaled_shares is not None
        assert "pyro.plate('data') scales each share to all 16 points" in scaled_shares


def test_ranks_passing_the_same_points_in_another_order_are_refused(two_ranks):
    # the shards are cut by position: rank 1's reversed rows would give each rank other
    # points, some evaluated (or trained on) twice and some never; the evaluators'
    # order-free checksum let them pass, and fit compared nothing
    for rank_result in two_ranks:
        messages = rank_result["reordered"]
        assert set(messages) == {"importance sampling", "ais", "fit", "fit labels"}
        for name, message in messages.items():
            assert message is not None, name
            assert "the ranks passed different data points" in message, name
            assert "rank 0: 12 points, rank 1: 12 points" in message, name


def test_three_ranks_evaluate_bitwise_as_one_and_a_failing_rank_ends_the_job(tmp_path, one_process):
    # torchrun starts 3 ranks: each evaluates (uneven and empty shards), then rank 1
    # raises during training while ranks 0 and 2 wait for it in the gradient all-reduce
    output = tmp_path / "evaluations.pt"
    started = time.monotonic()
    result = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "3", str(WORKER), str(output)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for sharded, single in zip(torch.load(output), one_process, strict=True):
        assert_bitwise_equal(sharded, single)
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stderr
    assert result.stderr.count("rank 1 of 3 failed in this step") == 2  # ranks 0 and 2
    assert time.monotonic() - started < TIMEOUT


def torchrun_vi_vae(*args, **options):
    return subprocess.Popen(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "vi_vae", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # one process group: torchrun and its workers
        **options,
    )


def test_killed_torchrun_training_resumes_without_losing_an_epoch(tmp_path):
    run_dir = tmp_path / "killed"
    args = ["train", "--epochs", "3", "--batch-size", "8", "--max-train", "512"]
    args += ["--hidden-sizes", "32", "--latent-dim", "2", "--eval-num-particles", "5"]
    args += ["--eval-num-points", "10", "--no-figures", "--quiet", "--run-dir", str(run_dir)]
    process = torchrun_vi_vae(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = run_dir / "history.csv"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    # killed as soon as epoch 1 is in the history, so in epoch 2: a fixed wait first
    # (0.2 s, once) was a race with epochs 2 and 3 (64 small steps each) and the final
    # evaluation, which an idle fast machine can finish in about that time
    assert process.poll() is None, process.communicate()[1].decode()
    os.killpg(process.pid, signal.SIGKILL)  # the whole job, as a scheduler kills it
    process.communicate()
    before = history.read_text().splitlines()
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] >= len(before) - 1 >= 1

    resumed = torchrun_vi_vae(
        "train", "--resume", str(run_dir), "--quiet", "--no-figures", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = resumed.communicate(timeout=TIMEOUT)
    assert resumed.returncode == 0, stderr
    assert stdout.count("run directory:") == 1  # rank 0 alone prints
    after = history.read_text().splitlines()
    assert [line.split(",")[0] for line in after[1:]] == ["1", "2", "3"]
    assert after[: len(before)] == before  # completed epochs kept as they were
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_epoch"] == len(before) - 1
    # the 2-rank evaluation at the end of training has the numbers of one process, up to
    # the order of the float sums (torchrun's ranks run one thread each, this process more)
    run = load_run(run_dir)
    single = evaluate_run_metrics(run.vae, run.dataset, run.config.evaluation)
    written = metrics["log_marginal_likelihood"]
    assert written["log_likelihood"] == up_to_reduction_order(
        single.log_marginal_likelihood.log_likelihood
    )
    assert [b["mean"] for b in metrics["bounds"]] == up_to_reduction_order(
        [b.mean for b in single.bounds]
    )


# -- without processes -----------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 3, 163])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("num_points", [0, 1, 7, 400])
def test_shards_are_contiguous_unpadded_and_start_at_blocks(num_points, world_size, block):
    shards = [
        shard(num_points, block=block, rank=r, world_size=world_size) for r in range(world_size)
    ]
    assert shards[0].start == 0 and shards[-1].stop == num_points
    for previous, current in zip(shards, shards[1:], strict=False):
        assert previous.stop == current.start  # contiguous, no point twice or left out
    assert all(s.start % block == 0 or s.start == num_points for s in shards)
    blocks = [-(-(s.stop - s.start) // block) for s in shards]
    assert max(blocks) - min(blocks) <= 1  # balanced to a block


def test_map_shards_in_one_process_evaluates_everything_in_place():
    assert map_shards(lambda rows: (rows.start, rows.stop), 5, combine=None) == (0, 5)


def test_keyed_draws_do_not_depend_on_chunk_size_nor_on_the_split():
    vae, x = tiny_vae(), binary_data(10)

    def log_weights(x, chunk_size, first_index=0):
        chunks = log_weight_chunks(
            vae.model, vae.guide, x, 2048, chunk_size=chunk_size, seed=3, first_index=first_index
        )
        return torch.cat([w for _, w in chunks], dim=1)

    whole = log_weights(x, 8192)
    assert torch.equal(whole, log_weights(x, 10**6))  # a block is one pass either way
    assert torch.equal(whole, torch.cat([log_weights(x[:4], 8192), log_weights(x[4:], 8192, 4)], 1))
    # passes smaller than a block replay the model on the block's draws: the same draws,
    # differently shaped matrix products, so float32 rounding (~1e-7 relative) only
    torch.testing.assert_close(log_weights(x, 1000), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="first_index must be a multiple of the key block size 4"):
        log_weights(x[2:], 8192, 2)
    assert key_block_size(2048) == 4


def test_pareto_k_of_a_shard_is_that_of_its_points():
    # k̂ is fitted point by point, so a shard's k̂ are the whole's: sharding is exact
    log_weights = torch.randn(200, 9, generator=torch.Generator().manual_seed(0)).double() * 3
    whole, _ = pareto_k(log_weights)
    parts = [pareto_k(log_weights[:, rows])[0] for rows in (slice(0, 4), slice(4, 9))]
    assert torch.equal(torch.cat(parts), whole)


def test_nproc_starts_torchrun_with_the_same_command(monkeypatch):
    commands = []
    monkeypatch.setattr(
        cli_launch.subprocess, "call", lambda command: commands.append(command) or 0
    )
    assert cli.main(["--verbose", "train", "--nproc", "2", "--epochs", "1", "--nproc=3"]) == 0
    assert commands == [  # both spellings removed; the last one given counts, as in argparse
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3"]
        + ["-m", "vi_vae", "--verbose", "train", "--epochs", "1"]
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "runs/x"], "vi-vae sample runs in one process; under torchrun, use train"),
        (["evaluate", "runs/x", "--nproc", "2"], "--nproc starts torchrun"),
    ],
)
def test_under_torchrun_commands_that_cannot_shard_refuse(monkeypatch, capsys, argv, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"vi-vae {argv[0]} (rank 1 of 2): error: ") and message in error


@pytest.mark.parametrize("fails", [False, True])
def test_a_cli_rank_waits_for_the_others_before_leaving_the_group_unless_it_failed(
    monkeypatch, fails
):
    # after a command every rank completed, a barrier first: no rank tears Gloo down while
    # another is still in a collective with it; after a failure none (the others may never
    # arrive, and would hold this rank until the group's timeout)
    calls = []
    monkeypatch.setattr(cli_launch.distributed, "launched_by_torchrun", lambda: True)
    monkeypatch.setattr(cli_launch.distributed, "init_from_environment", lambda: None)
    monkeypatch.setattr(cli_launch.distributed, "is_main_process", lambda: True)
    monkeypatch.setattr(cli_launch.distributed, "_group_active", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append("destroy"))
    with pytest.raises(InputError) if fails else contextlib.nullcontext():
        with cli_launch.distributed_session("evaluate"):
            calls.append("command")
            if fails:
                raise InputError("a failing command")
    assert calls == ["command", "destroy"] if fails else ["command", "barrier", "destroy"]
