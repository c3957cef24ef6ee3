"""Layers with Keras's names, arguments and defaults."""

from ferrax.layers.base import Layer, Variable
from ferrax.layers.convolutional import (
    Conv1D,
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
    Masking,
    Reshape,
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
from ferrax.layers.regularization import SpatialDropout1D, SpatialDropout2D
from ferrax.layers.reshaping import (
    Cropping2D,
    Permute,
    RepeatVector,
    UpSampling2D,
    ZeroPadding2D,
)

__all__ = ["GRU", "LSTM", "Activation", "Add", "Average", "Concatenate", "Dot", "Maximum",
           "Minimum", "Multiply", "Subtract", "add", "average", "concatenate", "dot", "maximum",
           "minimum", "multiply", "subtract", "AveragePooling1D", "AveragePooling2D",
           "BatchNormalization", "Bidirectional", "Conv1D", "Conv2D", "Conv2DTranspose",
           "Cropping2D", "Dense", "DepthwiseConv2D", "Dropout", "Embedding", "Flatten",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
           "GlobalMaxPooling2D", "Input", "InputLayer", "Layer", "LayerNormalization",
           "Masking", "MaxPooling1D", "MaxPooling2D", "Permute", "RepeatVector", "Rescaling",
           "Reshape", "SeparableConv2D",
           "SimpleRNN", "SpatialDropout1D", "SpatialDropout2D", "TimeDistributed", "UpSampling2D",
           "Variable", "ZeroPadding2D"]
