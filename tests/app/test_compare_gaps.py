"""``compare(gaps=GapRequest(N))``: where each estimator's bound is lost, a table and a figure."""

import dataclasses
import json

import pytest

from vi_vae.app.assessment import GapRequest
from vi_vae.app.compare import compare
from vi_vae.app.config import (
    AISConfig,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from vi_vae.app.gap_report import comparison_gap_lines
from vi_vae.evaluation import AISSettings, GapSettings

#: settings far too short for converged numbers: the test checks what is written
BASE = RunConfig(
    data=DataConfig(max_train=64),
    model=ModelConfig(latent_dim=2, hidden_sizes=(8,)),
    training=TrainingConfig(epochs=1),
    evaluation=EvaluationConfig(num_particles=10, bound_particles=(1,), num_points=10),
    ais=AISConfig(num_steps=5, num_chains=2, leapfrog_steps=2),
)
SETTINGS = GapSettings(
    local_steps=10, num_particles=20, ais=AISSettings(num_steps=5, num_chains=2, leapfrog_steps=2)
)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("compare")
    comparison = compare(
        BASE,
        ["iwae:2"],
        out_dir,
        snr_particles=(1,),
        snr_num_draws=2,
        gaps=GapRequest(3, SETTINGS),
    )
    return out_dir, comparison


def test_the_report_has_the_gap_table_and_the_stacked_bars(out_dir):
    out_dir, _ = out_dir
    report = (out_dir / "report.md").read_text()
    assert "## Where the bound is lost" in report
    header = "| estimator | log p(x) | ELBO(q_φ) | approximation gap | amortization gap |"
    assert header in report
    table = report.split(header)[1].split("\n\n")[0]
    assert "| iwae:2 | " in table and " ± " in table
    # T = 5 AIS has not converged: the table says which rows may be quoted
    assert table.rstrip().endswith("| no |")
    assert "Quote a row only where it converged (last column)" in report
    assert "![where the bound is lost](inference_gaps.png)" in report
    assert report.count("(inference_gaps.png)") == 1  # beside its table, not again below
    assert (out_dir / "inference_gaps.png").read_bytes()[:4] == b"\x89PNG"


def test_comparison_json_holds_each_runs_gaps_with_their_settings(out_dir):
    out_dir, _ = out_dir
    rows = json.loads((out_dir / "comparison.json").read_text())["rows"]
    for row in rows:
        gaps = row["gaps"]
        assert gaps["num_points"] == 3 and gaps["settings"]["local_steps"] == 10
        whole = gaps["approximation_gap"]["mean"] + gaps["amortization_gap"]["mean"]
        assert whole == pytest.approx(
            gaps["log_likelihood"]["mean"] - gaps["amortized_elbo"]["mean"]
        )


def test_without_gaps_no_table(out_dir):
    _, comparison = out_dir
    rows = [dataclasses.replace(row, gaps=None) for row in comparison.rows]
    assert comparison_gap_lines(rows, None) == []
    assert comparison_gap_lines(comparison.rows, None)[0] == "## Where the bound is lost"
