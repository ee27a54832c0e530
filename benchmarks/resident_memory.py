"""Resident memory of a long log p(x) evaluation, with and without handing freed memory back.

    python benchmarks/resident_memory.py --threads 1

Each side runs in a fresh process: the 784-400-20 MLP VAE trained one epoch on
``--num-points`` random binary points, then importance sampling at K = 5000 with
the bound-versus-k table of ``vi-vae compare`` (k = 1, 2, 5, ... 5000), while a
second thread formats a line ten times a second, as the command line's progress
heartbeat does (without a second thread the growth does not show). Printed: the
growth of the resident set (``VmRSS``) over the evaluation and its seconds, with
:func:`vi_vae.execution.release_freed_memory` as the evaluators call it, and with
it turned into a no-op (glibc's malloc then keeps the freed chunks' pages: the
growth this guards against), and the ratio of the two times.
"""

import argparse
import subprocess
import sys

CHILD = """
import threading, time, torch
import vi_vae.execution as execution
torch.set_num_threads({threads})
if not {trim}:
    execution._MALLOC_TRIM = None
from vi_vae import VAE, fit, importance_sampling
def resident():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024
torch.manual_seed(0)
vae = VAE(784)
x = torch.bernoulli(torch.full(({num_points}, 784), 0.3))
fit(vae.model, vae.guide, x, epochs=1, batch_size=100)
def heartbeat():  # a progress line's worth of work, ten times a second
    while True:
        time.sleep(0.1)
        str(list(range(50)))
threading.Thread(target=heartbeat, daemon=True).start()
before, started = resident(), time.perf_counter()
importance_sampling(vae.model, vae.guide, x, num_particles=5000, seed=0,
                    bound_particles=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))
print(resident() - before, time.perf_counter() - started)
"""


def measure(trim, args):
    code = CHILD.format(trim=trim, threads=args.threads, num_points=args.num_points)
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    growth, seconds = map(float, out.stdout.split()[-2:])
    return growth, seconds


def main(args):
    points, threads = args.num_points, args.threads
    print(f"importance sampling, K = 5000, {points} points, {threads} thread(s)", flush=True)
    trimmed, untrimmed = measure(True, args), measure(False, args)
    for name, (growth, seconds) in (("released", trimmed), ("kept (no-op)", untrimmed)):
        print(f"freed memory {name:13s}: resident set grew {growth:7.0f} MB in {seconds:5.1f} s")
    print(f"time ratio, released / kept: {trimmed[1] / untrimmed[1]:.2f}x")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-points", type=int, default=150)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
