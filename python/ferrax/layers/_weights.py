"""Weights of custom layers (`add_weight`) and the layers they hold as attributes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferrax._serial import describe


def make_weight(owner: str, index: int, shape: Sequence[int] | None, initializer: Any,
                dtype: Any, trainable: bool, regularizer: Any, constraint: Any,
                name: str | None) -> Any:
    """A new `LayerVariable` for `add_weight`, its arguments checked here (the
    message names the layer and the argument)."""
    from ferrax import _core, initializers, regularizers
    from ferrax.ops._nodes import LayerVariable

    where = f"Layer '{owner}': add_weight"
    dims: Any = () if shape is None else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = (dims,)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
               for d in dims):
        raise ValueError(f"{where}: 'shape' must be a tuple of non-negative integers, got "
                         f"{describe(shape)}")
    if dtype is not None and np.dtype(dtype) != np.float32:
        raise NotImplementedError(f"{where}: dtype {dtype} is not supported (float32 only)")
    if constraint is not None:
        raise NotImplementedError(f"{where}: constraints are not supported")
    try:
        init = initializers.get("glorot_uniform" if initializer is None else initializer)
        spec = init._core_spec()
        _core.initializer_sample(json.dumps(spec), [1], 0)
        reg = regularizers.get(regularizer)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: {e}") from None
    default = "variable" if index == 0 else f"variable_{index}"
    return LayerVariable(tuple(int(d) for d in dims), spec,
                         None if reg is None else reg._core_spec(), trainable,
                         name or default, owner)


def tracked(obj: Any, kind: type | tuple[type, ...]) -> list[Any]:
    """Objects of `kind` among `obj`'s attributes (also inside lists, tuples and dicts),
    each once, in attribute order."""
    found: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, kind) and value is not obj:
            if all(value is not f for f in found):
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for key, value in vars(obj).items():
        if not key.startswith("_"):
            walk(value)
    return found
