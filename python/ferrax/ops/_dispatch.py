"""How an op call runs: on symbolic tensors (or on weights while a `call` is
traced) it records a graph node; on arrays it computes now, in the engine's
kernel for that op, and returns a `Tensor`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ferrax._typing import Config
from ferrax.symbolic import KerasTensor
from ferrax.tensor import Tensor

# > 0 while a layer's or a model's call is traced: weights then stand for graph values.
_TRACING = [0]
# The GradientTapes recording now: each eager op call is offered to them.
_TAPES: list[Any] = []
# Per call being traced (innermost last): the scalar tensors its add_loss calls gave.
_ADDED_LOSSES: list[list[KerasTensor]] = []


def add_loss(owner: str, loss: Any) -> None:
    """Records `loss` (summed to one number, as Keras sums added losses) for the call
    being traced; it joins the training loss of the model that runs the call."""
    if not tracing() or not _ADDED_LOSSES:
        raise NotImplementedError(f"{owner}: add_loss works inside a traced call() (a "
                                  f"custom layer's or a subclassed model's)")
    from ferrax.ops.numpy import sum as ops_sum

    total = ops_sum(loss)
    if not isinstance(total, KerasTensor):
        raise TypeError(f"{owner}: add_loss needs a tensor computed in call() from its "
                        f"inputs or weights, got {type(loss).__name__}")
    _ADDED_LOSSES[-1].append(total)


def tracing() -> bool:
    return _TRACING[0] > 0


def apply(op: str, attrs: Config, operands: list[Any], dtype: str | None = None) -> Any:
    """`op` on `operands` (tensors, weights, arrays or numbers): a symbolic result when
    any operand is symbolic (or a weight inside a traced call), else an eager Tensor.
    `dtype`: the result's type where it is not float32 (bool comparisons, int32 ids)."""
    from ferrax.ops._nodes import LayerVariable

    if any(isinstance(o, KerasTensor) for o in operands) or (
            tracing() and any(isinstance(o, LayerVariable) for o in operands)):
        return _symbolic(op, attrs, operands, dtype)
    return _eager(op, attrs, operands, dtype)


def _symbolic(op: str, attrs: Config, operands: list[Any], dtype: str | None) -> KerasTensor:
    from ferrax.ops._nodes import LayerVariable, _ConstantLayer, _OpLayer

    tensors = []
    for o in operands:
        if isinstance(o, KerasTensor):
            tensors.append(o)
        elif isinstance(o, LayerVariable):
            tensors.append(o._holder._symbolic())
        else:
            tensors.append(_ConstantLayer(_as_array(op, o))._symbolic())
    return _OpLayer(op, attrs, dtype=dtype)._record(tensors)


def _eager(op: str, attrs: Config, operands: list[Any], dtype: str | None,
           attrs_json: str | None = None) -> Tensor:
    """`op` run now; `attrs_json`: `attrs` already serialized (a caller that runs the
    same op every step keeps it)."""
    from ferrax import _core

    arrays = [_as_array(op, o) for o in operands]
    if attrs_json is None:
        attrs_json = json.dumps(attrs)
    value = _core.op_eval(op, attrs_json, arrays)
    if dtype is not None:
        value = value.astype(dtype)
    out = Tensor(value)
    for tape in _TAPES:
        tape._record(op, attrs_json, operands, arrays, out)
    return out


def _as_array(op: str, value: Any) -> np.ndarray:
    """An operand as a C-contiguous float32 array (the engine computes in float32)."""
    from ferrax.ops._nodes import LayerVariable

    if isinstance(value, Tensor):
        a = value._value
    elif isinstance(value, LayerVariable):
        a = value.numpy()
    else:
        try:
            a = np.asarray(value)
        except TypeError:
            a = None
        if a is None or a.dtype == object:
            raise TypeError(f"{op}: expected a tensor, an array or a number, got "
                            f"{type(value).__name__}")
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    return np.asarray(a, dtype=np.float32, order="C")


def full_shape(x: Any) -> tuple[int | None, ...]:
    """The shape of any operand, batch axis included (None where unknown)."""
    if isinstance(x, (KerasTensor, Tensor)):
        return tuple(x.shape)
    shape = getattr(x, "shape", None)
    if shape is not None:
        return tuple(shape)
    return tuple(np.shape(x))


def is_batched(x: Any) -> bool:
    return isinstance(x, KerasTensor) and x.batched
