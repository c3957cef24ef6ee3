"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, InputLayer."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ferrax import activations, initializers, regularizers
from ferrax._serial import check_number, describe
from ferrax._typing import Config
from ferrax.layers.base import Layer, _check_shape
from ferrax.symbolic import KerasTensor, Node

if TYPE_CHECKING:
    from typing_extensions import Self

# What `activation=` accepts: a name, a function of ferrax.activations, or None (linear).
ActivationLike = str | Callable[..., Any] | None
# What an initializer argument accepts: a name, a {"class_name", "config"} dict or an object.
InitializerLike = str | dict[str, Any] | initializers.Initializer
# What a regularizer argument accepts.
RegularizerLike = str | dict[str, Any] | regularizers.Regularizer | None


class _KernelLayer(Layer):
    """A layer with a kernel, an optional bias and an activation (Dense, Conv2D):
    their shared arguments, checks and configuration."""

    def _init_kernel(self, activation: ActivationLike, use_bias: bool,
                     kernel_initializer: InitializerLike, bias_initializer: InitializerLike,
                     kernel_regularizer: RegularizerLike, bias_regularizer: RegularizerLike,
                     unsupported: Mapping[str, Any]) -> None:
        for arg, v in unsupported.items():
            if v is not None:
                raise NotImplementedError(f"{type(self).__name__} '{self.name}': '{arg}' is not "
                                          f"supported yet")
        self.activation: str = _activation(self.name, activation)
        self.use_bias: bool = bool(use_bias)
        self.kernel_initializer: initializers.Initializer = initializers.get(kernel_initializer)
        self.bias_initializer: initializers.Initializer = initializers.get(bias_initializer)
        self.kernel_regularizer: regularizers.Regularizer | None = regularizers.get(
            kernel_regularizer)
        self.bias_regularizer: regularizers.Regularizer | None = regularizers.get(
            bias_regularizer)

    def _kernel_public_config(self) -> Config:
        return {
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }

    def _kernel_engine_config(self) -> Config:
        def reg(r: regularizers.Regularizer | None) -> dict[str, float] | None:
            return None if r is None else r._core_spec()

        return {
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer._core_spec(),
            "bias_initializer": self.bias_initializer._core_spec(),
            "kernel_regularizer": reg(self.kernel_regularizer),
            "bias_regularizer": reg(self.bias_regularizer),
        }


