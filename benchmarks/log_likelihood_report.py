"""The figure and the page of benchmarks/log_likelihood.py, from its results.json."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

#: what the reduced-run paragraph names for each setting that differs from the default
SETTING_NAMES = {
    "epochs": "training epochs",
    "max_train": "training points",
    "num_points": "test points",
    "is_particles": "IS draws K",
    "ais_steps": "AIS steps T",
    "num_chains": "chains per point C",
    "leapfrog_steps": "leapfrog steps L",
    "bdmc_points": "simulated BDMC points",
    "bdmc_steps": "BDMC steps",
}


def write_figure(results, path):
    """Mean log p̂(x) against CPU seconds per point, one panel per estimator."""
    estimators = results["estimators"]
    columns = min(2, len(estimators))
    rows = math.ceil(len(estimators) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    for axis, (spelling, entry) in zip(axes.flat, estimators.items(), strict=False):
        for key, label, marker, tag in (
            ("importance_sampling", "IS from the guide", "o", "K"),
            ("ais", "AIS (HMC) from the guide", "s", "T"),
        ):
            runs = entry[key]
            seconds = [run["seconds_per_point"] for run in runs.values()]
            means = [run["mean"] for run in runs.values()]
            errors = [run["mean_monte_carlo_standard_error"] for run in runs.values()]
            axis.errorbar(seconds, means, yerr=errors, marker=marker, capsize=3, label=label)
            for setting, second, mean in zip(runs, seconds, means, strict=True):
                axis.annotate(f"{tag}={int(setting):,}", (second, mean), fontsize=8,
                              textcoords="offset points", xytext=(4, -10))  # fmt: skip
        axis.set_xscale("log")
        axis.margins(x=0.2)
        axis.set_title(f"trained with {spelling}")
        axis.set_xlabel("CPU seconds per test point (1 thread)")
        axis.set_ylabel("mean log p̂(x), nats")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    for axis in list(axes.flat)[len(estimators) :]:
        axis.set_visible(False)
    figure.suptitle(f"mnist-5k, {len(results['test_indices'])} test points", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _differences(entry, reference, other):
    first = entry["ais"][reference]["per_point"]
    second = other["per_point"]
    values = [a - b for a, b in zip(first, second, strict=True)]
    return sum(values) / len(values), max(values)


def _cell(run):
    return (
        f"{run['mean']:.2f} ± {run['standard_error']:.2f} "
        f"[{run['mean_monte_carlo_standard_error']:.2f}]"
    )


def _provenance(estimators, results_name):
    """Which code computed the numbers, and when: one sentence from each model's ``code``."""
    versions = {}
    for spelling, entry in estimators.items():
        code = entry.get("code") or {"date": None, "commit": None}
        versions.setdefault((code["date"], code["commit"]), []).append(spelling)
    parts = [
        f"on {date or 'an unrecorded date'} with "
        + (f"the code of commit {commit}" if commit else "code of no recorded commit")
        + ("" if len(versions) == 1 else f" ({', '.join(spellings)})")
        for (date, commit), spellings in versions.items()
    ]
    return f"The numbers, the figure and `{results_name}` were computed {'; '.join(parts)}."


