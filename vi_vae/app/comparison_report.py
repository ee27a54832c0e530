"""The Markdown report of a comparison: the table, the paired differences, how to read them."""

from __future__ import annotations

import math
from collections.abc import Sequence

from vi_vae.app.comparison_metrics import Comparison
from vi_vae.app.gap_report import comparison_gap_lines
from vi_vae.app.report import ais_settings_sentence, figure_lines, number, support_lines
from vi_vae.evaluation import PairedDifference, snr_noise_floor
from vi_vae.evaluation.importance_convergence import UNSETTLED_IMPORTANCE_SAMPLING

__all__ = ["COMPARISON_BOUND_COLUMNS", "comparison_report"]

#: the IWAE-k columns of the comparison table, besides the ELBO (k = 1)
COMPARISON_BOUND_COLUMNS = (5, 50)


def comparison_report(comparison: Comparison, figures: Sequence[str]) -> str:
    """The report of ``vi-vae compare``: settings, the table, figures, how to read them."""
    settings, rows = comparison.settings, comparison.rows
    first = rows[0].log_marginal_likelihood if rows else None
    points = (
        f"the same {first.num_points} test points (the first of the shuffled test split, a "
        "random subset)"
        if settings.evaluation.num_points
        else "every test point (the same for all runs)"
    )
    model, training = settings.model, settings.training
    bound_headers = "".join(f" IWAE-{k} |" for k in COMPARISON_BOUND_COLUMNS)
    lines = [
        f"# Estimators compared on {settings.data.dataset}",
        "",
        f"Every run: latent {model.latent_family} ({model.latent_dim}-D), likelihood "
        f"{model.likelihood}, binarization **{settings.data.binarization}**, hidden "
        f"{list(model.hidden_sizes)}, {training.epochs} epochs of batch {training.batch_size}, "
        f"Adam {training.learning_rate}, seed {training.seed} (so the same initial weights "
        f"and the same shuffling). Evaluated on {points} with K = "
        f"{first.num_particles if first else 'n/a'} importance samples. Nats per data point; "
        "higher is better.",
        "",
        f"| estimator | seconds | test ELBO |{bound_headers} log p(x) ± SE | mean ESS | "
        "k̂ > 0.7 | active units | SNR encoder | SNR decoder |",
        "|---|---:|---:|"
        + "---:|" * len(COMPARISON_BOUND_COLUMNS)
        + "---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        estimate = row.log_marginal_likelihood
        elbo = row.bound(1)
        bound_cells = "".join(
            f" {number(getattr(row.bound(k), 'mean', None))} |" for k in COMPARISON_BOUND_COLUMNS
        )
        lines.append(
            f"| {row.estimator} | {row.seconds:.3g} | {number(getattr(elbo, 'mean', None))} |"
            f"{bound_cells} {number(estimate.log_likelihood)}"
            f"{'*' if estimate.converged is False else ''} ± "
            f"{number(estimate.standard_error)} | {number(estimate.mean_effective_sample_size, 1)}"
            f" | {number(estimate.share_pareto_k_above, 2)} | {row.active_units}/{row.latent_units}"
            f" | {number(row.snr_guide, 3)} | {number(row.snr_model, 3)} |"
        )
    paired = comparison.paired_differences()
    lines += _paired_difference_lines(comparison, paired)
    lines += _comparison_legend(comparison, paired)
    lines += _comparison_ais_section(comparison)
    gap_figure = "inference_gaps.png" if "inference_gaps.png" in figures else None
    lines += comparison_gap_lines(rows, gap_figure)
    others = [name for name in figures if name != gap_figure]  # that one is beside its table
    lines += figure_lines(others)
    if comparison.command:
        lines += ["## Reproduce", "", f"    {comparison.command}", ""]
    return "\n".join(lines)


def _comparison_legend(comparison: Comparison, paired: dict[str, PairedDifference]) -> list[str]:
    """How to read the comparison's table: one line per column (and the starred rows)."""
    first = comparison.rows[0].log_marginal_likelihood if comparison.rows else None
    return [
        "",
        "How to read it:",
        "",
        "- *seconds*: wall-clock training time on the machine that made the report (other "
        "jobs on a shared machine inflate it); runs share the number of epochs, not the cost "
        "per step.",
        "- *log p(x) ± SE*: importance-sampled estimate (IWAE-K); SE is over test points "
        "(the Monte Carlo SE of each mean is in `comparison.json`)."
        + _pairing_sentence(comparison, paired),
        *(
            [f"- *\\**: log p(x) is {UNSETTLED_IMPORTANCE_SAMPLING}; raise num_particles."]
            if comparison.unsettled
            else []
        ),
        "- *mean ESS*, *k̂ > 0.7*: reliability of the importance weights; a large share of "
        "k̂ > 0.7 means log p(x) may be underestimated (Vehtari et al.).",
        *[  # the rows share their model, so the first row's guide speaks for all
            line.replace("this number", "each row's log p(x)")
            for line in (support_lines(first) if first is not None else [])
        ],
        "- *active units*: latent dimensions with Cov_x(E_q[z_i]) > 0.01 (Burda et al.).",
        f"- *SNR*: |E g| / sd(g) of each estimator's own gradient over "
        f"{comparison.snr_num_draws} draws on {comparison.snr_batch_size} test points, "
        "averaged over encoder or decoder parameters (Rainforth et al. 2018). "
        + _snr_floor_sentence(comparison.snr_num_draws),
        "",
    ]


def _pairing_sentence(comparison: Comparison, paired: dict[str, PairedDifference]) -> str:
    """Why rows' differences are more precise than their SEs, and where their SE is."""
    if len(comparison.rows) < 2:
        return ""
    where = (
        ": the paired differences give its SE."
        if paired
        else "; these runs were evaluated before vi_vae kept per-point values, so none are paired."
    )
    return (
        " Rows share their points, so a difference between rows is far more precise than "
        "these SEs suggest" + where
    )


def _snr_floor_sentence(num_draws: int) -> str:
    """What a gradient with mean 0 reads at ``num_draws`` draws (:func:`snr_noise_floor`)."""
    floor = snr_noise_floor(num_draws)
    if math.isinf(floor):
        return (
            f"At {num_draws} draws a gradient with mean 0 has no finite expected SNR, so "
            "these SNRs cannot tell signal from noise: raise snr_num_draws."
        )
    return (
        f"A parameter whose gradient has mean 0 reads {floor:.3f} at {num_draws} draws (the "
        "dashed line of the SNR figure): SNRs near it are noise."
    )


def _paired_difference_lines(
    comparison: Comparison, differences: dict[str, PairedDifference]
) -> list[str]:
    """Each row's log p(x) minus the first row's, paired over the same points, as a table.

    Nothing for a comparison whose runs did not keep their per-point values.
    """
    if not differences:
        return []
    first = comparison.rows[0]
    reference = first.log_marginal_likelihood
    lines = [
        "",
        f"Paired differences: log p(x) minus {first.estimator}'s, point by point on the same "
        f"{reference.num_points} test points (nats per point; positive is better than "
        f"{first.estimator}). The paired SE is that of these trained models on test points "
        "like these; it leaves out training's run-to-run spread (another seed trains other "
        "models), which only runs with several seeds measure.",
        "",
        "| estimator | difference | paired SE | SE if unpaired |",
        "|---|---:|---:|---:|",
    ]
    for row in comparison.rows[1:]:
        difference = differences.get(row.estimator)  # None: the row kept no per-point values
        unpaired = math.hypot(row.log_marginal_likelihood.standard_error, reference.standard_error)
        paired = (
            "n/a | n/a"
            if difference is None
            else f"{difference.mean:+.3f} | {number(difference.standard_error, 3)}"
        )
        lines.append(f"| {row.estimator} | {paired} | {number(unpaired, 3)} |")
    if comparison.unsettled:
        lines += [
            "",
            "Starred rows' log p(x) are not converged in K: their differences compare the "
            "estimates, which lie below log p(x) by amounts that can differ between rows.",
        ]
    return lines


def _comparison_ais_section(comparison: Comparison) -> list[str]:
    """The comparison report's AIS table, when its runs ran AIS (else nothing).

    With the rows' per-point AIS values, a column of each row's AIS minus the first row's,
    paired over the same points.
    """
    with_ais = [row for row in comparison.rows if row.ais is not None]
    if not with_ais:
        return []
    paired = comparison.paired_differences(ais=True)
    reference = comparison.rows[0].estimator
    quote = (
        "AIS is the number to quote"
        if all(row.ais.converged for row in with_ais)
        else "AIS is the number to quote only where it converged (last column)"
    )
    pairing = f" | AIS − {reference}'s (paired)" if paired else ""
    lines = [
        f"## AIS on {with_ais[0].ais.estimate.num_points} of the test points",
        "",
        f"{ais_settings_sentence(with_ais[0].ais)}; the same points for every run. {quote}; "
        "AIS − IS is how far importance sampling from the guide falls short on these "
        "points (paired, nats per point).",
        "",
        f"| estimator | AIS log p(x) ± SE{pairing} | IS on the same points | AIS − IS "
        "| acceptance | converged |",
        "|---|---:|" + ("---:|" if paired else "") + "---:|---:|---:|---|",
    ]
    for row in with_ais:
        ais, cell = row.ais, _paired_cell(row.estimator, paired, reference)
        lines.append(
            f"| {row.estimator} | {number(ais.estimate.log_likelihood)} ± "
            f"{number(ais.estimate.standard_error)}{cell} | "
            f"{number(ais.importance_sampling.log_likelihood)} | {number(ais.gap)} ± "
            f"{number(ais.gap_standard_error)} | {number(ais.mean_acceptance_rate)} | "
            f"{'yes' if ais.converged else 'no'} |"
        )
    lines.append("")
    return lines


def _paired_cell(estimator: str, paired: dict[str, PairedDifference], reference: str) -> str:
    """A row's cell of the paired column (nothing without one; — for the reference row)."""
    if not paired:
        return ""
    difference = paired.get(estimator)
    if difference is None:
        return " | —" if estimator == reference else " | n/a"
    return f" | {difference.mean:+.3f} ± {number(difference.standard_error, 3)}"
