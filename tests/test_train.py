import copy
import csv
import math
import os
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from linear_gaussian import LinearGaussian

from vi_vae import (
    VAE,
    InputError,
    LowPrecisionWarning,
    RandomDensityWarning,
    TrainingError,
    fit,
    log_marginal_likelihood,
)
from vi_vae._train_step import all_finite
from vi_vae._training import validation_elbo
from vi_vae.app.run_directory import RunDirectory
from vi_vae.callbacks import Callback, CheckpointSink
from vi_vae.checkpoint import load_checkpoint
from vi_vae.estimators import IWAE
from vi_vae.train import KLWeight, TrainSettings


def small_vae():
    return VAE(input_dim=12, latent_dim=2, hidden_sizes=[16])


def binary_data(num_points=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(2, 12, generator=generator) > 0.5).float()
    labels = torch.randint(0, 2, (num_points,), generator=generator)
    flips = (torch.rand(num_points, 12, generator=generator) < 0.05).float()
    return (prototypes[labels] + flips) % 2


def params_of(vae):
    return {name: value.detach().clone() for name, value in vae.state_dict().items()}


class InMemory:
    """A checkpoint sink that keeps every checkpoint it is given, as a copy."""

    def __init__(self):
        self.checkpoints = []

    def __str__(self):
        return "memory"

    def write_checkpoint(self, checkpoint):
        self.checkpoints.append(copy.deepcopy(checkpoint))

    def read_checkpoint(self):
        return copy.deepcopy(self.checkpoints[-1]) if self.checkpoints else None


def sink_in(path):
    directory = RunDirectory(path)
    directory.create(overwrite=True)
    return directory.checkpoint_sink()


def test_training_improves_the_validation_elbo():
    x = binary_data()
    vae = small_vae()
    result = fit(
        vae.model,
        vae.guide,
        x[:48],
        validation=x[48:],
        epochs=15,
        batch_size=16,
        learning_rate=0.01,
    )
    first, last = result.history[0], result.history[-1]
    assert len(result.history) == 15
    assert last.train_loss < first.train_loss
    assert max(row.validation_elbo for row in result.history) > first.validation_elbo + 1
    assert all(math.isfinite(row.validation_elbo_standard_error) for row in result.history)


def test_same_seed_same_numbers():
    x = binary_data()
    runs = []
    for _ in range(2):
        pyro.set_rng_seed(0)
        vae = small_vae()
        result = fit(vae.model, vae.guide, x, epochs=2, batch_size=16, seed=3)
        runs.append((result.history, params_of(vae)))
    assert [r.train_loss for r in runs[0][0]] == [r.train_loss for r in runs[1][0]]
    for name, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][name]), name


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    # Two epochs, or one epoch then a resumed run to two: same parameters,
    # same history (shuffling, binarization draws and Adam's state are restored).
    x = binary_data()
    transform = lambda batch, generator: torch.bernoulli(batch * 0.9 + 0.05, generator=generator)  # noqa: E731
    pyro.set_rng_seed(0)
    straight = small_vae()
    full = fit(
        straight.model,
        straight.guide,
        x,
        validation=x[:8],
        epochs=2,
        batch_size=16,
        batch_transform=transform,
        sink=sink_in(tmp_path / "straight"),
    )

    pyro.set_rng_seed(0)
    first = small_vae()
    split = sink_in(tmp_path / "split")
    fit(
        first.model,
        first.guide,
        x,
        validation=x[:8],
        epochs=1,
        batch_size=16,
        batch_transform=transform,
        sink=split,
    )
    pyro.set_rng_seed(99)  # a resumed process starts from a different state
    resumed = small_vae()
    result = fit(
        resumed.model,
        resumed.guide,
        x,
        validation=x[:8],
        epochs=2,
        batch_size=16,
        batch_transform=transform,
        sink=split,
    )
    assert [r.epoch for r in result.history] == [1, 2]

    def timeless(history):
        return [{k: v for k, v in row.to_dict().items() if k != "seconds"} for row in history]

    assert timeless(result.history) == timeless(full.history)
    last = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["params"]
    reference = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["params"]
    for name, value in reference.items():
        assert torch.equal(value, last[name]), name
    with open(tmp_path / "split" / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]


@pytest.mark.parametrize("validated", [False, True], ids=["nan-loss", "nan-parameter"])
def test_divergence_names_epoch_and_step_and_keeps_last_checkpoint(tmp_path, validated):
    # Without validation the loss turns NaN; with Pyro's validation a NaN
    # parameter is refused first. Both stop training with the same message.
    x = binary_data()
    vae = small_vae()
    exploded = {"now": False}

    def explode_after_epoch_2_step_2(epoch, step, steps, loss):
        exploded["now"] = (epoch, step) >= (2, 2)

    def exploding_model(batch):
        if not exploded["now"]:
            return vae.model(batch)
        with pyro.plate("data", batch.shape[0]):
            z = pyro.sample("z", dist.Normal(batch.new_zeros(2), 1.0).to_event(1))
            logits = z.sum(-1, keepdim=True) * float("nan") + batch
            pyro.sample(
                "x", dist.Bernoulli(logits=logits, validate_args=validated).to_event(1), obs=batch
            )

    with pytest.raises(
        TrainingError, match=rf"epoch 2, step 3 of 4.*checkpoint of epoch 1 is kept in {tmp_path}"
    ):
        fit(
            exploding_model,
            vae.guide,
            x,
            epochs=3,
            batch_size=16,
            sink=sink_in(tmp_path),
            callbacks=[Callback(on_step=explode_after_epoch_2_step_2)],
        )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert not list(tmp_path.glob(".*tmp"))


