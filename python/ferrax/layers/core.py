"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, InputLayer."""

import numbers

from ferrax import activations, initializers, regularizers
from ferrax._serial import check_number, describe
from ferrax.layers.base import Layer, _check_shape


class Dense(Layer):
    """Densely connected layer: activation(dot(x, kernel) + bias), over the last axis."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral):
            raise TypeError(f"Dense '{self.name}': 'units' must be a positive integer, "
                            f"got {describe(units)}")
        if units <= 0:
            raise ValueError(f"Dense '{self.name}': 'units' must be a positive integer, "
                             f"got {units}")
        for arg, v in (("activity_regularizer", activity_regularizer),
                       ("kernel_constraint", kernel_constraint),
                       ("bias_constraint", bias_constraint)):
            if v is not None:
                raise NotImplementedError(f"Dense '{self.name}': '{arg}' is not supported yet")
        self.units = int(units)
        self.activation = _activation(self.name, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _public_config(self):
        return {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }

    def _engine_config(self):
        reg = lambda r: None if r is None else r._core_spec()  # noqa: E731
        return {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer._core_spec(),
            "bias_initializer": self.bias_initializer._core_spec(),
            "kernel_regularizer": reg(self.kernel_regularizer),
            "bias_regularizer": reg(self.bias_regularizer),
        }


class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(self.name, activation)

    def _public_config(self):
        return {"activation": self.activation}


class Dropout(Layer):
    """Zeroes units with probability `rate` during training, scaling the rest by 1/(1-rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_number(f"Dropout '{self.name}'", "rate", rate)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout '{self.name}': 'rate' must be in [0, 1), got {rate}")
        if noise_shape is not None:
            raise NotImplementedError(f"Dropout '{self.name}': 'noise_shape' is not supported "
                                      f"yet")
        self.rate, self.seed, self.noise_shape = float(rate), seed, None

    def _public_config(self):
        return {"rate": self.rate, "seed": self.seed, "noise_shape": None}

    def _engine_config(self):
        return {"rate": self.rate}


class Flatten(Layer):
    """Flattens each sample to one axis."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format

    def _public_config(self):
        return {"data_format": self.data_format}

    def _engine_config(self):
        return {}


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
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

    def _public_config(self):
        return {"target_shape": list(self.target_shape)}


class InputLayer(Layer):
    """Declares the per-sample input shape; has no weights and is not run."""

    def __init__(self, shape=None, batch_size=None, input_shape=None, name=None, **kwargs):
        shape = shape if shape is not None else input_shape
        super().__init__(name=name, **kwargs)
        if shape is None:
            raise ValueError(f"InputLayer '{self.name}': 'shape' is required")
        self._input_shape = _check_shape(self.name, "shape", shape)
        self.batch_size = batch_size

    def _public_config(self):
        return {"batch_shape": (self.batch_size,) + self._input_shape}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        batch_shape = config.pop("batch_shape")
        config.pop("dtype", None)
        return cls(shape=tuple(batch_shape[1:]), batch_size=batch_shape[0], **config)


def Input(shape=None, batch_size=None, name=None, dtype=None, **kwargs):  # noqa: N802
    """The input of a model: ``Sequential([Input(shape=(784,)), Dense(10)])``."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, **kwargs)


def _activation(owner, activation):
    try:
        return activations.get(activation)
    except (ValueError, TypeError) as e:
        raise type(e)(f"Layer '{owner}': {e}") from None
