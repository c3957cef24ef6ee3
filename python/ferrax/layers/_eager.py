"""A layer or model called on arrays (`layers.Dense(3)(np.ones((4, 5)))`): the
result computed now, by a model of the layer alone built for the input shape."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrax.symbolic import flatten
from ferrax.tensor import Tensor


def call_eager(layer: Any, inputs: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """`layer(inputs)` on arrays (one array, or a list for a merge layer)."""
    from ferrax.layers.core import Input
    from ferrax.models.functional import Functional

    owner = f"{type(layer).__name__} '{layer.name}'"
    training = kwargs.pop("training", None)
    if args or kwargs or training:
        extra = [repr(a) for a in args] + sorted(kwargs) + (["training"] if training else [])
        raise NotImplementedError(f"{owner}: call arguments {', '.join(extra)} are not "
                                  f"supported on arrays")
    leaves = flatten(inputs)
    try:
        arrays = [np.asarray(x, dtype=np.float32) for x in leaves]
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: expects symbolic tensors or arrays of numbers, got "
                        f"{', '.join(type(x).__name__ for x in leaves)}") from None
    for a in arrays:
        if a.ndim < 1:
            raise ValueError(f"{owner}: called on an array of shape {a.shape}; the first "
                             f"axis is the batch axis")
    key = tuple(a.shape[1:] for a in arrays) + (isinstance(inputs, (list, tuple)),)
    model = layer._eager_models.get(key)
    if model is None:
        tensors = [Input(shape=a.shape[1:]) for a in arrays]
        symbolic = tensors if isinstance(inputs, (list, tuple)) else tensors[0]
        model = Functional(inputs=symbolic, outputs=layer(symbolic))
        layer._eager_models[key] = model
    data: Any = arrays if len(arrays) > 1 or isinstance(inputs, (list, tuple)) else arrays[0]
    out = model.predict(data, batch_size=max(1, len(arrays[0])), verbose=0)
    if isinstance(out, list):
        return [Tensor(o) for o in out]
    return Tensor(out)
