"""New data from a trained run's prior, written as a PNG grid or streamed into a ``.npy`` file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vi_vae.app import plots
from vi_vae.app.runs import Run
from vi_vae.checkpoint import atomic_write_bytes
from vi_vae.errors import InputError
from vi_vae.keys import seeded

__all__ = ["MAX_GRID_SAMPLES", "MAX_NPY_BYTES", "SAMPLES_PER_PASS", "write_samples"]

#: the most samples a PNG grid shows (a 100 × 100 grid of MNIST digits is 2800² pixels)
MAX_GRID_SAMPLES = 10_000
#: the largest .npy file written (float32); above it the request is refused
MAX_NPY_BYTES = 4 * 2**30
#: samples decoded per pass (bounds memory: the samples are streamed to disk)
SAMPLES_PER_PASS = 10_000


def write_samples(run: Run, num_samples: int, output: Path, seed: int) -> Path:
    """Draw ``num_samples`` data points from ``run``'s model and write them to ``output``.

    ``.png``: a grid of E[x|z] (image data only, at most :data:`MAX_GRID_SAMPLES`);
    ``.npy``: ``[num_samples, D]`` float32, decoded in passes and written through
    a memory map into a temporary file renamed into place (at most
    :data:`MAX_NPY_BYTES`).
    """
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise InputError(f"output must end in .npy or .png; got {output}")
    if not output.parent.is_dir():
        raise InputError(f"output directory {output.parent} does not exist")
    if output.is_dir():
        raise InputError(f"output {output} is a directory; give a file name")
    input_dim = run.dataset.input_dim
    with seeded(seed, run.device):
        if suffix == ".png":
            if run.dataset.image_shape is None:
                raise InputError("a .png output needs image data; use a .npy output")
            if num_samples > MAX_GRID_SAMPLES:
                raise InputError(
                    f"num_samples must be at most {MAX_GRID_SAMPLES} for a .png grid; got "
                    f"{num_samples} (use a .npy output for more)"
                )
            png = plots.plot_samples(run.vae.sample(num_samples).cpu(), run.dataset.image_shape)
            atomic_write_bytes(output, png)
            return output
        size = num_samples * input_dim * np.dtype(np.float32).itemsize
        if size > MAX_NPY_BYTES:
            raise InputError(
                f"num_samples = {num_samples} of dimension {input_dim} would need "
                f"{size / 2**30:.1f} GiB; at most {MAX_NPY_BYTES // 2**30} GiB "
                f"({MAX_NPY_BYTES // (input_dim * 4)} samples) are written"
            )
        handle, temporary = tempfile.mkstemp(
            dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"
        )
        os.close(handle)
        try:
            array = np.lib.format.open_memmap(
                temporary, mode="w+", dtype=np.float32, shape=(num_samples, input_dim)
            )
            for start in range(0, num_samples, SAMPLES_PER_PASS):
                count = min(SAMPLES_PER_PASS, num_samples - start)
                array[start : start + count] = run.vae.sample(count).cpu().numpy()
            array.flush()
            del array
            os.replace(temporary, output)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return output
