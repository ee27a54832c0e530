"""``vi-vae gaps``: the three numbers and both verdicts printed, the result stored in the run."""

import pytest

from vi_vae import cli
from vi_vae.app.config import DataConfig, EvaluationConfig, ModelConfig, RunConfig, TrainingConfig
from vi_vae.app.run_directory import RunDirectory
from vi_vae.app.runs import train_run

TINY = RunConfig(
    data=DataConfig(max_train=64),
    model=ModelConfig(latent_dim=2, hidden_sizes=(8,)),
    training=TrainingConfig(epochs=1),
    evaluation=EvaluationConfig(num_particles=10, bound_particles=(1,), num_points=10),
)
#: settings far too short for converged numbers: the test checks what is printed and stored
FAST = ["--num-points", "4", "--local-steps", "20", "--num-particles", "20", "--quiet"]
FAST += ["--ais-num-steps", "10", "--ais-num-chains", "2", "--ais-leapfrog-steps", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(TINY, tmp_path_factory.mktemp("runs") / "tiny", figures=False).directory.path


def test_gaps_prints_three_numbers_and_two_verdicts_and_records_them(run_dir, capsys):
    assert cli.main(["gaps", str(run_dir), *FAST, "--local-learning-rate", "0.02"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    stored = RunDirectory(run_dir).read_metrics().gaps
    for start, term in (
        ("log p(x) by AIS", stored.log_likelihood),
        ("approximation gap", stored.approximation_gap),
        ("amortization gap", stored.amortization_gap),
    ):
        line = next(line for line in lines if line.startswith(start))
        # ± the standard error over points, as evaluate prints it; then the Monte Carlo SE
        assert line.endswith(
            f"= {term.mean:.2f} ± {term.standard_error:.2f} nats "
            f"(Monte Carlo SE {term.monte_carlo_standard_error:.2f})"
        ), line
    ais_line = next(line for line in lines if line.startswith("AIS: "))
    # the command line names its flags (on stderr), never the library's num_steps
    assert ais_line.startswith("AIS: not converged: ") and "num_steps" not in ais_line
    assert any(line.startswith("local optimization: ") for line in lines)
    # 10 annealing steps cannot adapt the step sizes: one line says so, and what to raise
    warning = "vi-vae: warning: AIS has not converged, the gaps are not numbers to quote; "
    assert warning + "raise --ais-num-steps" in err
    assert stored.num_points == 4 and stored.settings.local_learning_rate == 0.02
    assert stored.settings.ais.num_steps == 10 and len(stored.local_trajectory) == 20
    whole = stored.approximation_gap.mean + stored.amortization_gap.mean
    assert whole == pytest.approx(stored.log_likelihood.mean - stored.amortized_elbo.mean)
    report = (run_dir / "report.md").read_text()
    # AIS has not converged: the section says so at its head and bolds no gap
    assert "## Where the bound is lost (not converged: not numbers to quote)" in report
    section = report.split("## Where the bound is lost")[1].split("\n## ")[0]
    assert "gap log p(x) − ELBO(q*): **" not in section


def test_a_bad_setting_is_one_line_and_exit_2(run_dir, capsys):
    assert cli.main(["gaps", str(run_dir), *FAST, "--local-learning-rate", "-1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "local_learning_rate" in err
