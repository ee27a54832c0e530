"""benchmarks/latent_families.py runs end to end with a tiny budget and writes its page."""

import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "latent_families.py"


def test_benchmark_writes_the_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("latent_families_benchmark", BENCHMARK)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    output = tmp_path / "families.md"
    args = benchmark.parse_args(
        [
            "--families",
            "normal",
            "logistic",
            "--epochs",
            "1",
            "--hidden-size",
            "16",
            "--latent-dim",
            "2",
            "--num-particles",
            "8",
            "--max-train",
            "200",
            "--max-test",
            "20",
            "--threads",
            "1",
            "--spread-seeds",
            "1",
            "--output",
            str(output),
        ]
    )
    rows = benchmark.main(args)
    assert [row["name"] for row in rows] == ["normal", "logistic"]
    page = output.read_text()
    assert "| logistic | inverse_cdf, location_scale |" in page
    assert "python benchmarks/latent_families.py" in page
    assert "normal trained with 2 seeds" in page
    assert page.count("| gompertz |") == 1  # the family reference table lists every family
    # K = 8 is too few weights to fit k̂: each log p(x) is starred, and the star explained
    assert all(not row["converged"] for row in rows)
    assert f"| {rows[0]['log_px']:.2f}* |" in page and "\\* log p(x) is not converged in K" in page
    # logistic against normal, point by point on the same 20 test points
    normal, logistic = (row["per_point"] for row in rows)
    differences = [a - b for a, b in zip(logistic, normal, strict=True)]
    mean = sum(differences) / 20
    assert f"| {mean:+.2f} ± " in page and "| Δ vs normal ± paired SE |" in page
