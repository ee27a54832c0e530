"""AIS with T doubled until its verdict holds (issue 19: a quotable log p(x) in one command)."""

import warnings

import pytest
import torch
from ais_cases import poor_guide
from linear_gaussian import LinearGaussian

from vi_vae import (
    AISConvergenceWarning,
    AISSettings,
    AutoAISSettings,
    InputError,
    annealed_importance_sampling,
    auto_annealed_importance_sampling,
    cli,
    importance_sampling,
)
from vi_vae.app.runs import load_run
from vi_vae.evaluation.annealing import NUM_PILOT_CHAINS

LG = LinearGaussian()
X = LG.sample(10)
#: C and L small enough for a quick test; T doubles from 16
SETTINGS = AISSettings(num_chains=8, leapfrog_steps=4)
AUTO = AutoAISSettings(start_num_steps=16, max_num_steps=512, bdmc_num_points=4)


#: (phase, done, total) of every annealing step, as the progress display receives them
PROGRESS = []


@pytest.fixture(scope="module")
def result():
    with warnings.catch_warnings():
        warnings.simplefilter("error", AISConvergenceWarning)  # converges: no warning
        return auto_annealed_importance_sampling(
            LG.model, poor_guide(LG), X, SETTINGS, AUTO, seed=0,
            on_step=lambda *step: PROGRESS.append(step),
        )  # fmt: skip


def test_matches_the_exact_log_likelihood_within_its_standard_error(result):
    assert result.converged, result.estimate.convergence.summary
    names = {check.name for check in result.estimate.convergence.checks}
    assert names == {"acceptance", "half-schedule", "previous-round", "bdmc-gap"}
    error = (result.estimate.log_likelihood - LG.log_marginal(X)).mean().item()
    # 3 Monte Carlo SEs of the mean over the 10 fixed points: a converged run is within
    # them but in ~0.3% of seeds; the guide is 2 posterior sds off, so IS with the same
    # budget of draws would be about 2 nats low
    assert abs(error) < 3 * result.estimate.mean_monte_carlo_standard_error


def test_stops_at_the_first_round_whose_verdict_holds_with_the_numbers_of_that_t(result):
    steps = [r.num_steps for r in result.rounds]
    assert steps == list(AUTO.num_steps()[: len(steps)])
    assert steps[-1] < AUTO.max_num_steps  # stopped early
    assert all(not r.convergence.converged for r in result.rounds[:-1])
    assert result.rounds[-1].convergence.converged
    # only the last round ran BDMC (its AIS checks held there first)
    assert [r.bdmc_mean_gap is not None for r in result.rounds] == [False] * (len(steps) - 1) + [
        True
    ]
    # the final estimate is a plain AIS run at the final T with the same seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AISConvergenceWarning)
        plain = annealed_importance_sampling(
            LG.model, poor_guide(LG), X, SETTINGS, num_steps=result.num_steps, seed=0
        )
    assert torch.equal(plain.log_weights, result.estimate.log_weights)


def test_each_round_is_a_phase_of_the_progress(result):
    final = result.num_steps
    phases = [f"AIS, T = {r.num_steps}" for r in result.rounds] + [f"BDMC, T = {final}"]
    assert list(dict.fromkeys(phase for phase, _, _ in PROGRESS)) == phases
    # every phase counts its annealing steps up to its total (BDMC: forward and reverse)
    last = {phase: (done, total) for phase, done, total in PROGRESS}
    assert last[f"AIS, T = {final}"] == (final, final)
    assert last[f"BDMC, T = {final}"] == (2 * final, 2 * final)


def test_the_cost_is_the_sum_over_rounds(result):
    chains = SETTINGS.num_chains + NUM_PILOT_CHAINS
    for trail in result.rounds:
        expected = X.shape[0] * chains * trail.num_steps * SETTINGS.leapfrog_steps
        if trail.bdmc_mean_gap is not None:  # forward (with a pilot) and reverse, 4 points
            bdmc_chains = chains + SETTINGS.num_chains
            expected += AUTO.bdmc_num_points * bdmc_chains * trail.num_steps * 4
        assert trail.gradient_evaluations == expected
        assert trail.cpu_seconds > 0
    assert result.gradient_evaluations == sum(r.gradient_evaluations for r in result.rounds)
    assert result.cpu_seconds == pytest.approx(sum(r.cpu_seconds for r in result.rounds))


