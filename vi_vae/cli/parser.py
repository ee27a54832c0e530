"""The ``vi-vae`` command: train, evaluate, sample, plot, and list what is available."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vi_vae.app.config import RunConfig
from vi_vae.cli.commands import COMMANDS
from vi_vae.errors import InputError, TrainingError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("vi_vae")

EPILOG = "Bad input exits with status 2 and a one-line message; a failed run exits with 1."


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, e.g. 400,200; got {text!r}"
        ) from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"every value must be >= 1; got {text!r}")
    return values


def _add_train_arguments(parser: argparse.ArgumentParser, estimator: bool = True) -> None:
    defaults = RunConfig()
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=defaults.dataset,
        help="dataset name (vi-vae datasets lists them) or a .npy/.npz/.csv file "
        "(default: %(default)s)",
    )
    data.add_argument("--data-dir", help="directory holding the dataset's IDX files")
    data.add_argument(
        "--binarize",
        dest="binarization",
        help="none, dynamic, static or threshold (default: dynamic for the "
        "bernoulli likelihood, none otherwise)",
    )
    data.add_argument("--max-train", type=_positive_int, help="use only this many training points")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--latent",
        default=defaults.latent,
        help="latent family (vi-vae families lists them; default: %(default)s)",
    )
    model.add_argument(
        "--latent-dim",
        type=_positive_int,
        default=defaults.latent_dim,
        help="dimension of z (default: %(default)s)",
    )
    model.add_argument(
        "--likelihood",
        default=defaults.likelihood,
        help="bernoulli, continuous-bernoulli, gaussian (fixed σ0) or "
        "gaussian-learned (default: %(default)s)",
    )
    model.add_argument("--sigma", type=float, help="σ0 of the gaussian likelihood (default 0.1)")
    model.add_argument(
        "--hidden",
        type=_int_list,
        default=defaults.hidden_sizes,
        help="hidden widths of the encoder MLP, comma-separated; the decoder "
        "mirrors them (default: 400)",
    )
    model.add_argument(
        "--activation",
        default=defaults.activation,
        help="relu, tanh, softplus, elu, gelu or silu (default: %(default)s)",
    )
    training = parser.add_argument_group("training")
    if estimator:
        training.add_argument(
            "--estimator",
            default=defaults.estimator,
            help="training objective: elbo, elbo-analytic, iwae:K, vr:ALPHA:K, "
            "vrmax:K, stl:K, dreg:K, miwae:M:K, ciwae:BETA:K, "
            "piwae:M:L:K (default: %(default)s)",
        )
    training.add_argument(
        "--epochs",
        type=int,
        help=f"number of epochs, >= 1 (default: {defaults.epochs}; with "
        "--resume: the stored total)",
    )
    training.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help="data points per step (default: %(default)s)",
    )
    training.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=defaults.learning_rate,
        help="Adam step size (default: %(default)s)",
    )
    training.add_argument(
        "--beta",
        dest="kl_weight",
        type=float,
        default=defaults.kl_weight,
        help="weight of the KL term; 1 is the ELBO (default: %(default)s)",
    )
    training.add_argument(
        "--kl-warmup",
        dest="kl_warmup_epochs",
        type=int,
        default=defaults.kl_warmup_epochs,
        help="epochs over which the KL weight ramps up from 0 (default: 0)",
    )
    training.add_argument(
        "--patience",
        type=_positive_int,
        help="stop after this many epochs without a better validation ELBO",
    )
    training.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)"
    )
    training.add_argument(
        "--device", default=defaults.device, help="cpu or cuda (default: %(default)s)"
    )
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--eval-samples",
        type=int,
        default=defaults.eval_samples,
        help="importance samples K per test point for log p(x), >= 1 (default: %(default)s)",
    )
    evaluation.add_argument(
        "--eval-bounds",
        type=_int_list,
        default=defaults.eval_bounds,
        help="k of the IWAE-k bounds in the table (default: 1,5,50)",
    )
    evaluation.add_argument(
        "--eval-points", type=_positive_int, help="evaluate only the first N test points"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vi-vae`` and its subcommands."""
    parser = _Parser(
        prog="vi-vae",
        description="Train VAEs written as Pyro model/guide pairs and estimate log p(x).",
        epilog=EPILOG,
    )
    parser.add_argument("--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    train = commands.add_parser(
        "train",
        help="train a VAE, evaluate log p(x), write a run directory",
        description="Train a VAE, estimate its test log p(x) by importance sampling, and "
        "write config.json, checkpoint.pt, history.csv, metrics.json, figures "
        "and report.md into the run directory.",
        epilog=EPILOG,
    )
    _add_train_arguments(train)
    output = train.add_argument_group("output")
    output.add_argument("--run-dir", help="where to write the run (default: runs/DATASET-LATENT)")
    output.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a killed or finished run from its last completed epoch "
        "(its stored settings are used; --epochs may raise the total)",
    )
    output.add_argument(
        "--overwrite", action="store_true", help="replace an existing run directory"
    )
    output.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    output.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="re-estimate log p(x) and bounds of a trained run",
        description="Re-estimate test log p(x) (importance sampling) and the bound table of a "
        "run; updates its metrics.json and report.md.",
        epilog=EPILOG,
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument(
        "--num-samples",
        type=int,
        default=5000,
        help="importance samples K per point, >= 1 (default: %(default)s, as Burda et al. 2016)",
    )
    evaluate.add_argument("--num-points", type=_positive_int, help="only the first N test points")
    evaluate.add_argument("--device", help="cpu or cuda (default: the run's)")

    sample = commands.add_parser(
        "sample", help="draw new data from a trained run's prior", epilog=EPILOG
    )
    sample.add_argument("run_dir", metavar="RUN_DIR")
    sample.add_argument(
        "--num", type=_positive_int, default=64, help="number of samples (default: %(default)s)"
    )
    sample.add_argument("--output", help="PNG (grid) or .npy file (default: RUN_DIR/samples.png)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    compare = commands.add_parser(
        "compare",
        help="train one model per estimator and compare their bounds and log p(x)",
        description="Train one model per estimator from the same seed, initialization and "
        "budget; evaluate all on the same test points with the same K; write "
        "report.md, comparison.json and figures (bounds versus K, training "
        "curves, gradient SNR versus K).",
        epilog=EPILOG,
    )
    compare.add_argument(
        "--estimators",
        default="elbo,iwae:5,dreg:5,stl:1",
        help="comma-separated estimator spellings (default: %(default)s)",
    )
    _add_train_arguments(compare, estimator=False)
    compare.set_defaults(eval_samples=5000)
    compare_output = compare.add_argument_group("output")
    compare_output.add_argument(
        "--out-dir", help="comparison directory (default: runs/compare-DATASET)"
    )
    compare_output.add_argument(
        "--snr-particles",
        type=_int_list,
        default=[1, 5, 20, 50],
        help="K values of the gradient-SNR curves (default: 1,5,20,50)",
    )
    compare_output.add_argument(
        "--snr-draws",
        type=_positive_int,
        default=100,
        help="gradient draws per SNR value (default: %(default)s)",
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

    plot = commands.add_parser("plot", help="(re)draw a run's figures", epilog=EPILOG)
    plot.add_argument("run_dir", metavar="RUN_DIR")

    commands.add_parser("datasets", help="list the datasets", epilog=EPILOG)
    commands.add_parser("families", help="list the latent families", epilog=EPILOG)
    return parser


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
    try:
        return COMMANDS[args.command](args)
    except InputError as error:
        print(f"vi-vae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"vi-vae {args.command}: training failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vi-vae: interrupted; completed epochs are saved (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
