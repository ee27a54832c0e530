"""benchmarks/gpu_checks.py, issue #19's GPU checks, run on the CPU at tiny sizes.

A GPU is lent to few sessions, for minutes: the script must not fail there for a
reason the CPU shows. This runs it end to end (train, compiled log p(x), AIS pilot
and run, the report files) with sizes that take seconds, and checks what it wrote.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_checks_script_runs_on_the_cpu_and_writes_its_report(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py"), "--device", "cpu"]
    command += ["--points", "6", "--num-particles", "20", "--epochs", "1", "--ais-pilot", "2"]
    command += ["--ais-num-steps", "5", "--ais-budget", "0", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert results["device"].startswith("cpu")
    assert results["importance_sampling"]["points"] == 6
    assert results["importance_sampling"]["num_particles"] == 20
    # a budget of 0 s runs AIS on the pilot's points only
    assert results["ais"]["points"] == 2 and results["ais"]["settings"]["num_steps"] == 5
    assert all(results[name]["log_px"] < 0 for name in ("importance_sampling", "ais"))
    table = (tmp_path / "gpu_checks.md").read_text()
    assert "| log p(x), compiled, 6 points × K = 20 |" in table
    assert "AIS, T = 5, 16 chains, L = 10, compiled, 2 points" in table