def test_kl_weight_scales_latent_sites_only():
    lg = LinearGaussian()
    x = lg.sample(5)
    weighted = KLWeight(0.25)
    trace = pyro.poutine.trace(weighted(lg.model)).get_trace(x)
    assert trace.nodes["z"]["scale"] == 0.25
    assert trace.nodes["x"]["scale"] == 1.0


def test_warmup_ramps_the_kl_weight():
    x = binary_data()
    vae = small_vae()
    result = fit(
        vae.model, vae.guide, x, epochs=4, batch_size=32, kl_weight=0.5, kl_warmup_epochs=2
    )
    assert [row.kl_weight for row in result.history] == [0.25, 0.5, 0.5, 0.5]


def test_early_stopping_stops_and_restores_the_best_epoch():
    x = binary_data()
    vae = small_vae()
    # a learning rate of 0 means no epoch can truly improve: only noise decides
    optimizer = pyro.optim.Adam({"lr": 0.0})
    result = fit(
        vae.model, vae.guide, x, validation=x[:16], epochs=30, optimizer=optimizer, patience=2
    )
    assert result.stopped_early
    assert len(result.history) < 30
    assert result.history[-1].epoch - result.best_epoch == 2


def test_user_model_with_pyro_params_trains():
    lg = LinearGaussian()
    x = lg.sample(200).float()

    def guide(batch):
        loc = pyro.param("loc_weight", torch.zeros(3, 2))
        scale = pyro.param("scale", torch.ones(2), constraint=dist.constraints.positive)
        with pyro.plate("data", batch.shape[0]):
            pyro.sample("z", dist.Normal(batch @ loc, scale).to_event(1))

    model = LinearGaussian()
    model.weight, model.bias = model.weight.float(), model.bias.float()
    result = fit(model.model, guide, x, epochs=20, batch_size=50, learning_rate=0.05)
    assert result.history[-1].train_loss < result.history[0].train_loss - 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"kl_weight": -1.0}, "kl_weight must be a finite number >= 0"),
        ({"seed": -1}, "seed must be an integer in"),
        ({"device": "nowhere"}, "device must name a torch device"),
        ({"data_plate": ""}, "data_plate must be a plate name, a non-empty string"),
        ({"loss": "iwae:x"}, "loss: estimator 'iwae:x': num_particles must be int"),
        (
            {"loss": "nope:3"},
            "loss: unknown estimator 'nope:3'; accepted values: elbo, .*iwae:NUM_PARTICLES",
        ),
        ({"loss": 3}, "loss must be a pyro.infer.ELBO or an estimator spelling"),
        # its loss is inf by design: fit called that a divergence and blamed the data
        (
            {"loss": pyro.infer.TraceTailAdaptive_ELBO(num_particles=3, vectorize_particles=True)},
            "TraceTailAdaptive_ELBO computes no loss value .*; train it with pyro.infer.SVI",
        ),
        ({"callbacks": Callback()}, "callbacks must be a list of vi_vae.callbacks.Callback"),
        ({"callbacks": [print]}, "callbacks must be a list of vi_vae.callbacks.Callback"),
        ({"sink": "runs/x"}, "sink must have write_checkpoint and read_checkpoint methods"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    vae = small_vae()
    with pytest.raises(InputError, match=message):
        fit(vae.model, vae.guide, binary_data(), **kwargs)


@pytest.mark.parametrize(
    ("train", "validation", "message"),
    [
        (torch.full((8, 12), float("nan")), None, "train data contain NaN or infinite values"),
        (binary_data(), torch.full((4, 12), float("inf")), "validation data contain NaN"),
        (torch.rand(16, 12), None, "train data: the data observed at site 'x' lie outside"),
        (binary_data(), torch.rand(4, 12), "validation data: the data observed at site 'x'"),
    ],
)
def test_bad_data_are_named_before_training(train, validation, message):
    # issue 13: NaN data used to end in "try a smaller learning rate"
    vae = small_vae()
    with pytest.raises(InputError, match=message):
        fit(vae.model, vae.guide, train, validation=validation, epochs=1)


@pytest.mark.parametrize(
    ("split", "data", "message"),
    [
        ("train", lambda x: x[:, :7], r"x has shape \[64, 7\] .* with a shape error"),
        ("validation", lambda x: x[:8, :7], r"x has shape \[8, 7\] .* with a shape error"),
        ("train", lambda x: x.double(), r"x has dtype torch.float64 .* of the parameters' dtype"),
        ("validation", lambda x: x[:8].double(), r"x has dtype torch.float64 .* parameters'"),
    ],
)  # fmt: skip
def test_data_the_pair_cannot_take_are_refused_as_the_evaluators_refuse_them(split, data, message):
    # fit's first call of the pair let torch's "mat1 and mat2 shapes cannot be
    # multiplied" through, with Pyro's trace table, where the evaluators say what to change
    vae, x = small_vae(), binary_data()
    train, validation = (data(x), None) if split == "train" else (x, data(x))
    with pytest.raises(InputError, match=rf"^{split} data: {message}"):
        fit(vae.model, vae.guide, train, validation=validation, epochs=1, batch_size=64)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda batch, generator: None, "must return a tensor with the batch's 16 rows .*NoneType"),
        (lambda batch, generator: batch[:2], r"must return .* 16 rows .*returned shape \[2, 12\]"),
        (lambda batch, generator: batch * math.inf, "returned NaN or infinite values"),
        (lambda batch: batch, r"must be a function called as batch_transform\(batch, generator\)"),
        (3, r"must be a function called as batch_transform\(batch, generator\)"),
    ],
    ids=["none", "fewer-rows", "infinite", "one-argument", "not-a-function"],
)  # fmt: skip
def test_a_batch_transform_that_breaks_its_contract_is_refused_naming_it(transform, message):
    # it failed inside: "'NoneType' object has no attribute 'to'", a distribution's
    # constraint error on NaN, Python's TypeError of a one-argument function
    vae, x = small_vae(), binary_data()
    with pytest.raises(InputError, match=f"^batch_transform {message}"):
        fit(vae.model, vae.guide, x, epochs=1, batch_size=16, batch_transform=transform)


