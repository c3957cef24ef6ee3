"""`Tensor`: an eager value, what `ferrax.ops` returns when called on arrays.
NumPy reads it without a copy (`np.asarray(t)`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ferrax._operators import TensorOperators


class Tensor(TensorOperators):
    """An eager tensor: an array computed by `ferrax.ops`.

    Args:
        value: The array (float32 unless an integer result such as argmax).

    Example:

    >>> t = ferrax.ops.add(np.ones((2, 3)), 1.0)
    >>> np.asarray(t)[0]
    array([2., 2., 2.], dtype=float32)
    """

    def __init__(self, value: npt.ArrayLike) -> None:
        self._value: np.ndarray = np.asarray(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape)

    @property
    def dtype(self) -> str:
        return str(self._value.dtype)

    @property
    def ndim(self) -> int:
        return self._value.ndim

    def numpy(self) -> np.ndarray:
        return self._value

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None
                  ) -> np.ndarray:
        if dtype is None or np.dtype(dtype) == self._value.dtype:
            return self._value.copy() if copy else self._value
        return self._value.astype(dtype)

    def __len__(self) -> int:
        if not self._value.ndim:
            raise TypeError("len() of a 0-d tensor")
        return len(self._value)

    def __float__(self) -> float:
        return float(self._value)

    def __int__(self) -> int:
        return int(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: Any) -> Any:
        from ferrax import ops

        if not _comparable(other):
            return NotImplemented  # (lets the other side decide: pytest.approx)
        return ops.equal(self, other)

    def __ne__(self, other: Any) -> Any:
        from ferrax import ops

        if not _comparable(other):
            return NotImplemented
        return ops.not_equal(self, other)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(self._value, prefix="tensor(")
        return f"tensor({body}, shape={self.shape}, dtype={self.dtype})"


def _comparable(other: Any) -> bool:
    """Whether `other` is something ops compare with (a tensor, an array, a number)."""
    if isinstance(other, (Tensor, np.ndarray, int, float, bool, np.generic, list, tuple)):
        return True
    from ferrax.symbolic import KerasTensor

    return isinstance(other, KerasTensor)
