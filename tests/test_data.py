import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vi_vae import InputError, load_dataset
from vi_vae import _sources as data_module

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def mnist_static():
    return load_dataset("mnist-5k", binarization="static")


def test_mnist_5k_split_is_fixed_and_stratified(mnist_static):
    data = mnist_static
    assert data.train.shape == (4000, 784)
    assert data.validation.shape == (500, 784) and data.test.shape == (500, 784)
    assert data.image_shape == (28, 28)
    assert data.test_labels.bincount().tolist() == [50] * 10
    assert data.validation_labels.bincount().tolist() == [50] * 10
    again = load_dataset("mnist-5k", binarization="static")
    assert torch.equal(again.test, data.test) and torch.equal(again.train, data.train)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_every_first_n_is_a_random_subset_not_the_first_classes(mnist_static, split):
    # issue 13: the stored order used to be sorted by class, so "the first 100 test
    # points" were all zeros. Now each split is shuffled once: the first 100 of 50 per
    # class hold every digit, and no digit takes more than 25 of them (under uniform
    # sampling without replacement a count of 25 is > 6 sd above the mean of 10).
    labels = getattr(mnist_static, f"{split}_labels")[:100]
    counts = labels.bincount(minlength=10)
    assert (counts > 0).all() and counts.max() <= 25, counts.tolist()


def test_max_train_takes_a_random_subset():
    data = load_dataset("mnist-5k", binarization="static", max_train=200)
    assert len(data.train) == 200
    assert (data.train_labels.bincount(minlength=10) > 0).all()


def test_binarizations():
    grey = load_dataset("mnist-5k", binarization="none")
    assert 0 < ((grey.test > 0) & (grey.test < 1)).float().mean() < 0.2
    assert grey.test.min() >= 0 and grey.test.max() <= 1
    threshold = load_dataset("mnist-5k", binarization="threshold")
    assert torch.equal(threshold.test, (grey.test > 0.5).float())
    dynamic = load_dataset("mnist-5k", binarization="dynamic")
    assert torch.equal(dynamic.train, grey.train)  # resampled per batch, not stored binary
    assert set(dynamic.test.unique().tolist()) == {0.0, 1.0}
    transform = dynamic.batch_transform()
    generator = torch.Generator().manual_seed(0)
    first, second = (
        transform(dynamic.train[:50], generator),
        transform(dynamic.train[:50], generator),
    )
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # a Bernoulli draw keeps the grey level as its mean: within 4 binomial SEs
    mean, se = (
        first.mean(),
        (grey.train[:50].mean() * (1 - grey.train[:50].mean()) / first.numel()) ** 0.5,
    )
    assert abs(mean - grey.train[:50].mean()) < 4 * se
    assert load_dataset("mnist-5k").batch_transform() is None


def test_max_train_and_description(mnist_static):
    data = load_dataset("mnist-5k", binarization="threshold", max_train=100)
    assert data.train.shape == (100, 784) and data.train_labels.shape == (100,)
    described = mnist_static.describe()
    assert described["binarization"] == "static"
    assert described["sizes"] == [4000, 500, 500]


