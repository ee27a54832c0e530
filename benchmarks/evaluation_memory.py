"""Peak memory of the log p(x) evaluator against its chunk size (the figure in evaluation.py).

    python benchmarks/evaluation_memory.py

Each chunk size runs in a fresh process; the peak resident memory of the
evaluation is reported above the process's baseline (model built, one tiny
evaluation done), for the 784-400-20 MLP VAE, K = 1000, 200 points.
"""

import argparse
import resource
import subprocess
import sys
from pathlib import Path

CHILD = """
import gc, resource, torch
torch.set_num_threads(1)
from vi_vae import VAE, log_marginal_likelihood
vae = VAE(784, 20)
x = (torch.rand(200, 784) < 0.13).float()
log_marginal_likelihood(vae.model, vae.guide, x[:2], 10, compute_pareto_k=False)
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
log_marginal_likelihood(vae.model, vae.guide, x, 1000, chunk_size={chunk}, compute_pareto_k=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def main(args):
    assert resource  # the child uses it; Linux reports ru_maxrss in KiB
    rows = []
    for chunk in args.chunk_sizes:
        output = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", CHILD.format(chunk=chunk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append((chunk, float(output.strip().splitlines()[-1])))
    lines = [
        "| chunk_size (pairs per pass) | peak above baseline (MB) | KB per pair |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {c} | {mb:.0f} | {mb * 1024 / c:.1f} |" for c, mb in rows]
    table = "\n".join(lines)
    print(table)
    if args.write:
        sizes = " ".join(str(c) for c in args.chunk_sizes)
        Path(args.write).write_text(
            "# Peak memory of the log p(x) evaluator\n\n"
            "784-400-20 MLP VAE, K = 1000, 200 points, one fresh process per chunk size; "
            "peak resident memory above the process's baseline (glibc's allocator makes "
            "the per-pair figure uneven). Regenerate with:\n\n"
            f"    python benchmarks/evaluation_memory.py --chunk-sizes {sizes} "
            f"--write {args.write}\n\n{table}\n"
        )
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[2048, 8192, 32768])
    parser.add_argument("--write", help="write the table to this markdown file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
