"""Layers with Keras's names, arguments and defaults."""

from ferrax.layers.activation_layers import ELU, LeakyReLU, PReLU
from ferrax.layers.base import Layer, Variable
from ferrax.layers.convolutional import (
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    DepthwiseConv2D,
    SeparableConv2D,
)
from ferrax.layers.core import (
    Activation,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Lambda,
    Masking,
    ReLU,
    Reshape,
    Softmax,
)
from ferrax.layers.embedding import Embedding
from ferrax.layers.merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from ferrax.layers.normalization import BatchNormalization, LayerNormalization
from ferrax.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from ferrax.layers.preprocessing import Rescaling
from ferrax.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from ferrax.layers.regularization import GaussianNoise, SpatialDropout1D, SpatialDropout2D
from ferrax.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Permute,
    RepeatVector,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
)

# Keras's shorter names for the pooling layers
AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D = (AveragePooling1D, AveragePooling2D, MaxPooling1D,
                                              MaxPooling2D)
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D

__all__ = [
    "Activation", "Add", "Average", "AveragePooling1D", "AveragePooling2D", "AvgPool1D",
    "AvgPool2D", "BatchNormalization", "Bidirectional", "Concatenate", "Conv1D",
    "Conv1DTranspose", "Conv2D", "Conv2DTranspose", "Cropping1D", "Cropping2D", "Dense",
    "DepthwiseConv2D", "Dot", "Dropout", "ELU", "Embedding", "Flatten", "GRU", "GaussianNoise",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Input",
    "InputLayer", "LSTM", "Lambda", "Layer", "LayerNormalization", "LeakyReLU", "Masking",
    "MaxPool1D", "MaxPool2D", "MaxPooling1D", "MaxPooling2D", "Maximum", "Minimum", "Multiply",
    "PReLU", "Permute", "ReLU", "RepeatVector", "Rescaling", "Reshape", "SeparableConv2D",
    "SimpleRNN", "Softmax", "SpatialDropout1D", "SpatialDropout2D", "Subtract",
    "TimeDistributed", "UpSampling1D", "UpSampling2D", "Variable", "ZeroPadding1D",
    "ZeroPadding2D", "add", "average", "concatenate", "dot", "maximum", "minimum", "multiply",
    "subtract",
]
