"""Issue 13: the same Python script, run twice in two processes, prints identical numbers."""

import os
import subprocess
import sys
import textwrap

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


def test_same_script_same_numbers_in_two_processes():
    # the two processes run side by side, one thread each: they share nothing but the script
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True, env=environment
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 2
