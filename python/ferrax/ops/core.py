"""Core ops (Keras's `keras.ops.core`): conversion, casting, stopping gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrax.ops._dispatch import apply
from ferrax.symbolic import KerasTensor
from ferrax.tensor import Tensor


def convert_to_tensor(x: Any, dtype: Any = None, sparse: bool | None = None) -> Any:
    """An eager tensor of `x` (a symbolic tensor is returned as it is)."""
    if isinstance(x, KerasTensor):
        return x
    if isinstance(x, Tensor) and dtype is None:
        return x
    a = np.asarray(x)
    if dtype is not None:
        a = a.astype(dtype)
    elif a.dtype == np.float64:
        a = a.astype(np.float32)  # Keras's floatx
    return Tensor(a)


def convert_to_numpy(x: Any) -> np.ndarray:
    """The values as a NumPy array."""
    if isinstance(x, KerasTensor):
        raise TypeError(f"convert_to_numpy: KerasTensor '{x.name}' is symbolic and has no "
                        f"values")
    return np.asarray(x)


def cast(x: Any, dtype: Any) -> Any:
    """`x` as `dtype`. The engine computes in float32: on a symbolic tensor a cast to
    a float type changes nothing, one to an integer type rounds towards zero (as
    NumPy's and Keras's casts do) and one to bool tests for nonzero."""
    if isinstance(x, KerasTensor):
        kind = np.dtype(dtype).kind
        if kind == "f":
            return x
        if kind == "b":
            return apply("not_equal", {}, [x, 0.0], "bool")
        if kind in "iu":
            return apply("trunc", {}, [x], str(np.dtype(dtype)))
        raise NotImplementedError(f"cast: a symbolic tensor cannot be cast to {dtype}")
    return Tensor(np.asarray(x).astype(dtype))


def stop_gradient(variable: Any) -> Any:
    """`variable` itself, but no gradient flows back through it."""
    return apply("stop_gradient", {}, [variable])