def test_a_too_small_largest_t_is_not_converged_and_warns():
    auto = AutoAISSettings(start_num_steps=4, max_num_steps=10, bdmc_num_points=2)
    with pytest.warns(AISConvergenceWarning, match="largest T = 10 .*raise max_num_steps"):
        result = auto_annealed_importance_sampling(
            LG.model, poor_guide(LG), X, SETTINGS, auto, seed=0
        )
    assert not result.converged
    assert [r.num_steps for r in result.rounds] == [4, 8, 10]
    assert result.bdmc is None  # the AIS checks never held, so BDMC never ran


def test_importance_sampling_above_the_rounds_keeps_doubling():
    # the exact guide's importance sampling is exact (any K): AIS with T = 2 and 3 from the
    # poor guide is nats below it, and the importance-sampling check joins every verdict
    exact, _ = importance_sampling(LG.model, LG.exact_guide, X, num_particles=100, seed=0)
    auto = AutoAISSettings(start_num_steps=2, max_num_steps=3, bdmc_num_points=0)
    with pytest.warns(AISConvergenceWarning):
        result = auto_annealed_importance_sampling(
            LG.model, poor_guide(LG), X, SETTINGS, auto, importance=exact, seed=0
        )
    assert all(
        "importance-sampling" in {c.name for c in r.convergence.checks} for r in result.rounds
    )
    assert "importance-sampling" in {c.name for c in result.estimate.convergence.failed}


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"start_num_steps": 1}, "start_num_steps"),
        ({"start_num_steps": 2.5}, "start_num_steps"),
        ({"start_num_steps": 64, "max_num_steps": 32}, "max_num_steps"),
        ({"max_num_steps": 10**7}, "max_num_steps"),
        ({"bdmc_num_points": -1}, "bdmc_num_points"),
        ({"bdmc_num_points": True}, "bdmc_num_points"),
    ],
)
def test_bad_settings_raise_input_error_naming_them(fields, named):
    with pytest.raises(InputError, match=named):
        AutoAISSettings(**fields)


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="auto must be an instance of AutoAISSettings or None"):
        auto_annealed_importance_sampling(LG.model, LG.exact_guide, X, auto={"start_num_steps": 4})
    other, _ = importance_sampling(
        LG.model, LG.exact_guide, X[:3], num_particles=10, bound_particles=(), seed=0
    )
    with pytest.raises(InputError, match="same 10 points"):
        auto_annealed_importance_sampling(LG.model, LG.exact_guide, X, importance=other)
    with pytest.raises(InputError, match="num_chains"):
        auto_annealed_importance_sampling(LG.model, LG.exact_guide, X, num_chains=0)


#: a tiny run: one epoch on 64 images, 2 latent dimensions
TINY = ["--epochs", "1", "--max-train", "64", "--hidden-sizes", "8", "--latent-dim", "2"]
TINY += ["--eval-num-particles", "10", "--eval-num-points", "4", "--no-figures", "--quiet"]


def test_the_command_line_prints_the_number_its_cost_and_the_fixed_run_beside_it(tmp_path, capsys):
    run_dir = tmp_path / "tiny"
    assert cli.main(["train", "--run-dir", str(run_dir), *TINY]) == 0
    ais = ["evaluate", str(run_dir), "--method", "ais", "--num-points", "4", "--quiet"]
    ais += ["--num-particles", "10", "--ais-num-chains", "4", "--ais-leapfrog-steps", "1"]
    assert cli.main([*ais, "--ais-num-steps", "40"]) == 0  # fixed settings first
    capsys.readouterr()
    assert cli.main([*ais, "--auto", "--ais-num-steps", "128"]) == 0  # the largest T
    out = capsys.readouterr().out
    summary = load_run(run_dir).metrics.ais
    rounds = summary.auto.rounds
    assert summary.auto.settings.max_num_steps == 128 and rounds[-1].num_steps <= 128
    assert rounds[0].num_steps == AutoAISSettings().start_num_steps
    assert f"T chosen by doubling: T = {rounds[0].num_steps} (" in out
    cost = sum(r.gradient_evaluations for r in rounds)
    plural = "s" * (len(rounds) > 1)
    assert f", {cost:,} gradient evaluations over {len(rounds)} round{plural}" in out
    assert "beside the fixed settings (T = 40, C = 4, L = 1, from metrics.json)" in out
    assert summary.auto.fixed.settings.num_steps == 40
    assert "T doubled from 64" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--auto"], "give it with --method ais"),
        (["--method", "ais", "--auto", "--ais-num-steps", "1"], "largest T with --auto"),
    ],
)
def test_the_command_line_refuses_auto_where_it_cannot_choose_t(flags, message, capsys):
    assert cli.main(["evaluate", "no-such-run", *flags]) == 2
    assert message in capsys.readouterr().err
