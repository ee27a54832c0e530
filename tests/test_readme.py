"""The README's Python blocks run as written, in order, in one namespace."""

import re
from pathlib import Path

import torch

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    estimate, data = namespace["estimate"], namespace["data"]
    # A model that ignores z, one Bernoulli per pixel fitted to the training digits,
    # scores about -206 nats on binarized MNIST test digits; a 20-epoch VAE scores about
    # -115. The VAE must beat that baseline by 30 nats (a margin of over 10 of its SEs
    # and far inside the 90 it gains) and stay below 0.
    mean = data.train.mean(0).clamp(1e-3, 1 - 1e-3)
    test = data.test.bernoulli(generator=torch.Generator().manual_seed(0))
    baseline = (test * mean.log() + (1 - test) * (1 - mean).log()).sum(-1).mean().item()
    assert baseline + 30 < estimate.mean < 0, (baseline, estimate.mean)
    assert 0 < estimate.standard_error < 3
    # the README's AIS is "far too short, to show": the verdict must say so
    assert namespace["ais"].convergence.converged is False
