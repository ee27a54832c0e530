"""Gather ``vi-vae gaps`` results of several runs into a table and a stacked-bar figure.

    for run in elbo iwae-5 dreg-5 stl-1; do vi-vae gaps RUNS/$run --num-points 30; done
    python benchmarks/inference_gaps.py RUNS/elbo RUNS/iwae-5 RUNS/dreg-5 RUNS/stl-1 \\
        --figure docs/results/inference-gaps.png

Each run directory must hold a ``gaps`` result in its ``metrics.json`` (written by
``vi-vae gaps``). Prints one Markdown table row per run (log p(x), the ELBOs of the
trained guide, of q* and of the full-covariance q where measured, the two gaps, the
verdicts) and writes the figure of ``vi-vae compare --gaps``.
"""

import argparse
from pathlib import Path

from vi_vae.app.plots import plot_inference_gaps
from vi_vae.app.run_directory import RunDirectory


def _term(term):
    if term is None:
        return "—"
    return f"{term.mean:.2f} ± {term.monte_carlo_standard_error:.2f}"


def main(args):
    summaries = {}
    print(
        "| run | log p(x) (AIS) | ELBO(q_φ) | ELBO(q*) | ELBO(full cov.) | approximation gap "
        "| amortization gap | AIS / q* converged |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for run_dir in args.run_dirs:
        gaps = RunDirectory(run_dir).read_metrics().gaps
        if gaps is None:
            raise SystemExit(f"{run_dir} has no gaps result: run vi-vae gaps {run_dir} first")
        name = Path(run_dir).name
        summaries[name] = gaps
        verdicts = "/".join(
            "yes" if c.converged else "no" for c in (gaps.ais_convergence, gaps.local_convergence)
        )
        print(
            f"| {name} | {_term(gaps.log_likelihood)} | {_term(gaps.amortized_elbo)} | "
            f"{_term(gaps.local_elbo)} | {_term(gaps.full_covariance_elbo)} | "
            f"{_term(gaps.approximation_gap)} | {_term(gaps.amortization_gap)} | {verdicts} |"
        )
    if args.figure:
        Path(args.figure).write_bytes(plot_inference_gaps(summaries))
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--figure", help="where to write the stacked-bar PNG")
    main(parser.parse_args())
