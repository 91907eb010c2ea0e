"""Load MNIST from its original IDX files, locally or from the public mirrors.

The loader reads the four standard files (gzip-compressed or raw) from a directory, checks
every header against the IDX format, and returns uint8 arrays. With no directory it downloads
the files once into a user cache and verifies their checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
ROWS = COLS = 28

#: Standard file names, their expected item counts, and the sha256 of their *uncompressed*
#: content. Hashing the uncompressed bytes makes the check independent of how a mirror gzipped them.
FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (
        60_000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        60_000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        10_000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        10_000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: The last images of the training set are held out for validation (early stopping,
#: checkpointing). The test set is only ever used for the final evaluation.
DEFAULT_VALIDATION_SIZE = 5_000


class MnistError(RuntimeError):
    """The MNIST files are missing, damaged or cannot be fetched."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) uint8

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Mnist:
    train: Split
    validation: Split
    test: Split


def default_cache_dir() -> Path:
    """Per-user cache directory for downloaded files (XDG on Linux)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-digits" / "mnist"


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        path = data_dir / name
        if path.is_file():
            return path
    raise MnistError(
        f"{data_dir / (stem + '.gz')}: missing. Put the four MNIST IDX files "
        f"({', '.join(FILES)}, .gz or raw) in {data_dir}."
    )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise MnistError(f"{path}: cannot be read ({exc}); the file is damaged or truncated") from exc


def parse_idx(data: bytes, *, source: str, images: bool, count: int | None = None) -> np.ndarray:
    """Parse one IDX file's bytes, checking the magic number, the header and the length."""
    kind = "image" if images else "label"
    header_size = 16 if images else 8
    if len(data) < header_size:
        raise MnistError(
            f"{source}: truncated: {len(data)} bytes is shorter than the {header_size}-byte IDX {kind} header"
        )
    magic, n = struct.unpack(">II", data[:8])
    expected_magic = IMAGE_MAGIC if images else LABEL_MAGIC
    if magic != expected_magic:
        raise MnistError(
            f"{source}: wrong magic number {magic:#010x}, expected {expected_magic:#010x} for an IDX {kind} file"
        )
    if count is not None and n != count:
        raise MnistError(f"{source}: header says {n} items, expected {count}")
    shape: tuple[int, ...] = (n,)
    if images:
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (ROWS, COLS):
            raise MnistError(f"{source}: images are {rows}x{cols}, expected {ROWS}x{COLS}")
        shape = (n, rows, cols)
    expected_len = header_size + int(np.prod(shape))
    if len(data) != expected_len:
        problem = "truncated" if len(data) < expected_len else "has trailing data"
        raise MnistError(f"{source}: {problem}: {len(data)} bytes, expected {expected_len} for {n} {kind}s")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_split(data_dir: Path, prefix: str) -> Split:
    arrays = []
    for suffix, images in (("images-idx3-ubyte", True), ("labels-idx1-ubyte", False)):
        stem = f"{prefix}-{suffix}"
        path = _find(data_dir, stem)
        arrays.append(parse_idx(_read_bytes(path), source=str(path), images=images))
    images_arr, labels = arrays
    if len(images_arr) != len(labels):
        raise MnistError(f"{data_dir}: {prefix} has {len(images_arr)} images but {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise MnistError(f"{data_dir}: {prefix} labels contain values above 9")
    return Split(images_arr, labels)


def download(cache_dir: Path | None = None, mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """Fetch the four files into ``cache_dir`` (once), verifying their checksums."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stem, (_, sha256) in FILES.items():
        target = cache_dir / (stem + ".gz")
        if target.is_file() and _sha256_uncompressed(target) == sha256:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror + stem + ".gz"
            log.info("downloading %s", url)
            try:
                with (
                    urllib.request.urlopen(url, timeout=30) as response,
                    tempfile.NamedTemporaryFile(dir=cache_dir, delete=False) as tmp,
                ):
                    shutil.copyfileobj(response, tmp)
            except (urllib.error.URLError, OSError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            tmp_path = Path(tmp.name)
            if _sha256_uncompressed(tmp_path) != sha256:
                tmp_path.unlink()
                errors.append(f"{url}: checksum mismatch")
                continue
            tmp_path.replace(target)
            break
        else:
            raise MnistError(
                f"could not download {stem}.gz ({'; '.join(errors)}). If this machine is offline, "
                "copy the four MNIST IDX files into a directory and pass --data-dir DIR or set "
                "MNIST_DATA_DIR=DIR."
            )
    return cache_dir


def _sha256_uncompressed(path: Path) -> str:
    try:
        return hashlib.sha256(_read_bytes(path)).hexdigest()
    except MnistError:
        return ""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The explicit directory, else ``MNIST_DATA_DIR``, else the download cache."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("MNIST_DATA_DIR")
    if env:
        return Path(env)
    return download()


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    validation_size: int = DEFAULT_VALIDATION_SIZE,
) -> Mnist:
    """Load MNIST, holding out the last ``validation_size`` training images for validation."""
    directory = resolve_data_dir(data_dir)
    if not directory.is_dir():
        raise MnistError(f"{directory}: not a directory. Point --data-dir or MNIST_DATA_DIR at the MNIST files.")
    full_train = _load_split(directory, "train")
    test = _load_split(directory, "t10k")
    if not 0 <= validation_size < len(full_train):
        raise MnistError(f"validation_size must be in [0, {len(full_train)}), got {validation_size}")
    cut = len(full_train) - validation_size
    return Mnist(
        train=Split(full_train.images[:cut], full_train.labels[:cut]),
        validation=Split(full_train.images[cut:], full_train.labels[cut:]),
        test=test,
    )