def write_page(results, path, figure, defaults):
    """docs/log-likelihood.md: settings, tables, figure, reading."""
    settings, estimators = results["settings"], results["estimators"]
    is_keys = [str(k) for k in settings["is_particles"]]
    ais_keys = [str(t) for t in settings["ais_steps"]]
    largest_ais, smallest_ais = ais_keys[-1], ais_keys[0]
    reduced = [
        f"{SETTING_NAMES[name]} {settings[name]} (default {defaults[name]})"
        for name in SETTING_NAMES
        if settings[name] != defaults[name]
    ]
    lines = [
        "# Trustworthy log p(x): importance sampling against AIS and BDMC",
        "",
        "Regenerate with (about "
        f"{results['seconds'] / 60:.0f} minutes on {results['threads']} CPU thread):",
        "",
        f"    {results['command']}",
        "",
        _provenance(estimators, (figure.parent / "results.json").relative_to(path.parent)),
        "",
        "## What was run",
        "",
        "- Data: `mnist-5k` with dynamic binarization. Test points: "
        f"{settings['num_points']} of the 500 test digits, a random subset "
        f"(`torch.randperm` seeded with {settings['point_seed']}), the same points for every "
        "model and method.",
        "- Models: `VAE(input_dim=784, latent_dim=20, seed=0)` (784-400-20, Bernoulli), "
        "one per estimator, trained with `vi_vae.fit(..., loss=vi_vae.parse_estimator(spelling), "
        f"epochs={settings['epochs']}, seed=0, validation=data.validation, "
        "batch_transform=data.batch_transform())`, the settings of `make demo`.",
        "- IS: `log_weight_chunks` from the guide with K = "
        + ", ".join(f"{int(k):,}" for k in is_keys)
        + "; the smaller K are the first K of the largest run's draws (so the IS columns "
        "are correlated), and their cost is pro-rated by K.",
        "- AIS: `annealed_importance_sampling(model, guide, x, num_steps=T, "
        f"num_chains={settings['num_chains']}, leapfrog_steps={settings['leapfrog_steps']})` "
        "from the guide, sigmoid schedule, T = "
        + ", ".join(f"{int(t):,}" for t in ais_keys)
        + "; per point one more (pilot) chain adapts the HMC step size toward acceptance 0.65."
        + (
            " Run with `compile=True` (AIS and BDMC): the same numbers as eager to float "
            "rounding (`benchmarks/ais_step_time.py --compile` measures the speed); the "
            "seconds exclude the compile, done once per model before the timed runs."
            if results.get("compile")
            else ""
        ),
        f"- BDMC: `bdmc(model, guide, torch.zeros({settings['bdmc_points']}, 784), "
        f"num_steps={settings['bdmc_steps']}, ...)` with the same chains and leapfrog steps: "
        f"{settings['bdmc_points']} (z, x) pairs simulated from each model, forward AIS "
        "(a stochastic lower bound) and reverse AIS from the simulating z (a stochastic "
        "upper bound).",
    ]
    if reduced:
        lines += [
            "",
            "**Reduced run.** The script's defaults are the full settings; to fit the "
            "machine (2 CPU cores shared with others, about an hour) this page was made "
            "with: " + "; ".join(reduced) + ". Fewer chains widen the Monte Carlo errors "
            "of AIS (shown in brackets); fewer leapfrog steps make each AIS step cheaper "
            "and mix less, so the AIS numbers are, if anything, lower bounds looser than "
            "the full settings would give.",
        ]
    header = (
        "| trained with | "
        + " | ".join(f"IS K={int(k):,}" for k in is_keys)
        + " | "
        + " | ".join(f"AIS T={int(t):,}" for t in ais_keys)
        + f" | BDMC gap, T={settings['bdmc_steps']:,} |"
    )
    lines += [
        "",
        "## Results",
        "",
        "log p̂(x) in nats per test point (higher is better): mean over the test points ± "
        "its standard error over points [Monte Carlo standard error of the mean for these "
        "points]. The BDMC gap is upper − lower bound on simulated data, mean ± Monte Carlo "
        "error (max over points).",
        "",
        header,
        "|---|" + "---:|" * (len(is_keys) + len(ais_keys) + 1),
    ]
    for spelling, entry in estimators.items():
        bdmc = entry["bdmc"]
        cells = [_cell(entry["importance_sampling"][k]) for k in is_keys]
        cells += [_cell(entry["ais"][t]) for t in ais_keys]
        cells.append(
            f"{bdmc['mean_gap']:.2f} ± {bdmc['mean_gap_standard_error']:.2f} "
            f"({bdmc['max_gap']:.2f})"
        )
        lines.append(f"| {spelling} | " + " | ".join(cells) + " |")
    middle_is = is_keys[len(is_keys) // 2]
    lines += [
        "",
        f"How far below AIS with T = {int(largest_ais):,} the other estimates are (nats "
        "per point: mean over points, and the largest single point), with the reliability "
        "diagnostics of IS:",
        "",
        "| trained with | "
        + " | ".join(f"AIS − IS K={int(k):,}" for k in is_keys)
        + f" | AIS − AIS T={int(smallest_ais):,} | share k̂ > 0.7, K={int(middle_is):,} "
        f"| mean ESS, K={int(middle_is):,} | AIS acceptance |",
        "|---|" + "---:|" * (len(is_keys) + 4),
    ]
    summary_rows = {}
    for spelling, entry in estimators.items():
        runs = entry["importance_sampling"]
        cells, row = [], {}
        for k in is_keys:
            mean, most = _differences(entry, largest_ais, runs[k])
            row[k] = (mean, most)
            cells.append(f"{mean:+.2f} (max {most:+.2f})")
        mean, most = _differences(entry, largest_ais, entry["ais"][smallest_ais])
        cells.append(f"{mean:+.2f} (max {most:+.2f})")
        cells.append(f"{runs[middle_is]['share_pareto_k_above']:.0%}")
        cells.append(f"{runs[middle_is]['mean_effective_sample_size']:.0f} of {int(middle_is):,}")
        cells.append(f"{entry['ais'][largest_ais]['acceptance_rate']:.2f}")
        summary_rows[spelling] = row
        lines.append(f"| {spelling} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"![estimate versus cost]({figure.relative_to(path.parent).as_posix()})",
        "",
        "Each panel: the mean estimate against CPU seconds per test point on one thread "
        "(error bars: Monte Carlo standard error of the mean), for IS as K grows and for "
        "AIS as T grows.",
    ]
    lines += _findings(estimators, is_keys, ais_keys, bool(reduced))
    lines += _reading(summary_rows, estimators, is_keys, largest_ais, settings)
    lines += [
        "",
        "## Doing it for your own model",
        "",
        "```python",
        "import vi_vae",
        "",
        "# any model/guide pair with its data in pyro.plate('data'), e.g. a trained VAE",
        "estimate = vi_vae.annealed_importance_sampling(",
        "    vae.model, vae.guide, x, num_steps=1000, num_chains=16, leapfrog_steps=10, seed=0",
        ")",
        "print(estimate.mean, estimate.standard_error, estimate.mean_monte_carlo_standard_error)",
        "print(estimate.mean_acceptance_rate, estimate.step_size.mean())",
        "",
        "check = vi_vae.bdmc(vae.model, vae.guide, x[:100], num_steps=1000, seed=0)",
        "print(check.mean_gap, check.mean_gap_standard_error)  # upper - lower, simulated data",
        "```",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _findings(estimators, is_keys, ais_keys, reduced):
    """Data-driven sentences: has AIS converged, how far off IS is, do the rankings agree."""
    smallest, largest = ais_keys[0], ais_keys[-1]
    middle, biggest = is_keys[len(is_keys) // 2], is_keys[-1]
    convergence = [_differences(e, largest, e["ais"][smallest]) for e in estimators.values()]
    drift = max(abs(mean) for mean, _ in convergence)
    worst_point = max(most for _, most in convergence)
    gaps = [e["bdmc"]["mean_gap"] for e in estimators.values()]
    shortfall = {k: [_differences(e, largest, e["importance_sampling"][k]) for e in
                     estimators.values()] for k in (middle, biggest)}  # fmt: skip
    if drift < 0.1:
        converged = (
            f"AIS with T = {int(smallest):,} and T = {int(largest):,} agree within "
            f"{drift:.2f} nats per point on average for every model (a single point moves "
            f"by at most {worst_point:.2f}), and the BDMC gaps at T = "
            f"{estimators[next(iter(estimators))]['bdmc']['num_steps']:,} are "
            f"{min(gaps):.2f} to {max(gaps):.2f} nats: on these models AIS has converged "
            "at the smaller budget already"
            + (", even with the reduced chains and leapfrog steps." if reduced else ".")
        )
    else:
        converged = (
            f"AIS still moves by up to {drift:.2f} nats per point from T = {int(smallest):,} "
            f"to T = {int(largest):,}: the smaller budget has not converged."
        )

    def span(k):
        means = [mean for mean, _ in shortfall[k]]
        return f"{min(means):.2f} to {max(means):.2f}"

    single = max(most for _, most in shortfall[middle])
    recovered = [
        a - b for (a, _), (b, _) in zip(shortfall[middle], shortfall[biggest], strict=True)
    ]
    shares = [e["importance_sampling"][middle]["share_pareto_k_above"] for e in estimators.values()]
    is_sentence = (
        f"IS from the guide falls short of AIS by {span(middle)} nats per point at "
        f"K = {int(middle):,} and still by {span(biggest)} at K = {int(biggest):,}; single "
        f"points are up to {single:.1f} nats low at K = {int(middle):,}. "
        f"{int(biggest) // int(middle)} times the draws recover {min(recovered):.2f} to "
        f"{max(recovered):.2f} nats"
        + (
            ", slowly, as expected when nearly every point has k̂ > 0.7."
            if min(shares) > 0.9
            else "."
        )
    )
    costs = [
        (e["ais"][smallest]["seconds_per_point"], e["importance_sampling"][biggest])
        for e in estimators.values()
    ]
    cheaper = all(ais < run["seconds_per_point"] for ais, run in costs)
    cost_sentence = (
        f"AIS with T = {int(smallest):,} costs less per point than IS with "
        f"K = {int(biggest):,} and lands higher on every model."
        if cheaper
        else ""
    )

    def ranking(values):
        return sorted(values, key=values.get, reverse=True)

    by_ais = ranking({s: e["ais"][largest]["mean"] for s, e in estimators.items()})
    by_is = ranking({s: e["importance_sampling"][middle]["mean"] for s, e in estimators.items()})
    order = " > ".join(by_ais)
    ranks = (
        f"IS at K = {int(middle):,} and AIS rank the models the same way ({order})."
        if by_ais == by_is
        else f"They rank the models differently: AIS {order}, IS " + " > ".join(by_is) + "."
    )
    return ["", "## Reading", "", f"- {converged}", f"- {is_sentence} {cost_sentence}",
            f"- {ranks}"]  # fmt: skip


def _reading(summary_rows, estimators, is_keys, largest_ais, settings):
    closest = min(is_keys, key=lambda k: abs(int(k) - 10_000))
    gaps = [summary_rows[s][closest][0] for s in summary_rows]
    low, high = min(gaps), max(gaps)
    bdmc_gaps = [entry["bdmc"]["mean_gap"] for entry in estimators.values()]
    shares = [
        entry["importance_sampling"][is_keys[len(is_keys) // 2]]["share_pareto_k_above"]
        for entry in estimators.values()
    ]
    here = f"here {min(shares):.0%} to {max(shares):.0%} of the points at K = " + (
        f"{int(is_keys[len(is_keys) // 2]):,}"
    )
    if high < 0.5:
        verdict = "smaller than theirs"
    elif low > 1.5:
        verdict = "larger than theirs"
    else:
        verdict = "of the same size as theirs"
    best = max(estimators, key=lambda name: estimators[name]["ais"][largest_ais]["mean"])
    run = estimators[best]["ais"][largest_ais]
    middle = is_keys[len(is_keys) // 2]
    example = (
        f"quote AIS with T = {int(largest_ais):,}, C = {settings['num_chains']}, "
        f"L = {settings['leapfrog_steps']}: for the model trained with `{best}`, "
        f"log p(x) ≈ {run['mean']:.2f} ± {run['standard_error']:.2f} nats (standard error "
        f"over the {settings['num_points']} points; Monte Carlo error "
        f"{run['mean_monte_carlo_standard_error']:.3f}), and, if a paper's IS number is "
        f"wanted beside it, IS with K = {int(middle):,}: "
        f"{estimators[best]['importance_sampling'][middle]['mean']:.2f}, labelled as IS."
    )
    return [
        "",
        "## Compared with Wu et al. (2017)",
        "",
        "Wu, Burda, Salakhutdinov & Grosse (2017) found that on MNIST VAEs importance "
        "sampling from the encoder with 10⁴ draws comes out about 1 nat per point below "
        "AIS, and that AIS, checked by BDMC on simulated data, is the number to trust. "
        f"Here AIS with T = {int(largest_ais):,} exceeds IS with K = {int(closest):,} by "
        f"{low:+.2f} to {high:+.2f} nats per point (mean over points) across the "
        f"{len(estimators)} models, {verdict}, for models trained on 4,000 digits for "
        f"{settings['epochs']} epochs and with the settings above. The BDMC gaps, "
        f"{min(bdmc_gaps):.2f} to {max(bdmc_gaps):.2f} nats at T = {settings['bdmc_steps']:,}, "
        "bound the error of AIS on data simulated from each model.",
        "",
        "## Which number to quote",
        "",
        "- **AIS** (`annealed_importance_sampling`, method `ais`) is the number to quote "
        "for how good a model is, with its settings (T, C, L) and its standard errors. It "
        "is a stochastic lower bound: if a larger T no longer raises it beyond its Monte "
        "Carlo error, and the BDMC gap at that T is small, it has converged.",
        "- **BDMC** (`bdmc`) is the check that the AIS settings are long enough, on data "
        "the model itself simulates (where the posterior sample is exact). Real test data "
        "can be harder than simulated data, so a small gap is necessary, not sufficient: "
        "read it with the AIS-versus-T column above.",
        "- **IS from the guide** (`log_marginal_likelihood`, K = 5,000 as Burda et al.) is "
        "a stochastic lower bound as well, and the literature's common number; quote it to "
        "compare with papers that report it, named as such. When many points have k̂ > 0.7 "
        f"({here}) its standard error is not reliable and the bound is loose by the amount "
        "in the second table.",
        f"- Here: {example}",
        "- Compare models only with the same estimator and settings: the IS gap differs "
        "between models (it is the guide's quality), so IS can order models differently "
        "from AIS.",
    ]
