"""Run ``vi-vae compare`` at a chosen budget and publish its report under docs/.

    python benchmarks/compare_estimators.py --dataset mnist-5k --epochs 60 \\
        --eval-num-particles 5000 --docs-dir docs/compare-mnist-5k
    python benchmarks/compare_estimators.py --dataset fashion-mnist --epochs 30 \\
        --eval-num-particles 5000 --eval-num-points 2000 --docs-dir docs/compare-fashion-mnist

The runs themselves (checkpoints, per-run reports) stay in --out-dir; the
comparison's report.md, comparison.json and figures are copied to --docs-dir.
Re-running with --resume keeps finished runs, so a long benchmark that was
interrupted continues where it stopped.
"""

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from vi_vae.app.compare import DEFAULT_ESTIMATORS, DEFAULT_SNR_NUM_DRAWS, compare
from vi_vae.app.config import DataConfig, EvaluationConfig, RunConfig, TrainingConfig
from vi_vae.cli.launch import without_flag
from vi_vae.cli.progress import ProgressBar
from vi_vae.evaluation import DEFAULT_NUM_PARTICLES

PUBLISHED = (
    "report.md",
    "comparison.json",
    "bounds_versus_k.png",
    "training_curves.png",
    "snr_versus_k.png",
)


def main(args):
    torch.set_num_threads(args.threads)
    config = RunConfig(
        data=DataConfig(dataset=args.dataset),
        training=TrainingConfig(epochs=args.epochs, seed=args.seed),
        evaluation=EvaluationConfig(
            num_particles=args.eval_num_particles, num_points=args.eval_num_points
        ),
    )
    command = "python benchmarks/compare_estimators.py " + " ".join(
        shlex.quote(a)
        for a in _published_arguments(args.argv if args.argv is not None else sys.argv[1:])
    )
    started = time.perf_counter()
    comparison = compare(
        config,
        args.estimators.split(","),
        args.out_dir,
        resume=args.resume,
        snr_num_draws=args.snr_num_draws,
        command=command,
        progress=ProgressBar(disable=False, stream=sys.stdout),
    )
    docs = Path(args.docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        shutil.copy2(Path(args.out_dir) / name, docs / name)
    print(f"{time.perf_counter() - started:.0f} s; report in {docs / 'report.md'}")
    return comparison


def _published_arguments(argv):
    """The arguments that decide the numbers: without --out-dir and --resume (where the
    runs are kept, and whether finished ones are reused, change none of them)."""
    return without_flag(without_flag(argv, "--out-dir"), "--resume", takes_value=False)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--estimators", default=",".join(DEFAULT_ESTIMATORS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--eval-num-particles", type=int, default=DEFAULT_NUM_PARTICLES)
    parser.add_argument("--eval-num-points", type=int, default=None)
    parser.add_argument("--snr-num-draws", type=int, default=DEFAULT_SNR_NUM_DRAWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=None, help="default: runs/compare-DATASET")
    parser.add_argument("--docs-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    args.argv = argv
    args.out_dir = args.out_dir or f"runs/compare-{args.dataset}"
    return args


if __name__ == "__main__":
    main(parse_args())
