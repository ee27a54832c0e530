"""benchmarks/ais_step_time.py and benchmarks/log_likelihood.py run end to end on tiny budgets."""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ais_step_time_prints_its_ratio(capsys):
    benchmark = load("ais_step_time")
    arguments = ["--num-chains", "2", "--num-points", "3", "--leapfrog-steps", "2"]
    ratios = benchmark.main(benchmark.parse_args([*arguments, "--num-steps", "4", "--rounds", "1"]))
    assert ratios["ratio"] > 0
    assert "AIS step / ((L + 1) x plain gradient)" in capsys.readouterr().out


def test_log_likelihood_writes_results_figure_and_page(tmp_path):
    benchmark = load("log_likelihood")
    arguments = (
        "--estimators elbo --epochs 1 --max-train 200 --num-points 3 --is-particles 10,30 "
        "--ais-steps 2,4 --num-chains 2 --leapfrog-steps 1 --bdmc-points 2 --bdmc-steps 3"
    ).split()
    doc = tmp_path / "page.md"
    out_dir = tmp_path / "figures"
    args = benchmark.parse_args([*arguments, "--out-dir", str(out_dir), "--doc", str(doc)])
    results = benchmark.main(args)
    stored = json.loads((out_dir / "results.json").read_text())
    entry = stored["estimators"]["elbo"]
    assert set(entry["importance_sampling"]) == {"10", "30"} and set(entry["ais"]) == {"2", "4"}
    assert len(entry["ais"]["4"]["per_point"]) == 3 and "mean_gap" in entry["bdmc"]
    assert (out_dir / "estimate_versus_cost.png").stat().st_size > 0
    page = doc.read_text()
    assert "| elbo |" in page and "**Reduced run.**" in page
    assert "figures/estimate_versus_cost.png" in page
    # which code made the numbers: today's date and this checkout's commit, on the page too
    code = entry["code"]
    assert len(code["date"]) == 10 and (code["commit"] is None or len(code["commit"]) >= 7)
    assert f"`figures/results.json` were computed on {code['date']}" in page
    # --resume keeps the finished estimator instead of training it again
    again = benchmark.main(benchmark.parse_args([*arguments, "--out-dir", str(out_dir),
                                                 "--doc", str(doc), "--resume"]))  # fmt: skip
    # (compared as JSON: k̂ is NaN for K < 21, and NaN != NaN)
    assert json.dumps(again["estimators"]) == json.dumps(results["estimators"])
