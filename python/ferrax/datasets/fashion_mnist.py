"""Fashion-MNIST (Xiao, Rasul and Vollgraf, Zalando Research), loaded as Keras loads it.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot.

``load_data()`` looks, in order, at: ``path`` if given; ferrax's cache
(``$FERRAX_HOME/datasets/fashion-mnist``, default ``~/.ferrax/datasets/fashion-mnist``);
Keras's cache (``~/.keras/datasets/fashion-mnist/``, or under ``$KERAS_HOME``); system data
directories (``/usr/share/datasets/fashion-mnist``, where Debian's
``dataset-fashion-mnist`` package installs it, and ``/usr/local/share/datasets/...``); and
last downloads from the mirrors below into ferrax's cache, checking SHA-256.
"""

from __future__ import annotations

from ferrax._typing import PathLike

from . import _loader

__all__ = ["load_data"]

NAME = "fashion-mnist"

# Tried in order; each entry is (base URL, files fetched from it). Tests point these at a
# local server.
MIRRORS = (
    # Keras's copy.
    ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/", _loader.GZ_NAMES),
    # Zalando's own (an S3 website endpoint: plain http only; the checksum protects it).
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", _loader.GZ_NAMES),
)

# Accepted SHA-256 digests per file. First: the files as Zalando and Keras serve them (Keras
# publishes these; torchvision publishes their MD5s 8d4fb7e6..., 25c81989..., bef4ecab...,
# bb300cfd...). Second: Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose
# files hold the same data but were recompressed without the embedded file name.
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
}
SIZES = {
    "train-images-idx3-ubyte.gz": 26_421_880,
    "train-labels-idx1-ubyte.gz": 29_515,
    "t10k-images-idx3-ubyte.gz": 4_422_102,
    "t10k-labels-idx1-ubyte.gz": 5_148,
}
# (train, test) images in the real set; checked for every source but an explicit path.
COUNTS = (60_000, 10_000)


def load_data(path: PathLike | None = None) -> _loader.LoadResult:
    """Load Fashion-MNIST: ``((x_train, y_train), (x_test, y_test))``, all uint8.

    Shapes are (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).

    ``path``: a directory holding the four IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each gzipped with ``.gz`` or not), or a Keras-style ``.npz`` (keys x_train, y_train,
    x_test, y_test), or a directory holding ``fashion-mnist.npz``. Image counts then come
    from the files' headers, so any subset in the same format loads; images must be 28x28
    and labels 0..9.

    Raises ``DatasetNotFoundError`` (a FileNotFoundError) when the data is nowhere and cannot
    be downloaded; its message lists the files, their SHA-256 and where to put them.
    Raises ``DatasetFileError`` (a ValueError) naming the file when one is corrupt,
    truncated, of the wrong format or fails its checksum (a cached file that fails is
    deleted).
    """
    return _loader.load(_spec(), path)


def _spec() -> _loader.Spec:
    # Built at call time so that tests (and users) can replace the tables above.
    return _loader.Spec(
        name=NAME,
        title="Fashion-MNIST",
        npz_names=("fashion-mnist.npz", "fashion_mnist.npz"),
        sha256=SHA256,
        sizes=SIZES,
        mirrors=MIRRORS,
        counts=COUNTS,
        keras=("fashion-mnist", "idx"),
        hint="On Debian or Ubuntu, `apt-get install dataset-fashion-mnist` installs the "
             "files in /usr/share/datasets/fashion-mnist, where ferrax finds them.",
    )
