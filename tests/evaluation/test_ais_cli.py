"""The command line states AIS's verdict (issue 20 items 8, 17), through the vi-vae entry point."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from float_rounding import one_thread

from vi_vae import cli

VI_VAE = str(Path(sys.executable).parent / "vi-vae")
TINY = ["--epochs", "1", "--max-train", "64", "--hidden-sizes", "8", "--latent-dim", "2"]
TINY += ["--eval-num-particles", "10", "--eval-num-points", "10", "--no-figures", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    # trained in this process, on one thread as the vi-vae processes run (the same bits):
    # what these tests check is the evaluate command's process, not train's
    path = tmp_path_factory.mktemp("runs") / "tiny"
    with one_thread(), contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--run-dir", str(path), *TINY]) == 0
    return path


def ais_arguments(num_steps, leapfrog_steps):
    return [
        "--method", "ais", "--num-points", "6", "--quiet", "--ais-num-steps", str(num_steps),
        "--ais-num-chains", "4", "--ais-leapfrog-steps", str(leapfrog_steps),
    ]  # fmt: skip


#: each test's evaluate arguments, run on its own copy of the trained run
EVALUATIONS = {
    "too_short": ais_arguments(5, 2),
    "enough": ais_arguments(300, 5),
    # issue 20 item 17: it was an allocation traceback after the run was loaded
    "huge": ["--method", "ais", "--ais-num-steps", str(10**12)],
}


@pytest.fixture(scope="module")
def evaluated(run_dir, tmp_path_factory):
    """Each evaluation on its own copy of the run, all started at once.

    Each command mostly imports torch and Pyro on one thread: side by side they use
    every core. Each writes only its own copy, so none sees another's report.
    """
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = {}
    for name, arguments in EVALUATIONS.items():
        copy = tmp_path_factory.mktemp(name) / "tiny"
        shutil.copytree(run_dir, copy)
        started[name] = (
            copy,
            subprocess.Popen(
                [VI_VAE, "evaluate", str(copy), *arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment,
            ),
        )
    finished = {}
    try:
        for name, (copy, process) in started.items():
            stdout, stderr = process.communicate(timeout=300)
            finished[name] = (
                copy,
                subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
            )
    finally:
        for _, process in started.values():
            process.kill()  # only those a timeout left running; the others have exited
            process.wait()
    return finished


def test_too_short_ais_warns_in_one_line_and_the_report_does_not_quote_it(evaluated):
    run_dir, result = evaluated["too_short"]
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


def test_enough_steps_are_the_number_to_quote(evaluated):
    run_dir, result = evaluated["enough"]
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    report = (run_dir / "report.md").read_text()
    assert "## Annealed importance sampling (the number to quote)" in report
    assert "- convergence: converged (acceptance, half-schedule, importance-sampling" in report


def test_a_huge_number_of_steps_is_one_line_and_exit_2(evaluated):
    _, result = evaluated["huge"]
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "ais.num_steps must be at most 1,000,000" in result.stderr
