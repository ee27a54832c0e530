"""Make the gallery: real runs, their figures copied here, and the page that shows them.

    python docs/gallery/make_gallery.py             # about 5 minutes on two CPU cores
    python docs/gallery/make_gallery.py --epochs 2  # a quick check that it still works

It runs ``vi-vae train`` (through :func:`vi_vae.cli.main`, the same code as the
command) for a 2-D and a 20-D latent space on ``mnist-5k``, and the anomaly-score
example, copies the figures into ``docs/gallery/`` and writes ``docs/gallery/index.md``
with the command that made each figure beside it. The estimator figures (bounds
and gradient SNR against K) are those of the published comparison in
``docs/compare-mnist-5k/`` (``benchmarks/compare_estimators.py`` makes them), and the
autoencoder and denoising figures those of ``examples/`` in ``docs/figures/`` (their
commands write them there), shown as they are. The figures are committed; building
the site never trains.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GALLERY = Path(__file__).resolve().parent
ROOT = GALLERY.parent.parent
#: the published estimator comparison whose figures the gallery shows as they are
COMPARISON = GALLERY.parent / "compare-mnist-5k"
COMPARISON_COMMAND = (
    "python benchmarks/compare_estimators.py --dataset mnist-5k --epochs 60 "
    "--eval-num-particles 5000 --docs-dir docs/compare-mnist-5k"
)
#: epochs of the gallery runs: enough for clear digits, a few minutes on two cores
DEFAULT_EPOCHS = 30
#: K for the runs' test log p(x): the figures do not need the 5000 of a published number
EVAL_NUM_PARTICLES = 500


@dataclass(frozen=True)
class Figure:
    """One gallery entry: a PNG, the command that made it, and what it shows."""

    title: str
    file: str  # under docs/gallery/ (or relative to it)
    command: str
    caption: str


def train_arguments(latent_dim: int, epochs: int, run_dir: Path) -> list[str]:
    """``vi-vae train`` for the gallery (the flags of the restructured command line)."""
    return [
        "train",
        "--dataset",
        "mnist-5k",
        "--latent-family",
        "normal",
        "--latent-dim",
        str(latent_dim),
        "--hidden-sizes",
        "400",
        "--epochs",
        str(epochs),
        "--seed",
        "0",
        "--eval-num-particles",
        str(EVAL_NUM_PARTICLES),
        "--run-dir",
        str(run_dir),
        "--overwrite",
        "--quiet",
    ]


def run_cli(arguments: list[str]) -> None:
    """Run one ``vi-vae`` command in this process; stop on a non-zero status."""
    from vi_vae.cli import main

    status = main(arguments)
    if status:
        raise SystemExit(f"vi-vae {shlex.join(arguments)} exited with {status}")


def shown_command(arguments: list[str], run_dir: Path, name: str) -> str:
    """The command as a reader would type it, with the run directory under runs/."""
    words = [word if word != str(run_dir) else f"runs/{name}" for word in arguments]
    words = [word for word in words if word != "--quiet"]
    return "vi-vae " + shlex.join(words)


def make_figures(epochs: int, work: Path) -> list[Figure]:
    """Train the runs, copy their figures into the gallery, say what each shows."""
    figures: list[Figure] = []
    runs = {}
    for name, latent_dim in (("mnist-2d", 2), ("mnist-20d", 20)):
        run_dir = work / name
        arguments = train_arguments(latent_dim, epochs, run_dir)
        run_cli(arguments)
        runs[name] = (run_dir, shown_command(arguments, run_dir, name))

    def copy(run: str, figure: str) -> str:
        target = f"{run}-{figure}.png"
        shutil.copyfile(runs[run][0] / f"{figure}.png", GALLERY / target)
        return target

    figures += [
        Figure(
            "Reconstructions",
            copy("mnist-20d", "reconstructions"),
            runs["mnist-20d"][1],
            "Test digits (odd rows) and, below each, E[x|z] at the centre of q(z|x) "
            "(even rows): the encoder keeps what the decoder needs to redraw the digit.",
        ),
        Figure(
            "Samples from the prior, 20-D latent space",
            copy("mnist-20d", "samples"),
            runs["mnist-20d"][1],
            "Decoding z ~ p(z) = N(0, I): only the decoder is used to generate.",
        ),
        Figure(
            "Samples from the prior, 2-D latent space",
            copy("mnist-2d", "samples"),
            runs["mnist-2d"][1],
            "The same with two latent dimensions: blurrier digits from a model that "
            "can keep only two numbers per image.",
        ),
        Figure(
            "Latent scatter",
            copy("mnist-2d", "latent_scatter"),
            runs["mnist-2d"][1],
            "The centre of q(z|x) of every test digit, coloured by its label: several "
            "classes (the 1s and 0s most clearly) occupy regions of their own although "
            "no label was used in training; with two dimensions, others overlap.",
        ),
        Figure(
            "The learned manifold",
            copy("mnist-2d", "manifold"),
            runs["mnist-2d"][1],
            "A grid of z over the prior's quantiles, decoded (Kingma & Welling 2014, "
            "Fig. 4): neighbouring points of the latent plane decode to similar digits.",
        ),
        Figure(
            "Interpolation",
            copy("mnist-20d", "interpolation"),
            runs["mnist-20d"][1],
            "The straight line between the latent codes of two test digits, decoded: "
            "one digit morphs into the other.",
        ),
        Figure(
            "Training curves",
            copy("mnist-20d", "training_curves"),
            runs["mnist-20d"][1],
            "Minus the training loss and the validation ELBO per epoch, in nats per "
            "point (history.csv).",
        ),
    ]

    anomaly_dir = work / "anomaly"
    anomaly = [
        sys.executable,
        str(ROOT / "examples" / "anomaly_scores.py"),
        "--held-out-digit",
        "2",
        "--epochs",
        str(epochs),
        "--out",
        str(anomaly_dir),
    ]
    subprocess.run(anomaly, check=True, cwd=ROOT)
    shutil.copyfile(anomaly_dir / "anomaly_scores.png", GALLERY / "anomaly_scores.png")
    figures.append(
        Figure(
            "Anomaly scores",
            "anomaly_scores.png",
            f"python examples/anomaly_scores.py --held-out-digit 2 --epochs {epochs}",
            "A VAE trained without the digit 2 scores every test digit by −log p̂(x) and "
            "by reconstruction distance; the dashed line flags 5% of clean validation digits.",
        )
    )
    figures += [
        Figure(
            "Autoencoder against VAE",
            "../figures/autoencoder_vs_vae.png",
            "python examples/autoencoder_vs_vae.py --epochs 100 --out docs/figures",
            "The same networks trained as a deterministic autoencoder (squared error, no "
            "KL) and as a VAE (the ELBO), with a 2-D latent space: the test digits' codes "
            "(top) and the decodes of a regular grid of z (bottom), holes (no training "
            "code within one grid step) tinted red. The autoencoder's codes spread "
            "unevenly over a wide box with gaps between the clusters; the VAE's stay near "
            "its N(0, I) prior and its grid decodes to digits that change smoothly.",
        ),
        Figure(
            "Denoising: masked pixels",
            "../figures/denoising_mask.png",
            "python examples/denoising.py --corruption mask --level 0.5 --epochs 50 "
            "--out docs/figures",
            "Test digits with half their pixels set to 0 (top), reconstructed by an "
            "autoencoder trained on clean digits, a denoising autoencoder and a denoising "
            "VAE (both trained on masked inputs against the clean targets), and the clean "
            "digits (bottom).",
        ),
        Figure(
            "Denoising: Gaussian noise",
            "../figures/denoising_gaussian.png",
            "python examples/denoising.py --corruption gaussian --level 0.5 --epochs 50 "
            "--out docs/figures",
            "The same with N(0, 0.5²) noise added to every pixel.",
        ),
        Figure(
            "Bounds against K",
            "../compare-mnist-5k/bounds_versus_k.png",
            COMPARISON_COMMAND,
            "IWAE-K on the test set for K = 1 … 5000, one line per training estimator: "
            "the bound rises with K towards log p(x).",
        ),
        Figure(
            "Gradient signal-to-noise ratio against K",
            "../compare-mnist-5k/snr_versus_k.png",
            COMPARISON_COMMAND,
            "|E g| / sd(g) of the encoder's and decoder's gradients: IWAE's encoder SNR "
            "falls as K grows, DReG's does not (Rainforth et al. 2018). The dashed line is "
            "what a gradient with mean 0 reads at the 100 draws of each point "
            "({py:func}`vi_vae.snr_noise_floor`): every curve lies well above it.",
        ),
    ]
    return figures


def wrapped(command: str, width: int = 76) -> str:
    """A long command over several lines, broken before a flag, with ``\\`` continuations."""
    lines, current = [], ""
    for word in shlex.split(command):
        word = shlex.quote(word)
        if current and word.startswith("--") and len(current) + len(word) + 1 > width:
            lines.append(current)
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    return " \\\n".join(lines + [current])


def page(figures: list[Figure], epochs: int) -> str:
    """The gallery page in MyST Markdown."""
    lines = [
        "# Gallery",
        "",
        "The figures a run of vi_vae leaves behind, from real runs on the embedded",
        "`mnist-5k` digits. Each is shown with the command that made it. They were",
        f"made by `python docs/gallery/make_gallery.py --epochs {epochs}`, which writes",
        "this page; the figures are committed, and building the site never trains.",
        "See {doc}`/getting-started` for what else a run directory holds.",
        "",
    ]
    for figure in figures:
        lines += [
            f"## {figure.title}",
            "",
            f"![{figure.title}]({figure.file})",
            "",
            figure.caption,
            "",
            "```bash",
            wrapped(figure.command),
            "```",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run everything, write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--keep-runs", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.keep_runs is not None:
        args.keep_runs.mkdir(parents=True, exist_ok=True)
        figures = make_figures(args.epochs, args.keep_runs)
    else:
        with tempfile.TemporaryDirectory() as work:
            figures = make_figures(args.epochs, Path(work))
    (GALLERY / "index.md").write_text(page(figures, args.epochs))
    print(f"wrote {GALLERY / 'index.md'} and {len(figures)} figures")


if __name__ == "__main__":
    main()
