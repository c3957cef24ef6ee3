"""Reshaping layers: spatial ones for images (ZeroPadding2D, Cropping2D, UpSampling2D),
and RepeatVector and Permute, which rearrange each sample's axes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
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


class RepeatVector(Layer):
    """Repeats each sample's feature vector `n` times: (batch, features) becomes
    (batch, n, features). Its gradient sums the `n` copies.

    Args:
        n: How many times to repeat the input (a positive integer).
        **kwargs: Standard layer arguments (`name`, `trainable`, ...).

    Input shape: 2-D, `(batch, features)`.

    Output shape: 3-D, `(batch, n, features)`.

    Example:

    >>> model = ferrax.Sequential([ferrax.Input((32,)), ferrax.layers.RepeatVector(3)])
    >>> model.output_shape
    (None, 3, 32)
    """

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"RepeatVector '{self.name}'"
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{owner}: 'n' must be a positive integer, got {describe(n)}")
        if n < 1:
            raise ValueError(f"{owner}: 'n' must be a positive integer, got {describe(n)}")
        self.n: int = int(n)

    def _public_config(self) -> Config:
        return {"n": self.n}


class Permute(Layer):
    """Reorders the axes of each sample: output axis k is input axis `dims[k]`.

    Useful to connect RNNs and convnets. The batch axis stays first and is not
    counted: axes are numbered from 1.

    Args:
        dims: A tuple of the per-sample axes, a permutation of `(1, 2, ..., rank)`;
            `(2, 1)` swaps the two non-batch axes of a 3-D input.
        **kwargs: Standard layer arguments (`name`, `trainable`, ...).

    Input shape: any rank; `len(dims)` must equal the number of non-batch axes.

    Output shape: the input shape with its non-batch axes reordered by `dims`.

    Example:

    >>> model = ferrax.Sequential([ferrax.Input((10, 64)), ferrax.layers.Permute((2, 1))])
    >>> model.output_shape
    (None, 64, 10)
    """

    def __init__(self, dims: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"Permute '{self.name}'"
        if not isinstance(dims, (tuple, list)) or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
            raise TypeError(f"{owner}: 'dims' must be a tuple of integers, "
                            f"got {describe(dims)}")
        if sorted(int(d) for d in dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"{owner}: 'dims' must be a permutation of the axes 1 to "
                             f"{len(dims)} (the batch axis is not counted), "
                             f"got {describe(dims)}")
        self.dims: tuple[int, ...] = tuple(int(d) for d in dims)

    def _public_config(self) -> Config:
        return {"dims": list(self.dims)}


def _two_ints(owner: str, arg: str, value: Any) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and int(v) >= 0 for v in pair):
        raise ValueError(f"{owner}: '{arg}' must be a non-negative int or a pair of them, "
                         f"got {describe(value)}")
    return int(pair[0]), int(pair[1])


class UpSampling1D(Layer):
    """Repeats each time step `size` times (inputs (batch, steps, features)).

    Args:
        size: How many times (2).
        **kwargs: Standard layer arguments.
    """

    def __init__(self, size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = _two_ints(f"UpSampling1D '{self.name}'", "size", size)[0]

    def call(self, inputs: Any) -> Any:
        from ferrax import ops

        return ops.repeat(inputs, self.size, axis=1)

    def get_config(self) -> Config:
        return {**super().get_config(), "size": self.size}


class ZeroPadding1D(Layer):
    """Zeros before and after the time axis (inputs (batch, steps, features)).

    Args:
        padding: Steps on both sides, or `(before, after)`.
        **kwargs: Standard layer arguments.
    """

    def __init__(self, padding: int | Sequence[int] = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = _two_ints(f"ZeroPadding1D '{self.name}'", "padding", padding)

    def call(self, inputs: Any) -> Any:
        from ferrax import ops

        return ops.pad(inputs, ((0, 0), self.padding, (0, 0)))

    def get_config(self) -> Config:
        return {**super().get_config(), "padding": self.padding}


class Cropping1D(Layer):
    """Drops steps at the start and the end of the time axis.

    Args:
        cropping: Steps cut on both sides, or `(start, end)`.
        **kwargs: Standard layer arguments.
    """

    def __init__(self, cropping: int | Sequence[int] = (1, 1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cropping = _two_ints(f"Cropping1D '{self.name}'", "cropping", cropping)

    def call(self, inputs: Any) -> Any:
        steps = inputs.shape[1]
        start, end = self.cropping
        if steps is None or start + end >= steps:
            raise ValueError(f"Cropping1D '{self.name}': cannot crop {self.cropping} from "
                             f"inputs of shape {inputs.shape}")
        return inputs[:, start:steps - end, :]

    def get_config(self) -> Config:
        return {**super().get_config(), "cropping": self.cropping}

