"""Convolution and pooling layers for images, channels last (Keras's default)."""

from __future__ import annotations

from typing import Any

from ferrax._serial import describe
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.core import (
    ActivationLike,
    InitializerLike,
    RegularizerLike,
    _KernelLayer,
    _positive_int,
)

IntPair = int | tuple[int, int] | list[int]


def _pair(owner: str, arg: str, value: Any) -> tuple[int, int]:
    """An int or a pair of positive ints, as Keras accepts for sizes and strides."""
    items = [value, value] if not isinstance(value, (tuple, list)) else list(value)
    if len(items) != 2:
        raise ValueError(f"{owner}: '{arg}' must be an integer or a pair of integers, "
                         f"got {describe(value)}")
    first, second = (_positive_int(owner, arg, v) for v in items)
    return first, second


def _padding(owner: str, padding: Any) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{owner}: 'padding' must be \"valid\" or \"same\", "
                         f"got {describe(padding)}")
    return padding.lower()


def _channels_last(owner: str, data_format: str | None) -> None:
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(f"{owner}: data_format={data_format!r} is not supported yet; "
                                  f"use channels_last (batch, height, width, channels)")


class Conv2D(_KernelLayer):
    """2-D convolution over (batch, height, width, channels) inputs."""

    def __init__(self, filters: int, kernel_size: IntPair, strides: IntPair = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: IntPair = (1, 1), groups: int = 1,
                 activation: ActivationLike = None, use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"Conv2D '{self.name}'"
        self.filters: int = _positive_int(owner, "filters", filters)
        self.kernel_size = _pair(owner, "kernel_size", kernel_size)
        self.strides = _pair(owner, "strides", strides)
        self.dilation_rate = _pair(owner, "dilation_rate", dilation_rate)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{owner}: strides > 1 cannot be combined with dilation_rate > 1, "
                             f"got strides={self.strides}, dilation_rate={self.dilation_rate}")
        self.padding = _padding(owner, padding)
        _channels_last(owner, data_format)
        if groups != 1:
            raise NotImplementedError(f"{owner}: groups={groups} is not supported yet")
        self._init_kernel(activation, use_bias, kernel_initializer, bias_initializer,
                          kernel_regularizer, bias_regularizer,
                          {"activity_regularizer": activity_regularizer,
                           "kernel_constraint": kernel_constraint,
                           "bias_constraint": bias_constraint})

    def _geometry(self) -> Config:
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "dilation_rate": list(self.dilation_rate)}

    def _public_config(self) -> Config:
        return {**self._geometry(), "data_format": "channels_last", "groups": 1,
                **self._kernel_public_config()}

    def _engine_config(self) -> Config:
        return {**self._geometry(), **self._kernel_engine_config()}


class _Pooling2D(Layer):
    def __init__(self, pool_size: IntPair = (2, 2), strides: IntPair | None = None,
                 padding: str = "valid", data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.pool_size = _pair(owner, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair(owner, "strides", strides)
        self.padding = _padding(owner, padding)
        _channels_last(owner, data_format)

    def _public_config(self) -> Config:
        return {"pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": "channels_last"}

    def _engine_config(self) -> Config:
        return {"pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The maximum of each pool_size window (strides default to pool_size)."""


class AveragePooling2D(_Pooling2D):
    """The mean of each pool_size window; with "same", padding is not counted."""
