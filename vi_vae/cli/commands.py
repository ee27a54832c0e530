"""What each ``vi-vae`` subcommand does, given its parsed arguments.

:mod:`vi_vae.cli.printing` words what they print.
"""

from __future__ import annotations

import argparse
import functools
import shlex
from pathlib import Path

from vi_vae.app.assessment import GapRequest
from vi_vae.app.config import RunConfig
from vi_vae.app.report import number
from vi_vae.cli.flags import config_from_arguments, flag_of_field, given_flags
from vi_vae.cli.printing import (
    ais_settings_text,
    print_metrics,
    print_paired_differences,
    print_points_asked,
    print_table,
    share_text,
    unsettled_mark,
    warn_unless_converged,
    warn_unless_gaps_converged,
)
from vi_vae.cli.progress import ProgressBar
from vi_vae.distributed import is_main_process
from vi_vae.errors import InputError
from vi_vae.evaluation import (
    ABOVE_PARETO_K_THRESHOLD,
    NARROWER_GUIDE_SUPPORT,
    AISSettings,
    AutoAISSettings,
    GapSettings,
)
from vi_vae.evaluation.importance_convergence import UNSETTLED_IMPORTANCE_SAMPLING

__all__ = ["COMMANDS", "DEFAULT_NUM_SAMPLES_SHOWN"]

#: samples ``vi-vae sample`` draws by default (an 8 × 8 grid)
DEFAULT_NUM_SAMPLES_SHOWN = 64
#: the only flags ``train --resume`` accepts besides the output ones
RESUME_FLAGS = ("--epochs", "--device")


def _progress(args: argparse.Namespace) -> ProgressBar:
    """The command's progress bar: on stderr unless ``--quiet``, on the writer rank only."""
    return ProgressBar(disable=args.quiet or not is_main_process())


def _train(args: argparse.Namespace) -> int:
    from vi_vae.app.runs import resume_run, train_run

    with _progress(args) as progress:
        shared = {"progress": progress, "figures": not args.no_figures}
        if args.resume:
            ignored = [f for f in given_flags(args, "train") if f not in RESUME_FLAGS]
            if ignored or args.run_dir:
                ignored += ["--run-dir"] if args.run_dir else []
                raise InputError(
                    f"--resume continues a run with its stored settings, so {', '.join(ignored)} "
                    f"would be ignored; only {' and '.join(RESUME_FLAGS)} may be given with it"
                )
            run_dir = Path(args.resume)
            run = resume_run(
                run_dir,
                epochs=getattr(args, "training__epochs", None),
                device=getattr(args, "training__device", None),
                **shared,
            )
            if run.metrics.training and run.metrics.training.resumed_from_epoch == 0:
                print(f"note: {run_dir} had no completed epoch; trained from epoch 1")
        else:
            config = config_from_arguments(args, "train")
            run_dir = Path(args.run_dir or Path("runs") / _default_run_name(config))
            run = train_run(config, run_dir, overwrite=args.overwrite, **shared)
    print(f"run directory: {run_dir}")
    print_metrics(run.metrics, "train")
    stored = run.config
    print_points_asked(run.metrics, stored.evaluation.num_points, stored.ais.num_points, "train")
    print(f"report: {run.directory.report_path}")
    return 0


def _default_run_name(config) -> str:
    return f"{Path(config.data.dataset).stem}-{config.model.latent_family}"


