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
from vi_vae.checkpoint import CHECKSUM_FIELD, atomic_write_json
from vi_vae.errors import InputError
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


def test_a_hand_edited_gap_in_metrics_json_is_refused(tmp_path):
    # the two gaps are differences of the stored terms: a gap edited by hand no longer is
    # one, and the loader refuses the file rather than report the edited number
    from vi_vae.app.metrics import GapSummary, GapTermSummary, RunMetrics
    from vi_vae.app.run_directory import RunDirectory
    from vi_vae.evaluation import Convergence

    def term(mean):
        return GapTermSummary(mean, 1.0, 0.1)

    gaps = GapSummary(
        num_points=3,
        log_likelihood=term(-90.43),
        amortized_elbo=term(-93.59),
        local_elbo=term(-90.06),
        approximation_gap=term(-90.43 - -90.06),
        amortization_gap=term(-90.06 - -93.59),
        settings=SETTINGS,
        ais_convergence=Convergence(),
        local_convergence=Convergence(),
    )
    directory = RunDirectory(tmp_path, writer=True)
    directory.write_metrics(RunMetrics(gaps=gaps))
    assert directory.read_metrics().gaps == gaps  # as written, it loads
    stored = json.loads(directory.metrics_path.read_text())
    del stored[CHECKSUM_FIELD]
    stored["gaps"]["approximation_gap"]["mean"] = 5.0
    # signed again, so that the gap's own check, not the file's checksum, refuses it
    atomic_write_json(directory.metrics_path, stored, checksum=True)
    with pytest.raises(InputError, match="approximation_gap"):
        directory.read_metrics()


def test_the_figure_marks_a_run_whose_gaps_have_not_converged(out_dir):
    from vi_vae.app.plots import inference_gap_labels

    _, comparison = out_dir
    gaps = {row.estimator: row.gaps for row in comparison.rows}
    assert not gaps["iwae:2"].converged  # the premise: T = 5 AIS
    assert inference_gap_labels(gaps) == ["iwae:2\n(not converged)"]