def test_data_outside_the_support_past_the_first_batch_are_refused_naming_the_point():
    # fit runs the model on the first batch only; a grey point in a later batch used to
    # train on a meaningless Bernoulli cross-entropy without a word (one epoch: the
    # validated first step of each epoch never saw it)
    vae, x = small_vae(), binary_data()
    x[45, 3] = 0.5
    says = r"train data: .*site 'x' .*\(values 0 or 1\), the first at point 45; binarize"
    with pytest.raises(InputError, match=says):
        fit(vae.model, vae.guide, x, epochs=1, batch_size=16)


def test_the_whole_data_are_checked_point_by_point_where_an_event_spans_the_rows():
    # a pair with no data plate, its batch one event (.to_event(2)), which Pyro's own
    # ELBOs train: the check of the other batches folded every row into one verdict and
    # failed with torch's "shape '[64, -1]' is invalid for input of size 1"
    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(2))
        pyro.sample("x", dist.Bernoulli(logits=z).to_event(2), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(x / 2, 1.0).to_event(2))

    x, loss = binary_data(), pyro.infer.Trace_ELBO()
    trained = fit(model, guide, x, epochs=1, batch_size=16, loss=loss)
    assert math.isfinite(trained.history[0].train_loss)
    x[45, 3] = 0.5
    says = r"train data: .*site 'x' .*\(values 0 or 1\), the first at point 45"
    with pytest.raises(InputError, match=says):
        fit(model, guide, x, epochs=1, batch_size=16, loss=loss)


@pytest.mark.parametrize("loss", [None, "iwae:3"])
def test_a_data_plate_of_another_name_trains_with_the_loss_fit_builds(loss):
    # fit built its default loss, and a spelled one, over the plate "data" whatever its
    # data_plate said: the pair of a plate named "batch" was refused as having sites
    # outside pyro.plate('data')
    x = binary_data()
    trained = {}
    for plate in ("data", "batch"):
        vae = VAE(input_dim=12, latent_dim=2, hidden_sizes=[16], data_plate=plate, seed=0)
        result = fit(vae.model, vae.guide, x, epochs=2, batch_size=16, loss=loss, data_plate=plate)
        trained[plate] = (result.history[-1].train_loss, params_of(vae))
    # the plate's name changes no draw and no number
    assert trained["batch"][0] == trained["data"][0]
    assert all(torch.equal(trained["batch"][1][k], v) for k, v in trained["data"][1].items())
    vae = VAE(input_dim=12, latent_dim=2, hidden_sizes=[16], data_plate="batch")
    says = r"loss takes the data plate 'batch' but data_plate is 'data': name the same plate"
    with pytest.raises(InputError, match=says):
        fit(vae.model, vae.guide, x, loss=IWAE(3, data_plate="batch"))


def labelled_pair(label_distribution, observe=lambda ys: ys):
    """A pair that observes per-point labels ``observe(ys)`` (3 classes) at site 'y'."""

    def model(batch, ys):
        weight = pyro.param("weight", torch.zeros(3))
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("y", label_distribution(logits=weight + z.unsqueeze(-1)), obs=observe(ys))

    def guide(batch, ys):
        loc = pyro.param("loc", torch.zeros(()))
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(loc, 1.0))

    return model, guide


def test_a_per_point_argument_observed_past_the_first_batch_is_checked_too():
    x = binary_data(40)
    labels = (x[:, 0] + x[:, 1]).long()  # 0, 1 or 2: the model observes one of 3 classes
    model, guide = labelled_pair(dist.Categorical)
    fit(model, guide, x, model_kwargs={"ys": labels}, epochs=1, batch_size=8)
    labels[33] = 3
    with pytest.raises(InputError, match=r"site 'y' .*, the first at point 33; transform the data"):
        fit(model, guide, x, model_kwargs={"ys": labels}, epochs=1, batch_size=8)


def test_validation_points_without_the_labels_the_pair_requires_are_refused_saying_how():
    # fit(..., model_kwargs={"ys": labels}, validation=x_val) failed inside the guide with
    # "guide() missing 1 required positional argument: 'ys'"
    x = binary_data(40)
    labels = (x[:, 0] + x[:, 1]).long()
    model, guide = labelled_pair(dist.Categorical)
    kwargs = {"model_kwargs": {"ys": labels[:32]}, "epochs": 1, "batch_size": 8}
    says = r"model_kwargs give \['ys'\] per training point, .* validation=\(x, \{'ys': ...\}\)"
    for validation in (x[32:], (x[32:], {})):
        with pytest.raises(InputError, match=says):
            fit(model, guide, x[:32], validation=validation, **kwargs)
    fit(model, guide, x[:32], validation=(x[32:], {"ys": labels[32:]}), **kwargs)

    def unlabelled(function):  # a pair that also scores unlabelled points (ys=None)
        return lambda batch, ys=None: function(batch, labels[: len(batch)] if ys is None else ys)

    result = fit(unlabelled(model), unlabelled(guide), x[:32], validation=x[32:], **kwargs)
    assert math.isfinite(result.history[0].validation_elbo)


def labelled_prior():
    """A pair whose prior of z is set by a per-point label ``ys`` (3 classes)."""
    means = torch.tensor([-1.0, 0.0, 1.0])

    def model(batch, ys):
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", dist.Normal(means[ys], 1.0))
            pyro.sample("x", dist.Bernoulli(logits=z.unsqueeze(-1)).to_event(1), obs=batch)

    def guide(batch, ys):
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(batch.new_zeros(len(batch)), 1.0))

    return model, guide


