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
    Reshape,
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
from ferrax.layers.regularization import SpatialDropout1D, SpatialDropout2D
from ferrax.layers.reshaping import Cropping2D, UpSampling2D, ZeroPadding2D

__all__ = ["Activation", "AveragePooling1D", "AveragePooling2D", "BatchNormalization", "Conv1D",
           "Conv2D", "Conv2DTranspose", "Cropping2D", "Dense", "DepthwiseConv2D", "Dropout",
           "Flatten", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
           "GlobalMaxPooling2D", "Input", "InputLayer", "Layer", "LayerNormalization",
           "MaxPooling1D", "MaxPooling2D", "Reshape", "SeparableConv2D", "SpatialDropout1D",
           "SpatialDropout2D", "UpSampling2D", "Variable", "ZeroPadding2D"]