def _positive_int(owner: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: '{arg}' must be a positive integer, got {describe(value)}")
    if value <= 0:
        raise ValueError(f"{owner}: '{arg}' must be a positive integer, got {value}")
    return int(value)


class Dense(_KernelLayer):
    """Densely connected layer: activation(dot(x, kernel) + bias), over the last axis."""

    def __init__(self, units: int, activation: ActivationLike = None, use_bias: bool = True,
                 kernel_initializer: InitializerLike = "glorot_uniform",
                 bias_initializer: InitializerLike = "zeros",
                 kernel_regularizer: RegularizerLike = None,
                 bias_regularizer: RegularizerLike = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units: int = _positive_int(f"Dense '{self.name}'", "units", units)
        self._init_kernel(activation, use_bias, kernel_initializer, bias_initializer,
                          kernel_regularizer, bias_regularizer,
                          {"activity_regularizer": activity_regularizer,
                           "kernel_constraint": kernel_constraint,
                           "bias_constraint": bias_constraint})

    def _public_config(self) -> Config:
        return {"units": self.units, **self._kernel_public_config()}

    def _engine_config(self) -> Config:
        return {"units": self.units, **self._kernel_engine_config()}


class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation: ActivationLike, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = _activation(self.name, activation)

    def _public_config(self) -> Config:
        return {"activation": self.activation}


class _FixedActivation(Layer):
    """An activation layer of Keras's (ReLU, Softmax): the engine's Activation with that
    function."""

    _function = "linear"

    def _core_spec(self) -> Config:
        return {"class_name": "Activation",
                "config": {"name": self.name, "trainable": self.trainable,
                           "activation": self._function}}


class ReLU(_FixedActivation):
    """`max(x, 0)`, as a layer; with Keras's arguments, below `threshold` the slope is
    `negative_slope`, and the result is capped at `max_value`.

    Args:
        max_value: The cap (None: none).
        negative_slope: The slope below the threshold (0).
        threshold: Where the slope changes (0).
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.ReLU()(ferrax.layers.BatchNormalization()(inputs))
    >>> y = ferrax.layers.ReLU(max_value=6.0)(x)
    """

    _function = "relu"

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"ReLU '{self.name}'"
        self.max_value = None if max_value is None else check_number(
            owner, "max_value", max_value, low=0.0)
        self.negative_slope = check_number(owner, "negative_slope", negative_slope, low=0.0)
        self.threshold = check_number(owner, "threshold", threshold)

    def _traced_call(self) -> bool:
        # the engine's relu covers the defaults; other arguments are traced ops
        args = tuple(getattr(self, a, d) for a, d in
                     (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)))
        return args != (None, 0.0, 0.0)

    def call(self, inputs: Any) -> Any:
        from ferrax import ops

        below = self.negative_slope * (inputs - self.threshold)
        out = ops.where(ops.greater_equal(inputs, self.threshold), inputs, below)
        return out if self.max_value is None else ops.minimum(out, self.max_value)

    def _public_config(self) -> Config:
        return {"max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class Softmax(_FixedActivation):
    """Softmax over the last axis, as a layer.

    Args:
        axis: Only -1 (the last axis) is supported.
        **kwargs: Standard layer arguments.

    Example:

    >>> probabilities = ferrax.layers.Softmax()(ferrax.layers.Dense(10)(inputs))
    """

    _function = "softmax"

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if axis != -1:
            raise NotImplementedError(f"Softmax '{self.name}': only axis=-1 is supported")

    def _public_config(self) -> Config:
        return {"axis": -1}


class Dropout(Layer):
    """Zeroes units with probability `rate` during training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_number(f"Dropout '{self.name}'", "rate", rate)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout '{self.name}': 'rate' must be in [0, 1), got {rate}")
        if noise_shape is not None:
            raise NotImplementedError(f"Dropout '{self.name}': 'noise_shape' is not supported "
                                      f"yet")
        self.rate, self.seed, self.noise_shape = float(rate), seed, None

    def _public_config(self) -> Config:
        return {"rate": self.rate, "seed": self.seed, "noise_shape": None}

    def _engine_config(self) -> Config:
        return {"rate": self.rate}


class Flatten(Layer):
    """Flattens each sample to one axis."""

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format

    def _public_config(self) -> Config:
        return {"data_format": self.data_format}

    def _engine_config(self) -> Config:
        return {}


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one entry may be -1)."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            dims = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise TypeError(f"Reshape '{self.name}': 'target_shape' must be a tuple of "
                            f"integers, got {describe(target_shape)}") from None
        if sum(d == -1 for d in dims) > 1 or any(d == 0 or d < -1 for d in dims):
            raise ValueError(f"Reshape '{self.name}': 'target_shape' must hold positive "
                             f"integers and at most one -1, got {target_shape}")
        self.target_shape = dims

    def _public_config(self) -> Config:
        return {"target_shape": list(self.target_shape)}


class InputLayer(Layer):
    """Declares the per-sample input shape; has no weights and is not run. Use
    `ferrax.Input`, which returns its symbolic output tensor."""

    def __init__(self, shape: Sequence[int | None] | None = None, batch_size: int | None = None,
                 input_shape: Sequence[int] | None = None, name: str | None = None,
                 dtype: Any = None, sparse: bool | None = None, **kwargs: Any) -> None:
        shape = shape if shape is not None else input_shape
        super().__init__(name=name, **kwargs)
        if shape is None:
            raise ValueError(f"InputLayer '{self.name}': 'shape' is required")
        if sparse:
            raise NotImplementedError(f"InputLayer '{self.name}': sparse inputs are not "
                                      f"supported")
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if dims and all(d is None for d in dims) and len(dims) > 1:
            raise ValueError(f"InputLayer '{self.name}': shape {dims} has no axis of known "
                             f"length; give at least the last (features) one")
        # Axes of unknown length (None) take each call's length; the rest are checked.
        known = _check_shape(self.name, "shape", [1 if d is None else d for d in dims])
        self._input_dims: tuple[int | None, ...] = tuple(
            None if d is None else k for d, k in zip(dims, known))
        self._input_shape: tuple[int, ...] = known
        self.batch_size = batch_size
        self.input_dtype = _input_dtype(self.name, dtype)
        tensor = KerasTensor((batch_size, *self._input_dims), self.input_dtype,
                             name=self.name)
        Node(self, [], [tensor], as_list=False)

    def _public_config(self) -> Config:
        return {"batch_shape": (self.batch_size,) + self._input_dims}

    def get_config(self) -> Config:
        config = super().get_config()
        config["dtype"] = self.input_dtype
        return config

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"InputLayer '{self.name}' is not called: ferrax.Input(shape) "
                        f"returns its tensor")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        config = dict(config)
        batch_shape = config.pop("batch_shape")
        return cls(shape=tuple(batch_shape[1:]), batch_size=batch_shape[0], **config)


def _input_dtype(owner: str, dtype: Any) -> str:
    import numpy as np

    if dtype is None:
        return "float32"
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"InputLayer '{owner}': 'dtype' must be a NumPy dtype or its name, "
                        f"got {describe(dtype)}") from None
    if name not in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                    "uint8", "uint16", "uint32", "bool"):
        raise ValueError(f"InputLayer '{owner}': unsupported dtype '{name}'")
    return name


def Input(shape: Sequence[int | None] | None = None,  # noqa: N802
          batch_size: int | None = None, dtype: Any = None, sparse: bool | None = None,
          batch_shape: Sequence[int | None] | None = None, name: str | None = None,
          tensor: Any = None, optional: bool = False) -> KerasTensor:
    """A model's input: a symbolic tensor to call layers on.

    Args:
        shape: The per-sample shape, without the batch axis, e.g. `(28, 28)`.
        batch_size: A fixed batch size (recorded; fit and predict take any).
        dtype: The data's type ("float32" unless given; "int32" for token ids).
        sparse: Sparse inputs are not supported; must be None or False.
        batch_shape: The shape with the batch axis, instead of `shape`.
        name: The input's name (model inputs given as a dict are matched by it).

    Returns:
        A `KerasTensor` of shape `(batch_size, *shape)`.

    Example:

    >>> inputs = ferrax.Input(shape=(784,))
    >>> outputs = ferrax.layers.Dense(10, activation="softmax")(inputs)
    >>> model = ferrax.Model(inputs, outputs)
    """
    if tensor is not None or optional:
        raise NotImplementedError("Input: 'tensor' and 'optional' are not supported")
    if batch_shape is not None:
        if shape is not None:
            raise ValueError("Input: give 'shape' or 'batch_shape', not both")
        batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
    layer = InputLayer(shape=shape, batch_size=batch_size, name=name, dtype=dtype,
                       sparse=sparse)
    return layer.output


def _activation(owner: str, activation: ActivationLike) -> str:
    try:
        return activations.get(activation)
    except (ValueError, TypeError) as e:
        raise type(e)(f"Layer '{owner}': {e}") from None


class Masking(Layer):
    """Marks time steps whose every feature equals `mask_value` as padding (and zeroes
    them); recurrent layers downstream skip those steps."""

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_number(f"Masking '{self.name}'", "mask_value", mask_value)
        self.mask_value = float(mask_value)

    def _public_config(self) -> Config:
        return {"mask_value": self.mask_value}


class Lambda(Layer):
    """Wraps a function of tensors (written with `ferrax.ops`) as a layer; it is traced
    into the graph like a custom layer's `call`.

    Args:
        function: The function, called as `function(inputs, **arguments)`.
        output_shape: Ignored (the shape follows from tracing).
        mask: Not supported (None).
        arguments: Keyword arguments for the function.
        **kwargs: Standard layer arguments.

    Example:

    >>> x = ferrax.layers.Lambda(lambda t: ferrax.ops.square(t) * 0.5)(inputs)

    A saved model names the function; loading finds it in `custom_objects` (a file never
    carries code).
    """

    def __init__(self, function: Callable[..., Any], output_shape: Any = None,
                 mask: Any = None, arguments: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda '{self.name}': 'function' must be callable, got "
                            f"{describe(function)}")
        if mask is not None:
            raise NotImplementedError(f"Lambda '{self.name}': 'mask' is not supported")
        self.function = function
        self.arguments = dict(arguments or {})

    def call(self, inputs: Any) -> Any:
        return self.function(inputs, **self.arguments)

    def get_config(self) -> Config:
        return {**super().get_config(), "function": getattr(self.function, "__name__", ""),
                "arguments": self.arguments}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        from ferrax._registry import get_registered_object

        config = dict(config)
        name = config.pop("function", "")
        function = get_registered_object(name) if name and name != "<lambda>" else None
        if not callable(function):
            raise ValueError(f"Lambda '{config.get('name')}': its function '{name}' is not "
                             f"loaded from files (that would run code from the file); pass "
                             f"custom_objects={{'{name}': the_function}}")
        config.pop("dtype", None)
        return cls(function, **config)

