"""The ``vi-vae`` command's parser and entry point: one line and exit 2 for bad input."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from vi_vae import __version__
from vi_vae.app.assessment import DEFAULT_BDMC_NUM_POINTS, DEFAULT_GAPS_NUM_POINTS, METHODS
from vi_vae.app.compare import (
    DEFAULT_ESTIMATORS,
    DEFAULT_SNR_NUM_DRAWS,
    DEFAULT_SNR_PARTICLES,
    SettingsChanged,
)
from vi_vae.app.run_directory import RunDirectoryNotEmpty
from vi_vae.app.runs import EvaluationFailed
from vi_vae.app.schema import SchemaError
from vi_vae.cli.commands import COMMANDS, DEFAULT_NUM_SAMPLES_SHOWN
from vi_vae.cli.flags import add_config_flags, flag_of_field, int_list, positive_int, seed
from vi_vae.cli.launch import add_launch_flags, distributed_session, program, relaunch
from vi_vae.errors import InputError, TrainingError
from vi_vae.evaluation.auto_ais_settings import DEFAULT_MAX_NUM_STEPS

__all__ = ["build_parser", "main"]

EPILOG = "Bad input exits with status 2 and a one-line message; a failed run exits with 1."
ALL_SECTIONS = ("data", "model", "training", "evaluation", "ais")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vi-vae`` and its subcommands."""
    parser = _Parser(
        prog="vi-vae",
        description="Train VAEs written as Pyro model/guide pairs and estimate log p(x).",
        epilog=EPILOG,
    )
    parser.add_argument("--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    for name, (summary, description, add_flags) in _SUBCOMMANDS.items():
        subcommand = commands.add_parser(name, help=summary, description=description, epilog=EPILOG)
        if name in _ON_A_RUN:
            subcommand.add_argument("run_dir", metavar="RUN_DIR")
        add_flags(subcommand)
    return parser


def _add_device_and_quiet(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default: the run's) and ``--quiet``: the flags of a command on a run."""
    parser.add_argument("--device", help="cpu or cuda (default: the run's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_numbers(parser: Any, *options: tuple[str, Callable[[str], Any], Any, str]) -> None:
    """Add each ``(flag, type, default, what)``; its help is ``what (default: DEFAULT)``."""
    for flag, kind, default, what in options:
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default: %(default)s)")


def _train_flags(train: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae train``."""
    add_config_flags(train, "train", ALL_SECTIONS)
    output = train.add_argument_group("output")
    output.add_argument("--run-dir", help="where to write the run (default: runs/DATASET-LATENT)")
    output.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a killed or finished run from its last completed epoch with its "
        "stored settings (only --epochs, to raise the total, and --device may be given)",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory (refused while another vi-vae process "
        "writes it: one process at a time holds its lock)",
    )
    output.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    add_launch_flags(train)


def _evaluate_flags(evaluate: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae evaluate``."""
    evaluate.add_argument(
        "--method",
        choices=METHODS,
        default=METHODS[0],
        help="is: importance sampling from the guide; ais: AIS on the evaluated points too, "
        "beside importance sampling on the same points (default: %(default)s)",
    )
    add_config_flags(evaluate, "evaluate", ("evaluation", "ais"))
    evaluate.add_argument(
        "--auto",
        action="store_true",
        help="with --method ais: choose T by doubling it from a small start until AIS's "
        "verdict holds (BDMC on a few simulated points included), and print the cost; "
        f"--ais-num-steps is then the largest T (default: {DEFAULT_MAX_NUM_STEPS})",
    )
    _add_device_and_quiet(evaluate)
    add_launch_flags(evaluate)


def _bdmc_flags(bdmc: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae bdmc``."""
    _add_numbers(
        bdmc, ("--num-points", positive_int, DEFAULT_BDMC_NUM_POINTS, "simulated (z, x) pairs")
    )
    add_config_flags(
        bdmc,
        "bdmc",
        ("evaluation", "ais"),
        exclude=(
            "evaluation.num_particles",
            "evaluation.bound_particles",
            "evaluation.num_points",
            "ais.num_points",
        ),
    )
    _add_device_and_quiet(bdmc)


def _gaps_flags(gaps: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae gaps``."""
    from vi_vae.evaluation import gap_settings as defaults

    local = gaps.add_argument_group("gaps")
    _add_numbers(
        local,
        ("--num-points", positive_int, DEFAULT_GAPS_NUM_POINTS, "test points"),
        ("--local-steps", positive_int, defaults.DEFAULT_LOCAL_STEPS, "Adam steps of q*"),
        ("--local-learning-rate", float, defaults.DEFAULT_LOCAL_LEARNING_RATE, "of those steps"),
        ("--local-particles", positive_int, defaults.DEFAULT_LOCAL_PARTICLES, "draws per step"),
        ("--num-particles", positive_int, defaults.DEFAULT_GAP_PARTICLES, "draws per ELBO"),
    )
    local.add_argument(
        "--full-covariance",
        action="store_true",
        help="also optimize a full-covariance Gaussian q per point (diagonal Gaussian guides)",
    )
    add_config_flags(gaps, "gaps", ("ais",), exclude=("ais.num_points",))
    _add_device_and_quiet(gaps)


def _sample_flags(sample: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae sample``."""
    _add_numbers(
        sample, ("--num-samples", positive_int, DEFAULT_NUM_SAMPLES_SHOWN, "number of samples")
    )
    sample.add_argument("--output", help="PNG (grid) or .npy file (default: RUN_DIR/samples.png)")
    _add_numbers(sample, ("--seed", seed, 0, "random seed"))


def _compare_flags(compare: argparse.ArgumentParser) -> None:
    """The flags of ``vi-vae compare``."""
    compare.add_argument(
        "--estimators",
        default=",".join(DEFAULT_ESTIMATORS),
        help="comma-separated estimator spellings (default: %(default)s)",
    )
    add_config_flags(compare, "compare", ALL_SECTIONS)
    compare_output = compare.add_argument_group("output")
    compare_output.add_argument(
        "--out-dir", help="comparison directory (default: runs/compare-DATASET)"
    )
    compare_output.add_argument(
        "--snr-particles",
        type=int_list,
        default=DEFAULT_SNR_PARTICLES,
        help="K values of the gradient-SNR curves (default: "
        f"{','.join(map(str, DEFAULT_SNR_PARTICLES))})",
    )
    compare_output.add_argument(
        "--gaps",
        type=positive_int,
        metavar="NUM_POINTS",
        help="also split each run's bound into the approximation and amortization gaps on "
        "that many test points, with the --ais- settings (default: off; see vi-vae gaps)",
    )
    _add_numbers(
        compare_output,
        ("--snr-num-draws", int, DEFAULT_SNR_NUM_DRAWS, "gradient draws per SNR value, >= 2"),
    )
    compare_output.add_argument(
        "--resume",
        action="store_true",
        help="keep finished runs in --out-dir, resume unfinished ones",
    )
    compare_output.add_argument(
        "--overwrite", action="store_true", help="replace existing runs in --out-dir"
    )
    compare_output.add_argument("--quiet", action="store_true", help="no progress bar")


def _no_flags(parser: argparse.ArgumentParser) -> None:
    """A subcommand without flags."""


#: the subcommands whose first argument is a run directory
_ON_A_RUN = ("evaluate", "bdmc", "gaps", "sample", "plot")
#: every subcommand, in the order of ``--help``: its one-line help, its description
#: (``None``: the help says it all) and what adds its flags
_SUBCOMMANDS = {
    "train": (
        "train a VAE, evaluate log p(x), write a run directory",
        "Train a VAE, estimate its test log p(x) by importance sampling, and write "
        "config.json, checkpoint.pt, history.csv, metrics.json, figures and report.md into "
        "the run directory.",
        _train_flags,
    ),
    "evaluate": (
        "re-estimate log p(x) and bounds of a trained run",
        "Re-estimate test log p(x) (importance sampling) and the bound table of a run with "
        "the library's defaults unless told otherwise; rewrites its metrics.json and report.md.",
        _evaluate_flags,
    ),
    "bdmc": (
        "check AIS's settings on data simulated from a run's model (BDMC)",
        "Simulate (z, x) pairs from a run's model, run AIS forward (a lower bound on "
        "log p(x)) and in reverse from the simulating z (an upper bound), and record both and "
        "their gap in metrics.json and report.md. A small gap says that AIS with these "
        "settings can be trusted on the real data.",
        _bdmc_flags,
    ),
    "gaps": (
        "split a run's bound into the approximation and amortization gaps",
        "Where the bound is lost: on the first test points, log p(x) by AIS, the ELBO of the "
        "trained guide, and the ELBO of q*, the guide's family optimized per point; prints "
        "the approximation gap log p(x) − ELBO(q*) and the amortization gap "
        "ELBO(q*) − ELBO(q_φ) and records them in metrics.json and report.md.",
        _gaps_flags,
    ),
    "sample": ("draw new data from a trained run's prior", None, _sample_flags),
    "compare": (
        "train one model per estimator and compare their bounds and log p(x)",
        "Train one model per estimator from the same seed, initialization and budget; "
        "evaluate all on the same test points with the same K; write report.md, "
        "comparison.json and figures (bounds versus K, training curves, gradient SNR "
        "versus K).",
        _compare_flags,
    ),
    "plot": ("(re)draw a run's figures", None, _no_flags),
    "datasets": ("list the datasets", None, _no_flags),
    "families": ("list the latent families", None, _no_flags),
    "estimators": ("list the estimator spellings", None, _no_flags),
}


def _message(error: InputError, command: str) -> str:
    """The library's message, with the flag of the config field it names."""
    if isinstance(error, SchemaError):
        flag = flag_of_field(error.field, command)
        if flag is not None and flag not in str(error):
            return f"{flag}: {error}"
    if isinstance(error, SettingsChanged):
        flags = [flag_of_field(field, command) or field for field in error.fields]
        return f"{error} (changed: {', '.join(flags)}; --overwrite retrains every run)"
    if isinstance(error, RunDirectoryNotEmpty):
        hint = "--resume to continue it" if command == "compare" else f"--resume {error.path}"
        return f"{error}: pass {hint} or --overwrite to replace it"
    return str(error)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the command's other messages are: one line on stderr, no source line."""
    text = " ".join(str(message).split())  # a library's message over several lines: one line
    print(f"vi-vae: warning: {text}", file=sys.stderr if file is None else file)


def show_warnings_as_messages() -> None:
    """The command's warnings: each on one line, less torch's advice to use TF32 on a GPU.

    That advice is for a program that can trade precision for speed: the command's
    log p(x) sums hundreds of per-pixel terms computed by float32 matrix products, which
    TF32 would round to 10 bits of mantissa, and the command has no flag to set it.
    """
    warnings.showwarning = _one_line_warning
    warnings.filterwarnings("ignore", "TensorFloat32 tensor cores", UserWarning)


@contextlib.contextmanager
def float32_products() -> Iterator[None]:
    """Matrix products and convolutions in full float32 for the command, then as they were.

    torch's matrix products are float32 by default, but cuDNN's convolutions may use
    TF32 (10 bits of mantissa) on a GPU with tensor cores unless told not to
    (``torch.backends.cudnn.allow_tf32``, true by default): a conv model's log p(x) would
    carry that rounding where an MLP's does not. The command turns both off.
    """
    cudnn, precision = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(precision)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vi-vae``; returns the exit status (2 for bad input, 1 for a failed run)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # torch.compile's C++ toolchain notes that a CPU-only machine has no CUDA runtime
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    show_warnings_as_messages()
    name = program(args.command)
    try:
        if getattr(args, "nproc", None):
            return relaunch(args.nproc, argv)
        with distributed_session(args.command), float32_products():
            return COMMANDS[args.command](args)
    except InputError as error:
        print(f"{name}: error: {_message(error, args.command)}", file=sys.stderr)
        return 2
    except EvaluationFailed as error:
        again = "plot" if error.step == "figures" else "evaluate"
        print(
            f"{name}: {error}; once fixed, run: vi-vae {again} {error.directory.path}",
            file=sys.stderr,
        )
        return 1
    except TrainingError as error:
        print(f"{name}: training failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = (
            "run the same vi-vae compare command with --resume"
            if args.command == "compare"
            else "continue with vi-vae train --resume RUN_DIR"
        )
        print(f"vi-vae: interrupted; completed epochs are saved ({again})", file=sys.stderr)
        return 130
