"""Which figures a run and a comparison get, drawn with :mod:`vi_vae.app.plots`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vi_vae.app import plots
from vi_vae.app.run_directory import RunDirectory
from vi_vae.data import Dataset
from vi_vae.keys import seeded
from vi_vae.model import VAE
from vi_vae.train import EpochRecord

__all__ = ["FIGURE_SEED", "NUM_SHOWN", "interpolation_ends", "make_run_figures"]

#: test points shown in the reconstructions figure
NUM_SHOWN = 30
#: seed of the prior draws in the samples figure
FIGURE_SEED = 0
#: prior draws in the samples figure
NUM_SAMPLES_SHOWN = 64


def make_run_figures(
    vae: VAE, dataset: Dataset, history: Sequence[EpochRecord], directory: RunDirectory
) -> tuple[str, ...]:
    """Write every figure that applies to this run into ``directory``; return their file names."""
    device = next(vae.decoder.parameters()).device
    written = []
    if history:
        written.append(
            directory.write_figure("training_curves", plots.plot_training_curves(history))
        )
    x = dataset.test.to(device)
    with torch.no_grad():
        centres = vae.latent_family.center(vae.encode(x))
    written.append(
        directory.write_figure(
            "latent_scatter", plots.plot_latent_scatter(centres, dataset.test_labels)
        )
    )
    if dataset.image_shape is not None:
        shown = x[torch.linspace(0, len(x) - 1, min(NUM_SHOWN, len(x))).long()]
        reconstructions = plots.plot_reconstructions(
            shown, vae.reconstruct(shown), dataset.image_shape
        )
        written.append(directory.write_figure("reconstructions", reconstructions))
        with seeded(FIGURE_SEED, device):
            samples = vae.sample(NUM_SAMPLES_SHOWN)
        written.append(
            directory.write_figure("samples", plots.plot_samples(samples, dataset.image_shape))
        )
        start, end = interpolation_ends(dataset)
        written.append(
            directory.write_figure("interpolation", plots.plot_interpolation(vae, x[start], x[end]))
        )
        written.append(directory.write_figure("manifold", plots.plot_manifold(vae)))
    return tuple(name for name in written if name is not None)


def interpolation_ends(dataset: Dataset) -> tuple[int, int]:
    """Indices of a test '6' and a test '4' when labelled (the seeds' example), else 0 and 1."""
    labels = dataset.test_labels
    if labels is not None:
        sixes, fours = (labels == 6).nonzero(), (labels == 4).nonzero()
        if len(sixes) and len(fours):
            return int(sixes[0]), int(fours[0])
    return 0, min(1, len(dataset.test) - 1)
