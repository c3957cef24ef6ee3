"""ferrax: Keras-style deep learning for the CPU, with its engine in Rust.

Switch from Keras by changing the import: ``import ferrax as keras``.
"""

from types import ModuleType
from typing import TYPE_CHECKING

from ferrax import (
    _memory,
    activations,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    random,
    regularizers,
    saving,
    utils,
)
from ferrax._core import __version__
from ferrax.layers import Input, Layer
from ferrax.models import Model, Sequential
from ferrax.symbolic import KerasTensor
from ferrax.tape import GradientTape
from ferrax.tensor import Tensor
from ferrax.variables import Variable

_memory.configure()

if TYPE_CHECKING:
    from ferrax import datasets as datasets  # imported lazily at run time, see __getattr__

__all__ = [
    "GradientTape",
    "Input",
    "KerasTensor",
    "Layer",
    "Model",
    "Sequential",
    "Tensor",
    "Variable",
    "__version__",
    "activations",
    "callbacks",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "ops",
    "optimizers",
    "random",
    "regularizers",
    "saving",
    "utils",
]


def __getattr__(name: str) -> ModuleType:
    # datasets is imported lazily: it is pure Python and not needed to train.
    if name == "datasets":
        import importlib

        return importlib.import_module("ferrax.datasets")
    raise AttributeError(f"module 'ferrax' has no attribute {name!r}")
