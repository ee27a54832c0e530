"""Issue 13: the same Python script, run twice in two processes, prints identical numbers."""

import os
import sys
import textwrap
from pathlib import Path

from beside import Job

#: the README's five lines with a seed, on a small budget
SCRIPT = textwrap.dedent(
    """
    from vi_vae import VAE, fit, load_dataset, log_marginal_likelihood

    data = load_dataset("mnist-5k", binarization="dynamic", max_train=300)
    vae = VAE(input_dim=784, latent_dim=4, hidden_sizes=(32,), seed=0)
    fit(vae.model, vae.guide, data.train, validation=data.validation, epochs=2,
        batch_transform=data.batch_transform(), seed=0)
    estimate = log_marginal_likelihood(vae.model, vae.guide, data.test[:50], 50, seed=0)
    print(repr(estimate.mean), repr(estimate.standard_error))
    print(repr(sum(p.double().sum().item() for p in vae.parameters())))
    """
)


#: the two processes, one thread each: they share nothing but the script. Started by
#: tests/conftest.py as soon as this module is collected, side by side and beside the
#: other tests (in the checkout, where ``python -c`` finds its vi_vae)
RUNS = {
    name: Job(
        name,
        [sys.executable, "-c", SCRIPT],
        os.environ | {"OMP_NUM_THREADS": "1"},
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    for name in ("same-script-1", "same-script-2")
}


def test_same_script_same_numbers_in_two_processes(tmp_path):
    first, second = (job.wait(tmp_path / job.name) for job in RUNS.values())
    assert [first.returncode, second.returncode] == [0, 0], first.stderr + second.stderr
    assert first.stdout == second.stdout and first.stdout.count("\n") == 2
