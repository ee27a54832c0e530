"""``compare``: one run per estimator from the same seed, evaluated alike, in memory."""

import dataclasses
import fcntl
import json
import math
import os
import re
import shutil
import warnings

import pytest

from vi_vae import cli
from vi_vae.app.compare import (
    ComparisonProgress,
    EvaluatedAgainWarning,
    SettingsChanged,
    bound_curve_particles,
    compare,
    run_name,
)
from vi_vae.app.comparison_report import comparison_report
from vi_vae.app.config import (
    AISConfig,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from vi_vae.app.run_directory import LOCK_FILE, RunDirectory, RunDirectoryInUse
from vi_vae.app.run_evaluation import evaluate_run
from vi_vae.app.runs import load_run
from vi_vae.cli.printing import print_paired_differences
from vi_vae.errors import AISConvergenceWarning, InputError
from vi_vae.evaluation import ABOVE_PARETO_K_THRESHOLD, NARROWER_GUIDE_SUPPORT

BASE = RunConfig(
    data=DataConfig(max_train=200),
    model=ModelConfig(latent_dim=3, hidden_sizes=(16,)),
    training=TrainingConfig(epochs=1),
    evaluation=EvaluationConfig(num_particles=50, num_points=30),
)
ESTIMATORS = ["elbo", "iwae:3", "dreg:3"]


class Recorder(ComparisonProgress):
    """Every report of compare's progress, in order."""

    def __init__(self):
        self.events = []

    def on_run(self, spelling):
        self.events.append(("run", spelling))

    def on_epoch(self, record):
        self.events.append(("epoch", record.epoch))

    def on_snr_draw(self, done, total):
        self.events.append(("snr", done, total))


PROGRESS = Recorder()


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("compare")
    result = compare(
        BASE, ESTIMATORS, out_dir, snr_particles=(1, 2), snr_num_draws=3, progress=PROGRESS
    )
    return out_dir, result


def test_every_phase_of_every_run_reports_its_progress(comparison):
    # per run: its start, its epoch, then 3 SNR draws for the row and 3 for each K of (1, 2)
    # that is not the run's own estimator (elbo's K = 1 is: its row's draws serve the curve)
    def per_run(spelling):
        total = 6 if spelling == "elbo" else 9
        return [("epoch", 1), *[("snr", done, total) for done in range(1, total + 1)]]

    assert PROGRESS.events == [
        event for spelling in ESTIMATORS for event in [("run", spelling), *per_run(spelling)]
    ]


def test_the_row_s_snr_is_the_curve_s_at_the_run_s_own_estimator(comparison):
    _, result = comparison
    row = next(row for row in result.rows if row.estimator == "elbo")
    point = next(point for point in result.snr_curves["elbo"] if point.num_particles == 1)
    assert (row.snr_guide, row.snr_model) == (point.guide, point.model)
    assert row.snr_guide > 0 and row.snr_model > 0


def test_resumed_finished_runs_measure_the_same_snr(comparison, tmp_path):
    # finished runs are loaded one after another in one process; each VAE's parameters
    # share their names with the one before, and Pyro's param store kept the first
    # one's tensors: the SNRs of every loaded run came out NaN (written as null)
    out_dir, result = comparison
    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy, ignore=shutil.ignore_patterns(LOCK_FILE))
    resumed = compare(BASE, ESTIMATORS, copy, snr_particles=(1, 2), snr_num_draws=3, resume=True)
    # the same draws on the same parameters; the trained model in memory and the one read
    # back from its checkpoint agree to float rounding (1e-10 measured), hence rel=1e-6
    for before, after in zip(result.rows, resumed.rows, strict=True):
        assert (after.snr_guide, after.snr_model) == pytest.approx(
            (before.snr_guide, before.snr_model), rel=1e-6
        )
    for spelling, curve in result.snr_curves.items():
        for before, after in zip(curve, resumed.snr_curves[spelling], strict=True):
            assert (after.guide, after.model) == pytest.approx(
                (before.guide, before.model), rel=1e-6
            )


