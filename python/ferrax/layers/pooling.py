"""Pooling layers: windowed max / average in 1-D and 2-D, and global max / average."""

from __future__ import annotations

from typing import Any

from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.convolutional import IntPair, _data_format, _padding, _tuple


class _Pooling(Layer):
    _rank = 2

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid",
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.pool_size = _tuple(owner, "pool_size", pool_size, self._rank)
        self.strides = (self.pool_size if strides is None
                        else _tuple(owner, "strides", strides, self._rank))
        self.padding = _padding(owner, padding)
        self.data_format = _data_format(owner, data_format)

    def _public_config(self) -> Config:
        return {"pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling2D(_Pooling):
    """The maximum of each pool_size window (strides default to pool_size)."""

    def __init__(self, pool_size: IntPair = (2, 2), strides: IntPair | None = None,
                 padding: str = "valid", data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pooling):
    """The mean of each pool_size window; with "same", padding is not counted."""

    def __init__(self, pool_size: IntPair = (2, 2), strides: IntPair | None = None,
                 padding: str = "valid", data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(_Pooling):
    """The maximum of each window of pool_size steps (strides default to pool_size)."""

    _rank = 1


class AveragePooling1D(_Pooling):
    """The mean of each window of pool_size steps; with "same", padding is not counted."""

    _rank = 1


class _GlobalPooling(Layer):
    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = _data_format(f"{type(self).__name__} '{self.name}'", data_format)
        self.keepdims = bool(keepdims)

    def _public_config(self) -> Config:
        return {"data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling):
    """The mean of each channel over height and width."""


class GlobalMaxPooling2D(_GlobalPooling):
    """The maximum of each channel over height and width."""


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean of each channel over the steps."""


class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum of each channel over the steps."""
