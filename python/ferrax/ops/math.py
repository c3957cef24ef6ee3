"""Math ops (Keras's `keras.ops.math`)."""

from __future__ import annotations

from typing import Any

from ferrax.ops._dispatch import apply
from ferrax.ops.numpy import Axis, _axis


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """`log(sum(exp(x)))` over `axis`, computed stably."""
    return apply("logsumexp", {"axis": _axis(axis), "keepdims": bool(keepdims)}, [x])
