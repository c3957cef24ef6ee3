"""Gradients of eager op compositions, for tests: the engine's backward of each
op played back in reverse (what GradientTape will build on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ferrax.ops import _dispatch
from ferrax.tensor import Tensor


def vjp(fn: Callable[..., Any], *arrays: Any, dout: Any) -> list[np.ndarray]:
    """The gradient of `sum(fn(*tensors) * dout)` with respect to each array.

    Args:
        fn: Composes ferrax.ops on its tensor arguments.
        *arrays: The inputs (each becomes a float32 Tensor).
        dout: The gradient of the result (its shape).
    """
    from ferrax import _core

    leaves = [Tensor(np.asarray(a, dtype=np.float32, order="C")) for a in arrays]
    _dispatch._RECORDING[0] += 1
    try:
        out = fn(*leaves)
    finally:
        _dispatch._RECORDING[0] -= 1
    order: list[Tensor] = []
    seen: set[int] = set()

    def visit(t: Tensor) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        if t._producer is not None:
            for u in t._producer[2]:
                visit(u)
        order.append(t)

    visit(out)
    grads: dict[int, np.ndarray] = {
        id(out): np.array(np.broadcast_to(np.asarray(dout, np.float32), out.shape),
                          order="C")}
    for t in reversed(order):
        if t._producer is None or id(t) not in grads:
            continue
        op, attrs, inputs = t._producer
        ins = [np.asarray(u._value, dtype=np.float32, order="C") for u in inputs]
        y = np.asarray(t._value, dtype=np.float32, order="C")
        for u, g in zip(inputs, _core.op_vjp(op, attrs, ins, y, grads[id(t)])):
            grads[id(u)] = grads[id(u)] + g if id(u) in grads else g
    return [grads.get(id(t), np.zeros(t.shape, np.float32)) for t in leaves]
