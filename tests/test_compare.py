import json

import pytest

from vi_vae import cli
from vi_vae.app.compare import bound_curve_particles, run_name
from vi_vae.estimators import ELBO, IWAE, MIWAE, DReG, with_num_particles

TINY = [
    "--max-train",
    "200",
    "--hidden",
    "16",
    "--latent-dim",
    "3",
    "--epochs",
    "1",
    "--eval-samples",
    "50",
    "--eval-points",
    "30",
    "--snr-draws",
    "3",
    "--snr-particles",
    "1,2",
    "--quiet",
]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("compare")
    status = cli.main(
        ["compare", "--estimators", "elbo,iwae:3,dreg:3", "--out-dir", str(out_dir), *TINY]
    )
    assert status == 0
    return out_dir


def test_compare_writes_report_table_and_figures(comparison):
    report = (comparison / "report.md").read_text()
    for expected in (
        "| estimator | seconds | test ELBO | IWAE-5 | IWAE-50 | log p(x) ± SE",
        "| elbo |",
        "| iwae:3 |",
        "| dreg:3 |",
        "![bounds_versus_k]",
        "vi-vae compare",
    ):
        assert expected in report, expected
    for name in (
        "bounds_versus_k.png",
        "training_curves.png",
        "snr_versus_k.png",
        "comparison.json",
    ):
        assert (comparison / name).is_file()
    for run in ("elbo", "iwae-3", "dreg-3"):
        assert (comparison / run / "checkpoint.pt").is_file()


def test_runs_share_initialization_and_evaluation(comparison):
    data = json.loads((comparison / "comparison.json").read_text())
    rows = {row["estimator"]: row for row in data["rows"]}
    assert set(rows) == {"elbo", "iwae:3", "dreg:3"}
    for row in rows.values():
        assert row["num_samples"] == 50
        assert row["elbo"] <= row["log_px"] + 3 * row["log_px_se"]
        assert 0 <= row["active_units"] <= 3
        assert row["snr_encoder"] > 0 and row["snr_decoder"] > 0
    # same seed: every run's first-epoch shuffling and initial weights are the same,
    # so the epoch-1 training losses differ only through the estimator
    losses = {name: history[0]["train_loss"] for name, history in data["histories"].items()}
    assert len(set(losses.values())) == 3
    curves = data["curves"]["iwae:3"]
    assert [point[0] for point in curves["snr"]] == [1, 2]
    assert [point[0] for point in curves["bounds"]] == [1, 2, 5, 10, 20, 50]


def test_resume_keeps_finished_runs(comparison):
    checkpoint = comparison / "elbo" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    status = cli.main(
        ["compare", "--estimators", "elbo", "--out-dir", str(comparison), "--resume", *TINY]
    )
    assert status == 0
    assert checkpoint.stat().st_mtime_ns == before


def test_bad_estimator_list_is_refused_before_training(tmp_path, capsys):
    status = cli.main(
        ["compare", "--estimators", "elbo,iwae:many", "--out-dir", str(tmp_path / "c"), *TINY]
    )
    assert status == 2
    assert "num_particles must be int" in capsys.readouterr().err
    assert not (tmp_path / "c" / "elbo").exists()


def test_spelling_helpers():
    assert run_name("vr:0.5:5") == "vr-0.5-5"
    assert isinstance(with_num_particles("elbo", 4), ELBO)
    iwae = with_num_particles("iwae:5", 20)
    assert isinstance(iwae, IWAE) and iwae.num_particles == 20
    assert isinstance(with_num_particles("dreg:5", 2), DReG)
    miwae = with_num_particles("miwae:3:5", 7)
    assert isinstance(miwae, MIWAE) and miwae.num_inner == 7
    piwae = with_num_particles("piwae:8:8:64", 5)
    assert (piwae.num_outer, piwae.num_inner, piwae.model_particles) == (8, 5, 40)
    vr = with_num_particles("vr:0.5:5", 3)
    assert vr.num_particles == 3
    assert bound_curve_particles(60) == [1, 2, 5, 10, 20, 50]
