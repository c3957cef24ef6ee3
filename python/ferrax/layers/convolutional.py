"""Convolution layers: Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose,
Conv1DTranspose.

channels_last (batch, ..., channels) is the default, as in Keras; channels_first inputs are
transposed to channels_last around the same kernels by the engine.
"""

from __future__ import annotations

from typing import Any

from ferrax import initializers, regularizers
from ferrax._serial import describe
from ferrax._typing import Config
from ferrax.layers.core import (
    ActivationLike,
    InitializerLike,
    RegularizerLike,
    _KernelLayer,
    _positive_int,
)

IntPair = int | tuple[int, int] | list[int]
IntOne = int | tuple[int] | list[int]


def _tuple(owner: str, arg: str, value: Any, n: int) -> tuple[int, ...]:
    """An int or a tuple of n positive ints, as Keras accepts for sizes and strides."""
    items = [value] * n if not isinstance(value, (tuple, list)) else list(value)
    if len(items) != n:
        what = "an integer" if n == 1 else f"an integer or a tuple of {n} integers"
        raise ValueError(f"{owner}: '{arg}' must be {what}, got {describe(value)}")
    return tuple(_positive_int(owner, arg, v) for v in items)


def _pair(owner: str, arg: str, value: Any) -> tuple[int, int]:
    first, second = _tuple(owner, arg, value, 2)
    return first, second


def _padding(owner: str, padding: Any, allowed: tuple[str, ...] = ("valid", "same")) -> str:
    if not isinstance(padding, str) or padding.lower() not in allowed:
        names = " or ".join(f'"{a}"' for a in allowed)
        raise ValueError(f"{owner}: 'padding' must be {names}, got {describe(padding)}")
    return padding.lower()


def _data_format(owner: str, data_format: Any) -> str:
    """None means Keras's default image data format, channels_last."""
    if data_format is None:
        return "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{owner}: 'data_format' must be \"channels_last\" or "
                         f"\"channels_first\", got {describe(data_format)}")
    return str(data_format)


def _check_dilated_strides(owner: str, strides: tuple[int, ...],
                           dilation: tuple[int, ...]) -> None:
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(f"{owner}: strides > 1 cannot be combined with dilation_rate > 1, "
                         f"got strides={strides}, dilation_rate={dilation}")


def _unsupported(owner: str, **args: Any) -> None:
    for arg, v in args.items():
        if v is not None:
            raise NotImplementedError(f"{owner}: '{arg}' is not supported yet")


class _Conv(_KernelLayer):
    """Conv1D and Conv2D: their shared arguments, checks and configuration."""

    _rank = 2
    _paddings: tuple[str, ...] = ("valid", "same")

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: Any = 1, groups: int = 1,
                 activation: ActivationLike = None, use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        n = self._rank
        self.filters: int = _positive_int(owner, "filters", filters)
        self.kernel_size = _tuple(owner, "kernel_size", kernel_size, n)
        self.strides = _tuple(owner, "strides", strides, n)
        self.dilation_rate = _tuple(owner, "dilation_rate", dilation_rate, n)
        _check_dilated_strides(owner, self.strides, self.dilation_rate)
        self.padding = _padding(owner, padding, self._paddings)
        self.data_format = _data_format(owner, data_format)
        self.groups: int = _positive_int(owner, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"{owner}: 'filters' ({self.filters}) must be divisible by "
                             f"'groups' ({self.groups})")
        self._init_kernel(activation, use_bias, kernel_initializer, bias_initializer,
                          kernel_regularizer, bias_regularizer,
                          {"activity_regularizer": activity_regularizer,
                           "kernel_constraint": kernel_constraint,
                           "bias_constraint": bias_constraint})

    def _geometry(self) -> Config:
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format, "dilation_rate": list(self.dilation_rate),
                "groups": self.groups}

    def _public_config(self) -> Config:
        return {**self._geometry(), **self._kernel_public_config()}

    def _engine_config(self) -> Config:
        return {**self._geometry(), **self._kernel_engine_config()}


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels) inputs; kernel
    (kh, kw, channels / groups, filters)."""


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels) inputs; kernel
    (k, channels / groups, filters). padding may also be "causal"."""

    _rank = 1
    _paddings = ("valid", "same", "causal")


