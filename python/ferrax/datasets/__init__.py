"""Data sets in Keras's shapes: ``mnist``, ``fashion_mnist``, and the ``idx`` file format.

Works offline: files already on the machine (ferrax's or Keras's cache, Debian's
dataset-fashion-mnist package) are found before anything is downloaded, and
``mnist.load_sample()`` returns real MNIST digits that ship with ferrax.
"""

from . import fashion_mnist, idx, mnist
from ._fallback import load_or_sample
from ._store import DatasetFileError, DatasetNotFoundError

__all__ = ["DatasetFileError", "DatasetNotFoundError", "fashion_mnist", "idx",
           "load_or_sample", "mnist"]
