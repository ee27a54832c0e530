"""``metrics.json`` and ``comparison.json`` carry a checksum: an edited number is refused."""

import json
import shutil
import warnings
from pathlib import Path

import pytest

from vi_vae._digest import file_sha256
from vi_vae.app.config import (
    AISConfig,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
)
from vi_vae.app.metrics import RunMetrics
from vi_vae.app.run_directory import CHECKPOINT_FIELD, RunDirectory
from vi_vae.app.runs import train_run
from vi_vae.checkpoint import CHECKSUM_FIELD
from vi_vae.errors import InputError, UnverifiedFileWarning

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: one epoch, and AIS far too short to converge: the tests check what is stored, not its value
TINY = RunConfig(
    data=DataConfig(max_train=64),
    model=ModelConfig(latent_dim=2, hidden_sizes=(8,)),
    training=TrainingConfig(epochs=1),
    evaluation=EvaluationConfig(num_particles=10, bound_particles=(1, 5), num_points=10),
    ais=AISConfig(num_points=3, num_steps=5, num_chains=2, leapfrog_steps=2),
)
REFUSED = "does not match its checksum: it was changed or damaged after it was written"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_run(TINY, tmp_path_factory.mktemp("runs") / "tiny", figures=False)


@pytest.fixture
def directory(trained, tmp_path):
    """A copy of the trained run's metrics.json, to edit, beside the checkpoint it is of."""
    copy = RunDirectory(tmp_path, writer=True)
    shutil.copyfile(trained.directory.metrics_path, copy.metrics_path)
    shutil.copyfile(trained.directory.checkpoint_path, copy.checkpoint_path)
    return copy


def stored_json(path):
    return json.loads(path.read_text())


def edit(path, change):
    """Apply ``change`` to the file's JSON and write it back, its checksum untouched."""
    stored = stored_json(path)
    change(stored)
    path.write_text(json.dumps(stored, indent=2))


def test_metrics_json_round_trips_every_field(trained, directory):
    metrics = trained.metrics
    assert metrics.ais is not None and metrics.training is not None  # the premise: all filled
    assert repr(directory.read_metrics()) == repr(metrics)  # repr: NaN equals NaN
    stored = stored_json(directory.metrics_path)
    assert list(stored) == [*RunMetrics.__dataclass_fields__, CHECKPOINT_FIELD, CHECKSUM_FIELD]
    assert stored[CHECKPOINT_FIELD] == file_sha256(trained.directory.checkpoint_path)
    # written again from what was read: the same bytes, checksum included
    directory.write_metrics(directory.read_metrics())
    assert directory.metrics_path.read_bytes() == trained.directory.metrics_path.read_bytes()


def _shift(*path, by=1.0):
    def change(stored):
        for key in path[:-1]:
            stored = stored[key]
        stored[path[-1]] += by

    return change


@pytest.mark.parametrize(
    "change",
    [
        _shift("log_marginal_likelihood", "log_likelihood"),
        _shift("log_marginal_likelihood", "standard_error", by=-1e-12),
        _shift("bounds", 0, "mean"),
        _shift("points", "num_points", by=1),
        _shift("training", "seconds_per_epoch"),
        _shift("ais", "estimate", "log_likelihood"),
        lambda stored: stored["figures"].append("samples.png"),
        lambda stored: stored.pop("bdmc"),
    ],
    ids=[
        "log-likelihood",
        "tiny-change-of-an-error",
        "bound",
        "num-points",
        "training-seconds",
        "ais-estimate",
        "figure-added",
        "field-removed",
    ],
)
def test_an_edited_metrics_json_is_refused(directory, change):
    before = directory.read_metrics()  # the premise: the copy loads
    edit(directory.metrics_path, lambda stored: None)  # rewritten, unchanged: still loads
    assert repr(directory.read_metrics()) == repr(before)
    edit(directory.metrics_path, change)
    with pytest.raises(InputError, match=f"metrics.json {REFUSED}") as refused:
        directory.read_metrics()
    assert "evaluate the run again" in str(refused.value)
    assert "--" not in str(refused.value)  # the library names no flag


def test_a_consistent_edit_of_the_estimate_and_its_ais_is_refused(directory):
    # log p(x) and the AIS estimate raised alike, so that nothing disagrees
    def change(stored):
        stored["log_marginal_likelihood"]["log_likelihood"] += 5.0
        stored["ais"]["importance_sampling"]["log_likelihood"] += 5.0
        stored["ais"]["estimate"]["log_likelihood"] += 5.0

    edit(directory.metrics_path, change)
    with pytest.raises(InputError, match=REFUSED):
        directory.read_metrics()


def test_a_metrics_json_with_its_points_deleted_is_refused(directory):
    # it was read as none (a metrics.json of 0.1, which had no "points"); 0.3 reads no 0.1
    # run directory, so it is an edit like any other
    edit(directory.metrics_path, lambda stored: stored.pop("points"))
    with pytest.raises(InputError, match=REFUSED):
        directory.read_metrics()


def test_a_deleted_checksum_is_read_with_one_warning(directory):
    # an older vi_vae wrote no checksum: its file loads, saying that it cannot be checked
    before = directory.read_metrics()
    edit(directory.metrics_path, lambda stored: stored.pop(CHECKSUM_FIELD))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: each warning once per place
        assert repr(directory.read_metrics()) == repr(before)
        assert repr(directory.read_metrics()) == repr(before)
    assert [warning.category for warning in caught] == [UnverifiedFileWarning]
    message = str(caught[0].message)
    assert f"{directory.metrics_path} has no checksum" in message
    assert "cannot be detected" in message
    directory.write_metrics(before)  # the next write adds it
    assert CHECKSUM_FIELD in stored_json(directory.metrics_path)


@pytest.mark.parametrize("name", ["compare-mnist-5k", "compare-fashion-mnist"])
def test_the_committed_comparisons_load_without_a_warning(name, tmp_path):
    comparison = RunDirectory(DOCS / name).read_comparison()  # pytest: a warning fails
    copy = RunDirectory(tmp_path, writer=True)
    copy.write_comparison(comparison)
    assert repr(copy.read_comparison()) == repr(comparison)  # repr: NaN equals NaN


def test_an_edited_comparison_json_is_refused(tmp_path):
    directory = RunDirectory(tmp_path, writer=True)
    shutil.copyfile(DOCS / "compare-mnist-5k" / "comparison.json", directory.comparison_path)
    directory.read_comparison()  # the premise: the copy loads
    edit(directory.comparison_path, _shift("rows", 1, "log_marginal_likelihood", "log_likelihood"))
    with pytest.raises(InputError, match=f"comparison.json {REFUSED}") as refused:
        directory.read_comparison()
    assert "run the comparison again" in str(refused.value)