def _compare(args: argparse.Namespace) -> int:
    from vi_vae.app.compare import compare, run_name

    config = config_from_arguments(args, "compare")
    out_dir = Path(args.out_dir or Path("runs") / f"compare-{Path(config.data.dataset).stem}")
    with ProgressBar(disable=args.quiet) as progress:
        comparison = compare(
            config,
            args.estimators.split(","),
            out_dir,
            snr_particles=args.snr_particles,
            snr_num_draws=args.snr_num_draws,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=progress,
            command="vi-vae " + " ".join(shlex.quote(a) for a in args.argv),
            gaps=_gap_request(args.gaps, config),
        )
    print(f"comparison directory: {out_dir}")
    print(
        "run directories: "
        + ", ".join(str(out_dir / run_name(row.estimator)) for row in comparison.rows)
    )
    print(
        # k̂ is two characters (k and a combining hat) in one column
        f"{'estimator':<14} {'log p(x)':>10}  {'± SE':>6} {'k̂ > 0.7':>10} {'ELBO':>9} "
        f"{'seconds':>8}"
    )
    for row in comparison.rows:
        estimate, elbo = row.log_marginal_likelihood, row.bound(1)
        print(
            f"{row.estimator:<14} {estimate.log_likelihood:>10.2f}{unsettled_mark(estimate)} "
            f"{number(estimate.standard_error):>6} {share_text(estimate.share_pareto_k_above):>9} "
            f"{elbo.mean if elbo else float('nan'):>9.2f} {row.seconds:>8.0f}"
        )
    print_paired_differences(comparison)
    if comparison.unsettled:
        flag = flag_of_field("evaluation.num_particles", "compare")
        print(f"*: log p(x) is {UNSETTLED_IMPORTANCE_SAMPLING}; raise {flag}")
    if any(row.log_marginal_likelihood.share_pareto_k_above > 0 for row in comparison.rows):
        print(f"k̂ > 0.7: the share of test points where log p(x) is {ABOVE_PARETO_K_THRESHOLD}")
    narrower = [row.log_marginal_likelihood.narrower_guide_sites for row in comparison.rows]
    if any(narrower):
        print(
            f"log p(x): the guide's support at {list(dict.fromkeys(sum(narrower, ())))} is "
            f"narrower than the prior's, so each row's log p(x) is {NARROWER_GUIDE_SUPPORT}"
        )
    for row in comparison.rows:
        if row.ais is not None:
            warn_unless_converged(row.ais, f"{row.estimator}: AIS")
        if row.gaps is not None:
            warn_unless_gaps_converged(row.gaps, row.estimator)
    print(f"report: {out_dir / 'report.md'}")
    return 0


def _gap_request(num_points: int | None, config: RunConfig) -> GapRequest | None:
    """``compare --gaps N``: the gaps on N points, with the library's settings and --ais-'s."""
    if num_points is None:
        return None
    return GapRequest(num_points, GapSettings(ais=config.ais.settings))


def _evaluate(args: argparse.Namespace) -> int:
    from vi_vae.app.run_evaluation import evaluate_run

    config = config_from_arguments(args, "evaluate")
    auto = _auto(args, config.ais)
    with _progress(args) as progress:
        run = evaluate_run(
            args.run_dir,
            config.evaluation,
            ais=config.ais,
            method=args.method,
            device=args.device,
            on_evaluation=progress.on_evaluation,
            auto=auto,
        )
    print_metrics(run.metrics, "evaluate")
    ais_points = config.ais.num_points or (
        config.evaluation.num_points if args.method == "ais" else None
    )
    print_points_asked(run.metrics, config.evaluation.num_points, ais_points, "evaluate")
    print(f"metrics: {run.directory.metrics_path}")
    print(f"report: {run.directory.report_path}")
    return 0


def _auto(args: argparse.Namespace, ais: AISSettings) -> AutoAISSettings | None:
    """``--auto``'s settings, ``--ais-num-steps`` its largest T; ``None`` without it."""
    if not args.auto:
        return None
    if args.method != "ais":
        raise InputError("--auto chooses AIS's number of steps T; give it with --method ais")
    if "--ais-num-steps" not in given_flags(args, "evaluate"):
        return AutoAISSettings()
    largest = ais.num_steps
    if largest < 2:
        raise InputError(f"--ais-num-steps is the largest T with --auto: at least 2; got {largest}")
    return AutoAISSettings(
        start_num_steps=min(AutoAISSettings().start_num_steps, largest), max_num_steps=largest
    )