@pytest.mark.parametrize("sequence", [list, np.asarray], ids=["list", "array"])
def test_labels_that_are_no_tensor_are_named_where_the_pair_fails_on_a_part(sequence):
    # only tensors are split by rows: a list of labels reached every batch whole, and the
    # error blamed x's width; the evaluators blamed something sized by the whole data
    x = binary_data(40)
    labels = sequence((x[:, 0] + x[:, 1]).long().tolist())
    model, guide = labelled_pair(dist.Categorical, observe=torch.as_tensor)
    says = r"model_kwargs \[.ys.\] hold 40 values, one per row of x, but are not tensors"
    with pytest.raises(InputError, match=says):
        fit(model, guide, x, model_kwargs={"ys": labels}, epochs=1, batch_size=8)
    says = r"keyword argument\(s\) \['ys'\] hold 40 values, one per row of x, but are not tensors"
    prior_of = labelled_prior()
    with pytest.raises(InputError, match=says):
        log_marginal_likelihood(*prior_of, x, 10, ys=labels)
    # observed through torch.as_tensor, the evaluators' first-rows check passed them and
    # one pass gave the number, but passes of 10 pairs failed with torch's broadcast
    # error: whether they worked hung on the memory the evaluators may use
    for chunk_size in (None, 10):
        with pytest.raises(InputError, match=says):
            log_marginal_likelihood(model, guide, x, 10, ys=labels, chunk_size=chunk_size)
    tensors = torch.as_tensor(labels)
    with pytest.raises(InputError, match=r"the validation keyword arguments \['ys'\] hold 40"):
        fit(model, guide, x, model_kwargs={"ys": tensors}, validation=(x, {"ys": labels}))
    # observed as they are, they failed inside the support check ("'list' object has no
    # attribute 'is_floating_point'")
    model, guide = labelled_pair(dist.Categorical)
    with pytest.raises(InputError, match=r"data observed at site 'y' are a \w+, not a tensor"):
        log_marginal_likelihood(model, guide, x[:1], 10, ys=labels[:1])


def test_a_packed_sequence_of_one_sequence_per_row_is_refused_with_the_remedy():
    # Pyro's deep Markov model passes its reversed sequences packed: not split by rows,
    # fit blamed x's width ("x's width [5, 6] ... does not fit the model")
    x = binary_data(40)
    sequences = [torch.ones(1 + i % 3, 2) for i in range(40)]
    packed = torch.nn.utils.rnn.pack_sequence(sequences, enforce_sorted=False)

    def model(batch, packed):
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Bernoulli(logits=z.unsqueeze(-1)).to_event(1), obs=batch)

    def guide(batch, packed):
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(packed.data.new_zeros(len(batch)), 1.0))

    says = r"\['packed'\] hold 40 values, one per row of x, .*a PackedSequence as its padded"
    with pytest.raises(InputError, match="model_kwargs " + says):
        fit(model, guide, x, model_kwargs={"packed": packed}, epochs=1, batch_size=8)
    with pytest.raises(InputError, match=r"keyword argument\(s\) " + says):
        log_marginal_likelihood(model, guide, x, 10, packed=packed)


def test_the_whole_data_are_checked_once_until_written_to(monkeypatch):
    # "validity checks once per dataset, not per call": a fit per epoch checks its data once
    vae, x = small_vae(), binary_data()  # 64 points, in batches of 16
    whole_checks = []
    boolean = type(torch.distributions.constraints.boolean)
    check = boolean.check

    def counted(self, value):
        whole_checks.extend([1] if len(value) == len(x) else [])
        return check(self, value)

    monkeypatch.setattr(boolean, "check", counted)
    for _ in range(3):
        fit(vae.model, vae.guide, x, epochs=1, batch_size=16)
    assert len(whole_checks) == 1
    x[50, 0] = 0.5  # a write: the data are checked again
    with pytest.raises(InputError, match="the first at point 50"):
        fit(vae.model, vae.guide, x, epochs=1, batch_size=16)
    assert len(whole_checks) == 2


@pytest.mark.parametrize("write", ["numpy", "data"])
def test_a_write_the_version_counter_misses_is_seen_too(write):
    # through a numpy array or .data, a write leaves the tensor's version as it was: the
    # check remembered as passed let grey data train without a word
    vae, array = small_vae(), binary_data().numpy()
    x = torch.from_numpy(array)
    fit(vae.model, vae.guide, x, epochs=1, batch_size=16)
    version = x._version
    if write == "numpy":
        array[50, 0] = 0.5
    else:
        x.data[50, 0] = 0.5
    assert x._version == version
    with pytest.raises(InputError, match="the first at point 50"):
        fit(vae.model, vae.guide, x, epochs=1, batch_size=16)


def test_one_hot_labels_past_the_first_batch_are_checked_as_pyros_ss_vae_observes_them():
    # Pyro's examples/vae/ss_vae_M2.py observes one-hot ys at site 'y'
    x = binary_data(48)
    ys = torch.nn.functional.one_hot(x[:, 0].long() + x[:, 1].long(), 3).float()
    model, guide = labelled_pair(dist.OneHotCategorical)
    result = fit(model, guide, x, model_kwargs={"ys": ys}, epochs=1, batch_size=16)
    assert math.isfinite(result.history[-1].train_loss)
    ys[40] = torch.tensor([0.5, 0.5, 0.0])
    says = r"train data: .*site 'y' .*\(one-hot vectors\), the first at point 40; transform"
    with pytest.raises(InputError, match=says):
        fit(model, guide, x, model_kwargs={"ys": ys}, epochs=1, batch_size=16)


def sliced_pair(calls=None):
    """A pair whose likelihood observes the first 6 of x's 12 columns: not x as given."""

    def model(batch):
        weight = pyro.param("weight", torch.zeros(6))
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            logits = weight + z.unsqueeze(-1)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=batch[:, :6])

    def guide(batch):
        if calls is not None:
            calls.append(len(batch))
        loc = pyro.param("loc", torch.zeros(()))
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(loc, 1.0))

    return model, guide


