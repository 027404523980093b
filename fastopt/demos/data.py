"""Data sets for the demos: scikit-learn's bundled ones, and MNIST from IDX or ``.npz`` files.

Every loader returns ``(x_train, y_train, x_test, y_test)``: float32 features scaled to about
unit range, int64 class labels. Malformed or missing files raise :class:`DataError` (a
``ValueError``) with a message saying which file and what is wrong.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .common import require

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class DataError(ValueError):
    """A data file is missing, truncated or not in the expected format."""


def split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Split:
    """Shuffle with ``seed`` and hold out ``test_fraction`` of the examples."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load_digits(seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits (1797 images, shipped inside the package), 20% held out."""
    datasets = require("sklearn.datasets", "the digits data set")
    bunch = datasets.load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # pixels are 0..16
    return split(x, bunch.target.astype(np.int64), 0.2, seed)


def load_breast_cancer(seed: int = 0) -> Split:
    """scikit-learn's breast-cancer data (569 examples, 30 features), standardised, 20% held out."""
    datasets = require("sklearn.datasets", "the breast-cancer data set")
    bunch = datasets.load_breast_cancer()
    x_train, y_train, x_test, y_test = split(bunch.data, bunch.target.astype(np.int64), 0.2, seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return ((x_train - mean) / std).astype(np.float32), y_train, \
        ((x_test - mean) / std).astype(np.float32), y_test


# --------------------------------------------------------------------------------------------
# IDX files (yann.lecun.com's MNIST format)
# --------------------------------------------------------------------------------------------

# Third byte of the magic number -> element type; data are big-endian.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic number."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None
    return raw


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """An array from the bytes of an IDX file: magic ``00 00 TT NN``, NN big-endian uint32
    dimensions, then the elements of type TT in C order."""
    if len(raw) < 4:
        raise DataError(f"{name}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{name}: not an IDX file (magic number {raw[:4].hex()}; expected "
                        "00 00, a type byte 08/09/0b/0c/0d/0e, then the number of dimensions)")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated header ({len(raw)} bytes; {ndim} dimensions "
                        f"need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{name}: {len(raw)} bytes, expected {expected} for shape {shape} of "
                        f"{dtype.name} ({'truncated' if len(raw) < expected else 'trailing data'})")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(read_bytes(path), str(path))


MNIST_FILES = {  # role -> stem; files may be gzipped and spell the separator "-" or "."
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def find_idx(folder: Path, stem: str) -> Path:
    prefix, rest = stem.split("-", 1)
    names = [f"{prefix}{sep}{rest}{gz}" for sep in "-." for gz in ("", ".gz")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem} file (looked for {', '.join(names)})")


def check_mnist(arrays: dict[str, np.ndarray], source: str) -> Split:
    """Validate images (n, 28, 28) or (n, 784) and labels 0..9; scale pixels to [0, 1]."""
    out = []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim not in (2, 3) or x.shape[1:] not in ((28, 28), (784,)):
            raise DataError(f"{source}: {part} images have shape {x.shape}, expected "
                            "(n, 28, 28) or (n, 784)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{source}: {part} labels have shape {y.shape}, expected "
                            f"({len(x)},), one per image")
        if not np.issubdtype(y.dtype, np.integer) or y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{source}: {part} labels must be integers 0..9")
        scale = 255.0 if np.issubdtype(x.dtype, np.integer) or x.max(initial=0) > 1 else 1.0
        out += [(x.reshape(len(x), -1) / scale).astype(np.float32), y.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(4)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def load_mnist(path: str | Path) -> Split:
    """MNIST from a folder holding the four IDX files (gzipped or not) or from an ``.npz``
    with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (Keras's ``mnist.npz``)."""
    path = Path(path)
    if path.is_dir():
        arrays = {role: read_idx(find_idx(path, stem)) for role, stem in MNIST_FILES.items()}
    elif path.is_file():
        if read_head(path) != b"PK\x03\x04":
            raise DataError(f"{path}: not an .npz file (an .npz is a zip archive; give a "
                            "folder for IDX files)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in MNIST_FILES if k not in npz.files]
                if missing:
                    raise DataError(f"{path}: missing arrays {missing} (has {npz.files}; "
                                    f"expected {list(MNIST_FILES)})")
                arrays = {k: npz[k] for k in MNIST_FILES}
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: not a readable .npz file ({error})") from None
    else:
        raise DataError(f"{path}: no such file or folder (give the folder with the four MNIST "
                        "IDX files, or an .npz)")
    return check_mnist(arrays, str(path))