def _bdmc(args: argparse.Namespace) -> int:
    from vi_vae.app.run_evaluation import bdmc_run
    from vi_vae.execution import ExecutionOptions

    config = config_from_arguments(args, "bdmc")
    with _progress(args) as progress:
        run = bdmc_run(
            args.run_dir,
            args.num_points,
            config.ais,
            execution=ExecutionOptions(device=args.device, compile=config.evaluation.compile),
            on_step=functools.partial(progress.on_evaluation, "BDMC"),
        )
    result = run.metrics.bdmc
    print(
        f"BDMC on {result.num_points} points simulated from the model "
        f"({ais_settings_text(result.settings)}): lower bound "
        f"{result.lower.log_likelihood:.2f}, upper bound {result.upper.log_likelihood:.2f} nats "
        f"per point; gap {result.mean_gap:.3f} ± {number(result.mean_gap_standard_error, 3)} "
        f"(max {result.max_gap:.2f})"
    )
    warn_unless_converged(result, "AIS (checked by BDMC)")
    print(f"report: {run.directory.report_path}")
    return 0


def _gaps(args: argparse.Namespace) -> int:
    from vi_vae.app.run_evaluation import gaps_run

    config = config_from_arguments(args, "gaps")
    options = ("local_steps", "local_learning_rate", "local_particles", "num_particles")
    given = {name: getattr(args, name) for name in (*options, "full_covariance")}
    settings = GapSettings(**given, ais=config.ais.settings)
    with _progress(args) as progress:
        run = gaps_run(
            args.run_dir,
            args.num_points,
            settings,
            device=args.device,
            on_evaluation=progress.on_evaluation,
        )
    gaps = run.metrics.gaps
    for name, term in (
        (
            f"log p(x) by AIS ({ais_settings_text(settings.ais)}, {gaps.num_points} points)",
            gaps.log_likelihood,
        ),
        ("approximation gap log p(x) − ELBO(q*)", gaps.approximation_gap),
        ("amortization gap ELBO(q*) − ELBO(q_φ)", gaps.amortization_gap),
    ):
        # ± is the standard error over points, as evaluate prints it; the Monte Carlo
        # SE is that of these points' numbers
        print(
            f"{name} = {term.mean:.2f} ± {number(term.standard_error)} nats "
            f"(Monte Carlo SE {term.monte_carlo_standard_error:.2f})"
        )
    verdicts = (("AIS", gaps.ais_convergence), ("local optimization", gaps.local_convergence))
    for what, convergence in verdicts:
        # what failed; the flags to change are on the warning line (the library's summary
        # names its settings, not the flags)
        verdict = convergence.summary if convergence.converged else convergence.findings
        print(f"{what}: {'' if convergence.converged else 'not converged: '}{verdict}")
    warn_unless_gaps_converged(gaps)
    print(f"report: {run.directory.report_path}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from vi_vae.app.runs import load_run
    from vi_vae.app.sampling import write_samples

    run = load_run(args.run_dir)
    if args.output:
        write_samples(run, args.num_samples, Path(args.output), args.seed)
        output = Path(args.output)
    else:  # the run's own samples.png: not while another process writes the run
        output = run.directory.figure_path("samples")
        with run.directory.locked():
            write_samples(run, args.num_samples, output, args.seed)
    print(f"{args.num_samples} samples written to {output}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from vi_vae.app.run_evaluation import redraw_figures

    run = redraw_figures(args.run_dir)
    for name in run.metrics.figures:
        print(run.directory.path / name)
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from vi_vae.data import dataset_descriptions

    for name, description in dataset_descriptions().items():
        print(f"{name:<20} {description}")
    return 0


def _families(args: argparse.Namespace) -> int:
    from vi_vae.latents import FAMILIES

    print_table(
        [family.summary() for family in FAMILIES.values()],
        ("name", "category", "support", "prior", "kl"),
    )
    return 0


def _estimators(args: argparse.Namespace) -> int:
    from vi_vae.estimators import ESTIMATOR_SPECS

    print_table(
        [
            {"spelling": spec.usage(name), "example": spec.example, "summary": spec.summary}
            for name, spec in ESTIMATOR_SPECS.items()
        ],
        ("spelling", "example", "summary"),
    )
    return 0


COMMANDS = {
    "train": _train,
    "compare": _compare,
    "evaluate": _evaluate,
    "bdmc": _bdmc,
    "gaps": _gaps,
    "sample": _sample,
    "plot": _plot,
    "datasets": _datasets,
    "families": _families,
    "estimators": _estimators,
}
