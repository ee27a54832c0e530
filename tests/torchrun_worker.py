"""What each rank of ``torchrun tests/torchrun_worker.py OUT`` runs (tests/test_distributed.py).

Every rank evaluates the settings of ``EVALUATIONS`` through the library's API and
rank 0 saves the results to OUT; then every rank trains, and rank 1 raises in its
fourth call of the model: the job must end with that error, not hang.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from distributed_workers import EVALUATIONS, binary_data, evaluate, tiny_vae  # noqa: E402

from vi_vae import fit  # noqa: E402
from vi_vae.distributed import init_from_environment, rank  # noqa: E402


def main(out: str) -> None:
    init_from_environment()
    results = [evaluate(*settings) for settings in EVALUATIONS]
    if rank() == 0:
        torch.save(results, out)

    vae = tiny_vae()
    calls = 0

    def model(x):
        nonlocal calls
        calls += 1
        if rank() == 1 and calls > 3:
            raise RuntimeError("rank 1 fails on purpose")
        vae.model(x)

    fit(model, vae.guide, binary_data(40), epochs=5, batch_size=8)


# pytest --doctest-modules imports this file: run only as a script (under torchrun)
if __name__ == "__main__":
    main(sys.argv[1])