def test_a_per_point_argument_written_through_numpy_is_run_again():
    # the site observes ys.flip(-1), not ys as given: fit runs the model over the batches
    # and remembers that; a write through numpy left ys's version as it was, and the pass
    # was skipped for ys that had changed
    x = binary_data(48)
    array = torch.nn.functional.one_hot(x[:, 0].long() + x[:, 1].long(), 3).float().numpy()
    ys = torch.from_numpy(array)
    model, guide = labelled_pair(dist.OneHotCategorical, lambda ys: ys.flip(-1))
    fit(model, guide, x, model_kwargs={"ys": ys}, epochs=1, batch_size=16)
    array[40] = [0.5, 0.5, 0.0]
    says = r"train data: .*site 'y' .*\(one-hot vectors\).* \(in points 32 to 47\)"
    with pytest.raises(InputError, match=says):
        fit(model, guide, x, model_kwargs={"ys": ys}, epochs=1, batch_size=16)


def test_a_site_observing_a_function_of_the_data_is_checked_by_running_the_model():
    # the slice x[:, :6] is not x as given: the model runs on every batch once, before training
    x = binary_data()  # 64 points, in batches of 16
    x[40, 8] = 0.5  # a column the model does not observe: not its business
    fit(*sliced_pair(), x, epochs=1, batch_size=16)
    x[40, 2] = 0.5
    says = r"train data: .*site 'x' .*\(values 0 or 1\); binarize .* \(in points 32 to 47\)"
    with pytest.raises(InputError, match=says):
        fit(*sliced_pair(), x, epochs=1, batch_size=16)


def test_running_the_model_over_the_data_is_done_once_per_pair_and_data(caplog):
    x = binary_data()  # 64 points: the first batch of 16, then 3 more run for the check
    caplog.set_level("INFO", logger="vi_vae._train_step")

    def guide_calls_of_a_fit(pair, calls):
        calls.clear()
        fit(*pair, x, epochs=1, batch_size=16)
        return len(calls)

    calls = []
    pair = sliced_pair(calls)
    first = guide_calls_of_a_fit(pair, calls)
    says = "checking the support of points 16 to 63 by running the model on them (what site(s) x"
    assert [record.getMessage().startswith(says) for record in caplog.records] == [True]
    assert guide_calls_of_a_fit(pair, calls) == first - 3  # the same pair and data: done
    x[3, 0] = 1 - x[3, 0]  # a write (still binary): checked again
    assert guide_calls_of_a_fit(pair, calls) == first
    other = []
    assert guide_calls_of_a_fit(sliced_pair(other), other) == first  # another pair: again


def test_a_model_that_binarizes_the_data_itself_is_not_refused_for_grey_points():
    # x > 0.5 equals x on binary rows: the support of x alone would refuse the grey ones
    vae, x = small_vae(), binary_data()
    x[40:] = 0.3 + 0.4 * x[40:]  # grey from point 40 on (0.3 and 0.7)

    def model(batch):
        vae.model((batch > 0.5).float())

    def guide(batch):
        vae.guide((batch > 0.5).float())

    result = fit(model, guide, x, epochs=1, batch_size=16)
    assert math.isfinite(result.history[-1].train_loss)


def test_data_a_batch_transform_binarizes_are_checked_as_transformed():
    vae, x = small_vae(), torch.rand(48, 12, generator=torch.Generator().manual_seed(0))
    binarize = lambda batch, generator: torch.bernoulli(batch, generator=generator)  # noqa: E731
    result = fit(vae.model, vae.guide, x, epochs=1, batch_size=16, batch_transform=binarize)
    assert math.isfinite(result.history[-1].train_loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_one_non_finite_value_anywhere_is_found_as_isfinite_finds_it(dtype):
    # all_finite checks fit's data by their smallest and largest values (aminmax)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 7, generator=generator).to(dtype)
    assert all_finite(x) and all_finite(torch.full((5, 2), torch.finfo(dtype).max, dtype=dtype))
    positions = [0, x.numel() - 1, *torch.randint(x.numel(), (20,), generator=generator).tolist()]
    for position in positions:
        for value in (math.nan, math.inf, -math.inf):
            bad = x.clone()
            bad.view(-1)[position] = value
            assert all_finite(bad) is bool(torch.isfinite(bad).all()) is False


def test_a_sink_without_a_checkpoint_starts_from_scratch_and_says_so():
    vae, sink = small_vae(), InMemory()
    result = fit(vae.model, vae.guide, binary_data(), epochs=1, sink=sink)
    assert result.resumed_from_epoch == 0 and len(result.history) == 1
    again = fit(vae.model, vae.guide, binary_data(), epochs=2, sink=sink)
    assert again.resumed_from_epoch == 1 and [r.epoch for r in again.history] == [1, 2]
    assert [c.epoch for c in sink.checkpoints] == [1, 2]


def test_a_huge_kl_weight_does_not_blame_the_learning_rate():
    vae = small_vae()
    with pytest.raises(TrainingError, match="initial parameters, before any update"):
        fit(vae.model, vae.guide, binary_data(), epochs=1, kl_weight=1e308)


def test_the_run_directory_sink_stores_metadata_and_the_history(tmp_path):
    directory = RunDirectory(tmp_path / "run")
    directory.create()
    sink = directory.checkpoint_sink({"fingerprint": {"model": {"latent_dim": 2}}})
    assert isinstance(sink, CheckpointSink)
    vae = small_vae()
    result = fit(vae.model, vae.guide, binary_data(), epochs=2, sink=sink)
    stored = load_checkpoint(directory.checkpoint_path)
    assert stored["metadata"] == {"fingerprint": {"model": {"latent_dim": 2}}}
    assert stored["epoch"] == 2
    with open(directory.history_path) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["train_loss"]) for row in rows] == [r.train_loss for r in result.history]
    resumed_from = sink.read_checkpoint()
    assert [r.train_loss for r in resumed_from.history] == [r.train_loss for r in result.history]


