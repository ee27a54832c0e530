"""Figures of a trained VAE, rendered as PNG bytes (the run directory writes them).

The figures the VAE literature shows: reconstructions, samples from the prior,
the latent space coloured by label (PCA above two dimensions), the learned 2-D
manifold decoded on a grid of prior quantiles (Kingma & Welling 2014, Fig. 4),
a latent interpolation between two inputs, and training curves.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vi_vae.app.comparison_metrics import SNRPoint
from vi_vae.app.metrics import BoundSummary, GapSummary
from vi_vae.evaluation.diagnostics import snr_noise_floor
from vi_vae.model import VAE
from vi_vae.train import EpochRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "image_grid",
    "inference_gap_labels",
    "plot_bounds_versus_particles",
    "plot_inference_gaps",
    "plot_interpolation",
    "plot_latent_scatter",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
    "plot_snr_versus_particles",
    "plot_training_curves",
    "plot_training_curves_overlaid",
    "principal_components",
]

logger = logging.getLogger(__name__)


def _pyplot() -> Any:
    """Pyplot, on the Agg backend, imported at the first figure.

    Not at import: every ``vi-vae`` command imports this module, and matplotlib
    takes about 0.45 s of a command's start that draws no figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def image_grid(images: Tensor, image_shape: Sequence[int], columns: int) -> Tensor:
    """Tile ``images: [n, D]`` into one ``[rows·H, columns·W]`` array (blank padding)."""
    height, width = image_shape[-2], image_shape[-1]
    rows = math.ceil(len(images) / columns)
    grid = torch.ones(rows * height, columns * width)
    for index, image in enumerate(images.detach().cpu().float()):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = (
            image.reshape(height, width)
        )
    return grid


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(figure)
    return buffer.getvalue()


