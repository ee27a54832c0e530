"""The JSON codec: typed round trips, and errors that name the offending field."""

import math
from dataclasses import dataclass, field

import pytest

from vi_vae.app.config import RunConfig
from vi_vae.app.metrics import AISSummary, RunMetrics
from vi_vae.app.run_directory import RunDirectory
from vi_vae.app.schema import SchemaError, from_json, to_json
from vi_vae.app.summaries import EstimateSummary
from vi_vae.evaluation import AISSettings


@dataclass(frozen=True)
class Inner:
    k: int
    weight: float = 1.0


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    ks: tuple[int, ...] = (1, 5)
    options: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None
    items: tuple[Inner, ...] = ()


def test_round_trip_of_nested_dataclasses():
    value = Outer("a", Inner(2, 0.5), (1, 2, 3), {"scale": 0.1}, 4, (Inner(1), Inner(3, 2.0)))
    assert from_json(Outer, to_json(value), "x") == value


def test_null_reads_as_nan_for_floats():  # as files before vi_vae 0.3 held NaN
    value = from_json(Inner, {"k": 1, "weight": None}, "x")
    assert math.isnan(value.weight)


def test_non_finite_numbers_read_back_as_written_from_a_run_directory(tmp_path):
    # Written as null, a -inf log p(x) read back as NaN and an optional NaN as None.
    estimate = EstimateSummary(
        method="importance_sampling",
        log_likelihood=-math.inf,
        standard_error=math.nan,
        monte_carlo_standard_error=math.inf,
        mean_effective_sample_size=1.0,
        share_pareto_k_above=math.nan,
        pareto_k_reason="one particle",
        num_particles=1,
        num_points=3,
        per_point=(-math.inf, -90.5, -math.inf),
    )
    ais = AISSummary(estimate, estimate, 0.0, 0.0, 0.0, 0.9, AISSettings(), cpu_seconds=math.nan)
    directory = RunDirectory(tmp_path / "run")
    directory.create()
    directory.write_metrics(RunMetrics(log_marginal_likelihood=estimate, ais=ais))
    read = directory.read_metrics()
    assert read.log_marginal_likelihood.per_point == (-math.inf, -90.5, -math.inf)
    assert read.log_marginal_likelihood.log_likelihood == -math.inf
    assert read.log_marginal_likelihood.monte_carlo_standard_error == math.inf
    assert math.isnan(read.log_marginal_likelihood.share_pareto_k_above)
    assert read.ais.cpu_seconds is not None  # a float | None field: NaN, not None
    assert math.isnan(read.ais.cpu_seconds)
    with pytest.raises(SchemaError, match="x.weight must be a number; got 'infinity'"):
        from_json(Inner, {"k": 1, "weight": "infinity"}, "x")  # only the strings written


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "a", "inner": {"k": "3"}}, "x.inner.k must be an integer; got '3'"),
        ({"name": "a", "inner": {"k": 1.5}}, "x.inner.k must be an integer; got 1.5"),
        ({"name": "a", "inner": {"k": True}}, "x.inner.k must be an integer; got True"),
        ({"name": "a", "inner": {"k": 1, "weight": "1e-3"}}, "x.inner.weight must be a number"),
        ({"name": 3, "inner": {"k": 1}}, "x.name must be a string; got 3"),
        ({"name": "a"}, "x.inner is missing"),
        ({"name": "a", "inner": {"k": 1}, "colour": 1}, "x has unknown fields ['colour']"),
        ({"name": "a", "inner": {"k": 1}, "ks": "1,5"}, "x.ks must be a list"),
        ({"name": "a", "inner": {"k": 1}, "items": [{"k": "no"}]}, "x.items[0].k must be an"),
        ([], "x must be a JSON object"),
    ],
)
def test_errors_name_the_field(data, message):
    with pytest.raises(SchemaError) as caught:
        from_json(Outer, data, "x")
    assert message in str(caught.value)
    assert caught.value.field.startswith("x")


def test_the_run_types_round_trip():
    config = RunConfig().validated()
    assert RunConfig.from_json(config.to_json()) == config
    assert from_json(RunMetrics, to_json(RunMetrics()), "m") == RunMetrics()
