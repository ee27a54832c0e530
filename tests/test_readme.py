"""The README's Python blocks run as written, in order, in one namespace."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    estimate = namespace["estimate"]
    # a 20-epoch VAE on binarized MNIST: log p(x) well above the ~-543 nats of
    # a model that ignores the data (784·log 2), and below 0
    assert -200 < estimate.mean < 0
    assert estimate.standard_error > 0