def _curves_png(
    figure: Figure,
    axis: Axes,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    legend_size: float | None = 8,
) -> bytes:
    """A figure of labelled curves on one axis, labelled, gridded and with a legend, as PNG."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title is not None:
        axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=legend_size)
    return _png(figure)


def _show_grid(grid: Tensor, title: str, size: float = 6.0) -> bytes:
    figure, axis = _pyplot().subplots(figsize=(size, size * grid.shape[0] / grid.shape[1]))
    axis.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_axis_off()
    axis.set_title(title)
    return _png(figure)


def plot_reconstructions(x: Tensor, reconstructions: Tensor, image_shape: Sequence[int]) -> bytes:
    """Inputs (odd rows) above their reconstructions E[x|z = centre of q] (even rows)."""
    columns = min(10, len(x))
    pairs = []
    for start in range(0, len(x), columns):
        pairs += [x[start : start + columns], reconstructions[start : start + columns]]
    return _show_grid(
        image_grid(torch.cat(pairs), image_shape, columns),
        "inputs (odd rows) and reconstructions (even rows)",
    )


def plot_samples(samples: Tensor, image_shape: Sequence[int]) -> bytes:
    """E[x|z] for z drawn from the prior."""
    columns = math.ceil(math.sqrt(len(samples)))
    return _show_grid(image_grid(samples, image_shape, columns), "samples, z ~ p(z)")


def principal_components(z: Tensor, num_components: int = 2) -> Tensor:
    """Project ``z: [N, d]`` on its first principal components, ``[N, num_components]``."""
    centred = z - z.mean(0)
    if z.shape[1] <= num_components:
        return centred
    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    projected = (centred.double() @ vh[:num_components].T).to(z.dtype)
    # fewer points than components (e.g. a one-point split): the missing ones are 0
    missing = num_components - projected.shape[1]
    return torch.cat([projected, projected.new_zeros(len(z), missing)], 1) if missing else projected


def plot_latent_scatter(z: Tensor, labels: Tensor | None) -> bytes:
    """Centres of q(z|x) coloured by label; through PCA when z has more than 2 dims."""
    z = z.detach().cpu()
    if z.shape[1] == 1:
        points = torch.cat([z, torch.zeros_like(z)], dim=1)
        axes = ("z₁", "")
    elif z.shape[1] == 2:
        points, axes = z, ("z₁", "z₂")
    else:
        points, axes = principal_components(z), ("PC 1 of E[z|x]", "PC 2 of E[z|x]")
    figure, axis = _pyplot().subplots(figsize=(6, 5))
    if labels is not None:
        scatter = axis.scatter(
            points[:, 0], points[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=6, alpha=0.8
        )
        figure.colorbar(scatter, ax=axis, label="label")
    else:
        axis.scatter(points[:, 0], points[:, 1], s=6, alpha=0.8)
    axis.set_xlabel(axes[0])
    axis.set_ylabel(axes[1])
    axis.set_title("latent space of test points (centre of q(z|x))")
    return _png(figure)


def plot_manifold(vae: VAE, grid_size: int = 20) -> bytes | None:
    """Decode a grid of z at prior quantiles (Kingma & Welling 2014, Fig. 4); 2-D latents only.

    The grid runs over quantiles 0.05..0.95 of each prior marginal, through the
    prior's inverse CDF, so equal steps cover equal prior mass. Returns None
    (and logs why) when the latent space is not 2-D or the prior has no icdf.
    """
    if vae.latent_dim != 2 or vae.image_shape is None:
        logger.info("manifold plot needs a 2-D latent space and image data; skipped")
        return None
    device = next(vae.decoder.parameters()).device
    prior = vae.prior(device)
    marginal = getattr(prior, "base_dist", prior)
    quantiles = torch.linspace(0.05, 0.95, grid_size, device=device)
    try:
        values = marginal.icdf(quantiles.unsqueeze(-1).expand(grid_size, 2))
    except (NotImplementedError, AttributeError, RuntimeError, ValueError):
        logger.info("prior %s has no inverse CDF; manifold plot skipped", type(marginal).__name__)
        return None
    first, second = values[:, 0], values[:, 1]
    z = torch.stack(torch.meshgrid(first, second.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        images = vae.likelihood.mean(vae.decoder(z))
    return _show_grid(
        image_grid(images, vae.image_shape, grid_size),
        "learned manifold: E[x|z] on a grid of prior quantiles",
        size=8.0,
    )


def plot_interpolation(vae: VAE, x_start: Tensor, x_end: Tensor, steps: int = 10) -> bytes:
    """Decode the straight line between the centres of q(z|x_start) and q(z|x_end)."""
    with torch.no_grad():
        family = vae.latent_family
        z_start = family.center(vae.encode(x_start.unsqueeze(0)))
        z_end = family.center(vae.encode(x_end.unsqueeze(0)))
        weights = torch.linspace(0, 1, steps, device=z_start.device).unsqueeze(-1)
        z = (1 - weights) * z_start + weights * z_end
        images = vae.likelihood.mean(vae.decoder(z))
    shape = vae.image_shape or (1, vae.input_dim)
    return _show_grid(image_grid(images, shape, steps), "latent interpolation", size=9.0)


def plot_training_curves(history: Sequence[EpochRecord]) -> bytes:
    """Training loss (−bound per point) and validation ELBO by epoch."""
    figure, axis = _pyplot().subplots(figsize=(6, 4))
    epochs = [record.epoch for record in history]
    axis.plot(epochs, [-record.train_loss for record in history], label="train: −loss per point")
    validation = [record.validation_elbo for record in history]
    if any(not math.isnan(v) for v in validation):
        axis.plot(epochs, validation, label="validation ELBO")
    return _curves_png(figure, axis, "epoch", "nats per data point", legend_size=None)


def plot_bounds_versus_particles(curves: dict[str, Sequence[BoundSummary]]) -> bytes:
    """IWAE-k of each model against k (log axis), with standard errors over test points."""
    figure, axis = _pyplot().subplots(figsize=(6.5, 4.5))
    for label, table in curves.items():
        ks = [bound.num_particles for bound in table]
        means = [bound.mean for bound in table]
        errors = [bound.standard_error for bound in table]
        axis.errorbar(ks, means, yerr=errors, marker="o", markersize=3, capsize=2, label=label)
    axis.set_xscale("log")
    return _curves_png(
        figure,
        axis,
        "k (importance samples)",
        "IWAE-k bound on log p(x), nats per point",
        "bounds versus k, same test points",
    )


def plot_training_curves_overlaid(histories: dict[str, Sequence[EpochRecord]]) -> bytes:
    """Validation ELBO by epoch for several runs on one axis."""
    figure, axis = _pyplot().subplots(figsize=(6.5, 4.5))
    for label, history in histories.items():
        axis.plot(
            [record.epoch for record in history],
            [record.validation_elbo for record in history],
            label=label,
        )
    return _curves_png(figure, axis, "epoch", "validation ELBO, nats per point")


def plot_snr_versus_particles(
    curves: dict[str, Sequence[SNRPoint]], num_draws: int | None = None
) -> bytes:
    """Gradient SNR of encoder (left) and decoder (right) parameters against K.

    With ``num_draws`` (R), a dashed line at :func:`~vi_vae.evaluation.snr_noise_floor`:
    what a gradient with mean 0 reads at R draws.
    """
    floor = math.inf if num_draws is None else snr_noise_floor(num_draws)
    figure, axes = _pyplot().subplots(1, 2, figsize=(10, 4), sharex=True)
    for label, points in curves.items():
        for axis, group in zip(axes, ("guide", "model"), strict=True):
            values = [(p.num_particles, getattr(p, group)) for p in points]
            shown = [(k, snr) for k, snr in values if math.isfinite(snr) and snr > 0]
            if shown:
                axis.plot(*zip(*shown, strict=True), marker="o", markersize=3, label=label)
    for axis, title in zip(
        axes, ("encoder (guide) parameters", "decoder (model) parameters"), strict=True
    ):
        axis.set_xscale("log")
        if axis.lines:
            axis.set_yscale("log")
            if math.isfinite(floor):
                axis.axhline(
                    floor,
                    color="0.5",
                    linestyle="--",
                    linewidth=1,
                    label=f"mean 0 at {num_draws} draws",
                )
        axis.set_xlabel("K (particles per gradient)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("gradient SNR, |E g| / sd(g)")
    legend_axis = next((axis for axis in reversed(axes) if axis.lines), None)
    if legend_axis is not None:
        legend_axis.legend(fontsize=8)
    return _png(figure)


def inference_gap_labels(gaps: dict[str, GapSummary]) -> list[str]:
    """The bars' labels: each run's name, marked where its gaps have not converged."""
    return [
        name if summary.converged else f"{name}\n(not converged)" for name, summary in gaps.items()
    ]


def plot_inference_gaps(gaps: dict[str, GapSummary]) -> bytes:
    """Stacked bars per run: approximation gap below, amortization gap above, with SEs.

    The bar's height is log p(x) − ELBO(q_φ), the whole gap of the trained guide (nats
    per point); error bars are the Monte Carlo standard errors of each part.
    """
    figure, axes = _pyplot().subplots(figsize=(1.4 * len(gaps) + 2.5, 4))
    names, labels = list(gaps), inference_gap_labels(gaps)
    approximation = [gaps[name].approximation_gap for name in names]
    amortization = [gaps[name].amortization_gap for name in names]
    bottoms = [term.mean for term in approximation]
    axes.bar(
        labels,
        bottoms,
        yerr=[term.monte_carlo_standard_error for term in approximation],
        label="approximation gap  log p(x) − ELBO(q*)",
        color="tab:blue",
        capsize=3,
    )
    axes.bar(
        labels,
        [term.mean for term in amortization],
        bottom=bottoms,
        yerr=[term.monte_carlo_standard_error for term in amortization],
        label="amortization gap  ELBO(q*) − ELBO(q_φ)",
        color="tab:orange",
        capsize=3,
    )
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_ylabel("nats per point")
    axes.set_title("Where the bound is lost: log p(x) − ELBO(q_φ)")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return _png(figure)