class DepthwiseConv2D(_KernelLayer):
    """Each input channel convolved with its own depth_multiplier kernels; kernel
    (kh, kw, channels, depth_multiplier), output channels = channels * depth_multiplier."""

    def __init__(self, kernel_size: IntPair, strides: IntPair = (1, 1), padding: str = "valid",
                 depth_multiplier: int = 1, data_format: str | None = None,
                 dilation_rate: IntPair = (1, 1), activation: ActivationLike = None,
                 use_bias: bool = True,
                 depthwise_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 depthwise_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, depthwise_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"DepthwiseConv2D '{self.name}'"
        self.kernel_size = _pair(owner, "kernel_size", kernel_size)
        self.strides = _pair(owner, "strides", strides)
        self.dilation_rate = _pair(owner, "dilation_rate", dilation_rate)
        _check_dilated_strides(owner, self.strides, self.dilation_rate)
        self.padding = _padding(owner, padding)
        self.data_format = _data_format(owner, data_format)
        self.depth_multiplier = _positive_int(owner, "depth_multiplier", depth_multiplier)
        self._init_kernel(activation, use_bias, depthwise_initializer, bias_initializer,
                          depthwise_regularizer, bias_regularizer,
                          {"activity_regularizer": activity_regularizer,
                           "depthwise_constraint": depthwise_constraint,
                           "bias_constraint": bias_constraint})

    def _geometry(self) -> Config:
        return {"kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                "data_format": self.data_format, "dilation_rate": list(self.dilation_rate)}

    def _public_config(self) -> Config:
        kernel = self._kernel_public_config()
        return {**self._geometry(), "activation": kernel["activation"],
                "use_bias": kernel["use_bias"],
                "depthwise_initializer": kernel["kernel_initializer"],
                "bias_initializer": kernel["bias_initializer"],
                "depthwise_regularizer": kernel["kernel_regularizer"],
                "bias_regularizer": kernel["bias_regularizer"]}

    def _engine_config(self) -> Config:
        return {**self._geometry(), **self._kernel_engine_config()}



class SeparableConv2D(DepthwiseConv2D):
    """A DepthwiseConv2D (no bias) followed by a 1x1 Conv2D to `filters` channels with the
    bias and activation. Weights: depthwise_kernel (kh, kw, channels, depth_multiplier),
    pointwise_kernel (1, 1, channels * depth_multiplier, filters), bias (filters)."""

    def __init__(self, filters: int, kernel_size: IntPair, strides: IntPair = (1, 1),
                 padding: str = "valid", data_format: str | None = None,
                 dilation_rate: IntPair = (1, 1), depth_multiplier: int = 1,
                 activation: ActivationLike = None, use_bias: bool = True,
                 depthwise_initializer: InitializerLike = "glorot_uniform",
                 pointwise_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 depthwise_regularizer: RegularizerLike = None,
                 pointwise_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, depthwise_constraint: Any = None,
                 pointwise_constraint: Any = None, bias_constraint: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint,
                         **kwargs)
        owner = f"SeparableConv2D '{self.name}'"
        self.filters: int = _positive_int(owner, "filters", filters)
        _unsupported(owner, pointwise_constraint=pointwise_constraint)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def _public_config(self) -> Config:
        return {"filters": self.filters, **super()._public_config(),
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
                "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer)}

    def _engine_config(self) -> Config:
        kernel = self._kernel_engine_config()
        pointwise_reg = self.pointwise_regularizer
        return {"filters": self.filters, **self._geometry(),
                "activation": kernel["activation"], "use_bias": kernel["use_bias"],
                "depthwise_initializer": kernel["kernel_initializer"],
                "depthwise_regularizer": kernel["kernel_regularizer"],
                "pointwise_initializer": self.pointwise_initializer._core_spec(),
                "pointwise_regularizer": (None if pointwise_reg is None
                                          else pointwise_reg._core_spec()),
                "bias_initializer": kernel["bias_initializer"],
                "bias_regularizer": kernel["bias_regularizer"]}


class Conv2DTranspose(_Conv):
    """The transpose (input gradient) of a Conv2D, for upsampling; kernel
    (kh, kw, filters, channels). Output size: input * stride with "same", and
    input * stride + max(kernel - stride, 0) with "valid" (the kernel dilated)."""

    def __init__(self, filters: int, kernel_size: IntPair, strides: IntPair = (1, 1),
                 padding: str = "valid", output_padding: Any = None,
                 data_format: str | None = None, dilation_rate: IntPair = (1, 1),
                 activation: ActivationLike = None, use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, 1,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        _unsupported(f"Conv2DTranspose '{self.name}'", output_padding=output_padding)

    def _geometry(self) -> Config:
        geometry = super()._geometry()
        del geometry["groups"]
        return {**geometry, "output_padding": None}

    def _engine_config(self) -> Config:
        config = super()._engine_config()
        del config["output_padding"]
        return config


class Conv1DTranspose(Conv2DTranspose):
    """The transpose (input gradient) of a Conv1D, for upsampling sequences
    (batch, steps, channels); kernel (k, filters, channels).

    Args:
        filters: Output channels.
        kernel_size: The kernel's length.
        strides: The step between outputs of the matching Conv1D (the upsampling factor).
        padding: "valid" or "same".
        dilation_rate, activation, use_bias, kernel_initializer, bias_initializer,
            kernel_regularizer, bias_regularizer: As for Conv1D.
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.Conv1DTranspose(8, 3, strides=2, padding="same")(sequences)
    """

    _rank = 1

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: str = "valid", output_padding: Any = None,
                 data_format: str | None = None, dilation_rate: Any = 1,
                 activation: ActivationLike = None, use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint, **kwargs)

