"""The Layer base class: configuration, naming, and weights held by the engine."""

import itertools
from collections import defaultdict

import numpy as np

from ferrax._serial import describe, snake_case

_NAME_COUNTERS = defaultdict(itertools.count)


def unique_name(prefix):
    """Keras-style auto names: 'dense', then 'dense_1', 'dense_2', ..."""
    n = next(_NAME_COUNTERS[prefix])
    return prefix if n == 0 else f"{prefix}_{n}"


class Variable:
    """A weight of a built model, read from and written to the engine."""

    def __init__(self, model, index, name, shape):
        self._model, self._index = model, index
        self.name, self.shape = name, tuple(shape)
        self.dtype = "float32"
        self.trainable = True

    @property
    def path(self):
        return self.name

    def numpy(self):
        return self._model._core.get_weights()[self._index]

    def assign(self, value):
        weights = self._model._core.get_weights()
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self.shape:
            raise ValueError(f"Variable '{self.name}': expected shape {self.shape}, "
                             f"got {value.shape}")
        weights[self._index] = value
        self._model._core.set_weights([np.ascontiguousarray(w) for w in weights])

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.name}, shape={self.shape}, dtype=float32>"


class Layer:
    """Base layer. Subclasses define `_engine_config()`; the engine builds and runs them."""

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 input_dim=None, batch_input_shape=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: 'name' must be a string, "
                            f"got {describe(name)}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        self._input_shape = None
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_shape is not None:
            self._input_shape = _check_shape(self.name, "input_shape", input_shape)
        elif input_dim is not None:
            self._input_shape = _check_shape(self.name, "input_dim", (input_dim,))
        self._model = None
        self._weight_slice = slice(0, 0)
        self._output_shape = None

    # --- configuration -------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        config.update(self._public_config())
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)

    def _public_config(self):
        return {}

    def _engine_config(self):
        return self._public_config()

    def _core_spec(self):
        return {"class_name": type(self).__name__,
                "config": {"name": self.name, **self._engine_config()}}

    # --- weights ---------------------------------------------------------
    @property
    def built(self):
        return self._model is not None and self._model._core is not None

    @property
    def weights(self):
        if not self.built:
            return []
        return self._model._variables()[self._weight_slice]

    trainable_weights = weights
    variables = weights

    @property
    def non_trainable_weights(self):
        return []

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Layer '{self.name}' expects {len(own)} weight arrays, "
                             f"got {len(weights)}")
        all_weights = self._model._core.get_weights()
        for i, (v, w) in enumerate(zip(own, weights)):
            w = np.asarray(w, dtype=np.float32)
            if w.shape != v.shape:
                raise ValueError(f"Layer '{self.name}' weight {i} ('{v.name}'): expected shape "
                                 f"{v.shape}, got {w.shape}")
            all_weights[self._weight_slice.start + i] = w
        self._model._core.set_weights([np.ascontiguousarray(w) for w in all_weights])

    def count_params(self):
        return int(sum(np.prod(v.shape) for v in self.weights))

    @property
    def output_shape(self):
        if self._output_shape is None:
            raise AttributeError(f"Layer '{self.name}' has not been built yet: its output "
                                 f"shape is unknown")
        return (None,) + tuple(self._output_shape)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _check_shape(owner, arg, shape):
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           and d > 0 for d in dims):
        raise ValueError(f"{owner}: '{arg}' must be a tuple of positive integers, "
                         f"got {describe(shape)}")
    return tuple(int(d) for d in dims)
