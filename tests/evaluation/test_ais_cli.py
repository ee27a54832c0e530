"""The command line states AIS's verdict (issue 20 items 8, 17), through the vi-vae entry point."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

VI_VAE = str(Path(sys.executable).parent / "vi-vae")
TINY = ["--epochs", "1", "--max-train", "64", "--hidden-sizes", "8", "--latent-dim", "2"]
TINY += ["--eval-num-particles", "10", "--eval-num-points", "10", "--no-figures", "--quiet"]


def run(*args):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [VI_VAE, *args], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    result = run("train", "--run-dir", str(path), *TINY)
    assert result.returncode == 0, result.stderr
    return path


def evaluate_ais(run_dir, num_steps, leapfrog_steps):
    return run(
        "evaluate", str(run_dir), "--method", "ais", "--num-points", "6", "--quiet",
        "--ais-num-steps", str(num_steps), "--ais-num-chains", "4",
        "--ais-leapfrog-steps", str(leapfrog_steps),
    )  # fmt: skip


def test_too_short_ais_warns_in_one_line_and_the_report_does_not_quote_it(run_dir):
    result = evaluate_ais(run_dir, 5, 2)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "AIS has not converged, not a number to quote" in warnings[0]
    assert "Raise --ais-num-steps" in warnings[0]
    assert "Traceback" not in result.stderr
    report = (run_dir / "report.md").read_text()
    assert "## Annealed importance sampling (not converged: not a number to quote)" in report
    assert "(the number to quote)" not in report
    assert "**not converged**" in report


def test_enough_steps_are_the_number_to_quote(run_dir):
    result = evaluate_ais(run_dir, 300, 5)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    report = (run_dir / "report.md").read_text()
    assert "## Annealed importance sampling (the number to quote)" in report
    assert "- convergence: converged (acceptance, half-schedule, importance-sampling" in report


def test_a_huge_number_of_steps_is_one_line_and_exit_2(run_dir):
    # issue 20 item 17: it was an allocation traceback after the run was loaded
    result = run("evaluate", str(run_dir), "--method", "ais", "--ais-num-steps", str(10**12))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "ais.num_steps must be at most 1,000,000" in result.stderr
