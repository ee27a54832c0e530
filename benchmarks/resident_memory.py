"""Resident memory of a long comparison, with and without handing freed memory back.

    python benchmarks/resident_memory.py --threads 1

Each side runs in a fresh process: ``vi_vae.app.compare.compare`` on mnist-5k,
one estimator trained ``--epochs`` epochs, log p(x) at K = ``--num-particles`` on
``--num-points`` test points with the bound-versus-k table, with the command line's
progress display (whose heartbeat is a second thread). Printed: the peak resident
set (``ru_maxrss``) above the resident set before the comparison, and the seconds
it took, with :func:`vi_vae.execution.release_freed_memory` as the evaluators call
it and with it turned into a no-op (glibc's malloc then keeps the freed chunks'
pages), and the ratio of the two times. Linux with glibc only.
"""

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, tempfile, time, torch
import vi_vae.execution as execution
torch.set_num_threads({threads})
if not {release}:
    execution._MALLOC_TRIM = None
from vi_vae.app.compare import compare
from vi_vae.app.config import DataConfig, EvaluationConfig, RunConfig, TrainingConfig
from vi_vae.cli.progress import ProgressBar
def resident():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024
config = RunConfig(
    data=DataConfig(dataset="mnist-5k"),
    training=TrainingConfig(epochs={epochs}, seed=0),
    evaluation=EvaluationConfig(num_particles={num_particles}, num_points={num_points}),
)
before, started = resident(), time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    compare(config, ["elbo"], out, snr_num_draws=10,
            progress=ProgressBar(disable=False, stream=sys.stderr))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(peak - before, time.perf_counter() - started)
"""


def measure(release, args):
    code = CHILD.format(
        release=release,
        threads=args.threads,
        epochs=args.epochs,
        num_particles=args.num_particles,
        num_points=args.num_points,
    )
    command = [sys.executable, "-c", code]
    out = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True
    )
    growth, seconds = map(float, out.stdout.split()[-2:])
    return growth, seconds


def main(args):
    print(
        f"compare on mnist-5k: {args.epochs} epoch(s), K = {args.num_particles} on "
        f"{args.num_points} points, {args.threads} thread(s)",
        flush=True,
    )
    released, kept = measure(True, args), measure(False, args)
    for name, (growth, seconds) in (("released", released), ("kept (no-op)", kept)):
        print(
            f"freed memory {name:13s}: peak resident set {growth:6.0f} MB above the start, "
            f"{seconds:5.1f} s"
        )
    print(f"time ratio, released / kept: {released[1] / kept[1]:.2f}x")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-particles", type=int, default=5000)
    parser.add_argument("--num-points", type=int, default=300)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