def test_compare_writes_report_table_and_figures(comparison):
    out_dir, _ = comparison
    report = (out_dir / "report.md").read_text()
    for expected in (
        "| estimator | seconds | test ELBO | IWAE-5 | IWAE-50 | log p(x) ± SE",
        "| elbo |",
        "| iwae:3 |",
        "| dreg:3 |",
        "![bounds_versus_k]",
        "the same 30 test points",
        # snr_num_draws=3: E|t₂|/√3 = √(2/3), what a gradient with mean 0 reads
        "reads 0.816 at 3 draws (the dashed line of the SNR figure)",
    ):
        assert expected in report, expected
    for name in ("bounds_versus_k.png", "training_curves.png", "snr_versus_k.png"):
        assert (out_dir / name).is_file()
    for run in ("elbo", "iwae-3", "dreg-3"):
        assert (out_dir / run / "checkpoint.pt").is_file()


def test_rows_differ_point_by_point_with_a_paired_standard_error(comparison):
    out_dir, result = comparison
    first = result.rows[0].log_marginal_likelihood
    differences = result.paired_differences()
    assert list(differences) == ESTIMATORS[1:]
    for row in result.rows[1:]:
        estimate, difference = row.log_marginal_likelihood, differences[row.estimator]
        assert len(estimate.per_point) == estimate.num_points == difference.num_points == 30
        # the paired mean is the difference of the rows' means (float rounding apart)
        assert difference.mean == pytest.approx(
            estimate.log_likelihood - first.log_likelihood, abs=1e-9
        )
        # the points' spread is shared by the rows of one model family and cancels: the
        # paired SE is a fraction of what the rows' own SEs would give unpaired
        unpaired = math.hypot(estimate.standard_error, first.standard_error)
        assert 0 < difference.standard_error < unpaired / 2
        line = (
            f"| {row.estimator} | {difference.mean:+.3f} | {difference.standard_error:.3f} "
            f"| {unpaired:.3f} |"
        )
        assert line in (out_dir / "report.md").read_text()
    report = (out_dir / "report.md").read_text()
    assert "Paired differences: log p(x) minus elbo's" in report
    assert "far more precise than these SEs suggest: the paired differences give its SE" in report


def test_a_comparison_without_per_point_values_reports_no_paired_differences(comparison):
    # a comparison.json written before vi_vae kept per-point values: its rows have none
    _, result = comparison
    rows = tuple(
        dataclasses.replace(
            row,
            log_marginal_likelihood=dataclasses.replace(row.log_marginal_likelihood, per_point=()),
        )
        for row in result.rows
    )
    older = dataclasses.replace(result, rows=rows)
    assert older.paired_differences() == {}
    report = comparison_report(older, ())
    assert "Paired differences" not in report
    assert "these runs were evaluated before vi_vae kept per-point values" in report
    # one row without them among rows with them: its row says n/a, it does not vanish
    mixed = dataclasses.replace(result, rows=(result.rows[0], rows[1], *result.rows[2:]))
    assert list(mixed.paired_differences()) == ESTIMATORS[2:]
    assert "| iwae:3 | n/a | n/a | " in comparison_report(mixed, ())


def test_comparison_json_reads_back_as_the_typed_result(comparison):
    out_dir, result = comparison
    stored = RunDirectory(out_dir).read_comparison()
    assert repr(stored) == repr(result)  # repr: NaN fields (one-group SEs) compare equal


def test_rows_come_from_the_model_in_memory_and_match_the_stored_runs(comparison):
    out_dir, result = comparison
    assert [row.estimator for row in result.rows] == ESTIMATORS
    for row in result.rows:
        stored = load_run(out_dir / run_name(row.estimator))
        assert row.log_marginal_likelihood == stored.metrics.log_marginal_likelihood
        assert row.log_marginal_likelihood.num_particles == 50
        # the IWAE-50 estimate and the ELBO share their draws: ordered point by point
        assert row.bound(1).mean <= row.log_marginal_likelihood.log_likelihood
        assert row.snr_guide > 0 and row.snr_model > 0
    # same seed: every run's first-epoch shuffling and initial weights are the same,
    # so the epoch-1 training losses differ only through the estimator
    losses = {name: history[0].train_loss for name, history in result.histories.items()}
    assert len(set(losses.values())) == 3
    assert [point.num_particles for point in result.snr_curves["iwae:3"]] == [1, 2]
    assert [b.num_particles for b in result.bound_curves["iwae:3"]] == [1, 2, 5, 10, 20, 50]