def test_the_0_1_names_of_fit_are_gone():
    # 0.3 removed history rows as dicts and fit(validation_particles=) (CHANGELOG.md)
    vae = small_vae()
    result = fit(vae.model, vae.guide, binary_data(), epochs=1)
    with pytest.raises(TypeError, match="not subscriptable"):
        result.history[0]["train_loss"]
    with pytest.raises(TypeError, match="validation_particles"):
        fit(vae.model, vae.guide, binary_data(), epochs=1, validation_particles=2)


def test_settings_and_their_keyword_shortcuts_train_alike():
    # a TrainSettings object with a shortcut replacing one field = the same fields as keywords
    x = binary_data()
    runs = []
    for settings, shortcuts in [
        (TrainSettings(epochs=1, batch_size=16, seed=3), {"epochs": 2}),
        (None, {"epochs": 2, "batch_size": 16, "seed": 3}),
    ]:
        pyro.set_rng_seed(0)
        vae = small_vae()
        result = fit(vae.model, vae.guide, x, settings, **shortcuts)
        runs.append((result, params_of(vae)))
    assert (
        runs[0][0].settings == runs[1][0].settings == TrainSettings(epochs=2, batch_size=16, seed=3)
    )
    assert runs[0][0].history[-1].train_loss == runs[1][0].history[-1].train_loss
    for name, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][name]), name


def test_an_unknown_keyword_lists_the_settings():
    vae = small_vae()
    with pytest.raises(TypeError, match=r"\['run_dir'\].*fields of TrainSettings: loss, epochs"):
        fit(vae.model, vae.guide, binary_data(), run_dir="runs/x")
    with pytest.raises(InputError, match="settings must be an instance of TrainSettings or None"):
        fit(vae.model, vae.guide, binary_data(), {"epochs": 1})


def test_a_loss_spelling_trains_as_the_estimator_it_names():
    # issue 20 item 17: fit(loss="iwae:3") was a TypeError
    x = binary_data()
    runs = []
    for loss in ("iwae:3", IWAE(3)):
        pyro.set_rng_seed(0)
        vae = small_vae()
        result = fit(vae.model, vae.guide, x, epochs=1, batch_size=16, loss=loss)
        runs.append((result.history[0].train_loss, params_of(vae)))
    assert runs[0][0] == runs[1][0]
    for name, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][name]), name


def test_per_point_keyword_arguments_travel_with_their_rows():
    # issue 20 item 5: fit could not pass ys= at all. Here ys is a function of x's row
    # and model and guide check that every batch gets its own rows' ys.
    x = binary_data(40)
    code = 2.0 ** torch.arange(12)
    ys = x @ code
    vae = small_vae()
    seen = []

    def model(batch, ys=None, offset=None):
        seen.append((ys is None or torch.equal(ys, batch @ code)) and offset == 1.5)
        vae.model(batch)

    def guide(batch, ys=None, offset=None):
        vae.guide(batch)

    result = fit(
        model,
        guide,
        x[:32],
        validation=(x[32:], {"offset": 1.5}),
        model_kwargs={"ys": ys[:32], "offset": 1.5},
        epochs=2,
        batch_size=8,
    )
    assert len(result.history) == 2 and math.isfinite(result.history[-1].validation_elbo)
    assert len(seen) >= 8 and all(seen)  # 4 steps per epoch, and the checks before them

    seen.clear()
    with pytest.raises(InputError, match="keyword arguments of train must be a dict"):
        fit(model, guide, x, model_kwargs=[ys], epochs=1)


def test_callbacks_see_every_step_and_every_epoch():
    steps, epochs = [], []

    class Steps(Callback):
        def on_step(self, epoch, step, steps_per_epoch, loss_per_point):
            steps.append((epoch, step, steps_per_epoch, math.isfinite(loss_per_point)))

    vae = small_vae()
    result = fit(
        vae.model,
        vae.guide,
        binary_data(),
        epochs=2,
        batch_size=16,
        callbacks=[Steps(), Callback(on_epoch=epochs.append)],
    )
    assert steps == [(epoch, step, 4, True) for epoch in (1, 2) for step in (1, 2, 3, 4)]
    assert epochs == result.history


