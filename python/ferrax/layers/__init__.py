"""Layers with Keras's names, arguments and defaults."""

from ferrax.layers.base import Layer, Variable
from ferrax.layers.convolutional import AveragePooling2D, Conv2D, MaxPooling2D
from ferrax.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Reshape,
)

__all__ = ["Activation", "AveragePooling2D", "Conv2D", "Dense", "Dropout", "Flatten", "Input",
           "InputLayer", "Layer", "MaxPooling2D", "Reshape", "Variable"]
