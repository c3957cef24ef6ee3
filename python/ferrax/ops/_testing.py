"""Gradients of eager op compositions, for tests: a GradientTape over `fn`, so that
every op's gradient test also checks the tape that plays the engine's backward
kernels in reverse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ferrax.tensor import Tensor


def vjp(fn: Callable[..., Any], *arrays: Any, dout: Any) -> list[np.ndarray]:
    """The gradient of `sum(fn(*tensors) * dout)` with respect to each array.

    Args:
        fn: Composes ferrax.ops on its tensor arguments.
        *arrays: The inputs (each becomes a float32 Tensor).
        dout: The gradient of the result (its shape).
    """
    from ferrax.tape import GradientTape

    leaves = [Tensor(np.asarray(a, dtype=np.float32, order="C")) for a in arrays]
    with GradientTape() as tape:
        tape.watch(leaves)
        out = fn(*leaves)
    grads = tape.gradient(out, leaves, output_gradients=dout, unconnected_gradients="zero")
    return [np.asarray(g) for g in grads]
