"""`Variable`: an eager tensor whose value can be assigned, the state a custom
training loop updates (`ferrax.Variable`, as `keras.Variable`)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt

from ferrax._serial import describe
from ferrax.tensor import Tensor

_NAMES = itertools.count()


class Variable(Tensor):
    """A tensor holding state: a GradientTape watches it (when trainable), an
    optimizer updates it, `assign` changes it.

    Args:
        initializer: The initial value (an array or a number), or an initializer (a
            name such as "glorot_uniform", or an object) drawn for `shape`.
        shape: The shape, when `initializer` is an initializer.
        dtype: The element type (float32 unless given; integers for counters).
        trainable: Whether a GradientTape watches it on its own and fit trains it.
        name: Its name ("variable" by default).

    Example:

    >>> w = ferrax.Variable(np.zeros((3, 2)), name="w")
    >>> with ferrax.GradientTape() as tape:
    ...     loss = ferrax.ops.sum(ferrax.ops.square(w - 1.0))
    >>> tape.gradient(loss, w)   # 2 (w - 1): all -2
    """

    def __init__(self, initializer: Any, shape: Any = None, dtype: Any = None,
                 trainable: bool = True, autocast: bool = True, aggregation: str = "none",
                 synchronization: str = "auto", name: str | None = None) -> None:
        value = _initial_value(initializer, shape, dtype, name)
        super().__init__(value)
        self.trainable = bool(trainable)
        n = next(_NAMES)
        self.name = name or ("variable" if n == 0 else f"variable_{n}")
        self.path = self.name

    def assign(self, value: npt.ArrayLike) -> Variable:
        """Set the value (same shape); returns the variable."""
        array = np.asarray(value._value if isinstance(value, Tensor) else value,
                           dtype=self._value.dtype)
        if array.shape != self._value.shape:
            raise ValueError(f"Variable '{self.name}': assign needs shape {self.shape}, got "
                             f"{array.shape}")
        # a new array, not written in place: a tape that read the old value keeps it
        self._value = np.array(array, order="C")
        return self

    def assign_add(self, delta: npt.ArrayLike) -> Variable:
        """Add `delta` to the value; returns the variable."""
        return self.assign(self._value + np.asarray(delta, dtype=self._value.dtype))

    def assign_sub(self, delta: npt.ArrayLike) -> Variable:
        """Subtract `delta` from the value; returns the variable."""
        return self.assign(self._value - np.asarray(delta, dtype=self._value.dtype))

    @property
    def value(self) -> np.ndarray:
        return self._value

    def __repr__(self) -> str:
        body = np.array2string(self._value, prefix="<Variable ")
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"value={body}>")


def variable_key(x: Any) -> Any:
    """What a tape and an optimizer know a value by: a model's weight by its layer and
    its place in the layer (its Variable objects are made again when the model's
    weights move, and each model that runs the layer has its own), anything else by
    itself."""
    # (a model's weight and a custom layer's `add_weight` variable carry theirs; one
    # getattr, as the tape asks for every operand of every op)
    key = getattr(x, "_tape_key", None)
    return id(x) if key is None else key


def _initial_value(initializer: Any, shape: Any, dtype: Any, name: str | None) -> np.ndarray:
    from ferrax import initializers

    where = f"Variable '{name or 'variable'}'"
    if isinstance(initializer, (str, dict, initializers.Initializer)):
        if shape is None:
            raise ValueError(f"{where}: an initializer needs shape=")
        try:
            dims = tuple(int(d) for d in shape)
        except TypeError:
            raise ValueError(f"{where}: shape must be a tuple of integers, got "
                             f"{describe(shape)}") from None
        value = np.asarray(initializers.get(initializer)(dims))
    else:
        source = initializer._value if isinstance(initializer, Tensor) else initializer
        try:
            value = np.asarray(source)
        except (TypeError, ValueError):
            value = np.asarray(None)
        if value.dtype == object:
            raise TypeError(f"{where}: the initial value must be an array, a number or an "
                            f"initializer, got {describe(initializer)}")
        if shape is not None and tuple(shape) != value.shape:
            raise ValueError(f"{where}: shape={tuple(shape)} but the value has shape "
                             f"{value.shape}")
    if dtype is not None:
        value = value.astype(dtype)
    elif value.dtype.kind == "f" or value.dtype == bool:
        value = value.astype(np.float32)
    return np.array(value, order="C")