def plated_pair(num_points=None, global_share=None):
    """A linear Gaussian pair whose data plate has the batch's size, or scales it to num_points.

    With ``num_points`` the plate is ``pyro.plate("data", num_points, subsample=rows)``
    (``rows`` a per-point argument); with ``global_share`` the model has a global
    offset outside the plate, its site scaled by that share.
    """
    weight = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.3]])

    def plate(batch, rows):
        return pyro.plate("data", num_points or len(batch), subsample=rows)

    def model(batch, rows=None):
        offset = 0.0
        if global_share is not None:
            with poutine.scale(scale=global_share):
                offset = pyro.sample("offset", dist.Normal(0.0, 1.0))
        with plate(batch, rows):
            z = pyro.sample("z", dist.Normal(batch.new_zeros(len(batch), 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ weight.T + offset, 0.5).to_event(1), obs=batch)

    def guide(batch, rows=None):
        if global_share is not None:
            with poutine.scale(scale=global_share):
                pyro.sample("offset", dist.Normal(pyro.param("offset_loc", torch.tensor(0.0)), 0.1))
        loc_weight = pyro.param("loc_weight", torch.zeros(3, 2))
        with plate(batch, rows):
            pyro.sample("z", dist.Normal(batch @ loc_weight, 0.5).to_event(1))

    return model, guide


@pytest.mark.parametrize("loss", ["elbo", "pyro-trace-elbo"])
def test_a_plate_that_scales_its_batch_to_the_data_reports_the_loss_per_point_of_the_data(loss):
    # pyro.plate("data", N, subsample=rows) makes each step's loss stand for all N points;
    # fit divided it by the batch's B rows, a training loss N/B = 4 times too large. With
    # no step taken (lr 0) and the same draws, it must equal the batch-sized plate's.
    x = LinearGaussian().sample(40).float()

    def losses(pair, model_kwargs):
        steps = []
        result = fit(
            *pair,
            x,
            epochs=1,
            batch_size=10,
            loss=loss,
            optimizer=pyro.optim.SGD({"lr": 0.0}),
            model_kwargs=model_kwargs,
            callbacks=[Callback(on_step=lambda *args: steps.append(args[-1]))],
        )
        return steps, result.history[0].train_loss

    plain_steps, plain = losses(plated_pair(), None)
    scaled_steps, scaled = losses(plated_pair(40), {"rows": torch.arange(40)})
    assert len(scaled_steps) == 4
    assert scaled_steps == pytest.approx(plain_steps, rel=1e-6)
    assert scaled == pytest.approx(plain, rel=1e-6)


def test_a_global_site_each_batch_would_count_as_all_the_data_s_is_refused_saying_how_to_weigh_it():
    # Pyro's ELBOs take a site outside the data plate (a global latent); with the plate
    # the batch's size, every step counted its prior once per batch, N/B times too much
    x = LinearGaussian().sample(40).float()

    def train(pair, batch_size=10, model_kwargs=None):
        return fit(
            *pair,
            x,
            epochs=1,
            batch_size=batch_size,
            loss="pyro-trace-elbo",
            model_kwargs=model_kwargs,
        )

    message = (
        r"\['offset'\] lie outside pyro.plate\('data'\), whose size is the batch's \(10 of "
        r"the 40 points\).* 4 times too much"
    )
    with pytest.raises(InputError, match=message):
        train(plated_pair(global_share=1.0))
    # each of the three ways the message names trains
    train(plated_pair(40, global_share=1.0), model_kwargs={"rows": torch.arange(40)})
    train(plated_pair(global_share=10 / 40))
    train(plated_pair(global_share=1.0), batch_size=40)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_a_validation_elbo_of_a_model_random_beyond_its_sites_says_so(noise):
    # a model that draws inside itself (here noise on what it observes; a binarization,
    # obs=torch.bernoulli(x), alike) was validated without a word, where the evaluators
    # refuse it: the validation ELBO averaged over that randomness
    x = LinearGaussian().sample(40).float()
    weight = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.3]])

    def model(batch):
        with pyro.plate("data", len(batch)):
            z = pyro.sample("z", dist.Normal(batch.new_zeros(len(batch), 2), 1.0).to_event(1))
            observed = batch + noise * torch.randn_like(batch)
            pyro.sample("x", dist.Normal(z @ weight.T, 0.5).to_event(1), obs=observed)

    def guide(batch):
        loc_weight = pyro.param("loc_weight", torch.zeros(3, 2))
        with pyro.plate("data", len(batch)):
            pyro.sample("z", dist.Normal(batch @ loc_weight, 0.5).to_event(1))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, guide, x[:30], validation=x[30:], epochs=1, batch_size=10)
    random = [w for w in caught if issubclass(w.category, RandomDensityWarning)]
    assert len(random) == (1 if noise else 0)
    assert not random or "the validation ELBO averages over that randomness" in str(
        random[0].message
    )


def test_an_epoch_s_start_comes_before_its_first_step_and_a_callback_may_lack_the_hook():
    # the start lets a display run its clock through a slow first step (a compile); an
    # object with on_step and on_epoch alone (the documented duck type) still serves
    events = []

    class StepsAndEpochsOnly:
        def on_step(self, epoch, step, steps_per_epoch, loss_per_point):
            events.append(("step", epoch, step))

        def on_epoch(self, record):
            events.append(("epoch", record.epoch))

    vae = small_vae()
    starts = Callback(on_epoch_start=lambda epoch, steps: events.append(("start", epoch, steps)))
    fit(vae.model, vae.guide, binary_data(), epochs=2, batch_size=32,
        callbacks=[starts, StepsAndEpochsOnly()])  # fmt: skip
    assert events == [
        item
        for epoch in (1, 2)
        for item in [("start", epoch, 2), ("step", epoch, 1), ("step", epoch, 2), ("epoch", epoch)]
    ]


def test_fit_writes_no_files(tmp_path, monkeypatch):
    # checkpoints go to the sink; the library itself writes nothing
    monkeypatch.chdir(tmp_path)
    vae, sink = small_vae(), InMemory()
    x = binary_data()
    fit(vae.model, vae.guide, x, validation=x[:8], epochs=2, batch_size=32, sink=sink)
    assert os.listdir(tmp_path) == []
    assert [checkpoint.epoch for checkpoint in sink.checkpoints] == [1, 2]


def test_validity_checks_run_in_the_first_step_of_each_epoch_only(monkeypatch):
    # Pyro's and torch's checks of every distribution's samples: the first step of each
    # epoch runs them as a step of Pyro's own would, the others skip them (same numbers:
    # test_fit_trains_with_it_by_default_bitwise_as_with_pyros_adam in test_optim.py)
    x = binary_data()  # 64 points
    checks = []
    validate_sample = torch.distributions.Distribution._validate_sample

    def counted(self, value):
        checks.append(1)
        return validate_sample(self, value)

    monkeypatch.setattr(torch.distributions.Distribution, "_validate_sample", counted)
    vae = small_vae()

    def checks_in_fit(epochs, batch_size):
        checks.clear()
        fit(vae.model, vae.guide, x, epochs=epochs, batch_size=batch_size)
        return len(checks)

    # fit's checks of the data once, then one step's checks per epoch: epochs of 4 steps
    # check as much as epochs of 1 step
    one_step_epochs = checks_in_fit(2, 64)
    assert one_step_epochs > checks_in_fit(1, 64)  # a step checks something
    assert checks_in_fit(2, 16) == one_step_epochs
    assert pyro.infer.util.is_validation_enabled()  # the user's setting is back after fit


