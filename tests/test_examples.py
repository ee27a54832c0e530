"""Each example runs as a user would run it, with a tiny budget."""

import os
import sys
from pathlib import Path

import pytest
import torch
from beside import Job

EXAMPLES = Path(__file__).parent.parent / "examples"

CASES = {
    "anomaly_scores.py": [
        "--epochs",
        "1",
        "--max-train",
        "300",
        "--hidden-size",
        "32",
        "--num-particles",
        "5",
        "--threads",
        "1",
    ],
    "vae_mnist.py": [
        "--epochs",
        "1",
        "--max-train",
        "300",
        "--hidden-size",
        "32",
        "--test-points",
        "30",
        "--num-particles",
        "50",
        "--threads",
        "1",
    ],
    "autoencoder_vs_vae.py": [
        "--epochs",
        "1",
        "--max-train",
        "300",
        "--hidden",
        "32",
        "--test-points",
        "40",
        "--grid-size",
        "4",
        "--eval-num-particles",
        "20",
        "--threads",
        "1",
    ],
    "denoising.py": [
        "--epochs",
        "1",
        "--max-train",
        "300",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--test-points",
        "30",
        "--threads",
        "1",
    ],
    # a tiny budget: test_custom_model_estimate_matches_its_closed_form trains it fully
    "custom_model.py": [
        "--epochs",
        "2",
        "--num-points",
        "200",
        "--num-test",
        "20",
        "--num-particles",
        "50",
        "--threads",
        "1",
    ],
}

#: what each example prints (default: a log p(x) estimate)
EXPECTED_OUTPUT = {"anomaly_scores.py": "ROC AUC", "denoising.py": "noise level"}
#: the figures an example writes into --out
EXPECTED_FIGURES = {
    "vae_mnist.py": {"latent_scatter.png", "manifold.png", "samples.png"},
    "autoencoder_vs_vae.py": {"autoencoder_vs_vae.png"},
    "denoising.py": {"denoising_mask.png"},
}


#: every example, each in its own process and folder (its working folder and ``--out``),
#: started by tests/conftest.py as soon as this module is collected: each runs on one
#: thread and most of its time is importing torch and Pyro, so they run beside the other
#: tests instead of leaving a core idle. Every example still runs as a user runs it.
RUNS = {
    name: Job(
        name.removesuffix(".py"),
        [sys.executable, str(EXAMPLES / name), *CASES[name]]
        + (["--out", "{directory}"] if name != "custom_model.py" else []),
        os.environ | {"PYTHONWARNINGS": "error::DeprecationWarning"},
        timeout=600,
    )
    for name in sorted(CASES)
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs(name, tmp_path):
    result = RUNS[name].wait(tmp_path)
    assert result.returncode == 0, result.stderr
    assert EXPECTED_OUTPUT.get(name, "log p(x)") in result.stdout
    assert EXPECTED_FIGURES.get(name, set()) <= {p.name for p in RUNS[name].directory.iterdir()}


def test_custom_model_estimate_matches_its_closed_form():
    # Factor analysis has an exact log p(x): the importance-sampled estimate of
    # the trained model must agree within 4 Monte Carlo standard errors plus
    # 0.01 nats for the log-mean-exp bias at K = 500.
    sys.path.insert(0, str(EXAMPLES))
    try:
        import custom_model
    finally:
        sys.path.remove(str(EXAMPLES))
    result = custom_model.main(
        custom_model.parse_args(
            ["--epochs", "60", "--num-points", "700", "--num-test", "100", "--num-particles", "500"]
        )
    )
    tolerance = 4 * result["monte_carlo_standard_error"] + 0.01
    assert abs(result["estimate"] - result["exact"]) < tolerance


def test_anomaly_auc_is_the_mann_whitney_statistic():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import anomaly_scores
    finally:
        sys.path.remove(str(EXAMPLES))
    normal = torch.tensor([1.0, 2.0, 3.0])
    assert anomaly_scores.roc_auc(normal, torch.tensor([4.0, 5.0])) == 1.0
    assert anomaly_scores.roc_auc(normal, torch.tensor([0.0, 0.5])) == 0.0
    # one anomaly above two of three normals, one tied with the top one: (2 + 2.5) / 6
    assert anomaly_scores.roc_auc(normal, torch.tensor([2.5, 3.0])) == pytest.approx(4.5 / 6)
