"""Runs end to end through the application layer, in this process (no CLI subprocess)."""

import fcntl
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from vi_vae.app import assessment
from vi_vae.app.config import (
    AISConfig,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from vi_vae.app.report import number
from vi_vae.app.run_directory import (
    FIGURE_FILES,
    LOCK_FILE,
    MetricsOfAnotherCheckpoint,
    RunDirectory,
    RunDirectoryInUse,
    RunDirectoryNotEmpty,
)
from vi_vae.app.run_evaluation import AISNotKeptWarning, evaluate_run
from vi_vae.app.runs import EvaluationFailed, RunProgress, load_run, resume_run, train_run
from vi_vae.checkpoint import load_checkpoint, save_checkpoint
from vi_vae.data import SPLITS
from vi_vae.errors import AISConvergenceWarning, InputError

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


def test_a_re_evaluation_without_ais_says_that_the_run_s_ais_estimate_is_not_kept(
    trained, tmp_path
):
    shutil.copytree(trained.directory.path, tmp_path / "copy")
    evaluation = EvaluationConfig(num_particles=7, num_points=10)
    ais = AISConfig(num_steps=3, num_chains=2, leapfrog_steps=1, num_points=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)  # 3 steps: not converged
        warnings.simplefilter("error", AISNotKeptWarning)
        assert evaluate_run(tmp_path / "copy", evaluation, ais=ais).metrics.ais is not None
    with pytest.warns(AISNotKeptWarning, match=r"on 4 points, T = 3, C = 2, L = 1\) made beside"):
        run = evaluate_run(tmp_path / "copy", evaluation)
    assert run.metrics.ais is None and RunDirectory(tmp_path / "copy").read_metrics().ais is None


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


def test_data_changed_since_training_are_refused_naming_the_splits(tmp_path):
    # a --dataset file rewritten after training was evaluated, and resumed, as the run's
    # data: log p(x) of other test points, reported as the run's without a word
    x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    path = tmp_path / "grey.npy"
    np.save(path, x)
    config = TINY.replace("data", dataset=str(path), max_train=None)
    run = train_run(config, tmp_path / "run", figures=False)
    run_dir = run.directory.path
    sizes = [len(split) for split in (run.dataset.train, run.dataset.validation, run.dataset.test)]
    np.save(path, 1 - x)  # the same shape, other values
    every_split = "its train, validation and test splits hold other points"
    then_and_now = "; ".join(
        f"{split}: {n} points then, {n} now" for split, n in zip(SPLITS, sizes, strict=True)
    )
    with pytest.raises(InputError, match=rf"not the data .*{every_split} \({then_and_now}\)"):
        load_run(run_dir)
    with pytest.raises(InputError, match=every_split):
        resume_run(run_dir, epochs=2, figures=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1  # nothing trained
    np.save(path, np.concatenate([x, x[:10]]))  # ten more points: other splits, other sizes
    with pytest.raises(InputError, match=f"train: {sizes[0]} points then, {sizes[0] + 8} now"):
        load_run(run_dir)
    np.save(path, x)  # restored
    assert load_run(run_dir).dataset.test.shape[0] == sizes[2]
    # a checkpoint of an earlier vi_vae holds no digests: its data cannot be checked
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    del checkpoint["metadata"]["data"]
    save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    (run_dir / "metrics.json").unlink()  # the numbers of the checkpoint it replaced
    np.save(path, 1 - x)
    load_run(run_dir)


def test_figures_cope_with_a_single_test_point_in_many_dimensions(trained):
    from vi_vae.app import plots

    png = plots.plot_latent_scatter(torch.randn(1, 5), None)
    assert png.startswith(b"\x89PNG")


def _copy(source, target):
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize(("field", "value"), [("estimator", "iwae:5"), ("seed", 1)])
def test_an_edited_training_setting_is_refused_not_reported(trained, tmp_path, field, value):
    # issue 20 item 13: an edited training.estimator or training.seed was accepted and the
    # report stated it for weights trained otherwise
    run_dir = _copy(trained.directory.path, tmp_path / "edited")
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["training"][field] = value
    (run_dir / "config.json").write_text(json.dumps(stored))
    message = f"says training.{field} = {value!r} but .* was trained with"
    with pytest.raises(InputError, match=message):
        load_run(run_dir)
    with pytest.raises(InputError, match=message):
        resume_run(run_dir, epochs=2, figures=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1  # nothing trained


def test_a_checkpoint_without_its_fingerprint_is_refused_not_trusted(trained, tmp_path):
    # a checkpoint written with its checksum but no fingerprint (a sink of one's own) was
    # accepted as the config's: load and resume checked it against nothing
    run_dir = _copy(trained.directory.path, tmp_path / "unprinted")
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    del checkpoint["metadata"]["fingerprint"]
    save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    message = "holds no fingerprint of the settings it was trained with"
    with pytest.raises(InputError, match=message):
        load_run(run_dir)
    with pytest.raises(InputError, match=message):
        resume_run(run_dir, epochs=2, figures=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1  # nothing trained


def test_metrics_of_another_checkpoint_are_refused_not_reported(trained, tmp_path):
    # another run's metrics.json (its checksum intact) copied beside this run's checkpoint:
    # plot and evaluate reported its log p(x) as this run's
    other = train_run(TINY.replace("training", seed=7), tmp_path / "other", figures=False)
    run_dir = _copy(trained.directory.path, tmp_path / "copied")
    shutil.copy(other.directory.metrics_path, run_dir / "metrics.json")
    message = r"metrics.json holds the numbers of another checkpoint than .*checkpoint.pt"
    with pytest.raises(MetricsOfAnotherCheckpoint, match=message):
        load_run(run_dir)
    shutil.copy(trained.directory.metrics_path, run_dir / "metrics.json")  # its own
    assert repr(load_run(run_dir).metrics) == repr(trained.metrics)


def test_a_resume_that_stopped_before_its_evaluation_leaves_no_number_of_the_old_weights(
    tmp_path,
):
    # a resume killed after training on, before its evaluation, left the metrics and the
    # figures of the old weights beside the new checkpoint: reported as the run's
    run = train_run(TINY, tmp_path / "run")
    earlier = run.directory.metrics_path.read_bytes()
    resume_run(run.directory.path, epochs=2, figures=False)
    run.directory.metrics_path.write_bytes(earlier)  # as the stopped resume left it
    for name in run.metrics.figures:
        (run.directory.path / name).write_bytes(b"a figure of the old weights")
    with pytest.raises(MetricsOfAnotherCheckpoint):
        load_run(run.directory.path)
    # resuming finishes it: evaluated anew, the old figures removed
    finished = resume_run(run.directory.path, epochs=2, figures=False)
    assert finished.metrics.figures == ()
    assert not any(run.directory.figure_path(name).exists() for name in FIGURE_FILES)
    assert repr(load_run(run.directory.path).metrics) == repr(finished.metrics)


class _StopInEpoch(RunProgress):
    def __init__(self, epoch=3):
        super().__init__()
        self.epoch = epoch

    def on_epoch_start(self, epoch, steps_per_epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt  # Ctrl-C while training on: epoch 2 is saved


def test_a_resume_stopped_before_its_evaluation_leaves_no_report_of_the_old_weights(tmp_path):
    # report.md, unlike metrics.json, has no checksum to refuse: a resume stopped after
    # training on left the old weights' log p(x) in it as the run's
    run = train_run(TINY, tmp_path / "run", figures=False)
    old_number = f"**{number(run.metrics.log_marginal_likelihood.log_likelihood)}**"
    assert old_number in run.directory.report_path.read_text()
    with pytest.raises(KeyboardInterrupt):
        resume_run(run.directory.path, epochs=3, figures=False, progress=_StopInEpoch())
    assert load_checkpoint(run.directory.checkpoint_path)["epoch"] == 2
    report = run.directory.report_path.read_text()
    assert old_number not in report and "log p(x)" not in report
    assert "resumed after epoch 1 to train on to epoch 3" in report
    finished = resume_run(run.directory.path, figures=False)  # finishing it writes the numbers
    new_number = f"**{number(finished.metrics.log_marginal_likelihood.log_likelihood)}**"
    assert new_number in run.directory.report_path.read_text()


def test_a_resume_stopped_before_it_saves_an_epoch_leaves_the_run_as_it_was(tmp_path):
    # the resume withdrew the figures and the report when it started: stopped in its
    # first epoch, it left the same weights without them
    run_dir = train_run(TINY, tmp_path / "run").directory.path
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    assert {"report.md", "metrics.json"} <= set(before) and any(n.endswith(".png") for n in before)
    with pytest.raises(KeyboardInterrupt):
        resume_run(run_dir, epochs=3, figures=False, progress=_StopInEpoch(epoch=2))
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.name != LOCK_FILE}
    changed = {name for name in before if after.get(name) != before[name]}
    assert changed <= {"config.json"}  # rewritten, with the new number of epochs
    assert set(after) == set(before) - {LOCK_FILE}


def test_a_second_writer_is_refused_and_the_first_run_stays_whole(trained, tmp_path):
    # issue 20 item 14: two `train --overwrite` on one directory both ran and left one
    # run's config beside the other's weights
    run_dir = _copy(trained.directory.path, tmp_path / "busy")
    in_flight = run_dir / ".checkpoint.pt.abcd1234.tmp"  # the holder's write, not stale
    in_flight.write_bytes(b"being written")
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    holder = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # another process's lock
    os.write(holder, b"4242\n")
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        other = TINY.replace("training", seed=7)
        with pytest.raises(
            RunDirectoryInUse, match=r"in use by another vi_vae process \(pid 4242\)"
        ):
            train_run(other, run_dir, overwrite=True, figures=False)
        with pytest.raises(RunDirectoryInUse):
            resume_run(run_dir, epochs=2, figures=False)
        with pytest.raises(RunDirectoryInUse):
            evaluate_run(run_dir, TINY.evaluation)
    finally:
        os.close(holder)
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.name != LOCK_FILE}
    assert after == {name: data for name, data in before.items() if name != LOCK_FILE}
    assert in_flight.exists()
    # released: the next writer takes the lock, and leaves no lock file behind
    run = train_run(TINY.replace("training", seed=7), run_dir, overwrite=True, figures=False)
    assert run.config.training.seed == 7 and not (run_dir / LOCK_FILE).exists()


def test_resume_removes_the_figures_of_the_old_weights(tmp_path):
    # issue 20 item 16: `train --resume --no-figures` left the previous figures, now stale
    run = train_run(TINY, tmp_path / "run")
    assert run.metrics.figures and all(
        (run.directory.path / n).is_file() for n in run.metrics.figures
    )
    resumed = resume_run(run.directory.path, epochs=2, figures=False)
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert not any(run.directory.figure_path(name).exists() for name in FIGURE_FILES)
    assert resumed.metrics.figures == ()
    assert "## Figures" not in run.directory.report_path.read_text()


def test_a_resume_that_trains_nothing_keeps_its_figures(tmp_path):
    run = train_run(TINY, tmp_path / "run")
    again = resume_run(run.directory.path, figures=False)  # at its epochs: weights unchanged
    assert again.metrics.figures == run.metrics.figures
    assert all((run.directory.path / name).is_file() for name in run.metrics.figures)
    assert "![samples](samples.png)" in run.directory.report_path.read_text()


@pytest.mark.parametrize(
    "model", [{"latent_dim": 10**8}, {"hidden_sizes": (10**8,)}], ids=["latent", "hidden"]
)
def test_sizes_beyond_memory_are_refused_before_allocating(tmp_path, model):
    # issue 20 item 17: an allocation error from inside torch.nn.Linear
    with pytest.raises(InputError, match="GiB to train; the cpu device has"):
        train_run(TINY.replace("model", **model), tmp_path / "run", figures=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("asked", [None, 3, 5, 9])
def test_the_evaluated_points_say_when_fewer_were_there_than_asked_for(asked):
    from vi_vae.data import Dataset

    data = torch.rand(5, 4)
    dataset = Dataset("toy", data, data, data)
    points, subset = assessment.evaluation_points(dataset, asked)
    assert points.shape[0] == subset.num_points == min(asked or 5, 5)
    assert ("9 were asked for" in subset.description) == (asked == 9)
