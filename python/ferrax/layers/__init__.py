"""Layers with Keras's names, arguments and defaults."""

from ferrax.layers.base import Layer, Variable
from ferrax.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Reshape,
)

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Layer",
           "Reshape", "Variable"]
