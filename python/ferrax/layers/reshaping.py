"""Spatial reshaping of images: ZeroPadding2D, Cropping2D, UpSampling2D."""

from __future__ import annotations

import numbers
from typing import Any

from ferrax._serial import describe
from ferrax._typing import Config
from ferrax.layers.base import Layer
from ferrax.layers.convolutional import IntPair, _data_format, _pair

Margins = tuple[tuple[int, int], tuple[int, int]]


def _margins(owner: str, arg: str, value: Any) -> Margins:
    """Keras's forms: n, (rows, cols) or ((top, bottom), (left, right)), all >= 0."""
    def count(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{owner}: '{arg}' must hold non-negative integers, "
                            f"got {describe(value)}")
        if v < 0:
            raise ValueError(f"{owner}: '{arg}' must hold non-negative integers, "
                             f"got {describe(value)}")
        return int(v)

    if not isinstance(value, (tuple, list)):
        n = count(value)
        return (n, n), (n, n)
    if len(value) != 2:
        raise ValueError(f"{owner}: '{arg}' must be an int, a pair (rows, cols) or "
                         f"((top, bottom), (left, right)), got {describe(value)}")
    sides = []
    for v in value:
        if isinstance(v, (tuple, list)):
            if len(v) != 2:
                raise ValueError(f"{owner}: '{arg}' must be an int, a pair (rows, cols) or "
                                 f"((top, bottom), (left, right)), got {describe(value)}")
            sides.append((count(v[0]), count(v[1])))
        else:
            sides.append((count(v), count(v)))
    return sides[0], sides[1]


class _Frame(Layer):
    _arg = "padding"

    def __init__(self, margins: Any, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self._margins = _margins(owner, self._arg, margins)
        self.data_format = _data_format(owner, data_format)

    def _public_config(self) -> Config:
        return {self._arg: [list(m) for m in self._margins], "data_format": self.data_format}


class ZeroPadding2D(_Frame):
    """Adds rows and columns of zeros around each image."""

    def __init__(self, padding: Any = (1, 1), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(padding, data_format, **kwargs)

    @property
    def padding(self) -> Margins:
        return self._margins


class Cropping2D(_Frame):
    """Removes rows and columns from the edges of each image."""

    _arg = "cropping"

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(cropping, data_format, **kwargs)

    @property
    def cropping(self) -> Margins:
        return self._margins


class UpSampling2D(Layer):
    """Upsamples by size[0] down and size[1] across: "nearest" repeats pixels, "bilinear"
    interpolates with half-pixel centres (as TensorFlow and JAX resize)."""

    def __init__(self, size: IntPair = (2, 2), data_format: str | None = None,
                 interpolation: str = "nearest", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"UpSampling2D '{self.name}'"
        self.size = _pair(owner, "size", size)
        self.data_format = _data_format(owner, data_format)
        if interpolation in ("bicubic", "lanczos3", "lanczos5"):
            raise NotImplementedError(f"{owner}: interpolation={interpolation!r} is not "
                                      f"supported yet; use \"nearest\" or \"bilinear\"")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"{owner}: 'interpolation' must be \"nearest\" or \"bilinear\", "
                             f"got {describe(interpolation)}")
        self.interpolation = str(interpolation)

    def _public_config(self) -> Config:
        return {"size": list(self.size), "data_format": self.data_format,
                "interpolation": self.interpolation}
