import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vi_vae import _sources as data_module
from vi_vae import cli
from vi_vae.checkpoint import load_checkpoint
from vi_vae.latents import FAMILIES

VI_VAE = str(Path(sys.executable).parent / "vi-vae")
TINY = [
    "--max-train",
    "256",
    "--hidden",
    "32",
    "--eval-samples",
    "20",
    "--eval-bounds",
    "1,5",
    "--eval-points",
    "40",
    "--quiet",
]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def run(*args, cwd=None, env=None):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [VI_VAE, *args], capture_output=True, text=True, cwd=cwd, env=environment, timeout=300
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run("train", "--epochs", "2", "--latent-dim", "2", "--run-dir", str(run_dir), *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_train_writes_the_whole_run_directory(trained_run):
    run_dir, result = trained_run
    assert f"run directory: {run_dir}" in result.stdout
    assert "test log p(x) =" in result.stdout
    for name in (
        "config.json",
        "checkpoint.pt",
        "history.csv",
        "metrics.json",
        "report.md",
        "reconstructions.png",
        "samples.png",
        "latent_scatter.png",
        "manifold.png",
        "interpolation.png",
        "training_curves.png",
    ):
        assert (run_dir / name).is_file(), name
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["config"]["binarization"] == "dynamic"
    assert stored["config"]["seed"] == 0
    assert {"torch", "pyro", "vi_vae", "python"} <= set(stored["environment"])
    with open(run_dir / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    estimate = metrics["log_marginal_likelihood"]
    assert estimate["num_samples"] == 20 and estimate["num_points"] == 40
    assert -800 < estimate["log_px"] < 0 and estimate["log_px_standard_error"] > 0
    assert [b["name"] for b in metrics["bounds"]] == ["ELBO", "IWAE-5"]
    assert metrics["bounds"][0]["mean"] <= estimate["log_px"] + 1
    assert "Binarization: **dynamic**" in (run_dir / "report.md").read_text()
    assert not list(run_dir.glob(".*.tmp"))


def test_evaluate_sample_and_plot(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run("evaluate", str(run_dir), "--num-samples", "30", "--num-points", "10")
    assert result.returncode == 0, result.stderr
    assert "K = 30" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["log_marginal_likelihood"]["num_samples"] == 30
    assert metrics["training"]["epochs_completed"] == 2
    result = run("sample", str(run_dir), "--num", "8", "--output", str(tmp_path / "s.npy"))
    assert result.returncode == 0, result.stderr
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (8, 784) and ((samples >= 0) & (samples <= 1)).all()
    result = run("plot", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "manifold.png" in result.stdout


def test_listing_commands(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist-5k" in out and "fashion-mnist" in out
    assert cli.main(["families"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "normal" in out and "location_scale" in out


@pytest.fixture
def bad_files(tmp_path):
    np.save(tmp_path / "bytes.npy", np.full((20, 4), 255.0))
    np.save(tmp_path / "nan.npy", np.full((20, 4), np.nan))
    np.save(tmp_path / "flat.npy", np.zeros(20))
    run_dir = tmp_path / "corrupt"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": {"dataset": "mnist-5k"}}))
    (run_dir / "checkpoint.pt").write_bytes(b"\x00garbage")
    return tmp_path


BAD_INPUTS = [
    (["train", "--dataset", "cifar"], "unknown dataset 'cifar'; accepted values: mnist-5k"),
    (["train", "--likelihood", "poisson"], "unknown likelihood 'poisson'; accepted values"),
    (["train", "--latent", "hyperbolic"], "unknown latent family 'hyperbolic'; accepted values"),
    (["train", "--epochs", "0"], "--epochs must be an integer >= 1; got 0"),
    (["train", "--eval-samples", "0"], "--eval-samples must be an integer >= 1"),
    (["train", "--binarize", "none"], "needs binary data; accepted binarization values"),
    (["train", "--binarize", "sometimes"], "unknown binarization 'sometimes'; accepted values"),
    (["train", "--estimator", "magic"], "unknown estimator 'magic'; accepted values: elbo"),
    (["train", "--activation", "sigmoidal"], "unknown activation 'sigmoidal'"),
    (
        ["train", "--dataset", "{tmp}/bytes.npy"],
        r"values in [255, 255]; pixel data must lie in [0, 1]",
    ),
    (["train", "--dataset", "{tmp}/nan.npy"], "contains NaN or infinite values"),
    (["train", "--dataset", "{tmp}/flat.npy"], "data must have shape [N, D]"),
    (["train", "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    (["evaluate", "{tmp}/corrupt", "--num-samples", "0"], "--num-samples must be an integer >= 1"),
    (["evaluate", "{tmp}/corrupt"], "corrupt or not a vi_vae checkpoint"),
    (["evaluate", "{tmp}/missing"], "run directory {tmp}/missing does not exist"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_status_2(argv, message, bad_files, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(bad_files)) for a in argv]
    if argv[0] == "train":
        argv += [
            "--run-dir",
            str(tmp_path / "run"),
            "--epochs" if "--epochs" not in argv else "",
            "1" if "--epochs" not in argv else "",
        ]
        argv = [a for a in argv if a]
    with pytest.raises(SystemExit) if "--batch-size" in argv else _no_exit():
        status = cli.main(argv)
        assert status == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(bad_files)) in err
    assert err.count("\n") == 1 and "Traceback" not in err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_entry_point_exit_status_and_no_traceback(bad_files):
    result = run("train", "--dataset", str(bad_files / "nan.npy"), "--epochs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    result = run("evaluate", str(bad_files / "corrupt"))
    assert (
        result.returncode == 2 and "corrupt" in result.stderr and "Traceback" not in result.stderr
    )


def test_cuda_request_without_cuda_is_a_clear_error(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status = cli.main(["train", "--device", "cuda", "--epochs", "1", "--run-dir", str(tmp_path)])
    assert status == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def test_existing_run_directory_is_not_overwritten_silently(trained_run, capsys):
    run_dir, _ = trained_run
    assert cli.main(["train", "--epochs", "1", "--run-dir", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_sigkill_mid_epoch_then_resume_loses_no_completed_epoch(tmp_path):
    run_dir = tmp_path / "killed"
    args = [
        "train",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--hidden",
        "32",
        "--latent-dim",
        "2",
        "--eval-samples",
        "5",
        "--eval-points",
        "10",
        "--no-figures",
        "--quiet",
    ]
    process = subprocess.Popen(
        [VI_VAE, *args, "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    history = run_dir / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    assert process.poll() is None, process.communicate()[1].decode()
    process.send_signal(signal.SIGKILL)
    process.communicate()
    before = history.read_text().splitlines()
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["epoch"] == len(before) - 1 >= 1
    assert not list(run_dir.glob(".*.tmp"))

    result = run("train", "--resume", str(run_dir), "--quiet", "--no-figures")
    assert result.returncode == 0, result.stderr
    after = history.read_text().splitlines()
    assert [line.split(",")[0] for line in after[1:]] == ["1", "2", "3"]
    assert after[: len(before)] == before  # completed epochs kept as they were
    assert (run_dir / "metrics.json").is_file()


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_one_epoch_offline(tmp_path):
    result = run(
        "train",
        "--dataset",
        "fashion-mnist",
        "--epochs",
        "1",
        "--run-dir",
        str(tmp_path / "fashion"),
        "--no-figures",
        *TINY,
        env={"VI_VAE_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads((tmp_path / "fashion" / "config.json").read_text())
    assert stored["config"]["dataset"] == "fashion-mnist"


def test_fashion_mnist_missing_prints_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(data_module.SYSTEM_DATA_DIRS, "fashion-mnist", [str(tmp_path / "none")])
    monkeypatch.setenv("VI_VAE_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("VI_VAE_OFFLINE", "1")
    status = cli.main(
        ["train", "--dataset", "fashion-mnist", "--epochs", "1", "--run-dir", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_latent_family_trains_from_the_command_line(family, tmp_path, capsys):
    run_dir = tmp_path / family
    status = cli.main(
        [
            "train",
            "--latent",
            family,
            "--latent-dim",
            "2",
            "--max-train",
            "64",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--eval-samples",
            "4",
            "--eval-bounds",
            "1",
            "--eval-points",
            "8",
            "--quiet",
            "--run-dir",
            str(run_dir),
        ]
    )
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert -1000 < metrics["log_marginal_likelihood"]["log_px"] < 0
    assert json.loads((run_dir / "config.json").read_text())["config"]["latent"] == family
    assert (run_dir / "latent_scatter.png").is_file()


def test_bad_input_leaves_no_run_directory_and_keeps_the_old_run(trained_run, bad_files):
    new_dir = bad_files / "never-made"
    assert (
        cli.main(["train", "--dataset", str(bad_files / "nan.npy"), "--run-dir", str(new_dir)]) == 2
    )
    assert not new_dir.exists()
    run_dir, _ = trained_run
    before = sorted(p.name for p in run_dir.iterdir())
    status = cli.main(
        ["train", "--dataset", str(bad_files / "nan.npy"), "--run-dir", str(run_dir), "--overwrite"]
    )
    assert status == 2
    assert sorted(p.name for p in run_dir.iterdir()) == before