def test_resume_keeps_finished_runs(comparison):
    out_dir, _ = comparison
    checkpoint = RunDirectory(out_dir / "elbo").checkpoint_path
    before = checkpoint.stat().st_mtime_ns
    compare(BASE, ["elbo"], out_dir, snr_particles=(1,), snr_num_draws=2, resume=True)
    assert checkpoint.stat().st_mtime_ns == before


def test_resume_does_not_evaluate_a_finished_run_again_when_its_metrics_are_the_comparison_s(
    comparison,
):
    out_dir, _ = comparison
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvaluatedAgainWarning)
        compare(BASE, ["elbo"], out_dir, snr_particles=(1,), snr_num_draws=2, resume=True)


def test_resume_keeps_a_finished_run_s_ais_when_it_is_the_comparison_s(tmp_path):
    with_ais = dataclasses.replace(BASE, ais=AISConfig(num_steps=3, num_chains=2, num_points=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)  # 3 steps: not converged
        first = compare(with_ais, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2)
        warnings.simplefilter("error", EvaluatedAgainWarning)
        again = compare(
            with_ais, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2, resume=True
        )
    assert first.rows[0].ais is not None and repr(again.rows[0].ais) == repr(first.rows[0].ais)


def test_rows_ais_differ_point_by_point_too(tmp_path, capsys):
    with_ais = dataclasses.replace(BASE, ais=AISConfig(num_steps=3, num_chains=2, num_points=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)  # 3 steps: not converged
        result = compare(
            with_ais, ["elbo", "iwae:3"], tmp_path, snr_particles=(1,), snr_num_draws=2
        )
    first, second = (row.ais.estimate for row in result.rows)
    (difference,) = result.paired_differences(ais=True).values()
    assert len(first.per_point) == len(second.per_point) == difference.num_points == 4
    assert difference.mean == pytest.approx(second.log_likelihood - first.log_likelihood, abs=1e-9)
    cell = f"{difference.mean:+.3f} ± {difference.standard_error:.3f}"
    report = (tmp_path / "report.md").read_text()
    assert "| AIS − elbo's (paired) |" in report and f"| {cell} |" in report
    print_paired_differences(result)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == (
        f"AIS log p(x) − elbo's, paired over the same 4 points: iwae:3 {difference.mean:+.2f} "
        f"± {difference.standard_error:.2f} (± for these trained models, not another training "
        "seed; some rows are not converged, and their estimates lie below log p(x) by amounts "
        "that can differ between rows, which these differences include)"
    )


@pytest.mark.parametrize(
    ("evaluation", "ais", "message"),
    [
        (EvaluationConfig(num_particles=20, num_points=10), None, "on 10 test points with K = 20"),
        (BASE.evaluation, AISConfig(num_steps=3, num_chains=2, num_points=4), "AIS on 4 test"),
    ],
)
def test_resume_evaluates_again_a_finished_run_evaluated_since_with_other_settings(
    comparison, tmp_path, evaluation, ais, message
):
    # reused as it was, its row's log p(x) came from other points and K (or carried an
    # AIS the other rows lacked) while the report called the rows paired
    out_dir, result = comparison
    shutil.copytree(out_dir / "elbo", tmp_path / "elbo")
    evaluate_run(tmp_path / "elbo", evaluation, ais=ais)
    with pytest.warns(EvaluatedAgainWarning, match=re.escape(message)):
        resumed = compare(
            BASE, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2, resume=True
        )
    # the comparison's own evaluation again: the numbers training wrote, to the bit
    assert resumed.rows[0].log_marginal_likelihood == result.rows[0].log_marginal_likelihood
    # (as reprs: the Monte Carlo SE of IWAE-50 with K = 50 is NaN, and NaN != NaN)
    assert repr(resumed.rows[0].bounds) == repr(result.rows[0].bounds)
    assert resumed.rows[0].ais is None
    assert load_run(tmp_path / "elbo").metrics.log_marginal_likelihood.num_points == 30


def test_resume_evaluates_again_a_finished_run_that_kept_no_per_point_values(comparison, tmp_path):
    # a run evaluated before vi_vae kept per-point log p(x): reused, its row would have
    # dropped out of the paired differences
    out_dir, result = comparison
    shutil.copytree(out_dir / "elbo", tmp_path / "elbo")
    directory = RunDirectory(tmp_path / "elbo")
    metrics = directory.read_metrics()
    older = dataclasses.replace(metrics.log_marginal_likelihood, per_point=())
    directory.write_metrics(dataclasses.replace(metrics, log_marginal_likelihood=older))
    with pytest.warns(EvaluatedAgainWarning, match="no per-point log p"):
        resumed = compare(
            BASE, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2, resume=True
        )
    # the same evaluation again, to the bit, with the values it had dropped
    assert resumed.rows[0].log_marginal_likelihood == result.rows[0].log_marginal_likelihood


def test_a_comparison_whose_rows_were_evaluated_on_other_points_or_k_is_refused(comparison):
    # a comparison.json written before compare evaluated reused runs alike could hold one
    _, result = comparison
    first = result.rows[0]
    other = dataclasses.replace(first.log_marginal_likelihood, num_points=20, num_particles=5000)
    rows = (dataclasses.replace(first, log_marginal_likelihood=other), *result.rows[1:])
    with pytest.raises(InputError, match=r"elbo: 20 points, K = 5000; iwae:3: 30 points, K = 50"):
        dataclasses.replace(result, rows=rows)


def test_resume_evaluates_a_finished_run_whose_metrics_are_another_checkpoint_s(
    comparison, tmp_path
):
    # iwae:3's metrics.json (its checksum intact) beside elbo's checkpoint, as a resume
    # stopped before its evaluation leaves its old one: reused, its row was another model's
    out_dir, result = comparison
    shutil.copytree(out_dir / "elbo", tmp_path / "elbo")
    shutil.copy(out_dir / "iwae-3" / "metrics.json", tmp_path / "elbo" / "metrics.json")
    resumed = compare(BASE, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2, resume=True)
    # the comparison's own evaluation of elbo's weights, to the bit
    assert resumed.rows[0].log_marginal_likelihood == result.rows[0].log_marginal_likelihood
    assert repr(load_run(tmp_path / "elbo").metrics.log_marginal_likelihood) == repr(
        result.rows[0].log_marginal_likelihood
    )


def test_two_spellings_of_one_estimator_are_one_row(tmp_path):
    # "iwae:03" beside "iwae:3" trained the same model twice, as two estimators
    result = compare(BASE, ["iwae:03", "iwae:3"], tmp_path, snr_particles=(1,), snr_num_draws=2)
    assert [row.estimator for row in result.rows] == ["iwae:3"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["iwae-3"]


def test_resume_refuses_a_finished_run_whose_metrics_were_edited(comparison, tmp_path):
    # reused as it is, its edited log p(x) would be the comparison's row
    out_dir, _ = comparison
    shutil.copytree(out_dir / "elbo", tmp_path / "elbo")
    metrics_path = RunDirectory(tmp_path / "elbo").metrics_path
    stored = json.loads(metrics_path.read_text())
    stored["log_marginal_likelihood"]["log_likelihood"] += 10.0
    metrics_path.write_text(json.dumps(stored, indent=2))
    with pytest.raises(InputError, match="metrics.json does not match its checksum"):
        compare(BASE, ["elbo"], tmp_path, snr_particles=(1,), snr_num_draws=2, resume=True)
    assert not (tmp_path / "comparison.json").exists()


@pytest.mark.parametrize(
    ("estimators", "options", "message"),
    [
        (["elbo", "iwae:many"], {}, "num_particles must be int"),
        ([], {}, "at least one estimator"),
        (["elbo"], {"snr_num_draws": 1}, "snr_num_draws must be an integer >= 2"),
        (["elbo"], {"snr_particles": (0,)}, "snr_particles must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_before_training(tmp_path, estimators, options, message):
    with pytest.raises(InputError, match=message):
        compare(BASE, estimators, tmp_path / "c", **options)
    assert not (tmp_path / "c").exists()


def test_the_command_line_prints_the_table(tmp_path, capsys):
    status = cli.main(
        ["compare", "--estimators", "elbo", "--out-dir", str(tmp_path / "c"), "--max-train"]
        + ["64", "--hidden-sizes", "8", "--latent-dim", "2", "--epochs", "1"]
        + ["--eval-num-particles", "5", "--eval-num-points", "10", "--snr-num-draws", "2"]
        + ["--snr-particles", "1", "--quiet", "--ais-num-points", "2", "--ais-num-steps", "5"]
        + ["--ais-num-chains", "2", "--ais-leapfrog-steps", "1", "--gaps", "1"]
    )
    assert status == 0
    out, err = capsys.readouterr()
    # T = 5: the gaps' AIS has not converged, which the terminal says, not only report.md
    warning = "vi-vae: warning: elbo: AIS has not converged, the gaps are not numbers to quote; "
    assert warning in err
    assert "raise --ais-num-steps" in err
    # and the run's own AIS (--ais-num-points 2, T = 5) has not converged either: one line
    assert "vi-vae: warning: elbo: AIS has not converged, not a number to quote: " in err
    assert "estimator" in out and "\nelbo " in out and "report:" in out
    # K = 5 is too few draws for Pareto k̂: the column says so, and no legend speaks of it
    assert out.split("\nelbo ")[1].split()[2] == "undefined" and "k̂ > 0.7: the share" not in out
    # nor for log p(x) to be called converged: a star, and the footnote naming the flag
    assert out.split("\nelbo ")[1].split()[0].endswith("*")
    assert "\n*: log p(x) is not converged in K" in out and "raise --eval-num-particles" in out
    report = (tmp_path / "c" / "report.md").read_text()
    assert "- *\\**: log p(x) is not converged in K" in report
    assert "vi-vae compare --estimators elbo" in report
    assert "## AIS on 2 of the test points" in report and "| elbo | " in report
    # one estimator: nothing to pair; two SNR draws: no finite floor, which the legend says
    assert "paired over" not in out and "Paired differences" not in report
    assert "Rows share their points" not in report
    assert "At 2 draws a gradient with mean 0 has no finite expected SNR" in report


def test_the_command_line_table_shows_each_row_s_share_of_pareto_k_and_what_it_means(
    comparison, tmp_path, capsys
):
    # The table printed beside the log p(x) column nothing of its reliability: at K = 50
    # on a one-epoch model most points have k̂ > 0.7, where the number is a lower bound.
    out_dir = tmp_path / "c"
    shutil.copytree(comparison[0], out_dir)
    argv = ["compare", "--estimators", ",".join(ESTIMATORS), "--out-dir", str(out_dir)]
    argv += ["--max-train", "200", "--latent-dim", "3", "--hidden-sizes", "16", "--epochs", "1"]
    argv += ["--eval-num-particles", "50", "--eval-num-points", "30", "--snr-particles", "1,2"]
    argv += ["--snr-num-draws", "3", "--resume", "--quiet"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    printed = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    shares = [row.log_marginal_likelihood.share_pareto_k_above for row in comparison[1].rows]
    for row, share in zip(comparison[1].rows, shares, strict=True):
        assert printed[row.estimator][3] == f"{share:.2f}"
    assert max(shares) > 0  # the legend's case is exercised
    assert f"k̂ > 0.7: the share of test points where log p(x) is {ABOVE_PARETO_K_THRESHOLD}" in out
    paired = "; ".join(
        f"{name} {d.mean:+.2f} ± {d.standard_error:.2f}"
        for name, d in comparison[1].paired_differences().items()
    )
    assert f"log p(x) − elbo's, paired over the same 30 points: {paired} (± for these" in out
    # starred rows' differences include their bias: the line says so exactly then, as the
    # report does (these rows converged; test_rows_ais_differ_point_by_point_too has AIS's)
    unsettled = "some rows are not converged, and their estimates lie below log p(x)"
    assert (unsettled in out) is comparison[1].unsettled
    assert "narrower than the prior's" not in out  # the normal family's guide reaches it all


@pytest.mark.filterwarnings("ignore::vi_vae.errors.GuideSupportWarning")  # shown: the table
def test_a_comparison_of_a_family_whose_guide_misses_part_of_the_prior_says_what_it_ranks(
    tmp_path, capsys
):
    # uniform: every row's log p(x) is the part of p(x) on the guide's support; the table's
    # legend and the report say so (the rows still compare the estimators' guides)
    out_dir = tmp_path / "uniform"
    argv = ["compare", "--estimators", "elbo", "--latent-family", "uniform", "--quiet"]
    argv += ["--max-train", "200", "--latent-dim", "2", "--hidden-sizes", "8", "--epochs", "1"]
    argv += ["--eval-num-particles", "20", "--eval-num-points", "10", "--snr-particles", "1,2"]
    argv += ["--snr-num-draws", "2", "--out-dir", str(out_dir)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "the guide's support at ['z'] is narrower than the prior's, so each row's " in out
    assert NARROWER_GUIDE_SUPPORT in out
    report = (out_dir / "report.md").read_text()
    assert "- **not log p(x)**: the guide's support at latent site(s) z" in report
    assert "so each row's log p(x) is" in report


def test_names_and_curve_particles():
    assert run_name("vr:0.5:5") == "vr-0.5-5"
    assert bound_curve_particles(60) == [1, 2, 5, 10, 20, 50]


@pytest.mark.parametrize(
    ("section", "changes", "named"),
    [
        ("training", {"learning_rate": 0.01}, "training.learning_rate 0.001 -> 0.01"),
        ("model", {"hidden_sizes": (8,)}, "model.hidden_sizes [16] -> [8]"),
        ("evaluation", {"num_particles": 60}, "evaluation.num_particles 50 -> 60"),
        ("training", {"seed": 3}, "training.seed 0 -> 3"),
    ],
)
def test_resume_with_changed_settings_is_refused_before_training(
    comparison, section, changes, named
):
    # issue 20 item 15: `compare --resume` with changed settings reused the old runs and
    # wrote the new settings into the report's header
    out_dir, _ = comparison
    checkpoint = RunDirectory(out_dir / "elbo").checkpoint_path
    before = (checkpoint.stat().st_mtime_ns, (out_dir / "report.md").read_text())
    changed = BASE.replace(section, **changes)
    with pytest.raises(SettingsChanged, match=re.escape(named)):
        compare(changed, ["elbo"], out_dir, snr_particles=(1,), snr_num_draws=2, resume=True)
    assert (checkpoint.stat().st_mtime_ns, (out_dir / "report.md").read_text()) == before


def test_the_command_line_names_the_changed_flags(comparison, capsys):
    out_dir, _ = comparison
    argv = ["compare", "--estimators", "elbo,iwae:3", "--out-dir", str(out_dir), "--resume"]
    argv += ["--max-train", "200", "--latent-dim", "3", "--hidden-sizes", "16", "--epochs", "1"]
    argv += ["--eval-num-particles", "50", "--eval-num-points", "30", "--learning-rate", "0.01"]
    assert cli.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate 0.001 -> 0.01" in err and "changed: --learning-rate;" in err
    assert err.count("\n") == 1


def test_a_comparison_directory_in_use_is_refused(comparison):
    out_dir, _ = comparison
    before = (out_dir / "comparison.json").read_bytes()
    holder = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # another process's lock
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(RunDirectoryInUse, match="in use by another vi_vae process"):
            compare(BASE, ["elbo"], out_dir, snr_particles=(1,), snr_num_draws=2, resume=True)
    finally:
        os.close(holder)
        (out_dir / LOCK_FILE).unlink()
    assert (out_dir / "comparison.json").read_bytes() == before
