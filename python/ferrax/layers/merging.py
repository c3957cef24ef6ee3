"""Merge layers: combine several tensors into one (Add, Concatenate, ...), and their
functional forms (``add([a, b])``). They are called on a list of tensors."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferrax._serial import describe
from ferrax._typing import Config
from ferrax.layers.base import Layer


class _Merge(Layer):
    """A layer called on a list of tensors that returns one tensor."""

    _takes_list = True

    def _check_call_inputs(self, inputs: Sequence[Any]) -> None:
        if len(inputs) < 1:
            raise ValueError(f"{type(self).__name__} '{self.name}': a merge layer should be "
                             f"called on a list of at least 1 input, got {len(inputs)}")


class Add(_Merge):
    """Adds a list of inputs, elementwise (shapes broadcast as in NumPy).

    Args:
        **kwargs: Standard layer arguments (`name`, `trainable`, ...).

    Example:

    >>> x1 = ferrax.Input((16,))
    >>> x2 = ferrax.Input((16,))
    >>> y = ferrax.layers.Add()([x1, x2])   # shape (None, 16)
    """


class Subtract(_Merge):
    """Subtracts the second of exactly two inputs from the first, elementwise.

    Example:

    >>> y = ferrax.layers.Subtract()([x1, x2])   # x1 - x2
    """

    def _check_call_inputs(self, inputs: Sequence[Any]) -> None:
        if len(inputs) != 2:
            raise ValueError(f"Subtract '{self.name}': a Subtract layer should be called on "
                             f"exactly 2 inputs, got {len(inputs)}")


class Multiply(_Merge):
    """Multiplies a list of inputs, elementwise.

    Example:

    >>> y = ferrax.layers.Multiply()([x1, x2])
    """


class Average(_Merge):
    """The elementwise mean of a list of inputs.

    Example:

    >>> y = ferrax.layers.Average()([x1, x2, x3])
    """


class Maximum(_Merge):
    """The elementwise maximum of a list of inputs (a tie sends the gradient to the
    first input holding the winning value).

    Example:

    >>> y = ferrax.layers.Maximum()([x1, x2])
    """


class Minimum(_Merge):
    """The elementwise minimum of a list of inputs.

    Example:

    >>> y = ferrax.layers.Minimum()([x1, x2])
    """


class Concatenate(_Merge):
    """Joins a list of inputs along one axis; their other axes must match.

    Args:
        axis: The axis to join along, counted with the batch axis (default -1, the
            last); the batch axis itself cannot be joined.
        **kwargs: Standard layer arguments.

    Example:

    >>> a = ferrax.Input((4, 3))
    >>> b = ferrax.Input((4, 5))
    >>> ferrax.layers.Concatenate()([a, b]).shape
    (None, 4, 8)
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"Concatenate '{self.name}': 'axis' must be an integer, "
                            f"got {describe(axis)}")
        self.axis: int = int(axis)

    def _public_config(self) -> Config:
        return {"axis": self.axis}


