"""benchmarks/compare_estimators.py publishes the command that regenerates its numbers."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "compare_estimators.py"


def test_the_published_command_leaves_out_where_the_runs_are_kept_and_resumption():
    spec = importlib.util.spec_from_file_location("compare_estimators", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--dataset", "mnist-5k", "--out-dir", "/tmp/x", "--epochs", "60", "--resume"]
    argv += ["--out-dir=/tmp/y", "--docs-dir", "docs/compare-mnist-5k"]
    assert script._published_arguments(argv) == [
        "--dataset",
        "mnist-5k",
        "--epochs",
        "60",
        "--docs-dir",
        "docs/compare-mnist-5k",
    ]
