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
    Masking,
    Reshape,
)
from ferrax.layers.embedding import Embedding
from ferrax.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed

__all__ = ["GRU", "LSTM", "Activation", "AveragePooling2D", "Bidirectional", "Conv2D", "Dense",
           "Dropout", "Embedding", "Flatten", "Input", "InputLayer", "Layer", "Masking",
           "MaxPooling2D", "Reshape", "SimpleRNN", "TimeDistributed", "Variable"]