class NormalizedPair(torch.nn.Module):
    """A Gaussian-data pair whose encoder has BatchNorm and whose decoder has dropout.

    Both are the networks of many a conv VAE (Pythae's included); the evaluators take
    them in eval mode only.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 4)
        )
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 6)
        )

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            raw = self.encoder(x)
            scale = torch.nn.functional.softplus(raw[:, 2:]) + 1e-3
            pyro.sample("z", dist.Normal(raw[:, :2], scale).to_event(1))


def test_validation_scores_batchnorm_and_dropout_networks_in_eval_mode_and_leaves_them_as_found():
    # fit refused this pair with validation data (BatchNorm in training mode on one row);
    # scored in training mode, dropout made the validation ELBO random and BatchNorm folded
    # the validation data into the running statistics the evaluators then normalize with
    train = torch.randn(96, 6, generator=torch.Generator().manual_seed(1))
    validation = torch.randn(32, 6, generator=torch.Generator().manual_seed(2)) + 3.0
    plain, validated = NormalizedPair(), NormalizedPair()
    fit(plain.model, plain.guide, train, epochs=1, batch_size=32)
    result = fit(
        validated.model, validated.guide, train, validation=validation, epochs=1, batch_size=32
    )
    assert validated.training and all(module.training for module in validated.modules())
    # three steps, and the estimator's contract trial at its first call (a training pass,
    # on the caller's random stream); not fit's data checks, nor the validation
    assert int(plain.encoder[1].num_batches_tracked) == 3 + 1
    batch_norm = dict(plain.encoder[1].named_buffers())
    for name, value in validated.encoder[1].named_buffers():
        assert torch.equal(value, batch_norm[name]), name  # training's batches alone
    validated.eval()  # one epoch: the parameters it validated are the final ones
    elbo, _ = validation_elbo(
        validated.model,
        validated.guide,
        validation,
        TrainSettings().validation_num_particles,
        TrainSettings().seed + 1,
        "data",
    )
    assert result.history[0].validation_elbo == elbo


class BufferLog(Callback):
    """The BatchNorm buffers of ``pair`` after every epoch."""

    def __init__(self, pair):
        self.pair, self.epochs = pair, []

    def on_step(self, *_):
        pass

    def on_epoch(self, record):
        self.epochs.append({k: v.clone() for k, v in self.pair.encoder[1].named_buffers()})


def test_the_best_epoch_is_loaded_with_its_batchnorm_statistics():
    # its parameters were loaded with the last epoch's running statistics, which normalize
    # the activations of other weights; eval mode then scored a model no epoch had
    train = torch.randn(96, 6, generator=torch.Generator().manual_seed(1))
    validation = torch.randn(32, 6, generator=torch.Generator().manual_seed(2)) * 3.0 + 4.0
    pair = NormalizedPair()
    log = BufferLog(pair)
    result = fit(
        pair.model,
        pair.guide,
        train,
        validation=validation,
        epochs=6,
        batch_size=32,
        learning_rate=0.05,
        callbacks=[log],
    )
    assert result.best_epoch < len(result.history)  # else this would check nothing
    best = log.epochs[result.best_epoch - 1]
    for name, value in pair.encoder[1].named_buffers():
        assert torch.equal(value, best[name]), name


def test_a_resumed_run_continues_with_the_batchnorm_statistics_it_stopped_with(tmp_path):
    train = torch.randn(96, 6, generator=torch.Generator().manual_seed(1))
    straight = NormalizedPair()
    fit(straight.model, straight.guide, train, epochs=2, batch_size=32, sink=InMemory())
    sink = InMemory()
    first = NormalizedPair()
    fit(first.model, first.guide, train, epochs=1, batch_size=32, sink=sink)
    assert [name.split(".")[0] for name in sink.checkpoints[0].buffers][:1] == ["2:BatchNorm1d"]
    resumed = NormalizedPair()  # a new process: BatchNorm's statistics start afresh
    fit(resumed.model, resumed.guide, train, epochs=2, batch_size=32, sink=sink)
    for (name, value), (_, expected) in zip(
        resumed.state_dict().items(), straight.state_dict().items(), strict=True
    ):
        assert torch.equal(value, expected), name


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "autocast"])
def test_fit_warns_where_its_validation_elbo_comes_in_half_precision(precision):
    # training in half precision is the user's choice, but early stopping and the best
    # epoch then compare validation ELBOs rounded by nats: fit said nothing
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 6, generator=generator) > 0.5).float()
    vae = VAE(input_dim=6, latent_dim=2, hidden_sizes=[4], seed=0)
    if precision == "bfloat16":
        vae, x = vae.to(torch.bfloat16), x.to(torch.bfloat16)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast")
    with warnings.catch_warnings(record=True) as caught, autocast:
        warnings.simplefilter("always")
        fit(vae.model, vae.guide, x[:32], validation=x[32:], epochs=1, batch_size=16)
    warned = [w for w in caught if issubclass(w.category, LowPrecisionWarning)]
    if precision == "float32":
        assert warned == []
    else:
        assert len(warned) == 1 and warned[0].filename == __file__
        assert "computed in torch.bfloat16" in str(warned[0].message)
        assert "validation ELBO that early stopping and the best epoch compare" in str(
            warned[0].message
        )