class Dot(_Merge):
    """The dot product of two inputs along one axis of each, per sample.

    Like a batched tensordot: each sample's product sums over axis `axes[0]` of the
    first input and axis `axes[1]` of the second. The output per sample is the
    remaining axes of the first input followed by those of the second; two vectors
    give shape `(batch, 1)`.

    Args:
        axes: An integer, or a list of two integers (one per input): the axis to sum
            over, counted with the batch axis (negative from the end of each input);
            the batch axis 0 is not allowed. The two axes must have the same size.
        normalize: Whether to L2-normalise each input along its summed axis first, so
            that the output is the cosine similarity of the two samples.
        **kwargs: Standard layer arguments (`name`, `trainable`, ...).

    Example:

    >>> a = ferrax.Input((8,))
    >>> b = ferrax.Input((8,))
    >>> ferrax.layers.Dot(axes=1)([a, b]).shape
    (None, 1)
    >>> q = ferrax.Input((5, 16))
    >>> k = ferrax.Input((7, 16))
    >>> ferrax.layers.Dot(axes=2)([q, k]).shape   # attention scores
    (None, 5, 7)
    >>> x = ferrax.Input((5, 16))
    >>> v = ferrax.Input((16,))
    >>> ferrax.layers.Dot(axes=(2, 1), normalize=True)([x, v]).shape
    (None, 5)
    """

    def __init__(self, axes: int | Sequence[int], normalize: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        owner = f"Dot '{self.name}'"

        def is_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        stored: int | list[int]
        if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
            stored = int(axes)
            given = [stored]
        elif isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                raise ValueError(f"{owner}: 'axes' must be an integer or a list of two "
                                 f"integers (one per input), got {describe(axes)}")
            if not all(is_int(a) for a in axes):
                raise TypeError(f"{owner}: 'axes' must hold integers, got {describe(axes)}")
            stored = [int(a) for a in axes]
            given = stored
        else:
            raise TypeError(f"{owner}: 'axes' must be an integer or a list of two integers, "
                            f"got {describe(axes)}")
        if 0 in given:
            raise ValueError(f"{owner}: 'axes' cannot include the batch axis 0, got "
                             f"{describe(axes)}")
        if not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"{owner}: 'normalize' must be True or False, got "
                            f"{describe(normalize)}")
        self.axes = stored
        self.normalize = bool(normalize)

    def _check_call_inputs(self, inputs: Sequence[Any]) -> None:
        if len(inputs) != 2:
            raise ValueError(f"Dot '{self.name}': a Dot layer should be called on exactly 2 "
                             f"inputs, got {len(inputs)}")

    def _public_config(self) -> Config:
        axes = list(self.axes) if isinstance(self.axes, list) else self.axes
        return {"axes": axes, "normalize": self.normalize}


def _merge(cls: type[_Merge], inputs: Sequence[Any], **kwargs: Any) -> Any:
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"{cls.__name__.lower()}(): 'inputs' must be a list of tensors, "
                        f"got {describe(inputs)}")
    return cls(**kwargs)(list(inputs))


def add(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Add`: calls a new `Add` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.add([x1, x2])
    """
    return _merge(Add, inputs, **kwargs)


def subtract(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Subtract`: calls a new `Subtract` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.subtract([x1, x2])  # x1 - x2
    """
    return _merge(Subtract, inputs, **kwargs)


def multiply(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Multiply`: calls a new `Multiply` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.multiply([x1, x2])
    """
    return _merge(Multiply, inputs, **kwargs)


def average(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Average`: calls a new `Average` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.average([x1, x2, x3])
    """
    return _merge(Average, inputs, **kwargs)


def maximum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Maximum`: calls a new `Maximum` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.maximum([x1, x2])
    """
    return _merge(Maximum, inputs, **kwargs)


def minimum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of `Minimum`: calls a new `Minimum` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.minimum([x1, x2])
    """
    return _merge(Minimum, inputs, **kwargs)


def concatenate(inputs: Sequence[Any], axis: int = -1, **kwargs: Any) -> Any:
    """Functional form of `Concatenate`: calls a new `Concatenate` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        axis: The axis to join along (counted with the batch axis; default -1).
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.concatenate([a, b], axis=-1)
    """
    return _merge(Concatenate, inputs, axis=axis, **kwargs)


def dot(inputs: Sequence[Any], axes: int | Sequence[int] = -1, normalize: bool = False,
        **kwargs: Any) -> Any:
    """Functional form of `Dot`: calls a new `Dot` layer on `inputs`.

    Args:
        inputs: A list of symbolic tensors.
        axes: The axis (or pair of axes) to sum over, counted with the batch axis.
        normalize: L2-normalise both inputs along those axes first.
        **kwargs: Arguments of the layer (`name`, ...).

    Returns:
        The merged tensor.

    Example:

    >>> y = ferrax.layers.dot([a, b], axes=1, normalize=True)  # cosine similarity
    """
    return _merge(Dot, inputs, axes=axes, normalize=normalize, **kwargs)
