"""Evaluation speed-up from 1 to N processes (torch.distributed), measured in the same run.

    python benchmarks/distributed_evaluation.py                 # CPU: 1 vs 2 processes, Gloo
    python benchmarks/distributed_evaluation.py --device cuda --nproc 4   # 1 vs 4 GPUs, NCCL

``log_marginal_likelihood`` of the 784-400-20 MLP VAE with K importance samples
on the same test points and seed, first in one process, then sharded over N
processes (torch.multiprocessing, one thread each on the CPU, one GPU each with
``--device cuda``); the N-process time is the wall time between two barriers, so
it waits for the slowest shard. The ceiling is measured too: N processes that
know nothing of each other, each evaluating the same share, started at once; on
a machine whose cores are busy with other work it is well below N, and the
sharded run can only match it. Everything is repeated ``--rounds`` times,
interleaved (a shared machine is noisy), and the median ratios are printed, with
a check that the per-point numbers are bitwise those of one process. A last
ratio, in one process, compares the keyed draws (``seed=``, a seeded stream per
key block) with draws from the global stream (``seed=None``, the unkeyed passes).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vi_vae import VAE, log_marginal_likelihood
from vi_vae.distributed import shard

INPUT_DIM, LATENT = 784, 20


def make_data(num_points, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(num_points, INPUT_DIM, generator=generator) < 0.13).float()


def evaluate(args, device, seed=0, rows=None, barrier=None):
    """Seconds of one evaluation of ``x[rows]`` (all), and its per-point log p(x)."""
    vae = VAE(INPUT_DIM, LATENT, seed=0).to(device)
    x = make_data(args.num_points).to(device)
    log_marginal_likelihood(vae.model, vae.guide, x[:1], 10, compute_pareto_k=False)  # warm up
    x = x[rows] if rows is not None else x
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    estimate = log_marginal_likelihood(
        vae.model, vae.guide, x, args.num_particles, compute_pareto_k=False, seed=seed
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if barrier is not None:
        barrier.wait()
    return time.perf_counter() - started, estimate.log_likelihood


def rank_main(rank, args, store, output, barrier, sharded):
    """One of N processes: a rank of a process group, or (the control) a process on its own."""
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if sharded:
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method=f"file://{store}", rank=rank, world_size=args.nproc
        )
        seconds, log_likelihood = evaluate(args, device, barrier=barrier)
        dist.destroy_process_group()
    else:  # the same share of the points, in a process that knows of no other
        rows = shard(args.num_points, rank=rank, world_size=args.nproc)
        seconds, log_likelihood = evaluate(args, device, rows=rows, barrier=barrier)
    if rank == 0:
        torch.save((seconds, log_likelihood), output)


def processes(args, directory, round_index, sharded):
    store, output = directory / f"store{round_index}", directory / f"out{round_index}.pt"
    barrier = mp.get_context("spawn").Barrier(args.nproc)
    mp.spawn(rank_main, args=(args, str(store), str(output), barrier, sharded), nprocs=args.nproc)
    return torch.load(output)


def main(args):
    if args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        found = torch.cuda.device_count()
        print(
            f"--device cuda --nproc {args.nproc} needs {args.nproc} GPUs; this machine has {found}"
        )
        return None
    torch.set_num_threads(1)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for round_index in range(args.rounds):
            single, reference = evaluate(args, device)
            parallel, log_likelihood = processes(args, Path(directory), round_index, True)
            assert torch.equal(log_likelihood, reference), "sharded numbers differ"
            control, _ = processes(args, Path(directory), round_index, False)
            unkeyed, _ = evaluate(args, device, seed=None)
            rows.append((single, parallel, control, unkeyed))
    single, parallel, control, unkeyed = (statistics.median(c) for c in zip(*rows, strict=True))
    speed_up = statistics.median(r[0] / r[1] for r in rows)
    print(
        f"log p(x), 784-400-{LATENT} MLP VAE, K = {args.num_particles}, {args.num_points} points, "
        f"{args.device}, {args.rounds} interleaved rounds (medians)"
    )
    print(
        f"1 process: {single:.2f} s; {args.nproc} processes (torch.distributed): {parallel:.2f} s"
    )
    print(f"speed-up 1 -> {args.nproc} processes: {speed_up:.2f}x")
    print(
        f"ceiling on this machine, {args.nproc} independent processes on the same shares: "
        f"{statistics.median(r[0] / r[2] for r in rows):.2f}x ({control:.2f} s)"
    )
    print("per-point log p(x) of the shards: bitwise those of one process")
    print(
        f"one process, time of keyed draws (seed=0) / global stream (seed=None): "
        f"{statistics.median(r[0] / r[3] for r in rows):.2f}x ({single:.2f} s / {unkeyed:.2f} s)"
    )
    return speed_up


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--num-points", type=int, default=32)
    parser.add_argument("--num-particles", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