def test_user_npy_with_images(tmp_path):
    images = np.random.default_rng(0).random((30, 4, 5)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    data = load_dataset(str(tmp_path / "images.npy"))
    assert data.image_shape == (4, 5)
    assert data.train.shape[1] == 20
    assert len(data.train) + len(data.validation) + len(data.test) == 30


def test_user_npz_and_csv_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    data = load_dataset(str(tmp_path / "data.npz"))
    assert data.train.shape[1] == 6 and data.test_labels is not None
    header = ",".join([f"p{i}" for i in range(6)] + ["label"])
    np.savetxt(
        tmp_path / "data.csv", np.column_stack([x, y]), delimiter=",", header=header, comments=""
    )
    from_csv = load_dataset(str(tmp_path / "data.csv"))
    assert from_csv.input_dim == 6
    assert torch.equal(from_csv.test_labels.sort().values, data.test_labels.sort().values)
    np.savetxt(tmp_path / "plain.csv", x, delimiter=",")
    assert load_dataset(str(tmp_path / "plain.csv")).test_labels is None


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (lambda p: np.save(p / "d.npy", np.full((20, 3), np.nan)), "NaN or infinite"),
        (
            lambda p: np.save(
                p / "d.npy", np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True
            ),
            "cannot read",
        ),
        (lambda p: (p / "d.npy").write_bytes(b"\x93NUMPY broken"), "cannot read"),
        (lambda p: np.save(p / "d.npy", np.zeros(10)), r"shape \[N, D\]"),
        (lambda p: (p / "d.pkl").write_bytes(b"x"), "unknown dataset"),
        (lambda p: np.savez(p / "d.npz", a=np.zeros((5, 2)), b=np.zeros(5)), "name the data 'x'"),
        (lambda p: (p / "d.csv").write_text("0.1,0.2\n0.3,abc\n"), "every cell must be a number"),
        # issue 13: the tracebacks that remained
        (lambda p: np.save(p / "d.npy", np.zeros((100, 0))), r"D >= 1; got \[100, 0\]"),
        (lambda p: np.save(p / "d.npy", np.full((30, 4), 0.5 + 0.5j)), "complex numbers"),
        (lambda p: (p / "d.npy").mkdir(), "is a directory"),
        (lambda p: (p / "d.csv").write_text(""), "holds no data rows"),
        (lambda p: (p / "d.csv").write_text("a,b,label\n"), "holds no data rows"),
        # issue 7: a split of one test point used to crash a figure after training
        (lambda p: np.save(p / "d.npy", np.full((10, 4, 4), 0.5)), r"N >= 20"),
    ],
)
def test_bad_user_files(tmp_path, writer, message):
    writer(tmp_path)
    path = next(p for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=message):
        load_dataset(str(path))


@pytest.mark.parametrize("binarization", ["none", "dynamic", "static", "threshold"])
def test_real_values_are_taken_unbinarized_and_refused_as_probabilities(tmp_path, binarization):
    # a file of real values (standardized features) was refused whatever the likelihood,
    # "pixel data must lie in [0, 1]", though a Gaussian likelihood takes them
    values = np.random.default_rng(0).normal(size=(40, 3)) * 100
    np.save(tmp_path / "real.npy", values)
    if binarization == "none":
        data = load_dataset(str(tmp_path / "real.npy"))
        together = torch.cat([data.train, data.validation, data.test]).double()
        assert torch.allclose(together.sort(0).values, torch.as_tensor(np.sort(values, 0)))
        return
    says = rf"values in \[-.*\]; binarization '{binarization}' reads each value as the probability"
    with pytest.raises(InputError, match=says):
        load_dataset(str(tmp_path / "real.npy"), binarization=binarization)


def test_unknown_names_list_the_accepted_values():
    with pytest.raises(InputError, match="unknown dataset 'cifar'; accepted values: mnist-5k"):
        load_dataset("cifar")
    with pytest.raises(InputError, match="unknown binarization 'sometimes'; accepted values: none"):
        load_dataset("mnist-5k", binarization="sometimes")


def write_idx(path, array):
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    content = struct.pack(">HBB", 0, 0x08, array.ndim) + dims + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(content)


@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw"])
def test_idx_files_from_data_dir(tmp_path, layout):
    rng = np.random.default_rng(0)
    directory = tmp_path if layout == "flat-gz" else tmp_path / "MNIST" / "raw"
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if layout == "flat-gz" else ""
    train = rng.integers(0, 256, (5100, 28, 28))
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", train)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", rng.integers(0, 10, 5100))
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (20, 28, 28)))
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", rng.integers(0, 10, 20))
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.train.shape == (100, 784) and data.validation.shape == (5000, 784)
    assert data.test.shape == (20, 784)
    values = torch.cat([data.train, data.validation]).mul(255).round().sort(0).values
    expected = torch.as_tensor(train.reshape(5100, -1), dtype=torch.float32).sort(0).values
    assert torch.equal(values, expected)


def test_missing_idx_files_in_data_dir(tmp_path):
    with pytest.raises(InputError, match="no mnist IDX files in --data-dir"):
        load_dataset("mnist", data_dir=tmp_path)


def test_offline_without_local_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setitem(data_module.SYSTEM_DATA_DIRS, "fashion-mnist", [str(tmp_path / "none")])
    monkeypatch.setenv("VI_VAE_DATA", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    with pytest.raises(InputError) as error:
        load_dataset("fashion-mnist")
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist", binarization="static")
    assert data.train.shape == (55000, 784)
    assert data.validation.shape == (5000, 784) and data.test.shape == (10000, 784)
    assert data.source == str(FASHION_DIR)
    assert data.test_labels.bincount().tolist() == [1000] * 10
