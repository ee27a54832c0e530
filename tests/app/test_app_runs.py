"""Runs end to end through the application layer, in this process (no CLI subprocess)."""

import json

import numpy as np
import pytest
import torch

from vi_vae.app import assessment
from vi_vae.app.config import DataConfig, EvaluationConfig, ModelConfig, RunConfig, TrainingConfig
from vi_vae.app.run_directory import RunDirectory, RunDirectoryNotEmpty
from vi_vae.app.runs import EvaluationFailed, evaluate_run, load_run, resume_run, train_run

TINY = RunConfig(
    data=DataConfig(max_train=64),
    model=ModelConfig(latent_dim=2, hidden_sizes=(8,)),
    training=TrainingConfig(epochs=1),
    evaluation=EvaluationConfig(num_particles=25, bound_particles=(1, 5), num_points=20),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_run(TINY, tmp_path_factory.mktemp("runs") / "tiny", figures=False)


def test_train_run_returns_the_run_it_wrote(trained):
    loaded = load_run(trained.directory.path)
    assert loaded.config == trained.config
    assert repr(loaded.metrics) == repr(trained.metrics)
    assert [r.epoch for r in loaded.history] == [1]
    for name, value in trained.vae.state_dict().items():
        assert torch.equal(value, loaded.vae.state_dict()[name]), name


def test_evaluate_run_rewrites_metrics_and_report_with_its_settings(trained, tmp_path):
    directory = RunDirectory(tmp_path / "copy")
    directory.path.mkdir()
    for path in trained.directory.path.iterdir():
        (directory.path / path.name).write_bytes(path.read_bytes())
    run = evaluate_run(directory.path, EvaluationConfig(num_particles=7, num_points=10))
    assert run.metrics.log_marginal_likelihood.num_particles == 7
    assert repr(directory.read_metrics()) == repr(run.metrics)  # repr: NaN equals NaN
    report = directory.report_path.read_text()
    assert "K = 7 on the first 10 of the 500 test points" in report
    assert run.metrics.training == trained.metrics.training


def test_a_failed_evaluation_keeps_the_finished_training(tmp_path, monkeypatch):
    # issue 13: a crash after training (the k-hat fit at K = 1 used to be one) lost
    # metrics.json and report.md; now the training summary is written first.
    def broken(*args, **kwargs):
        raise ValueError("the evaluator broke")

    monkeypatch.setattr(assessment, "importance_sampling", broken)
    with pytest.raises(EvaluationFailed, match="training finished and is saved"):
        train_run(TINY, tmp_path / "run", figures=False)
    directory = RunDirectory(tmp_path / "run")
    metrics = directory.read_metrics()
    assert metrics.training.epochs_completed == 1
    assert metrics.evaluation_error == "the evaluator broke"
    assert "Evaluation failed" in directory.report_path.read_text()
    assert directory.has_checkpoint()
    monkeypatch.undo()
    assert evaluate_run(directory.path, TINY.evaluation).metrics.log_marginal_likelihood


def test_a_k_of_1_evaluation_reports_pareto_k_as_undefined(trained):
    metrics = assessment.evaluate(trained.vae, trained.dataset, EvaluationConfig(1, (1,), 5))
    estimate = metrics.log_marginal_likelihood
    assert np.isnan(estimate.share_pareto_k_above) and "at least 21" in estimate.pareto_k_reason
    assert metrics.bound(1).mean == pytest.approx(estimate.log_likelihood)  # IWAE-1 = ELBO


def test_resume_continues_and_new_runs_refuse_a_full_directory(trained, tmp_path):
    with pytest.raises(RunDirectoryNotEmpty):
        train_run(TINY, trained.directory.path)
    directory = RunDirectory(tmp_path / "more")
    directory.path.mkdir()
    for path in trained.directory.path.iterdir():
        (directory.path / path.name).write_bytes(path.read_bytes())
    run = resume_run(directory.path, epochs=2, figures=False)
    assert [r.epoch for r in run.history] == [1, 2]
    assert run.metrics.training.resumed_from_epoch == 1


def test_reports_word_the_units_by_likelihood(tmp_path):
    x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    np.save(tmp_path / "grey.npy", x)
    config = TINY.replace("data", dataset=str(tmp_path / "grey.npy"), max_train=None).replace(
        "model", likelihood="gaussian"
    )
    run = train_run(config, tmp_path / "run", figures=False)
    report = run.directory.report_path.read_text()
    assert run.metrics.data_kind == "continuous"
    assert "log density of continuous data, which can be positive" in report
    assert "log probability (≤ 0)" not in report
    stored = json.loads(run.directory.config_path.read_text())
    assert stored["dataset"]["source"].endswith("grey.npy")


def test_figures_cope_with_a_single_test_point_in_many_dimensions(trained):
    from vi_vae.app import plots

    png = plots.plot_latent_scatter(torch.randn(1, 5), None)
    assert png.startswith(b"\x89PNG")
