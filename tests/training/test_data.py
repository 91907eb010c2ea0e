"""The IDX loader: gz and raw files, the validation split, and every error case."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training import data
from training.data import MnistError, load_mnist, parse_idx


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", data.IMAGE_MAGIC, len(images), 28, 28) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", data.LABEL_MAGIC, len(labels)) + labels.astype(np.uint8).tobytes()


def write_mnist(directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        payload = idx_images(array) if "images" in stem else idx_labels(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / stem).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_loads_gz_and_raw_files_with_a_validation_split(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path, gz=gz)
    mnist = load_mnist(tmp_path, validation_size=5)
    np.testing.assert_array_equal(mnist.train.images, arrays["train-images-idx3-ubyte"][:25])
    np.testing.assert_array_equal(mnist.validation.labels, arrays["train-labels-idx1-ubyte"][25:])
    np.testing.assert_array_equal(mnist.test.images, arrays["t10k-images-idx3-ubyte"])
    assert (len(mnist.train), len(mnist.validation), len(mnist.test)) == (25, 5, 10)


def test_directory_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert len(load_mnist(validation_size=0).train) == 30


def test_missing_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistError, match=r"t10k-labels-idx1-ubyte\.gz: missing"):
        load_mnist(tmp_path)


def test_wrong_magic_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = idx_labels(np.zeros(30, np.uint8))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(MnistError, match=r"train-images-idx3-ubyte\.gz: wrong magic number 0x00000801"):
        load_mnist(tmp_path)


def test_truncated_data_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MnistError, match=r"train-images-idx3-ubyte: truncated"):
        load_mnist(tmp_path)


def test_truncated_gzip_stream_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(MnistError, match=r"t10k-images-idx3-ubyte\.gz: cannot be read"):
        load_mnist(tmp_path)


def test_short_header_and_wrong_shape() -> None:
    with pytest.raises(MnistError, match="truncated: 4 bytes"):
        parse_idx(b"\0\0\x08\x03", source="x", images=True)
    header = struct.pack(">IIII", data.IMAGE_MAGIC, 1, 32, 32) + bytes(1024)
    with pytest.raises(MnistError, match="images are 32x32, expected 28x28"):
        parse_idx(header, source="x", images=True)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(np.zeros(7, np.uint8))))
    with pytest.raises(MnistError, match="30 images but 7 labels"):
        load_mnist(tmp_path)


def test_offline_download_says_how_to_use_local_files(tmp_path: Path) -> None:
    # An unroutable mirror: nothing leaves this machine.
    with pytest.raises(MnistError, match="MNIST_DATA_DIR"):
        data.download(tmp_path, mirrors=("http://127.0.0.1:9/",))


def test_download_reuses_verified_cache_without_network(tmp_path: Path) -> None:
    # Files already in the cache with the right checksums are not fetched again: the
    # unroutable mirror would fail otherwise. Uses the real files when they are available.
    source = Path(__import__("os").environ.get("MNIST_DATA_DIR", "../shared/datasets/mnist"))
    if not (source / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("full MNIST files not available")
    for stem in data.FILES:
        (tmp_path / f"{stem}.gz").write_bytes((source / f"{stem}.gz").read_bytes())
    assert data.download(tmp_path, mirrors=("http://127.0.0.1:9/",)) == tmp_path
